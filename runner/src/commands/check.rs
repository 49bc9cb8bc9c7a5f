//! `netconform check`: every scenario validated without root, with every command it would run.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{bad_input, load_all};

pub fn main(paths: &[PathBuf]) -> ExitCode {
    let scenarios = match load_all(paths) {
        Ok(s) => s,
        Err(e) => return bad_input(&e),
    };
    for scn in &scenarios {
        println!("{}: ok", scn.name);
        for &backend in &scn.rules.backends {
            let rb = harness::backend::for_backend(backend);
            let invocations = harness::backend::load_invocations(rb.as_ref(), &scn.rules.files);
            for (file, inv) in scn.rules.files.iter().zip(invocations.iter().flatten()) {
                let command = match &file.text {
                    Some(_) => format!("{} < {} (with the producer's variables)", inv.display(), file.path.display()),
                    None => inv.display(),
                };
                println!("  [{backend}] runs in the lab host: {command}");
            }
            if let Some(live) = &scn.rules.live {
                let program = match live.kind() {
                    harness::scenario::LiveProgram::Command => live.run().join(" "),
                    other => format!("{} (netconform's {} producer)", other.name(), other.name()),
                };
                println!("  [{backend}] runs in the lab host's sandbox, as root: {program}");
                for (key, value) in live.daemon() {
                    println!("  [{backend}]   with daemon.json: \"{key}\": {value}");
                }
                for command in live.commands() {
                    println!("  [{backend}] runs in the lab host's sandbox, as root: {command}");
                }
            }
            println!("  [{backend}] runs in the lab host: {}", rb.dump().display());
            if let (true, Some(dump6)) = (scn.ipv6, rb.dump6()) {
                println!("  [{backend}] runs in the lab host: {}", dump6.display());
            }
        }
    }
    println!("{} scenarios valid", scenarios.len());
    ExitCode::SUCCESS
}
