//! One scenario under one back end, start to finish: build the lab, load the rules,
//! start the services, send the probes, read the counters, judge, tear down.

mod error;
pub mod partition;
pub mod rootless;

pub use error::RunError;

use std::time::{Duration, Instant};

use crate::backend::counters::{self, CounterDelta, Dump, LookupError};
use crate::backend::trace::{self, TraceSession};
use crate::backend::{self, RuleBackend};
use crate::judge::{self, Verdict};
use crate::lab::Lab;
use crate::producer::{self, Log};
use crate::scenario::{Backend, Proto, Scenario};
use crate::scenario::{Expect, Probe};
use crate::traffic::arrivals::Arrivals;
use crate::traffic::probe::OutcomeKind;
use crate::traffic::probe::{self, Outcome};
use crate::traffic::service::Services;

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

/// How long a probe that expects an answer waits for it, at least.
pub const ANSWER_GRACE: Duration = Duration::from_millis(900);

/// Sends probe `index` of `scn` as a run does: with a trace, a drop verdict on its
/// packets ends it at once (unless its timeout reaches TCP's first retransmission,
/// which a drop need not stop); a probe that expects an answer and meets only silence
/// is sent once more ([`Outcome::retried`]).
pub async fn send(lab: &Lab, scn: &Scenario, p: &Probe, index: usize, trace: Option<&TraceSession>) -> Outcome {
    // The timeout decides when silence means "dropped". A probe that expects an answer
    // costs nothing more if it waits longer for it, and on a busy machine an answer
    // can come late; but never as late as TCP's first retransmission at one second,
    // which a rule that dropped the first SYN may let through.
    let patient;
    let p = if p.expect != Expect::Dropped && p.timeout < ANSWER_GRACE {
        patient = Probe { timeout: ANSWER_GRACE, ..p.clone() };
        &patient
    } else {
        p
    };
    let first = send_once(lab, scn, p, index, trace).await;
    // Silence is the weakest evidence: a probe that expects an answer and fails on
    // silence alone (no answer, or a connection whose answer never came) is sent once
    // more before it counts. An expected drop is never retried, so a retry can only
    // ever turn a failure into a pass for a probe that should get through, and the
    // report says it happened.
    if p.expect == Expect::Dropped || first.evidence != probe::Evidence::Silence || judge::probe(scn, p, &first).pass()
    {
        return first;
    }
    let mut second = send_once(lab, scn, p, index, trace).await;
    second.retried = true;
    second.elapsed += first.elapsed;
    second
}

