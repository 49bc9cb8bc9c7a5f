//! The record of one scenario run: its status, each probe's outcome and verdict with
//! the path and trace that explain it, and each counter's difference and verdict. The
//! reports in `report/` read nothing else.

use std::time::Duration;

use super::RunError;
use crate::backend::counters::{self, CounterDelta, Dump, LookupError};
use crate::judge::Verdict;
use crate::producer::Log;
use crate::scenario::Backend;
use crate::traffic::probe::Outcome;

#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Index into `Scenario::probes`.
    pub probe: usize,
    pub outcome: Outcome,
    pub verdict: Verdict,
    /// In an explained run: the rules (and chain policies) whose counters this probe
    /// moved, in dump order. Together they are the packets' path.
    pub path: Option<Vec<PathStep>>,
    /// On nf_tables back ends, when rules were named: the rule whose verdict decided
    /// this probe, in the syntax the rules were loaded in.
    pub deciding: Option<String>,
    /// On nf_tables back ends, when rules were named: every traced step of the probe's
    /// packets.
    pub trace: Vec<String>,
}

/// One rule on a probe's path, as the back end's dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStep {
    /// `filter FORWARD` (iptables) or `ip filter forward` (nft).
    pub chain: String,
    /// 1-based position in the chain; None for the chain's policy.
    pub position: Option<usize>,
    /// The rule as the dump prints it, or `policy DROP`.
    pub text: String,
    pub packets: u64,
}

impl std::fmt::Display for PathStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(p) => write!(f, "{} #{p}: {} ({} packets)", self.chain, self.text, self.packets),
            None => write!(f, "{}: {} ({} packets)", self.chain, self.text, self.packets),
        }
    }
}

/// The rules and policies whose counters moved between two dumps.
pub fn path(before: &Dump, after: &Dump) -> Vec<PathStep> {
    let chain = |family: &Option<String>, table: &str, chain: &str| match family {
        Some(f) => format!("{f} {table} {chain}"),
        None => format!("{table} {chain}"),
    };
    let mut steps: Vec<PathStep> = counters::moved(before, after)
        .into_iter()
        .map(|(r, packets, _)| PathStep {
            chain: chain(&r.family, &r.table, &r.chain),
            position: Some(r.position),
            text: if r.text.is_empty() { "counter".into() } else { r.text.clone() },
            packets,
        })
        .collect();
    for p in &after.policies {
        let Some(old) =
            before.policies.iter().find(|o| o.family == p.family && o.table == p.table && o.chain == p.chain)
        else {
            continue;
        };
        let moved = p.packets.zip(old.packets).map(|(a, b)| a.saturating_sub(b)).unwrap_or(0);
        if moved > 0 {
            steps.push(PathStep {
                chain: chain(&p.family, &p.table, &p.chain),
                position: None,
                text: format!("policy {}", p.policy),
                packets: moved,
            });
        }
    }
    steps
}

#[derive(Debug, Clone)]
pub struct CounterReport {
    /// Index into `Scenario::counters`.
    pub counter: usize,
    pub delta: Result<CounterDelta, LookupError>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Passed,
    /// Some expectation did not hold.
    Failed,
    /// The scenario could not be carried out; the stage that stopped it says why.
    Error(RunError),
}

impl ScenarioReport {
    /// A report with nothing in it yet.
    pub fn new(name: &str, backend: Backend, status: Status) -> ScenarioReport {
        ScenarioReport {
            name: name.to_string(),
            backend,
            status,
            probes: Vec::new(),
            counters: Vec::new(),
            rules_before: None,
            rules_after: None,
            explained: false,
            producer_log: Log::default(),
            teardown_problems: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScenarioReport {
    pub name: String,
    pub backend: Backend,
    pub status: Status,
    pub probes: Vec<ProbeReport>,
    pub counters: Vec<CounterReport>,
    /// The rule set with counters before the probes, as the back end printed it.
    pub rules_before: Option<String>,
    /// The rule set with counters after the probes, as the back end printed it.
    pub rules_after: Option<String>,
    /// Whether the probes ran one at a time with their paths read.
    pub explained: bool,
    /// What the producer ran and what its programs printed.
    pub producer_log: Log,
    /// What went wrong undoing the producer's work (reported, not fatal).
    pub teardown_problems: Vec<String>,
    pub elapsed: Duration,
}
