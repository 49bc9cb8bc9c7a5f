//! Reports. This module: the terminal report, each scenario, each probe and counter
//! with its verdict, and a failing verdict with the file position, what was expected,
//! what happened and the path. Submodules: machine-readable formats, the
//! connectivity table, and evidence folders.

pub mod connectivity;
pub mod evidence;
pub mod github;
pub mod json;
pub mod junit;
pub mod matrix;
pub mod tap;

use std::fmt::Write;

use crate::backend::counters::LookupError;
use crate::run::{ScenarioReport, Status};
use crate::scenario::Scenario;
use crate::traffic::probe::OutcomeKind;

/// The report of one scenario run, as lines for a terminal.
pub fn scenario(scn: &Scenario, rep: &ScenarioReport) -> String {
    let mut out = String::new();
    let head = match &rep.status {
        Status::Passed => "PASS ",
        Status::Failed => "FAIL ",
        Status::Error(_) => "ERROR",
    };
    let _ = writeln!(
        out,
        "{head} {} [{}] ({} probes, {} counters, {} ms)",
        rep.name,
        rep.backend,
        scn.probes.len(),
        scn.counters.len(),
        rep.elapsed.as_millis()
    );
    if let Status::Error(why) = &rep.status {
        for line in why.lines() {
            let _ = writeln!(out, "      {line}");
        }
    }
    // A live producer's words are evidence whether its rules made the scenario fail or
    // kept it from running.
    let live = scn.rules.live.is_some();
    let shown = matches!(rep.status, Status::Error(_)) || (live && rep.status == Status::Failed);
    if shown && !rep.producer_log.entries.is_empty() {
        let _ = writeln!(out, "      what the producer ran:");
        for line in rep.producer_log.to_string().lines() {
            // No control characters from a program reach the terminal.
            let line: String = line
                .chars()
                .map(|c| if c.is_control() && c != '\t' { char::REPLACEMENT_CHARACTER } else { c })
                .collect();
            let _ = writeln!(out, "        {line}");
        }
    }
    for problem in &rep.teardown_problems {
        let _ = writeln!(out, "  warning: teardown: {problem}");
    }
    for p in &rep.probes {
        let probe = &scn.probes[p.probe];
        let mark = if p.verdict.pass() { "ok  " } else { "FAIL" };
        let got = match (&p.outcome.delivered_to, p.outcome.kind) {
            (Some(node), OutcomeKind::Dropped) => {
                format!("dropped on the way back (the request reached {node}; {})", p.outcome.detail)
            }
            (Some(node), OutcomeKind::Refused) => {
                format!("refused ({}; the request reached {node})", p.outcome.detail)
            }
            (_, kind) => format!("{kind} ({})", p.outcome.detail),
        };
        let retried = if p.outcome.retried { ", sent twice (the first met only silence)" } else { "" };
        let _ = writeln!(
            out,
            "  {mark} {}: expected {}, got {got}, {} ms{retried}",
            probe.name,
            probe.expect,
            p.outcome.elapsed.as_millis()
        );
        if !p.verdict.pass() {
            let _ = writeln!(out, "       at {}:{}:{}", scn.path.display(), probe.location.line, probe.location.column);
            for problem in &p.verdict.problems {
                let _ = writeln!(out, "       {problem}");
            }
            if let Some(rule) = &p.deciding {
                let _ = writeln!(out, "       decided by {rule}");
            }
            match &p.path {
                Some(steps) if steps.is_empty() => {
                    let _ = writeln!(out, "       path: no rule counter moved (nothing in the rule set saw it)");
                }
                Some(steps) => {
                    let _ = writeln!(out, "       path (rules whose counters this probe moved):");
                    for step in steps {
                        let _ = writeln!(out, "         {step}");
                    }
                }
                None => {}
            }
        }
    }
    for c in &rep.counters {
        let exp = &scn.counters[c.counter];
        let mark = if c.verdict.pass() { "ok  " } else { "FAIL" };
        let table = match &exp.family {
            Some(f) => format!("{f} {}", exp.table),
            None => exp.table.clone(),
        };
        let counted = match &c.delta {
            Ok(d) => format!("{} packets, {} bytes", d.packets, d.bytes),
            Err(LookupError::NoCounter { .. }) => "no counter on this rule".to_string(),
            Err(LookupError::Ambiguous { .. } | LookupError::AmbiguousFamily { .. }) => "ambiguous".to_string(),
            Err(_) => "not found".to_string(),
        };
        let _ = writeln!(out, "  {mark} counter {table} {} {}: {counted}", exp.chain, exp.rule);
        if !c.verdict.pass() {
            let _ = writeln!(out, "       at {}:{}:{}", scn.path.display(), exp.location.line, exp.location.column);
            for problem in &c.verdict.problems {
                for line in problem.lines() {
                    let _ = writeln!(out, "       {line}");
                }
            }
        }
    }
    out
}

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
}

