//! `netconform capture`: what a live producer wrote, kept as a static fixture.

use std::path::Path;
use std::process::ExitCode;

use harness::run::{self};
use harness::scenario::{self, Backend};

use super::{bad_input, runtime};
use crate::exit::Exit;

pub fn main(path: &Path, output: &Path, only: Option<Backend>) -> ExitCode {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let scn = match scenario::load(path, &name) {
        Ok(s) => s,
        Err(e) => return bad_input(&e),
    };
    let backend = only.unwrap_or(scn.rules.backends[0]);
    if !scn.rules.backends.contains(&backend) {
        eprintln!("netconform: {name} does not run under {backend}");
        return ExitCode::from(Exit::BadInput);
    }
    if let Err(why) = run::requirements(&scn, backend) {
        eprintln!("netconform: cannot run: {why}");
        return ExitCode::from(Exit::BadInput);
    }
    if let Some(why) = harness::producer::unavailable(&scn) {
        eprintln!("netconform: cannot run {name}: {why}");
        return ExitCode::from(Exit::BadInput);
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let captured = match runtime.block_on(harness::tools::capture::capture(&scn, backend)) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("netconform: the producer failed:\n{why}");
            return ExitCode::from(Exit::Failed);
        }
    };
    let stem = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "scenario".into());
    let ext = if captured.format == harness::scenario::RuleFormat::Nft { "nft" } else { "rules" };
    let rules_name = format!("{stem}-{backend}.{ext}");
    let rules6_name = captured.rules6.as_ref().map(|_| format!("{stem}-{backend}-ip6.rules"));
    let yaml_name = format!("{stem}-{backend}.yaml");
    let rules_dir = output.join("rules");
    let written = std::fs::create_dir_all(&rules_dir)
        .and_then(|()| std::fs::write(rules_dir.join(&rules_name), &captured.rules))
        .and_then(|()| match (&rules6_name, &captured.rules6) {
            (Some(name), Some(text)) => std::fs::write(rules_dir.join(name), text),
            _ => Ok(()),
        })
        .and_then(|()| {
            let rules6 = rules6_name.as_ref().map(|n| format!("rules/{n}"));
            let text = harness::tools::capture::static_scenario(
                &scn,
                backend,
                &format!("rules/{rules_name}"),
                rules6.as_deref(),
                &captured,
            );
            std::fs::write(output.join(&yaml_name), text)
        });
    match written {
        Ok(()) => {
            println!("wrote {}", output.join(&yaml_name).display());
            println!("wrote {}", rules_dir.join(&rules_name).display());
            if let Some(name) = &rules6_name {
                println!("wrote {}", rules_dir.join(name).display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netconform: writing under {}: {e}", output.display());
            ExitCode::from(Exit::BadInput)
        }
    }
}
