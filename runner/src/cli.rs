//! Command line: `run`, `check` and `list`. Exit status 0 when every scenario passed,
//! 1 when some failed, 2 for bad input or a missing requirement.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use harness::report::{self, Summary};
use harness::run;
use harness::scenario::{self, Backend, InputError, Scenario};

const FAILED: u8 = 1;
const BAD_INPUT: u8 = 2;

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
    Run {
        /// Scenario files or folders (searched recursively).
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Run only under this back end; scenarios that do not list it are ignored.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
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
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    IptablesNft,
    IptablesLegacy,
    Nft,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::IptablesNft => Backend::IptablesNft,
            BackendArg::IptablesLegacy => Backend::IptablesLegacy,
            BackendArg::Nft => Backend::Nft,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { paths, backend } => run(&paths, backend.map(Backend::from)),
        Command::Check { paths } => check(&paths),
        Command::List { paths } => list(&paths),
    }
}

/// Every scenario under `paths`, or every problem found in them.
fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, InputError> {
    let found = scenario::discover(paths)?;
    let mut scenarios = Vec::new();
    let mut problems = Vec::new();
    for (path, name) in found {
        match scenario::load(&path, &name) {
            Ok(s) => scenarios.push(s),
            Err(e) => problems.extend(e.diagnostics),
        }
    }
    if problems.is_empty() {
        Ok(scenarios)
    } else {
        Err(InputError { diagnostics: problems })
    }
}

fn bad_input(e: &InputError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(BAD_INPUT)
}

/// One unit of work: a scenario under one back end, or why it cannot run.
struct Planned<'a> {
    scenario: &'a Scenario,
    backend: Backend,
    ignored: Option<String>,
}

fn plan(scenarios: &[Scenario], only: Option<Backend>) -> Vec<Planned<'_>> {
    let mut planned = Vec::new();
    for scn in scenarios {
        for &backend in &scn.rules.backends {
            if only.is_some_and(|o| o != backend) {
                continue;
            }
            planned.push(Planned { scenario: scn, backend, ignored: scn.skip.clone() });
        }
        if let Some(o) = only.filter(|o| !scn.rules.backends.contains(o)) {
            let listed: Vec<&str> = scn.rules.backends.iter().map(|b| b.name()).collect();
            planned.push(Planned {
                scenario: scn,
                backend: o,
                ignored: Some(format!("runs under {} only", listed.join(", "))),
            });
        }
    }
    planned
}

fn run(paths: &[PathBuf], only: Option<Backend>) -> ExitCode {
    let scenarios = match load_all(paths) {
        Ok(s) => s,
        Err(e) => return bad_input(&e),
    };
    let planned = plan(&scenarios, only);
    // Check the machine once, before anything is built.
    let mut needed: Vec<Backend> = planned.iter().filter(|p| p.ignored.is_none()).map(|p| p.backend).collect();
    needed.sort();
    needed.dedup();
    for backend in needed {
        if let Err(why) = run::requirements(backend) {
            eprintln!("netconform: cannot run: {why}");
            return ExitCode::from(BAD_INPUT);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netconform: cannot start the async runtime: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let start = std::time::Instant::now();
    let mut summary = Summary::default();
    for p in &planned {
        if let Some(why) = &p.ignored {
            println!("IGNORED {} [{}]: {why}", p.scenario.name, p.backend);
            summary.ignored += 1;
            continue;
        }
        let rep = runtime.block_on(run::run_scenario(p.scenario, p.backend));
        print!("{}", report::scenario(p.scenario, &rep));
        summary.add(&rep);
    }
    println!("\n{summary} in {:.2} s", start.elapsed().as_secs_f64());
    if summary.failed > 0 {
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
                println!("  [{backend}] runs in the lab host: {}", rb.load(&file.path, i == 0).display());
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
