//! The bodies of netconform's subcommands, one file each; `cli` holds only their
//! arguments. This module: loading the scenarios a command names, and what the
//! commands share.

pub mod capture;
pub mod check;
pub mod diff;
pub mod init;
pub mod list;
pub mod mutate;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use harness::scenario::{self, InputError, Scenario};

use crate::exit::Exit;

/// Every scenario under `paths`, or every problem found in them.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, InputError> {
    let (scenarios, invalid) = load_each(paths)?;
    if invalid.is_empty() {
        Ok(scenarios)
    } else {
        Err(InputError { diagnostics: invalid.into_iter().flat_map(|e| e.diagnostics).collect() })
    }
}

/// Every scenario under `paths` that loads, and the problems of each file that does
/// not; only a path that cannot be searched is an error here.
pub fn load_each(paths: &[PathBuf]) -> Result<(Vec<Scenario>, Vec<InputError>), InputError> {
    let mut scenarios = Vec::new();
    let mut invalid = Vec::new();
    for (path, name) in scenario::discover(paths)? {
        match scenario::load_file(&path, &name) {
            Ok(s) => scenarios.extend(s),
            Err(e) => invalid.push(e),
        }
    }
    Ok((scenarios, invalid))
}

pub fn bad_input(e: &InputError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(Exit::BadInput)
}

pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("netconform: cannot start the async runtime: {e}");
        ExitCode::from(Exit::Machine)
    })
}

/// The scenario at `path` with `rules` as its only rule file.
pub fn with_rules(scn: &Scenario, rules: &Path, label: &str) -> Scenario {
    let mut copy = scn.clone();
    let format = scn.rules.backends[0].format();
    copy.rules.files = vec![harness::scenario::RuleFile { path: rules.to_path_buf(), format, text: None }];
    copy.name = format!("{} with {label} {}", scn.name, rules.display());
    copy
}