async fn send_once(lab: &Lab, scn: &Scenario, p: &Probe, index: usize, trace: Option<&TraceSession>) -> Outcome {
    let sending = probe::send(lab.ns(p.from), p, index);
    let Some(trace) = trace.filter(|_| p.timeout < Duration::from_secs(1)) else { return sending.await };
    let start = Instant::now();
    tokio::select! {
        biased;
        outcome = sending => outcome,
        event = trace.dropped(probe::tag(index)) => {
            let mut outcome = Outcome::decided(
                OutcomeKind::Dropped,
                format!("dropped in {} {} (traced)", event.table, event.chain),
                start.elapsed(),
            );
            if event.direction == trace::Direction::Reply {
                // The answer was dropped, so the request arrived: at the answer's source.
                outcome.delivered_to = scn.owner_of(event.packet.src).map(|id| scn.node(id).name.clone());
            }
            outcome
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

/// What must be true of this machine to run `scn` under `backend`; the reason if not.
pub fn requirements(scn: &Scenario, backend: Backend) -> Result<(), String> {
    machine_requirements(backend)?;
    if !scn.host.bridges.is_empty() {
        namespace_probe().bridge_netfilter.clone()?;
    }
    if !scn.rules.ipsets.is_empty() && crate::lab::sandbox::which("ipset").is_none() {
        return Err("the rule set needs ipset on PATH; install with ci/install-deps".into());
    }
    Ok(())
}

/// What must be true of this machine to run anything under `backend`.
pub fn machine_requirements(backend: Backend) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "needs root: building network namespaces and loading rules take CAP_SYS_ADMIN and CAP_NET_ADMIN".into()
        );
    }
    namespace_probe().create.clone()?;
    let missing = backend::missing_programs(backend);
    if !missing.is_empty() {
        return Err(format!(
            "the {backend} back end needs {} on PATH; install with ci/install-deps",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// What one throwaway namespace showed about this machine, found once per process.
struct NamespaceProbe {
    create: Result<(), String>,
    bridge_netfilter: Result<(), String>,
}

fn namespace_probe() -> &'static NamespaceProbe {
    static PROBE: std::sync::OnceLock<NamespaceProbe> = std::sync::OnceLock::new();
    PROBE.get_or_init(|| match crate::lab::netns::NetNs::create("probe") {
        Err(e) => {
            let why = format!(
                "cannot create a network namespace ({e}): run as root with CAP_SYS_ADMIN and CAP_NET_ADMIN \
                 (in a container: --privileged)"
            );
            NamespaceProbe { create: Err(why.clone()), bridge_netfilter: Err(why) }
        }
        Ok(ns) => {
            let present = ns.run(|| std::path::Path::new("/proc/sys/net/bridge").is_dir()).unwrap_or(false);
            NamespaceProbe {
                create: Ok(()),
                bridge_netfilter: if present {
                    Ok(())
                } else {
                    Err("scenarios with bridges need br_netfilter, so that bridged packets can pass \
                         iptables: run `modprobe br_netfilter`"
                        .into())
                },
            }
        }
    })
}

pub async fn run_scenario(scn: &Scenario, backend: Backend) -> ScenarioReport {
    run_scenario_with(scn, backend, false).await
}

/// Runs the scenario; when it fails, runs it again with its probes one at a time and
/// the counters read around each, so the report shows each probe's path.
pub async fn run_explained(scn: &Scenario, backend: Backend) -> ScenarioReport {
    let first = run_scenario(scn, backend).await;
    if first.status != Status::Failed {
        return first;
    }
    let mut second = run_scenario_with(scn, backend, true).await;
    // The first run is the verdict; the second is its explanation.
    if second.status == Status::Failed && second.probes.len() == first.probes.len() {
        for (a, b) in second.probes.iter_mut().zip(&first.probes) {
            if a.outcome.kind != b.outcome.kind {
                a.verdict.problems.push(format!(
                    "note: run again one probe at a time, this probe got {} instead of {}",
                    a.outcome.kind, b.outcome.kind
                ));
            }
        }
        second.elapsed += first.elapsed;
        return second;
    }
    let mut first = first;
    first.producer_log.push(format!("an explaining run ended otherwise: {:?}", second.status));
    first
}

/// Runs the scenario; `explain` sends the probes one at a time and records the path of
/// each.
pub async fn run_scenario_with(scn: &Scenario, backend: Backend, explain: bool) -> ScenarioReport {
    let start = Instant::now();
    let mut report = ScenarioReport::new(&scn.name, backend, Status::Passed);
    if let Err(why) = execute(scn, backend, &mut report, explain).await {
        report.status = Status::Error(why);
    } else if report.probes.iter().any(|p| !p.verdict.pass()) || report.counters.iter().any(|c| !c.verdict.pass()) {
        report.status = Status::Failed;
    }
    report.elapsed = start.elapsed();
    report
}

async fn execute(scn: &Scenario, backend: Backend, report: &mut ScenarioReport, explain: bool) -> Result<(), RunError> {
    let rb: Box<dyn RuleBackend> = backend::for_backend(backend);
    let mut producer = producer::for_scenario(scn);
    let (lab, produced) = if producer.host_only() {
        // It needs only the host namespace: it runs while the links are made.
        let (log, early) = (&mut report.producer_log, &mut producer);
        let load = |host| async move { early.produce_in_host(scn, &host, backend, log).await.map_err(RunError::from) };
        Lab::build_with(scn, load).await.map_err(|e| RunError::Lab(e.to_string()))?
    } else {
        let mut lab = Lab::build(scn).await.map_err(|e| RunError::Lab(e.to_string()))?;
        let mut produced =
            producer.produce(scn, &mut lab, backend, &mut report.producer_log).await.map_err(RunError::from);
        if produced.is_ok() {
            produced = lab.settle().await.map_err(|e| RunError::Lab(e.to_string()));
        }
        (lab, produced)
    };
    let outcome = match produced {
        Ok(()) => observe(scn, rb.as_ref(), &lab, report, explain).await,
        Err(why) => Err(why),
    };
    let problems = producer.teardown(&mut report.producer_log).await;
    report.teardown_problems = problems;
    // The producer's processes first, then the lab: each holds its namespaces.
    drop(producer);
    drop(lab);
    outcome
}

/// Services, probes and counters in a lab whose rules are in place.
async fn observe(
    scn: &Scenario,
    rb: &dyn RuleBackend,
    lab: &Lab,
    report: &mut ScenarioReport,
    explain: bool,
) -> Result<(), RunError> {
    let services = Services::start(lab, scn).map_err(|e| RunError::Services(e.to_string()))?;
    let arrivals = Arrivals::start(lab, scn).map_err(|e| RunError::Arrivals(e.to_string()))?;

    let need_counters = !scn.counters.is_empty() || explain;
    let before = if need_counters {
        let (dump, text) = backend::dump(rb, lab.host()).await.map_err(|e| RunError::Counters(e.to_string()))?;
        report.rules_before = Some(text);
        Some(dump)
    } else {
        None
    };

    // Trace the probes' packets: a drop ends a probe at once, and the report names the
    // rule that decided each one.
    let trace = if !scn.probes.is_empty() {
        let tags: Vec<trace::ProbeTag> = (0..scn.probes.len()).map(probe::tag).collect();
        match TraceSession::start(lab.host(), &tags, rb.backend()).await {
            Ok(session) => Some(session),
            Err(e) => {
                report.producer_log.push(format!("tracing is off for this run: {e}"));
                None
            }
        }
    } else {
        None
    };
    let sends = scn.probes.iter().enumerate().map(|(i, p)| send(lab, scn, p, i, trace.as_ref()));
    let mut paths: Vec<Option<Vec<PathStep>>> = vec![None; scn.probes.len()];
    let mut outcomes = if explain {
        // One at a time, with the counters read around each probe.
        let mut done = Vec::with_capacity(scn.probes.len());
        let mut last = before.clone().unwrap_or_default();
        for (i, send) in sends.enumerate() {
            done.push(send.await);
            let now = backend::dump(rb, lab.host()).await.map_err(|e| RunError::Counters(e.to_string()))?.0;
            paths[i] = Some(path(&last, &now));
            last = now;
        }
        report.explained = true;
        done
    } else if scn.sequential {
        let mut done = Vec::with_capacity(scn.probes.len());
        for send in sends {
            done.push(send.await);
        }
        done
    } else {
        futures::future::join_all(sends).await
    };
    for (i, (outcome, p)) in outcomes.iter_mut().zip(&scn.probes).enumerate() {
        let proto = match p.proto {
            Proto::Icmp => 1,
            Proto::Tcp(_) => 6,
            Proto::Udp(_) => 17,
        };
        let traced = outcome.delivered_to.take();
        outcome.delivered_to = services
            .received(i as u64)
            .or_else(|| arrivals.reached(p.from, proto, probe::tag(i)).map(|id| scn.node(id).name.clone()))
            .or(traced);
    }
    report.probes = outcomes
        .into_iter()
        .zip(paths)
        .enumerate()
        .map(|(i, (outcome, path))| ProbeReport {
            probe: i,
            verdict: judge::probe(scn, &scn.probes[i], &outcome),
            outcome,
            path,
            deciding: None,
            trace: Vec::new(),
        })
        .collect();
    if let Some(session) = trace {
        // Naming rules costs a listing: only when someone will read the names.
        if explain || report.probes.iter().any(|p| !p.verdict.pass()) {
            match trace::Dumps::read(lab.host(), rb.backend()).await {
                Ok(dumps) => {
                    for p in &mut report.probes {
                        let tag = probe::tag(p.probe);
                        p.deciding = session.deciding(tag).map(|e| trace::describe(&e, &dumps));
                        p.trace = session.events(tag).iter().map(|e| trace::describe(e, &dumps)).collect();
                    }
                }
                Err(e) => report.producer_log.push(format!("naming the traced rules: {e}")),
            }
        }
        if let Err(e) = session.close().await {
            report.producer_log.push(format!("removing the trace table: {e}"));
        }
    }

    let (after, text) = backend::dump(rb, lab.host()).await.map_err(|e| RunError::Counters(e.to_string()))?;
    report.rules_after = Some(text);
    if let Some(before) = before {
        report.counters = scn
            .counters
            .iter()
            .enumerate()
            .map(|(i, exp)| {
                let delta = counters::delta(&before, &after, exp);
                CounterReport { counter: i, verdict: judge::counter(exp, &delta), delta }
            })
            .collect();
    }
    // Sockets first: each one holds its namespace.
    drop(arrivals);
    drop(services);
    Ok(())
}
