//! One scenario under one back end, start to finish: build the lab, load the rules,
//! start the services, send the probes, read the counters, judge, tear down.

mod error;
mod execute;
pub mod partition;
mod record;
mod requirements;
pub mod rootless;

pub use error::RunError;

pub use execute::{send, ANSWER_GRACE};
pub use record::{path, CounterReport, PathStep, ProbeReport, ScenarioReport, Status};
pub use requirements::{machine_requirements, requirements};

use std::time::Instant;

use crate::scenario::{Backend, Scenario};

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
    if let Err(why) = execute::execute(scn, backend, &mut report, explain).await {
        report.status = Status::Error(why);
    } else if report.probes.iter().any(|p| !p.verdict.pass()) || report.counters.iter().any(|c| !c.verdict.pass()) {
        report.status = Status::Failed;
    }
    report.elapsed = start.elapsed();
    report
}
