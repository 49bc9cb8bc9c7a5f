//! `--evidence DIR`: for every scenario run that did not pass, a folder that explains
//! the failure by itself, for a CI artifact: the scenario and its rule files, the rule
//! set with counters before and after the probes, what the producer ran, each probe
//! with its outcome and path, and the lab.

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use crate::run::{ScenarioReport, Status};
use crate::scenario::{Attach, NodeId, Scenario};

/// `docker/published-port.yaml @docker-28 [iptables-nft]` → a folder name.
fn slug(scn: &Scenario, rep: &ScenarioReport) -> String {
    let raw = format!("{}__{}", scn.name, rep.backend);
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}

/// The lab as text: every node with its interfaces and addresses.
pub fn lab_description(scn: &Scenario) -> String {
    let mut out = String::new();
    let host = scn.host();
    let _ = writeln!(out, "host {} (forwarding {})", host.name, scn.host.forwarding);
    for b in &scn.host.bridges {
        let addr = b.address.map(|a| a.to_string()).unwrap_or_else(|| "no address".into());
        let _ = writeln!(out, "  bridge {} {addr}", b.name);
    }
    for u in &scn.host.uplinks {
        let _ = writeln!(out, "  uplink {} {} to {}", u.name, u.address, scn.node(u.peer).name);
    }
    for n in &scn.networks {
        let _ = writeln!(out, "  network {} bridge {} {} gateway {}", n.name, n.bridge, n.subnet, n.gateway);
    }
    for (k, v) in &host.sysctls {
        let _ = writeln!(out, "  sysctl {k} = {v}");
    }
    for (i, node) in scn.nodes.iter().enumerate().skip(1) {
        let _ = writeln!(out, "node {}", node.name);
        for iface in &node.interfaces {
            let on = match iface.attach {
                Attach::Bridge(b) => format!("bridge {}", scn.host.bridges[b].name),
                Attach::Uplink(u) => format!("uplink {}", scn.host.uplinks[u].name),
            };
            let gw = iface.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            let _ = writeln!(out, "  {} {} on {on} (host side {}){gw}", iface.name, iface.address, iface.host_side);
        }
        if let Some(c) = &node.container {
            let _ = writeln!(out, "  container {} on network {}", c.address, scn.networks[c.network].name);
        }
        for (k, v) in &node.sysctls {
            let _ = writeln!(out, "  sysctl {k} = {v}");
        }
        let addrs: Vec<String> = scn.addresses_of(NodeId(i)).iter().map(|a| a.to_string()).collect();
        let _ = writeln!(out, "  addresses {}", addrs.join(" "));
    }
    out
}

/// Writes the evidence folder for `rep` under `dir`, unless it passed. Returns the
/// folder written.
pub fn write(dir: &Path, scn: &Scenario, rep: &ScenarioReport) -> std::io::Result<Option<PathBuf>> {
    if rep.status == Status::Passed {
        return Ok(None);
    }
    let folder = dir.join(slug(scn, rep));
    fs::create_dir_all(folder.join("rules"))?;
    fs::copy(&scn.path, folder.join("scenario.yaml"))?;
    for (i, f) in scn.rules.files.iter().enumerate() {
        let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let target = folder.join("rules").join(format!("{:02}-{name}", i + 1));
        match &f.text {
            Some(text) => fs::write(target, text)?,
            None => {
                fs::copy(&f.path, target)?;
            }
        }
    }
    fs::write(folder.join("report.txt"), super::scenario(scn, rep))?;
    fs::write(folder.join("lab.txt"), lab_description(scn))?;
    if let Some(text) = &rep.rules_before {
        fs::write(folder.join("rules-before.txt"), text)?;
    }
    if let Some(text) = &rep.rules_after {
        fs::write(folder.join("rules-after.txt"), text)?;
    }
    fs::write(folder.join("producer.log"), rep.producer_log.to_string())?;
    let mut probes = String::new();
    for p in &rep.probes {
        let probe = &scn.probes[p.probe];
        let _ = writeln!(
            probes,
            "{} (line {}): expected {}, got {} — {}",
            probe.name, probe.location.line, probe.expect, p.outcome.kind, p.outcome.detail
        );
        if let Some(node) = &p.outcome.delivered_to {
            let _ = writeln!(probes, "  the request reached {node}");
        }
        for problem in &p.verdict.problems {
            let _ = writeln!(probes, "  {problem}");
        }
        if let Some(rule) = &p.deciding {
            let _ = writeln!(probes, "  decided by {rule}");
        }
        match &p.path {
            Some(steps) => {
                let _ = writeln!(probes, "  path:");
                for s in steps {
                    let _ = writeln!(probes, "    {s}");
                }
            }
            None => {
                let _ = writeln!(probes, "  path: not read (the probes ran together)");
            }
        }
    }
    fs::write(folder.join("probes.txt"), probes)?;
    let mut trace = String::new();
    for p in rep.probes.iter().filter(|p| !p.trace.is_empty()) {
        let _ = writeln!(trace, "{}:", scn.probes[p.probe].name);
        for step in &p.trace {
            let _ = writeln!(trace, "  {step}");
        }
    }
    if trace.is_empty() {
        trace = "no trace: tracing was off for this run (the producer log says why), or every probe passed\n".into();
    }
    fs::write(folder.join("trace.txt"), trace)?;
    Ok(Some(folder))
}
