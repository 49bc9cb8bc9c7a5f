//! Command line: `run`, `check`, `list`, `diff`, `mutate`, `capture` and `init`. Exit status 0 when every scenario passed,
//! 1 when some failed, 2 for bad input or a missing requirement.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands;
use harness::scenario::Backend;

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
    Run(crate::commands::run::RunArgs),
    /// Write a scenario that rebuilds a running Docker host in a lab, from what the
    /// Docker CLI and iptables-save show (nothing on the host is changed).
    Init(crate::commands::init::InitArgs),
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
        Command::Run(args) => commands::run::main(args),
        Command::Init(args) => commands::init::main(args),
        Command::Capture { scenario, output, backend } => commands::capture::main(&scenario, &output, backend),
        Command::Diff { scenario, old, new, backend } => commands::diff::main(&scenario, &old, &new, backend),
        Command::Check { paths } => commands::check::main(&paths),
        Command::List { paths } => commands::list::main(&paths),
        Command::Mutate { rules, paths, backend, timeout, jobs, markdown } => match commands::load_all(&paths) {
            Ok(scenarios) => {
                commands::mutate::main(&rules, &paths, &scenarios, backend, timeout, jobs.into(), markdown.as_deref())
            }
            Err(e) => commands::bad_input(&e),
        },
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
