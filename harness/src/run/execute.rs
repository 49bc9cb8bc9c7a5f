//! One run's stages in order: build the lab while the producer loads the rules, start
//! the services and arrival sockets, trace and send the probes, read the counters,
//! name the rules that decided, judge, and tear down.

use std::time::{Duration, Instant};

use super::record::{path, CounterReport, PathStep, ProbeReport, ScenarioReport};
use super::RunError;
use crate::backend::counters;
use crate::backend::trace::{self, TraceSession};
use crate::backend::{self, RuleBackend};
use crate::judge;
use crate::lab::Lab;
use crate::producer;
use crate::scenario::{Backend, Expect, Probe, Proto, Scenario};
use crate::traffic::arrivals::Arrivals;
use crate::traffic::probe::{self, Outcome, OutcomeKind};
use crate::traffic::service::Services;

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
                // IPv4's own tables go by their names alone, as iptables names them.
                match event.family.as_str() {
                    "ip" => format!("dropped in {} {} (traced)", event.table, event.chain),
                    family => format!("dropped in {family} {} {} (traced)", event.table, event.chain),
                },
                start.elapsed(),
            );
            if event.direction == trace::Direction::Reply {
                // The answer was dropped, so the request arrived: at the answer's source.
                outcome.delivered_to = scn.owner_of_ip(event.packet.src).map(|id| scn.node(id).name.clone());
            }
            outcome
        }
    }
}

pub(super) async fn execute(
    scn: &Scenario,
    backend: Backend,
    report: &mut ScenarioReport,
    explain: bool,
) -> Result<(), RunError> {
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

    let before = if !scn.counters.is_empty() || explain {
        let (dump, text) = dump(rb, lab, scn.ipv6).await?;
        report.rules_before = Some(text);
        Some(dump)
    } else {
        None
    };
    let trace = start_trace(scn, rb, lab, report).await;
    let (mut outcomes, paths) = send_all(scn, rb, lab, trace.as_ref(), before.as_ref(), explain).await?;
    report.explained = explain;
    record_deliveries(scn, &services, &arrivals, &mut outcomes);
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
        name_traced_rules(&session, rb, lab, scn.ipv6, report, explain).await;
        if let Err(e) = session.close().await {
            report.producer_log.push(format!("removing the trace table: {e}"));
        }
    }

    let (after, text) = dump(rb, lab, scn.ipv6).await?;
    report.rules_after = Some(text);
    if let Some(before) = before {
        report.counters = judge_counters(scn, &before, &after);
    }
    // Sockets first: each one holds its namespace.
    drop(arrivals);
    drop(services);
    Ok(())
}

async fn dump(rb: &dyn RuleBackend, lab: &Lab, ipv6: bool) -> Result<(counters::Dump, String), RunError> {
    backend::dump(rb, lab.host(), ipv6).await.map_err(|e| RunError::Counters(e.to_string()))
}

/// Trace the probes' packets: a drop ends a probe at once, and the report names the
/// rule that decided each one. A run without a trace still judges, on other evidence.
async fn start_trace(
    scn: &Scenario,
    rb: &dyn RuleBackend,
    lab: &Lab,
    report: &mut ScenarioReport,
) -> Option<TraceSession> {
    if scn.probes.is_empty() {
        return None;
    }
    let tags: Vec<trace::ProbeTag> = (0..scn.probes.len()).map(probe::tag).collect();
    match TraceSession::start(lab.host(), &tags, rb.backend(), scn.ipv6).await {
        Ok(session) => Some(session),
        Err(e) => {
            report.producer_log.push(format!("tracing is off for this run: {e}"));
            None
        }
    }
}

/// Every probe's outcome, in probe order, and in an explained run the path of each:
/// there the probes go one at a time, with the counters read around each.
async fn send_all(
    scn: &Scenario,
    rb: &dyn RuleBackend,
    lab: &Lab,
    trace: Option<&TraceSession>,
    before: Option<&counters::Dump>,
    explain: bool,
) -> Result<(Vec<Outcome>, Vec<Option<Vec<PathStep>>>), RunError> {
    let sends = scn.probes.iter().enumerate().map(|(i, p)| send(lab, scn, p, i, trace));
    let mut paths: Vec<Option<Vec<PathStep>>> = vec![None; scn.probes.len()];
    let outcomes = if explain {
        let mut done = Vec::with_capacity(scn.probes.len());
        let mut last = before.cloned().unwrap_or_default();
        for (i, send) in sends.enumerate() {
            done.push(send.await);
            let now = dump(rb, lab, scn.ipv6).await?.0;
            paths[i] = Some(path(&last, &now));
            last = now;
        }
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
    Ok((outcomes, paths))
}

/// Where each probe's request landed: the service that took it, else the node whose
/// arrival socket saw it, else the node the trace saw it delivered to.
fn record_deliveries(scn: &Scenario, services: &Services, arrivals: &Arrivals, outcomes: &mut [Outcome]) {
    for (i, (outcome, p)) in outcomes.iter_mut().zip(&scn.probes).enumerate() {
        let proto = match p.proto {
            Proto::Icmp if p.to.is_ipv6() => 58,
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
}

/// The rule that decided each probe, and every traced step, in the syntax the rules
/// were loaded in. Naming costs a listing: only when someone will read the names.
async fn name_traced_rules(
    session: &TraceSession,
    rb: &dyn RuleBackend,
    lab: &Lab,
    ipv6: bool,
    report: &mut ScenarioReport,
    explain: bool,
) {
    if !explain && report.probes.iter().all(|p| p.verdict.pass()) {
        return;
    }
    match trace::Dumps::read(lab.host(), rb.backend(), ipv6).await {
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

fn judge_counters(scn: &Scenario, before: &counters::Dump, after: &counters::Dump) -> Vec<CounterReport> {
    scn.counters
        .iter()
        .enumerate()
        .map(|(i, exp)| {
            let delta = counters::delta(before, after, exp);
            CounterReport { counter: i, verdict: judge::counter(exp, &delta), delta }
        })
        .collect()
}