impl Summary {
    pub fn add(&mut self, rep: &ScenarioReport) {
        match rep.status {
            Status::Passed => self.passed += 1,
            Status::Failed | Status::Error(_) => self.failed += 1,
        }
    }

    pub fn add_entry(&mut self, entry: &crate::report::matrix::Entry) {
        match entry {
            crate::report::matrix::Entry::Ran(rep) => self.add(rep),
            crate::report::matrix::Entry::Ignored { .. } => self.ignored += 1,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed, {} ignored", self.passed, self.failed, self.ignored)
    }
}

#[cfg(test)]
mod tests {
    use crate::report::matrix::Entry;
    use crate::scenario::{load_text, Backend};

    /// One scenario ignored under two back ends, as a run of the full suite reports it.
    fn ignored_twice() -> (crate::scenario::Scenario, Vec<Entry>) {
        let scn = load_text(
            "skip: >\n  not testable\n  yet\nhost:\n  bridges: { br0: { address: 10.0.0.1/24 } }\n\
             nodes:\n  a:\n    interfaces: [{ bridge: br0, address: 10.0.0.2/24 }]\n\
             rules: { backends: [iptables-nft, iptables-legacy], live: { program: command, run: [\"true\"] } }\n",
        );
        let reason = scn.skip.clone().unwrap_or_default();
        let entries = [Backend::IptablesNft, Backend::IptablesLegacy]
            .into_iter()
            .map(|backend| Entry::Ignored { backend, reason: format!("skip: {reason}") })
            .collect();
        (scn, entries)
    }

    #[test]
    fn ignored_runs_name_their_back_end_in_every_format() {
        let (scn, entries) = ignored_twice();
        let pairs: Vec<_> = entries.into_iter().map(|e| (&scn, e)).collect();

        let tap = super::tap::report(&pairs);
        assert!(tap.contains("ok 1 - s.yaml [iptables-nft] # SKIP skip: not testable yet\n"), "{tap}");
        assert!(tap.contains("ok 2 - s.yaml [iptables-legacy] # SKIP skip: not testable yet\n"), "{tap}");

        let xml = super::junit::report(&pairs, std::time::Duration::ZERO).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            xml.contains("name=\"s.yaml [iptables-nft]\"") && xml.contains("name=\"s.yaml [iptables-legacy]\""),
            "{xml}"
        );

        let doc = super::json::document(&pairs, std::time::Duration::ZERO);
        assert_eq!(doc["runs"].as_array().map(Vec::len), Some(2));
        for (run, backend) in doc["runs"].as_array().into_iter().flatten().zip(["iptables-nft", "iptables-legacy"]) {
            assert_eq!(run["backend"], backend);
            assert_eq!(run["status"], "ignored");
            assert_eq!(run["probes"], serde_json::json!([]));
            assert_eq!(run["counters"], serde_json::json!([]));
        }
    }
}
