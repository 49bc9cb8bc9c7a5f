//! The conformance suite as tests: one trial per scenario file and back end under
//! scenarios/, named by its path, plus tests of the whole program on the real kernel
//! (kernel::*). Trials that cannot run here (not root, a tool missing) are reported
//! ignored with the reason; they never pass. Whether a trial can run is decided while
//! the trials are listed, so a runner that lists first (nextest) shows it skipped.
//! Not run as root, the target re-runs itself in a user namespace, as `netconform
//! run` does, so every scenario that can run rootless runs.

mod ci_files;
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
            let name = format!("{} [{backend}]", scn.name);
            let ignored = ignore_reason(&scn, backend);
            if let Some(why) = &ignored {
                note_ignored(&name, why);
            }
            let trial = Trial::ignorable_test(name, move || {
                if let Some(why) = ignore_reason(&scn, backend) {
                    return Ok(Completion::ignored_with(why));
                }
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let rep = rt.block_on(run::run_scenario(&scn, backend));
                match rep.status {
                    Status::Passed => Ok(Completion::Completed),
                    _ => Err(harness::report::scenario(&scn, &rep).into()),
                }
            });
            trials.push(trial.with_kind("scenario").with_ignored_flag(ignored.is_some()));
        }
    }
    trials
}

/// Why the scenario cannot run under `backend` here, if it cannot.
fn ignore_reason(scn: &scenario::Scenario, backend: scenario::Backend) -> Option<String> {
    if let Some(why) = &scn.not_applicable {
        return Some(format!("not applicable: {why}"));
    }
    if let Some(why) = &scn.skip {
        return Some(format!("skip: {why}"));
    }
    run::requirements(scn, backend).err().or_else(|| harness::producer::unavailable(scn))
}

/// The trials ignored here and why, printed after the run: a test runner shows only
/// that a trial was ignored.
static IGNORED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub fn note_ignored(name: &str, why: &str) {
    if let Ok(mut ignored) = IGNORED.lock() {
        ignored.push(format!("{name}: {why}"));
    }
}

fn main() {
    match harness::run::rootless::reexec_if_needed(101) {
        None => {}
        Some(Ok(code)) => std::process::exit(code),
        Some(Err(e)) => {
            // Without a user namespace the trials that need root are ignored below.
            eprintln!("note: {e}");
        }
    }
    let args = Arguments::from_args();
    let mut trials = scenario_trials();
    trials.extend(kernel::trials());
    trials.extend(corpus::trials());
    trials.extend(dockerd_chaos::trials());
    trials.extend(ci_files::trials());
    let listing = args.list;
    let selected =
        |name: &str| args.filter.as_deref().is_none_or(|f| if args.exact { name == f } else { name.contains(f) });
    let conclusion = libtest_mimic::run(&args, trials);
    if !listing && !args.ignored && !args.include_ignored {
        let ignored: Vec<String> = IGNORED
            .lock()
            .map(|v| v.iter().filter(|l| selected(l.split(": ").next().unwrap_or(""))).cloned().collect())
            .unwrap_or_default();
        if !ignored.is_empty() {
            println!("ignored here, and why:");
            for line in ignored {
                println!("  {line}");
            }
        }
    }
    conclusion.exit();
}
