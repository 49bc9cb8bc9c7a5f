//! What the kernel tests of this folder share: running trials that are ignored, with
//! the reason, where they cannot run, and a lab of two nodes routed through the host.

use std::path::Path;

use harness::scenario::{self, Scenario};

/// A trial's body: Err with what went wrong.
pub type Body = fn() -> Result<(), String>;

/// Run `trials` of `group`; with `ignored` (why they cannot run here) every trial is
/// listed as ignored, so that nextest shows it skipped.
pub fn run_trials(group: &str, ignored: Option<String>, trials: Vec<(&str, Body)>) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    if let Some(why) = &ignored {
        eprintln!("the {group} trials are ignored here: {why}");
    }
    let trials = trials
        .into_iter()
        .map(|(name, body)| {
            libtest_mimic::Trial::test(format!("{group}::{name}"), move || body().map_err(Into::into))
                .with_kind("kernel")
                .with_ignored_flag(ignored.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// Why a kernel test cannot run here, if it cannot: it needs root.
pub fn needs_root() -> Option<String> {
    (!nix::unistd::geteuid().is_root()).then(|| "needs root to build network namespaces".into())
}

/// A scenario in which `a` reaches `b` (serving TCP 80) through the forwarding host,
/// under nft with an empty rule set, with the one probe `probe` (a YAML flow map).
pub fn two_routed_nodes(timeout: &str, probe: &str) -> String {
    format!(
        "\
timeout: {timeout}
host:
  forwarding: true
  uplinks:
    a0: {{ address: 10.1.0.1/24 }}
    b0: {{ address: 10.2.0.1/24 }}
nodes:
  a:
    interfaces: [{{ uplink: a0, address: 10.1.0.2/24, gateway: 10.1.0.1 }}]
  b:
    interfaces: [{{ uplink: b0, address: 10.2.0.2/24, gateway: 10.2.0.1 }}]
    services: {{ tcp: [80] }}
rules: {{ backends: [nft], files: [r.nft] }}
probes:
  - {probe}
"
    )
}

/// `text` loaded as a scenario from `dir`, with its empty rule file.
pub fn scenario(dir: &Path, text: &str) -> Result<Scenario, String> {
    std::fs::write(dir.join("r.nft"), "table inet lab {\n}\n").map_err(|e| e.to_string())?;
    let path = dir.join("s.yaml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    scenario::load(&path, "s.yaml").map_err(|e| e.to_string())
}
