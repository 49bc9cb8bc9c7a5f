//! `netconform run`: plan the scenario runs (files × back ends, minus the ignored and
//! other shards), run them `--jobs` at a time, and report them in plan order in every
//! format asked for. `--repeat N` runs the plan N times and reports every run whose
//! verdicts changed between repeats.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use harness::report::human::Palette;
use harness::report::matrix::{self, Entry};
use harness::report::{self, evidence, github, Record, Reporter, Summary};
use harness::run::partition::{parse_partition, Partition};
use harness::run::{self, ScenarioReport, Status};
use harness::scenario::{Backend, InputError, Scenario};

use super::{bad_input, load_each};
use crate::cli::backend_arg;
use crate::exit::Exit;

#[derive(Args)]
pub struct RunArgs {
    /// Scenario files or folders (searched recursively).
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// Run only under this back end; scenarios that do not list it are ignored.
    #[arg(long, value_parser = backend_arg())]
    backend: Option<Backend>,
    /// Scenario runs at once (default: the number of cores).
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: Option<u16>,
    /// Run only shard M of N, chosen by a hash of each scenario's name, so a scenario
    /// stays on its shard when others are added: `hash:M/N`.
    #[arg(long, value_parser = parse_partition)]
    partition: Option<Partition>,
    /// Run everything N times and report the scenarios whose verdicts differ between
    /// runs (flakes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Print only the runs that fail or err, the recap and the totals.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Also write a JUnit XML report to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// For every run that fails, write a folder that explains it under this folder.
    #[arg(long, value_name = "DIR")]
    evidence: Option<PathBuf>,
    /// Print each scenario's probes as a connectivity table (from × to).
    #[arg(long)]
    matrix: bool,
    /// Write the contract matrix (statement × producer) as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    matrix_md: Option<PathBuf>,
    /// Fail (exit status 1) when a run is ignored because of this machine (not root,
    /// a program or kernel feature missing), and list each with its reason. Runs the
    /// scenario file itself sets aside (`skip`, `not_applicable`, another back end)
    /// do not count.
    #[arg(long)]
    fail_on_ignored: bool,
    /// With --fail-on-ignored: scenarios this machine is known not to run, by name
    /// (`live/dockerd/published-port.yaml`) or by folder (`live/dockerd/`).
    /// Repeatable.
    #[arg(long, value_name = "NAME", requires = "fail_on_ignored")]
    allow_ignored: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
    Tap,
}

impl Format {
    fn reporter(self, options: &report::Options) -> Box<dyn Reporter> {
        let name = self.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
        report::for_format(&name, options).expect("every --format value has a reporter")
    }
}

/// One unit of work: a scenario under one back end, or why it cannot run.
struct Planned {
    scenario: Arc<Scenario>,
    backend: Backend,
    ignored: Option<String>,
    /// The scenario file itself set this run aside (skip, not applicable, another
    /// back end), rather than this machine.
    declared: bool,
}

fn plan(scenarios: &[Arc<Scenario>], only: Option<Backend>) -> Vec<Planned> {
    let mut planned = Vec::new();
    for scn in scenarios {
        for &backend in &scn.rules.backends {
            if only.is_some_and(|o| o != backend) {
                continue;
            }
            let (ignored, declared) = match (&scn.not_applicable, &scn.skip) {
                (Some(why), _) => (Some(format!("not applicable: {why}")), true),
                (None, Some(why)) => (Some(format!("skip: {why}")), true),
                (None, None) => (harness::producer::unavailable(scn), false),
            };
            planned.push(Planned { scenario: scn.clone(), backend, ignored, declared });
        }
        if let Some(o) = only.filter(|o| !scn.rules.backends.contains(o)) {
            let listed: Vec<&str> = scn.rules.backends.iter().map(|b| b.name()).collect();
            planned.push(Planned {
                scenario: scn.clone(),
                backend: o,
                ignored: Some(format!("runs under {} only", listed.join(", "))),
                declared: true,
            });
        }
    }
    planned
}

/// What a run's verdicts were, to compare repeats.
fn signature(entry: &Entry) -> String {
    match entry {
        Entry::Ignored { .. } => "ignored".into(),
        Entry::Ran(rep) => {
            let status = match rep.status {
                Status::Passed => "pass",
                Status::Failed => "fail",
                Status::Error(_) => "error",
            };
            let probes: Vec<&str> = rep.probes.iter().map(|p| p.outcome.kind.name()).collect();
            let counters: Vec<bool> = rep.counters.iter().map(|c| c.verdict.pass()).collect();
            format!("{status} {probes:?} {counters:?}")
        }
    }
}

