//! Reports over the run record. This module: the [`Reporter`] trait, one
//! implementation per format in its own file (`human`, `json`, `tap`, `junit`,
//! `github`), the factory that picks one by name, and the totals of a run. Also here:
//! the connectivity table, the contract matrix and evidence folders, which the
//! reporters and the runner use.

pub mod connectivity;
pub mod evidence;
pub mod github;
pub mod human;
pub mod json;
pub mod junit;
pub mod matrix;
pub mod tap;

use std::time::Duration;

pub use human::scenario;
use matrix::Entry;

use crate::run::{ScenarioReport, Status};
use crate::scenario::{InputError, Scenario};

/// What every reporter is given at the end: the runs in plan order, each with its
/// scenario, the scenario files that did not load, the totals and the wall time.
pub struct Record<'a> {
    pub entries: &'a [(&'a Scenario, Entry)],
    pub invalid: &'a [InputError],
    pub summary: Summary,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing the JUnit report: {0}")]
    Junit(String),
}

/// Settings of the reports that people read.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub palette: human::Palette,
    /// Failures, errors and the totals only.
    pub quiet: bool,
    /// A connectivity table (from × to) under each run.
    pub tables: bool,
}

/// One report format over the run record.
pub trait Reporter {
    /// Text to print as soon as one run's verdict is known, in plan order.
    fn entry(&mut self, _scn: &Scenario, _entry: &Entry) -> String {
        String::new()
    }

    /// The report's text once every run is done.
    fn finish(&mut self, record: &Record<'_>) -> Result<String, ReportError>;
}

type MakeReporter = fn(&Options) -> Box<dyn Reporter>;

/// Every format by name; a new one is its file and one line here.
const FORMATS: &[(&str, MakeReporter)] = &[
    ("human", |o| Box::new(human::Human::new(o))),
    ("json", |_| Box::new(json::Json)),
    ("tap", |_| Box::new(tap::Tap)),
    ("junit", |_| Box::new(junit::Junit)),
    ("github", |_| Box::new(github::Github)),
];

/// The names `for_format` knows.
pub fn format_names() -> impl Iterator<Item = &'static str> {
    FORMATS.iter().map(|(name, _)| *name)
}

/// The reporter for the format `name`, if there is one.
pub fn for_format(name: &str, options: &Options) -> Option<Box<dyn Reporter>> {
    FORMATS.iter().find(|(n, _)| *n == name).map(|(_, make)| make(options))
}

/// Why a run did not pass, in one line: its error, or its first failing probe or
/// counter. The recap of the terminal report and mutate's fates say it so.
pub fn first_failure(scn: &Scenario, rep: &ScenarioReport) -> String {
    if let Status::Error(why) = &rep.status {
        return first_line(&why.to_string());
    }
    if let Some(p) = rep.probes.iter().find(|p| !p.verdict.pass()) {
        let probe = &scn.probes[p.probe];
        let problem = p.verdict.problems.first().map(String::as_str).unwrap_or_default();
        return format!("probe `{}` (line {}): {}", probe.name, probe.location.line, first_line(problem));
    }
    if let Some(c) = rep.counters.iter().find(|c| !c.verdict.pass()) {
        let exp = &scn.counters[c.counter];
        let table = match &exp.family {
            Some(f) => format!("{f} {}", exp.table),
            None => exp.table.clone(),
        };
        let problem = c.verdict.problems.first().map(String::as_str).unwrap_or_default();
        return format!(
            "counter {table} {} {} (line {}): {}",
            exp.chain,
            exp.rule,
            exp.location.line,
            first_line(problem)
        );
    }
    "failed".to_string()
}

