//! Command line: `run`, `check`, `list`, `diff`, `mutate`, `capture` and `init`. Exit status 0 when every scenario passed,
//! 1 when some failed, 2 for bad input or a missing requirement.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use harness::run::{self, Status};
use harness::scenario::{self, Backend, InputError, Scenario};

pub const FAILED: u8 = 1;
pub const BAD_INPUT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "netconform",
    version,
    about = "Conformance suite and integration test harness for Linux packet filtering"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build each scenario's lab, load its rules, send its probes and judge them.
    Run(crate::run_cmd::RunArgs),
    /// Write a scenario that rebuilds a running Docker host in a lab, from what the
    /// Docker CLI and iptables-save show (nothing on the host is changed).
    Init(crate::init::InitArgs),
    /// Run one scenario's probes against two rule files and list every probe whose
    /// outcome differs. Exit 0 when they behave the same, 1 when they differ.
    Diff {
        /// The scenario whose lab and probes to use (one without `producers`).
        scenario: PathBuf,
        /// The rule file to compare against (replaces the scenario's rule files).
        old: PathBuf,
        /// The rule file to compare.
        new: PathBuf,
        /// Run under this back end (default: the scenario's first).
        #[arg(long, value_parser = backend_arg())]
        backend: Option<Backend>,
    },
    /// Validate scenarios without building anything (no root needed), and show the
    /// commands each would run.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List scenarios with their back ends and sizes.
    List {
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
    },
    /// Run a scenario's producer (a live program) in a lab and keep what it wrote: the
    /// rule set, and a scenario without the program that rebuilds the same lab around
    /// it, with the same probes. Exit 0 when written.
    Capture {
        /// The scenario whose producer to run.
        scenario: PathBuf,
        /// Folder to write `NAME-BACKEND.yaml` and its rule file into.
        #[arg(long, short = 'o', value_name = "DIR")]
        output: PathBuf,
        /// The back end to capture under (default: the scenario's first).
        #[arg(long, value_parser = backend_arg())]
        backend: Option<Backend>,
    },
    /// Delete each rule of a rule file in turn and flip each verdict and policy, run
    /// the scenarios that load the file against every such mutation, and report how
    /// many some scenario notices. Exit 0 when done, whatever the score.
    Mutate {
        /// The rule file to mutate.
        #[arg(long, value_name = "FILE")]
        rules: PathBuf,
        /// Scenario files or folders; those that load FILE are run.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Run under this back end (default: each scenario's first).
        #[arg(long, value_parser = backend_arg())]
        backend: Option<Backend>,
        /// Every probe waits this long before calling its outcome dropped (e.g. 100ms).
        #[arg(long, value_parser = harness::tools::mutate::parse_timeout)]
        timeout: Option<std::time::Duration>,
        /// Mutations tried at once.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Also write the report as Markdown to this file.
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
    },
}

/// `--backend NAME`, one of the back ends' names (listed in `--help`).
pub fn backend_arg() -> impl clap::builder::TypedValueParser<Value = Backend> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(harness::backend::ALL.map(|b| b.name()))
        .try_map(|name: String| harness::backend::by_name(&name).ok_or("no such back end"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => crate::run_cmd::run(args),
        Command::Init(args) => crate::init::main(args),
        Command::Capture { scenario, output, backend } => capture(&scenario, &output, backend),
        Command::Diff { scenario, old, new, backend } => diff(&scenario, &old, &new, backend),
        Command::Check { paths } => check(&paths),
        Command::List { paths } => list(&paths),
        Command::Mutate { rules, paths, backend, timeout, jobs, markdown } => match load_all(&paths) {
            Ok(scenarios) => {
                crate::mutate::main(&rules, &paths, &scenarios, backend, timeout, jobs.into(), markdown.as_deref())
            }
            Err(e) => bad_input(&e),
        },
    }
}

/// Every scenario under `paths`, or every problem found in them.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, InputError> {
    let found = scenario::discover(paths)?;
    let mut scenarios = Vec::new();
    let mut problems = Vec::new();
    for (path, name) in found {
        match scenario::load_file(&path, &name) {
            Ok(s) => scenarios.extend(s),
            Err(e) => problems.extend(e.diagnostics),
        }
    }
    if problems.is_empty() {
        Ok(scenarios)
    } else {
        Err(InputError { diagnostics: problems })
    }
}