pub fn main(args: RunArgs) -> ExitCode {
    let (planned, invalid) = match load_and_plan(&args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netconform: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Machine);
        }
    };
    let human = args.format == Format::Human;
    let palette = if std::io::stdout().is_terminal() { Palette::COLOUR } else { Palette::PLAIN };
    let options = report::Options { palette, quiet: args.quiet, tables: args.matrix };
    let mut reporter = args.format.reporter(&options);
    let start = Instant::now();
    let rounds = runtime.block_on(run_rounds(&args, &planned, reporter.as_mut()));
    let elapsed = start.elapsed();
    let summary = rounds.summary;
    let entries: Vec<(&Scenario, Entry)> =
        planned.iter().zip(rounds.last).map(|(p, e)| (p.scenario.as_ref(), e)).collect();

    let record = Record { entries: &entries, invalid: &invalid, summary, elapsed };
    if github::enabled() {
        print!("{}", finish(&mut github::Github, &record));
    }
    if let Err(code) = write_files(&args, &record) {
        return code;
    }
    let flaky = flaky(&planned, &rounds.signatures);
    let unexpected = if args.fail_on_ignored { unexpected_ignored(&planned, &args.allow_ignored) } else { Vec::new() };
    if human && args.repeat > 1 {
        let runs = planned.iter().filter(|p| p.ignored.is_none()).count() * args.repeat as usize;
        println!(
            "\n{} flaky of {} scenario runs, {} runs in all over {} repeats",
            flaky.len(),
            planned.len(),
            runs,
            args.repeat
        );
        for f in &flaky {
            println!("  FLAKY {f}");
        }
        for f in &rounds.failures {
            println!("  FAILED {f}");
        }
    }
    print!("{}", finish(reporter.as_mut(), &record));
    if !unexpected.is_empty() {
        eprintln!("netconform: --fail-on-ignored: {} runs were ignored on this machine:", unexpected.len());
        for u in &unexpected {
            eprintln!("  IGNORED {u}");
        }
    }
    if !invalid.is_empty() {
        // Bad input wins over failed runs: the suite was not what was meant.
        return ExitCode::from(Exit::BadInput);
    }
    if summary.passed + summary.failed == 0 {
        eprintln!("netconform: nothing ran: every scenario was ignored (reasons above)");
        return ExitCode::from(Exit::BadInput);
    }
    if summary.failed > 0 || !flaky.is_empty() || !unexpected.is_empty() {
        ExitCode::from(Exit::Failed)
    } else {
        ExitCode::SUCCESS
    }
}

/// Loads the files, plans the runs and checks the machine once, before anything is
/// built. A file that does not load is reported as an error while the others run:
/// its problems go to standard error at once, whole; with nothing valid beside them
/// nothing is built and standard output stays empty.
fn load_and_plan(args: &RunArgs) -> Result<(Vec<Planned>, Vec<InputError>), ExitCode> {
    let (scenarios, invalid) = load_each(&args.paths).map_err(|e| bad_input(&e))?;
    for e in &invalid {
        eprintln!("{e}");
    }
    if scenarios.is_empty() && !invalid.is_empty() {
        return Err(ExitCode::from(Exit::BadInput));
    }
    if scenarios.is_empty() {
        let shown: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!("netconform: no scenario files (*.yaml, *.yml) under {}", shown.join(", "));
        return Err(ExitCode::from(Exit::BadInput));
    }
    let scenarios: Vec<Arc<Scenario>> =
        scenarios.into_iter().filter(|s| args.partition.is_none_or(|p| p.keeps(&s.name))).map(Arc::new).collect();
    let planned = plan(&scenarios, args.backend);
    for p in planned.iter().filter(|p| p.ignored.is_none()) {
        if let Err(why) = run::requirements(&p.scenario, p.backend) {
            eprintln!("netconform: cannot run {} [{}]: {why}", p.scenario.name, p.backend);
            return Err(ExitCode::from(Exit::Machine));
        }
    }
    Ok((planned, invalid))
}

/// What `--repeat` rounds leave: every run counts in the summary and the exit status.
struct Rounds {
    /// Per planned run, its verdicts in each round.
    signatures: Vec<Vec<String>>,
    /// The last round's entries, which the reports describe.
    last: Vec<Entry>,
    summary: Summary,
    /// `NAME [backend] in run R of N`, for every run that did not pass.
    failures: Vec<String>,
}

async fn run_rounds(args: &RunArgs, planned: &[Planned], reporter: &mut dyn Reporter) -> Rounds {
    let human = args.format == Format::Human;
    let jobs =
        args.jobs.map(usize::from).unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut rounds = Rounds {
        signatures: vec![Vec::new(); planned.len()],
        last: Vec::new(),
        summary: Summary::default(),
        failures: Vec::new(),
    };
    for round in 1..=args.repeat {
        if args.repeat > 1 && human {
            println!("== run {round} of {}", args.repeat);
        }
        rounds.last = run_plan(planned, jobs, human, reporter).await;
        for ((sig, entry), p) in rounds.signatures.iter_mut().zip(&rounds.last).zip(planned) {
            sig.push(signature(entry));
            rounds.summary.add_entry(entry);
            if matches!(entry, Entry::Ran(rep) if rep.status != Status::Passed) {
                rounds.failures.push(format!("{} [{}] in run {round} of {}", p.scenario.name, p.backend, args.repeat));
            }
        }
    }
    rounds
}