/// The first line of a message; when it ends in `:`, with the line after it.
fn first_line(s: &str) -> String {
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    match lines.next() {
        Some(next) if first.ends_with(':') => format!("{first} {next}"),
        _ => first.to_string(),
    }
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
    use std::time::Duration;

    use super::{for_format, human::Palette, Options, Record, Summary};
    use crate::report::matrix::Entry;
    use crate::run::{CounterReport, RunError, ScenarioReport, Status};
    use crate::scenario::{load_text, Backend, Diagnostic, InputError};

    const COUNTED: &str = "host:\n  bridges: { br0: { address: 10.0.0.1/24 } }\n\
        nodes:\n  a:\n    interfaces: [{ bridge: br0, address: 10.0.0.2/24 }]\n\
        rules: { backends: [iptables-nft], live: { program: command, run: [\"true\"] } }\n\
        counters:\n  - { table: filter, chain: FORWARD, rule: 1, packets: 2 }\n  - { table: filter, chain: FORWARD, rule: 2, packets: \">= 3\" }\n";

    fn record<'a>(entries: &'a [(&'a crate::scenario::Scenario, Entry)], invalid: &'a [InputError]) -> Record<'a> {
        let mut summary = Summary::default();
        for (_, e) in entries {
            summary.add_entry(e);
        }
        Record { entries, invalid, summary, elapsed: Duration::ZERO }
    }

    fn options(quiet: bool) -> Options {
        Options { palette: Palette::PLAIN, quiet, tables: false }
    }

    /// A passed run, a run stopped by its lab, and a file that did not load.
    fn mixed() -> (crate::scenario::Scenario, Vec<Entry>, Vec<InputError>) {
        let scn = load_text(COUNTED);
        let passed = ScenarioReport::new(&scn.name, Backend::IptablesNft, Status::Passed);
        let broken =
            ScenarioReport::new(&scn.name, Backend::IptablesLegacy, Status::Error(RunError::Lab("no bridge".into())));
        let bad = InputError::from(Diagnostic::new(std::path::Path::new("bad.yaml"), "not YAML"));
        (scn, vec![Entry::Ran(passed), Entry::Ran(broken)], vec![bad])
    }

    #[test]
    fn the_human_report_recaps_errors_and_quiet_leaves_out_passes() {
        let (scn, entries, invalid) = mixed();
        let pairs: Vec<_> = entries.into_iter().map(|e| (&scn, e)).collect();
        for quiet in [false, true] {
            let mut human = for_format("human", &options(quiet)).expect("a human reporter");
            let streamed: String = pairs.iter().map(|(s, e)| human.entry(s, e)).collect();
            let end = human.finish(&record(&pairs, &invalid)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(streamed.contains("PASS  s.yaml [iptables-nft]"), !quiet, "{streamed}");
            assert!(streamed.contains("ERROR s.yaml [iptables-legacy]"), "{streamed}");
            assert!(end.contains("failures and errors (2):\n"), "{end}");
            assert!(end.contains("  ERROR s.yaml [iptables-legacy]: no bridge\n"), "{end}");
            assert!(end.contains("  ERROR bad.yaml: not YAML\n"), "{end}");
            assert!(end.contains("1 passed, 1 failed, 0 ignored, 1 scenario file did not load in 0.00 s"), "{end}");
        }
    }

    #[test]
    fn json_gives_counts_and_stages_as_data_and_lists_files_that_did_not_load() {
        let (scn, mut entries, invalid) = mixed();
        if let Entry::Ran(rep) = &mut entries[0] {
            rep.counters = (0..2)
                .map(|counter| CounterReport {
                    counter,
                    delta: Ok(crate::backend::counters::CounterDelta {
                        position: 1,
                        text: "-j ACCEPT".into(),
                        packets: 2,
                        bytes: 168,
                    }),
                    verdict: crate::judge::Verdict { problems: Vec::new() },
                })
                .collect();
        }
        let pairs: Vec<_> = entries.into_iter().map(|e| (&scn, e)).collect();
        let text = for_format("json", &options(false))
            .expect("a json reporter")
            .finish(&record(&pairs, &invalid))
            .unwrap_or_else(|e| panic!("{e}"));
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let counters = &doc["runs"][0]["counters"];
        assert_eq!(counters[0]["expected_packets"], serde_json::json!({"exactly": 2}));
        assert_eq!(counters[1]["expected_packets"], serde_json::json!({"at_least": 3}));
        assert_eq!(doc["runs"][1]["stage"], "lab");
        assert_eq!(doc["runs"][1]["reason"], "no bridge");
        assert_eq!(doc["invalid"][0]["file"], "bad.yaml");
        assert_eq!(doc["invalid"][0]["message"], "not YAML");
    }

    #[test]
    fn tap_counts_a_file_that_did_not_load_as_a_test_point() {
        let (scn, entries, invalid) = mixed();
        let pairs: Vec<_> = entries.into_iter().map(|e| (&scn, e)).collect();
        let tap = super::tap::report(&pairs, &invalid);
        assert!(tap.starts_with("TAP version 14\n1..3\nok 1 - s.yaml [iptables-nft]\n"), "{tap}");
        assert!(tap.contains("  stage: lab\n"), "{tap}");
        assert!(tap.contains("not ok 3 - bad.yaml\n  ---\n  message: \"bad.yaml: not YAML\"\n  ...\n"), "{tap}");
    }

    #[test]
    fn junit_has_an_error_case_for_a_file_that_did_not_load() {
        let (scn, entries, mut invalid) = mixed();
        invalid[0].diagnostics.push(Diagnostic::new(std::path::Path::new("bad.yaml"), "no nodes"));
        let pairs: Vec<_> = entries.into_iter().map(|e| (&scn, e)).collect();
        let xml = super::junit::report(&pairs, &invalid, Duration::ZERO).unwrap_or_else(|e| panic!("{e}"));
        assert!(xml.contains("tests=\"3\"") && xml.contains("errors=\"2\""), "{xml}");
        assert!(xml.contains("<testcase name=\"bad.yaml\" classname=\"invalid\">"), "{xml}");
        assert!(
            xml.contains(
                "<error message=\"bad.yaml: not YAML\" type=\"invalid\">bad.yaml: not YAML\nbad.yaml: no nodes</error>"
            ),
            "{xml}"
        );
    }

    #[test]
    fn every_format_has_a_reporter() {
        for name in super::format_names() {
            assert!(for_format(name, &options(false)).is_some(), "{name}");
        }
        assert!(for_format("yaml", &options(false)).is_none());
    }

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

        let tap = super::tap::report(&pairs, &[]);
        assert!(tap.contains("ok 1 - s.yaml [iptables-nft] # SKIP skip: not testable yet\n"), "{tap}");
        assert!(tap.contains("ok 2 - s.yaml [iptables-legacy] # SKIP skip: not testable yet\n"), "{tap}");

        let xml = super::junit::report(&pairs, &[], std::time::Duration::ZERO).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            xml.contains("name=\"s.yaml [iptables-nft]\"") && xml.contains("name=\"s.yaml [iptables-legacy]\""),
            "{xml}"
        );

        let doc = super::json::document(&pairs, std::time::Duration::ZERO);
        assert_eq!(doc["runs"].as_array().map(Vec::len), Some(2));
        assert_eq!(doc["schema"], "netconform-report/2");
        for (run, backend) in doc["runs"].as_array().into_iter().flatten().zip(["iptables-nft", "iptables-legacy"]) {
            assert_eq!(run["backend"], backend);
            assert_eq!(run["status"], "ignored");
            assert_eq!(run["probes"], serde_json::json!([]));
            assert_eq!(run["counters"], serde_json::json!([]));
        }
    }
}