pub fn bad_input(e: &InputError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(BAD_INPUT)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("netconform: cannot start the async runtime: {e}");
        ExitCode::from(BAD_INPUT)
    })
}

/// The scenario at `path` with `rules` as its only rule file.
fn with_rules(scn: &Scenario, rules: &Path, label: &str) -> Scenario {
    let mut copy = scn.clone();
    let format = scn.rules.backends[0].format();
    copy.rules.files = vec![harness::scenario::RuleFile { path: rules.to_path_buf(), format, text: None }];
    copy.name = format!("{} with {label} {}", scn.name, rules.display());
    copy
}

fn diff(path: &Path, old: &Path, new: &Path, only: Option<Backend>) -> ExitCode {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let scn = match scenario::load(path, &name) {
        Ok(s) => s,
        Err(e) => return bad_input(&e),
    };
    for file in [old, new] {
        if !file.is_file() {
            eprintln!("netconform: {}: no such rule file", file.display());
            return ExitCode::from(BAD_INPUT);
        }
    }
    let backend = only.unwrap_or(scn.rules.backends[0]);
    if backend.format() != scn.rules.backends[0].format() {
        eprintln!("netconform: {name} loads {} files; --backend {backend} loads another format", scn.rules.backends[0]);
        return ExitCode::from(BAD_INPUT);
    }
    if let Err(why) = run::requirements(&scn, backend) {
        eprintln!("netconform: cannot run: {why}");
        return ExitCode::from(BAD_INPUT);
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let (a, b) = (with_rules(&scn, old, "old"), with_rules(&scn, new, "new"));
    let (ra, rb) =
        runtime.block_on(async { tokio::join!(run::run_scenario(&a, backend), run::run_scenario(&b, backend)) });
    for (label, rep) in [("old", &ra), ("new", &rb)] {
        if let Status::Error(why) = &rep.status {
            eprintln!("netconform: the {label} rule set could not be run: {why}");
            return ExitCode::from(FAILED);
        }
    }
    let mut differing = 0;
    for (pa, pb) in ra.probes.iter().zip(&rb.probes) {
        let probe = &scn.probes[pa.probe];
        let describe = |o: &harness::traffic::probe::Outcome| match &o.answered_by {
            Some(by) => {
                format!("{} by {by}{}", o.kind, o.source_seen.map(|s| format!(", saw {}", s.ip())).unwrap_or_default())
            }
            None => format!("{} ({})", o.kind, o.detail),
        };
        let (da, db) = (describe(&pa.outcome), describe(&pb.outcome));
        let same = pa.outcome.kind == pb.outcome.kind
            && pa.outcome.answered_by == pb.outcome.answered_by
            && pa.outcome.source_seen.map(|s| *s.ip()) == pb.outcome.source_seen.map(|s| *s.ip())
            && pa.outcome.delivered_to == pb.outcome.delivered_to;
        if same {
            println!("  same    {}: {da}", probe.name);
        } else {
            differing += 1;
            println!("  DIFFERS {}: old {da}; new {db}", probe.name);
            println!("          at {}:{}:{}", scn.path.display(), probe.location.line, probe.location.column);
        }
    }
    println!("\n{differing} of {} probes differ [{backend}]", scn.probes.len());
    if differing > 0 {
        ExitCode::from(FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn check(paths: &[PathBuf]) -> ExitCode {
    let scenarios = match load_all(paths) {
        Ok(s) => s,
        Err(e) => return bad_input(&e),
    };
    for scn in &scenarios {
        println!("{}: ok", scn.name);
        for &backend in &scn.rules.backends {
            let rb = harness::backend::for_backend(backend);
            for (i, file) in scn.rules.files.iter().enumerate() {
                let command = match &file.text {
                    Some(_) => format!(
                        "{} < {} (with the producer's variables)",
                        rb.load(None, i == 0).display(),
                        file.path.display()
                    ),
                    None => rb.load(Some(&file.path), i == 0).display(),
                };
                println!("  [{backend}] runs in the lab host: {command}");
            }
            if let Some(live) = &scn.rules.live {
                let program = match live.program {
                    harness::scenario::LiveProgram::Command => live.run.join(" "),
                    other => format!("{} (netconform's {} producer)", other.name(), other.name()),
                };
                println!("  [{backend}] runs in the lab host's sandbox, as root: {program}");
                for (key, value) in &live.daemon {
                    println!("  [{backend}]   with daemon.json: \"{key}\": {value}");
                }
                for command in &live.commands {
                    println!("  [{backend}] runs in the lab host's sandbox, as root: {command}");
                }
            }
            println!("  [{backend}] runs in the lab host: {}", rb.dump().display());
        }
    }
    println!("{} scenarios valid", scenarios.len());
    ExitCode::SUCCESS
}

fn list(paths: &[PathBuf]) -> ExitCode {
    let scenarios = match load_all(paths) {
        Ok(s) => s,
        Err(e) => return bad_input(&e),
    };
    for scn in &scenarios {
        let backends: Vec<&str> = scn.rules.backends.iter().map(|b| b.name()).collect();
        let skip = scn.skip.as_deref().map(|s| format!("  (skip: {s})")).unwrap_or_default();
        println!(
            "{}  [{}]  {} nodes, {} probes, {} counters{skip}",
            scn.name,
            backends.join(", "),
            scn.nodes.len(),
            scn.probes.len(),
            scn.counters.len()
        );
    }
    ExitCode::SUCCESS
}

fn capture(path: &Path, output: &Path, only: Option<Backend>) -> ExitCode {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let scn = match scenario::load(path, &name) {
        Ok(s) => s,
        Err(e) => return bad_input(&e),
    };
    let backend = only.unwrap_or(scn.rules.backends[0]);
    if !scn.rules.backends.contains(&backend) {
        eprintln!("netconform: {name} does not run under {backend}");
        return ExitCode::from(BAD_INPUT);
    }
    if let Err(why) = run::requirements(&scn, backend) {
        eprintln!("netconform: cannot run: {why}");
        return ExitCode::from(BAD_INPUT);
    }
    if let Some(why) = harness::producer::unavailable(&scn) {
        eprintln!("netconform: cannot run {name}: {why}");
        return ExitCode::from(BAD_INPUT);
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let captured = match runtime.block_on(harness::tools::capture::capture(&scn, backend)) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("netconform: the producer failed:\n{why}");
            return ExitCode::from(FAILED);
        }
    };
    let stem = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "scenario".into());
    let ext = if captured.format == harness::scenario::RuleFormat::Nft { "nft" } else { "rules" };
    let rules_name = format!("{stem}-{backend}.{ext}");
    let yaml_name = format!("{stem}-{backend}.yaml");
    let written = std::fs::create_dir_all(output.join("rules"))
        .and_then(|()| std::fs::write(output.join("rules").join(&rules_name), &captured.rules))
        .and_then(|()| {
            let text =
                harness::tools::capture::static_scenario(&scn, backend, &format!("rules/{rules_name}"), &captured);
            std::fs::write(output.join(&yaml_name), text)
        });
    match written {
        Ok(()) => {
            println!("wrote {}", output.join(&yaml_name).display());
            println!("wrote {}", output.join("rules").join(&rules_name).display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netconform: writing under {}: {e}", output.display());
            ExitCode::from(BAD_INPUT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_has_its_own_help_text() {
        let cli = Cli::command();
        let mut seen = std::collections::HashSet::new();
        for sub in cli.get_subcommands() {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!about.trim().is_empty(), "`{}` has no help text", sub.get_name());
            assert!(seen.insert(about.clone()), "`{}` shares its help text: {about}", sub.get_name());
        }
        let about = |name: &str| cli.find_subcommand(name).and_then(|s| s.get_about()).map(|a| a.to_string());
        assert!(about("mutate").is_some_and(|a| a.starts_with("Delete each rule")));
        assert!(about("capture").is_some_and(|a| a.starts_with("Run a scenario's producer")));
    }
}
