//! `netconform mutate`: how much of a rule file the scenarios pin down. Every rule of
//! the file is deleted in turn and every verdict and policy flipped (see
//! `harness::tools::mutate`); the scenarios that load the file run against each mutation, and
//! the share of mutations some scenario notices is the score.
//!
//! Exit status 0 when the run completes, whatever the score; 2 for bad input, a
//! missing requirement, or scenarios that fail on the file as it is.

use crate::exit::Exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use harness::run::{self, Status};
use harness::scenario::{Backend, Scenario};
use harness::tools::mutate::{self, Fate, Target};

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("netconform mutate: {message}");
    ExitCode::from(Exit::BadInput)
}

/// Mutates `rules` and runs against each mutation those of `scenarios` (loaded from
/// `paths`) that load it, under `only` or each scenario's first back end.
pub fn main(
    rules: &Path,
    paths: &[PathBuf],
    scenarios: &[Scenario],
    only: Option<Backend>,
    timeout: Option<Duration>,
    jobs: usize,
    markdown: Option<&Path>,
) -> ExitCode {
    let canonical = match std::fs::canonicalize(rules) {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot read {}: {e}", rules.display())),
    };
    let text = match std::fs::read_to_string(&canonical) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", rules.display())),
    };
    let users: Vec<&Scenario> = scenarios.iter().filter(|s| mutate::uses_rules(s, &canonical)).collect();
    let Some(format) = users
        .iter()
        .flat_map(|s| &s.rules.files)
        .find(|f| std::fs::canonicalize(&f.path).is_ok_and(|p| p == canonical))
        .map(|f| f.format)
    else {
        let searched: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return fail(format!("no scenario under {} loads {}", searched.join(", "), rules.display()));
    };

    let targets = targets(&users, only, timeout);
    if targets.is_empty() {
        return fail(format!("no scenario that loads {} can run here", rules.display()));
    }
    for t in &targets {
        if let Err(why) = run::requirements(&t.scenario, t.backend) {
            return fail(format!("cannot run {}: {why}", t.label()));
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };

    let start = Instant::now();
    if let Err(code) = unmutated_pass(&runtime, &targets) {
        return code;
    }

    let all = mutate::mutations(&text, format);
    let total = all.len();
    eprintln!("{total} mutations of {}", rules.display());
    let mut done = 0;
    let tried = runtime.block_on(mutate::try_all(&targets, &canonical, all, jobs, |t| {
        done += 1;
        let verdict = match &t.fate {
            Fate::Killed { by, reason } => format!("killed by {by}: {reason}"),
            Fate::Survived => "SURVIVED".to_string(),
            Fate::Invalid { by, reason } => format!("invalid ({by}): {reason}"),
            Fate::Error { by, reason } => format!("not run ({by}): {reason}"),
        };
        eprintln!("[{done:>w$}/{total}] {}\n    {verdict}", t.mutation.description, w = total.to_string().len());
    }));

    let shown = rules.display().to_string();
    print!("{}", mutate::text_report(&shown, &targets, &tried));
    println!("\n{} mutations in {:.1} s", tried.len(), start.elapsed().as_secs_f64());
    if let Some(md) = markdown {
        if let Err(e) = std::fs::write(md, mutate::markdown_report(&shown, &targets, &tried)) {
            return fail(format!("cannot write {}: {e}", md.display()));
        }
    }
    ExitCode::SUCCESS
}

/// What each scenario runs under: `only` if it lists it, else its first back end; a
/// scenario set aside says why on standard error.
fn targets(users: &[&Scenario], only: Option<Backend>, timeout: Option<Duration>) -> Vec<Target> {
    let mut targets = Vec::new();
    for scn in users {
        if let Some(why) = &scn.skip {
            eprintln!("not run: {}: skip: {why}", scn.name);
            continue;
        }
        let backend = match only {
            Some(b) if scn.rules.backends.contains(&b) => b,
            Some(_) => {
                let listed: Vec<&str> = scn.rules.backends.iter().map(|b| b.name()).collect();
                eprintln!("not run: {}: runs under {} only", scn.name, listed.join(", "));
                continue;
            }
            None => scn.rules.backends[0],
        };
        let mut scenario = (*scn).clone();
        if let Some(t) = timeout {
            mutate::override_timeout(&mut scenario, t);
        }
        targets.push(Target { scenario, backend });
    }
    targets
}

/// The scenarios must pass on the rule set as it is before a mutation can mean anything.
fn unmutated_pass(runtime: &tokio::runtime::Runtime, targets: &[Target]) -> Result<(), ExitCode> {
    let labels: Vec<String> = targets.iter().map(Target::label).collect();
    eprintln!("running {} on the unmodified rule set", labels.join(", "));
    let reports = runtime.block_on(mutate::run_targets(targets));
    let failures: Vec<String> = targets
        .iter()
        .zip(&reports)
        .filter(|(_, rep)| rep.status != Status::Passed)
        .map(|(t, rep)| harness::report::scenario(&t.scenario, rep))
        .collect();
    if failures.is_empty() {
        return Ok(());
    }
    eprintln!("netconform mutate: the suite does not pass on the unmutated rule set; fix that first");
    for f in failures {
        eprint!("{f}");
    }
    Err(ExitCode::from(Exit::BadInput))
}
