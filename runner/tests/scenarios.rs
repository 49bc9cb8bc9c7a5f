//! The conformance suite as tests: one trial per scenario file and back end under
//! scenarios/, named by its path, plus tests of the whole program on the real kernel
//! (kernel::*). Trials that cannot run here (not root, a tool missing) are reported
//! ignored with the reason; they never pass.

mod corpus;
mod dockerd_chaos;
mod kernel;

use std::path::PathBuf;

use harness::run::{self, Status};
use harness::scenario;
use libtest_mimic::{Arguments, Completion, Trial};

fn suite_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn scenario_trials() -> Vec<Trial> {
    let found = match scenario::discover(&[suite_root()]) {
        Ok(found) => found,
        Err(e) => return vec![Trial::test("scenarios/ (discovery)", move || Err(e.to_string().into()))],
    };
    let mut trials = Vec::new();
    for (path, name) in found {
        let loaded = match scenario::load_file(&path, &name) {
            Ok(loaded) => loaded,
            Err(e) => {
                trials.push(Trial::test(name, move || Err(e.to_string().into())));
                continue;
            }
        };
        for (scn, &backend) in loaded.iter().flat_map(|s| s.rules.backends.iter().map(move |b| (s, b))) {
            let scn = scn.clone();
            let trial = Trial::ignorable_test(format!("{} [{backend}]", scn.name), move || {
                if let Some(why) = &scn.not_applicable {
                    return Ok(Completion::ignored_with(format!("not applicable: {why}")));
                }
                if let Some(why) = &scn.skip {
                    return Ok(Completion::ignored_with(format!("skip: {why}")));
                }
                if let Err(why) = run::requirements(&scn, backend) {
                    return Ok(Completion::ignored_with(why));
                }
                if let Some(why) = harness::producer::unavailable(&scn) {
                    return Ok(Completion::ignored_with(why));
                }
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let rep = rt.block_on(run::run_scenario(&scn, backend));
                match rep.status {
                    Status::Passed => Ok(Completion::Completed),
                    _ => Err(harness::report::scenario(&scn, &rep).into()),
                }
            });
            trials.push(trial.with_kind("scenario"));
        }
    }
    trials
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = scenario_trials();
    trials.extend(kernel::trials());
    trials.extend(corpus::trials());
    trials.extend(dockerd_chaos::trials());
    libtest_mimic::run(&args, trials).exit();
}