/// `--evidence`, `--matrix-md` and `--junit`. A file that cannot be written ends the
/// run with exit status 2; a failing run's evidence that cannot be written is told.
fn write_files(args: &RunArgs, record: &Record<'_>) -> Result<(), ExitCode> {
    let human = args.format == Format::Human;
    if let Some(dir) = &args.evidence {
        for (scn, entry) in record.entries {
            if let Entry::Ran(rep) = entry {
                match evidence::write(dir, scn, rep) {
                    Ok(Some(folder)) if human => println!("evidence: {}", folder.display()),
                    Ok(_) => {}
                    Err(e) => eprintln!("netconform: writing evidence under {}: {e}", dir.display()),
                }
            }
        }
    }
    let cannot_write = |path: &Path, e: String| {
        eprintln!("netconform: cannot write {}: {e}", path.display());
        ExitCode::from(Exit::BadInput)
    };
    if let Some(path) = &args.matrix_md {
        let matrices = matrix::build(record.entries);
        let text: Vec<String> = matrices.iter().map(matrix::render_markdown).collect();
        write(path, &text.join("\n")).map_err(|e| cannot_write(path, e))?;
    }
    if let Some(path) = &args.junit {
        report::junit::Junit
            .finish(record)
            .map_err(|e| e.to_string())
            .and_then(|xml| write(path, &xml))
            .map_err(|e| cannot_write(path, e))?;
    }
    Ok(())
}

/// The runs whose verdicts differ between rounds, with their verdicts in each.
fn flaky(planned: &[Planned], signatures: &[Vec<String>]) -> Vec<String> {
    planned
        .iter()
        .zip(signatures)
        .filter(|(_, sig)| sig.iter().any(|s| *s != sig[0]))
        .map(|(p, sig)| format!("{} [{}]: {}", p.scenario.name, p.backend, sig.join(" | ")))
        .collect()
}

/// `--fail-on-ignored`: the runs this machine set aside, minus `--allow-ignored`.
fn unexpected_ignored(planned: &[Planned], allow: &[String]) -> Vec<String> {
    planned
        .iter()
        .filter(|p| !p.declared && !allowed(allow, &p.scenario.name))
        .filter_map(|p| p.ignored.as_ref().map(|why| format!("{} [{}]: {why}", p.scenario.name, p.backend)))
        .collect()
}

/// Whether `--allow-ignored` names the scenario `name`: by its name, or by a folder
/// it is in.
fn allowed(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| p == name || (p.ends_with('/') && name.starts_with(p.as_str())))
}

/// A reporter's text; a report that cannot be made says so on standard error.
fn finish(reporter: &mut dyn Reporter, record: &Record<'_>) -> String {
    reporter.finish(record).unwrap_or_else(|e| {
        eprintln!("netconform: {e}");
        String::new()
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| e.to_string())
}

/// Runs the plan `jobs` at a time; prints each result in plan order as it is known.
async fn run_plan(planned: &[Planned], jobs: usize, human: bool, reporter: &mut dyn Reporter) -> Vec<Entry> {
    let limit = Arc::new(tokio::sync::Semaphore::new(jobs));
    let runnable = planned.iter().filter(|p| p.ignored.is_none()).count() as u64;
    let bar = indicatif::ProgressBar::new(runnable);
    if !std::io::stderr().is_terminal() || !human || runnable < 4 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let handles: Vec<Option<tokio::task::JoinHandle<ScenarioReport>>> = planned
        .iter()
        .map(|p| {
            p.ignored.is_none().then(|| {
                let (scn, backend, limit) = (p.scenario.clone(), p.backend, limit.clone());
                tokio::spawn(async move {
                    let _permit = limit.acquire_owned().await.expect("the semaphore is never closed");
                    run::run_explained(&scn, backend).await
                })
            })
        })
        .collect();
    let mut entries = Vec::with_capacity(planned.len());
    for (p, handle) in planned.iter().zip(handles) {
        let entry = match (handle, &p.ignored) {
            (None, Some(why)) => Entry::Ignored { backend: p.backend, reason: why.clone() },
            (None, None) => Entry::Ignored { backend: p.backend, reason: "not planned".into() },
            (Some(h), _) => Entry::Ran(h.await.unwrap_or_else(|e| {
                ScenarioReport::new(&p.scenario.name, p.backend, Status::Error(run::RunError::Abnormal(e.to_string())))
            })),
        };
        let text = reporter.entry(&p.scenario, &entry);
        if !text.is_empty() {
            bar.suspend(|| print!("{text}"));
        }
        if matches!(entry, Entry::Ran(_)) {
            bar.inc(1);
            bar.set_message(p.scenario.name.clone());
        }
        entries.push(entry);
    }
    bar.finish_and_clear();
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_value_has_a_reporter() {
        let options = report::Options { palette: Palette::PLAIN, quiet: false, tables: false };
        for format in Format::value_variants() {
            let name = format.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
            assert!(report::for_format(&name, &options).is_some(), "--format {name} has no reporter");
        }
    }
}
