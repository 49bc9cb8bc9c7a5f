//! Producers: whatever puts the rule set into the lab host. One file per
//! implementation: rule files loaded with the back end's restore tool (`files`), a
//! command of the scenario's (`command`), and adapters that drive real programs
//! inside the lab (netavark, CNI plugins, dockerd, ufw, firewalld).
//!
//! A live producer runs its programs in a [`Sandbox`]: the lab host's network
//! namespace, a private /run, and a PID namespace that dies with this process.

mod cni;
mod command;
mod dockerd;
pub mod files;
mod firewalld;
mod netavark;
mod ufw;

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::lab::sandbox::{IptablesFlavour, Sandbox};
use crate::lab::Lab;
use crate::scenario::{Backend, LiveProgram, NodeId, Scenario};

/// What a producer left for the report: each program it ran and what it printed.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub entries: Vec<String>,
}

impl Log {
    pub fn push(&mut self, what: impl Into<String>) {
        self.entries.push(what.into());
    }

    /// One entry per command: the command line, then its output, indented.
    pub fn command(&mut self, command: &str, stdout: &str, stderr: &str) {
        let mut entry = format!("$ {command}");
        for line in stdout.lines().chain(stderr.lines()) {
            entry.push_str("\n  ");
            entry.push_str(line);
        }
        self.entries.push(entry);
    }
}

impl std::fmt::Display for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

pub trait Producer: Send {
    /// Programs that must be on PATH; without them the scenario is ignored.
    fn programs(&self) -> Vec<&'static str>;

    /// Files and folders of the machine the program reads (its configuration); where
    /// one cannot be read, as in a rootless run against Debian's 0640 and 0750
    /// modes, the scenario is ignored with the path.
    fn reads(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Put the rules (and, for a container engine, its bridges and container links)
    /// into the lab. On error the message says what failed, with the program's own
    /// words.
    fn produce<'a>(
        &'a mut self,
        scn: &'a Scenario,
        lab: &'a mut Lab,
        backend: Backend,
        log: &'a mut Log,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Undo what dropping the lab does not undo (a program's own teardown), collecting
    /// every error instead of stopping at the first.
    fn teardown<'a>(&'a mut self, _log: &'a mut Log) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { Vec::new() })
    }
}

/// Run `inv` in the sandbox, logged as `shown` with its output; on failure the error
/// carries the program's own words.
pub(super) async fn run_logged(
    sandbox: &Sandbox,
    inv: &crate::lab::sandbox::Invocation,
    shown: &str,
    log: &mut Log,
) -> Result<String, String> {
    match sandbox.run(inv).await {
        Ok(out) => {
            log.command(shown, &out.stdout, &out.stderr);
            Ok(out.stdout)
        }
        Err(crate::lab::sandbox::ExecError::Failed { status, stdout, stderr, .. }) => {
            log.command(shown, &stdout, &stderr);
            Err(format!("{shown} failed ({status}):\n{stdout}{stderr}"))
        }
        Err(e) => {
            log.push(format!("$ {shown}\n  {e}"));
            Err(format!("{shown}: {e}"))
        }
    }
}

/// The producer of `scn`'s rules.
pub fn for_scenario(scn: &Scenario) -> Box<dyn Producer> {
    match scn.rules.live.as_ref().map(|l| l.program) {
        None => Box::new(files::Files),
        Some(LiveProgram::Command) => Box::new(command::Command::default()),
        Some(LiveProgram::Netavark) => Box::new(netavark::Netavark::new(scn)),
        Some(LiveProgram::Cni) => Box::new(cni::Cni::default()),
        Some(LiveProgram::Dockerd) => Box::new(dockerd::Dockerd::new(scn)),
        Some(LiveProgram::Ufw) => Box::new(ufw::Ufw::default()),
        Some(LiveProgram::Firewalld) => Box::new(firewalld::Firewalld::default()),
    }
}

/// Why `scn` cannot run here because its producer's programs are missing, if so.
pub fn unavailable(scn: &Scenario) -> Option<String> {
    let program = scn.rules.live.as_ref().map(|l| l.program);
    if program == Some(LiveProgram::Dockerd) && in_user_namespace() {
        return Some("dockerd needs real root (cgroups, mounts); this run is in a user namespace".into());
    }
    let missing: Vec<&str> =
        for_scenario(scn).programs().into_iter().filter(|p| crate::lab::sandbox::which(p).is_none()).collect();
    if !missing.is_empty() {
        return Some(format!("{} not installed (ci/install-deps installs it)", missing.join(", ")));
    }
    let own = scn.rules.live.iter().flat_map(|l| l.reads.iter().map(String::as_str));
    for_scenario(scn)
        .reads()
        .into_iter()
        .chain(own)
        .find_map(|path| unreadable(std::path::Path::new(path), 2))
        .map(|(path, e)| format!("{} cannot be read here ({e}); run as root", path.display()))
}

