//! One scenario under one back end, start to finish: build the lab, load the rules,
//! start the services, send the probes, read the counters, judge, tear down.

use std::time::{Duration, Instant};

use crate::arrivals::Arrivals;
use crate::backend::{self, RuleBackend};
use crate::counters::{self, CounterDelta, LookupError};
use crate::judge::{self, Verdict};
use crate::lab::Lab;
use crate::probe::{self, Outcome};
use crate::producer::{self, Log};
use crate::scenario::{Backend, Proto, Scenario};
use crate::service::Services;

#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Index into `Scenario::probes`.
    pub probe: usize,
    pub outcome: Outcome,
    pub verdict: Verdict,
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
    /// The scenario could not be carried out (lab, rules or services); says why.
    Error(String),
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
            rules_after: None,
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
    /// The rule set with counters after the probes, as the back end printed it.
    pub rules_after: Option<String>,
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
    if !scn.rules.ipsets.is_empty() && crate::exec::which("ipset").is_none() {
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
    PROBE.get_or_init(|| match crate::netns::NetNs::create("probe") {
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
    let start = Instant::now();
    let mut report = ScenarioReport::new(&scn.name, backend, Status::Passed);
    if let Err(why) = execute(scn, backend, &mut report).await {
        report.status = Status::Error(why);
    } else if report.probes.iter().any(|p| !p.verdict.pass()) || report.counters.iter().any(|c| !c.verdict.pass()) {
        report.status = Status::Failed;
    }
    report.elapsed = start.elapsed();
    report
}

async fn execute(scn: &Scenario, backend: Backend, report: &mut ScenarioReport) -> Result<(), String> {
    let rb: Box<dyn RuleBackend> = backend::for_backend(backend);
    let mut lab = Lab::build(scn).await.map_err(|e| e.to_string())?;
    let mut producer = producer::for_scenario(scn);
    let produced = producer.produce(scn, &mut lab, backend, &mut report.producer_log).await;
    let outcome = match produced {
        Ok(()) => observe(scn, rb.as_ref(), &lab, report).await,
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
async fn observe(scn: &Scenario, rb: &dyn RuleBackend, lab: &Lab, report: &mut ScenarioReport) -> Result<(), String> {
    let services = Services::start(lab, scn).map_err(|e| e.to_string())?;
    let arrivals = Arrivals::start(lab, scn).map_err(|e| format!("watching for arrivals: {e}"))?;

    let need_counters = !scn.counters.is_empty();
    let before =
        if need_counters { Some(backend::dump(rb, lab.host()).await.map_err(|e| e.to_string())?.0) } else { None };

    let sends = scn.probes.iter().enumerate().map(|(i, p)| probe::send(lab.ns(p.from), p, i));
    let mut outcomes = if scn.sequential {
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
        outcome.delivered_to = services
            .received(i as u64)
            .or_else(|| arrivals.reached(p.from, proto, probe::tag(i)).map(|id| scn.node(id).name.clone()));
    }
    report.probes = outcomes
        .into_iter()
        .enumerate()
        .map(|(i, outcome)| ProbeReport { probe: i, verdict: judge::probe(scn, &scn.probes[i], &outcome), outcome })
        .collect();

    let (after, text) = backend::dump(rb, lab.host()).await.map_err(|e| e.to_string())?;
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
