//! `netconform init --docker`: reads a running Docker host (only reads) and writes a
//! scenario that rebuilds it in a lab, with the host's rules in a file beside it.

use crate::exit::Exit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use harness::tools::docker_host::{self as init, Source};

#[derive(clap::Args)]
pub struct InitArgs {
    /// Read a Docker host: networks, containers and published ports through the
    /// Docker CLI (DOCKER_HOST is honoured), rules through iptables-save.
    #[arg(long, required = true)]
    docker: bool,
    /// The scenario to write; the rules go to rules/NAME.rules beside it.
    #[arg(long, short, value_name = "FILE", default_value = "docker-host.yaml")]
    output: PathBuf,
    /// The program that prints the host's rules (iptables-legacy-save for a host
    /// whose Docker uses the legacy back end).
    #[arg(long, value_name = "PROGRAM", default_value = "iptables-save")]
    iptables_save: String,
    /// Replace the scenario and rule file if they exist.
    #[arg(long)]
    force: bool,
    /// Read rules, routes and addresses inside this network namespace instead of the
    /// machine's own (a lab host standing in for a Docker host).
    #[arg(long, hide = true, value_name = "PATH")]
    netns: Option<PathBuf>,
}

pub fn main(args: InitArgs) -> ExitCode {
    match write(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netconform init: {e}");
            ExitCode::from(Exit::BadInput)
        }
    }
}

fn write(args: &InitArgs) -> Result<(), String> {
    let stem = args
        .output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{}: not a file name", args.output.display()))?;
    let dir = args.output.parent().map(Path::to_path_buf).unwrap_or_default();
    let rules_rel = format!("rules/{stem}.rules");
    let rules_path = dir.join(&rules_rel);
    if !args.force {
        for p in [&args.output, &rules_path] {
            if p.exists() {
                return Err(format!("{} exists; pass --force to replace it", p.display()));
            }
        }
    }

    let source = Source {
        docker: harness::producer::DOCKER_CLI.into(),
        iptables_save: args.iptables_save.clone(),
        netns: args.netns.clone(),
    };
    let capture = init::capture(&source)?;
    let written = init::render(&capture, &rules_rel);

    std::fs::create_dir_all(dir.join("rules")).map_err(|e| format!("creating {}: {e}", dir.join("rules").display()))?;
    std::fs::write(&rules_path, init::rules_file(&capture.rules))
        .map_err(|e| format!("writing {}: {e}", rules_path.display()))?;
    std::fs::write(&args.output, &written.scenario).map_err(|e| format!("writing {}: {e}", args.output.display()))?;

    // What was written must be a scenario netconform takes.
    let name = args.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Err(e) = harness::scenario::load(&args.output, &name) {
        return Err(format!("the scenario written does not load, which is a bug of init:\n{e}"));
    }
    println!(
        "wrote {} ({} networks, {} containers, {} starter probes) and {}",
        args.output.display(),
        capture.networks.len(),
        capture.containers.len(),
        written.probes,
        rules_path.display()
    );
    for s in &capture.skipped {
        println!("  left out: {s}");
    }
    println!("next: netconform check {0}; netconform run {0}", args.output.display());
    Ok(())
}