/// The first file or folder under `path`, `depth` levels down, that this process
/// cannot read, with the error. A path that does not exist is the program's own
/// business.
fn unreadable(path: &std::path::Path, depth: usize) -> Option<(std::path::PathBuf, std::io::Error)> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => return Some((path.to_path_buf(), e)),
        };
        if depth == 0 {
            return None;
        }
        entries.flatten().find_map(|entry| unreadable(&entry.path(), depth - 1))
    } else {
        std::fs::File::open(path).err().map(|e| (path.to_path_buf(), e))
    }
}

/// Whether this process runs in a user namespace other than the machine's (a
/// rootless run): its uid map is not the whole range.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}

/// Which `iptables` a live program should find for `backend`.
pub fn flavour(backend: Backend) -> IptablesFlavour {
    backend.iptables_flavour()
}

/// `NAME` as part of an environment variable name: upper case, `_` for the rest.
fn env_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// The lab as environment variables, for programs run in it:
/// - `NETCONFORM_NODES`: node names, the host first;
/// - `NETCONFORM_NETNS_<NODE>`: `/run/netns/<node>`, the node's network namespace
///   (`nsenter --net=PATH`, or `ip netns exec <node>`), inside the sandbox;
/// - `NETCONFORM_ADDRESS_<NODE>`: its first address;
/// - `NETCONFORM_BRIDGES`: the host's bridges; `NETCONFORM_NETWORKS`: container
///   networks, with `NETCONFORM_NETWORK_<NAME>_{BRIDGE,SUBNET,GATEWAY}`;
/// - `NETCONFORM_CONTAINER_<NAME>_{NETWORK,ADDRESS}` for each container;
/// - `NETCONFORM_BACKEND`, `NETCONFORM_SCENARIO_DIR`.
pub fn lab_environment(scn: &Scenario, backend: Backend) -> Vec<(String, String)> {
    let mut env = BTreeMap::new();
    let names: Vec<&str> = scn.nodes.iter().map(|n| n.name.as_str()).collect();
    env.insert("NETCONFORM_NODES".to_string(), names.join(" "));
    for (i, node) in scn.nodes.iter().enumerate() {
        let id = NodeId(i);
        let key = env_name(&node.name);
        env.insert(format!("NETCONFORM_NETNS_{key}"), format!("/run/netns/{}", node.name));
        if let Some(addr) = scn.addresses_of(id).first() {
            env.insert(format!("NETCONFORM_ADDRESS_{key}"), addr.to_string());
        }
        if let Some(c) = &node.container {
            env.insert(format!("NETCONFORM_CONTAINER_{key}_NETWORK"), scn.networks[c.network].name.clone());
            env.insert(format!("NETCONFORM_CONTAINER_{key}_ADDRESS"), c.address.to_string());
        }
    }
    let bridges: Vec<&str> = scn.host.bridges.iter().map(|b| b.name.as_str()).collect();
    env.insert("NETCONFORM_BRIDGES".to_string(), bridges.join(" "));
    let networks: Vec<&str> = scn.networks.iter().map(|n| n.name.as_str()).collect();
    env.insert("NETCONFORM_NETWORKS".to_string(), networks.join(" "));
    for n in &scn.networks {
        let key = env_name(&n.name);
        env.insert(format!("NETCONFORM_NETWORK_{key}_BRIDGE"), n.bridge.clone());
        env.insert(format!("NETCONFORM_NETWORK_{key}_SUBNET"), n.subnet.to_string());
        env.insert(format!("NETCONFORM_NETWORK_{key}_GATEWAY"), n.gateway.to_string());
    }
    env.insert("NETCONFORM_BACKEND".to_string(), backend.name().to_string());
    let dir = scn.path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    env.insert("NETCONFORM_SCENARIO_DIR".to_string(), dir.display().to_string());
    env.into_iter().collect()
}

/// A sandbox in the lab host for `scn` under `backend`, with the lab's environment.
pub async fn sandbox(scn: &Scenario, lab: &Lab, backend: Backend) -> Result<Sandbox, String> {
    use std::os::fd::AsFd;
    let namespaces: Vec<(&str, std::os::fd::RawFd)> =
        (0..scn.nodes.len()).map(|i| (scn.nodes[i].name.as_str(), lab.ns(NodeId(i)).raw_fd())).collect();
    Sandbox::start_with_namespaces(lab.host().as_fd(), flavour(backend), lab_environment(scn, backend), &namespaces)
        .await
        .map_err(|e| format!("starting the sandbox: {e}"))
}
