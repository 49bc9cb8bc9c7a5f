//! `netconform list`: the scenarios, their back ends and their probes.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{bad_input, load_all};

pub fn main(paths: &[PathBuf]) -> ExitCode {
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
