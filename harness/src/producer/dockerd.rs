//! `dockerd`: the real Docker daemon writes the rules. A private dockerd runs in the
//! lab host's sandbox with its state, sockets and logs under the sandbox's own /run;
//! an image is imported from a root file system holding only busybox-static (no
//! registry); the scenario's networks and containers are created with the Docker CLI,
//! and each container's own network namespace becomes that node's, so services and
//! probes run where Docker put the container.
//!
//! With `rules.live.commands` (ufw command lines), the real ufw is configured and
//! enabled first, as the `ufw` producer does it, and dockerd starts after it: a host
//! where ufw came up at boot and Docker after, the case of moby#22054.
//!
//! Docker's containers land in cgroups of the machine's cgroup2 hierarchy, under one
//! parent per daemon named after this process (`netconform-dockerd.PID.START.N`).
//! Teardown removes containers, networks, the daemon and that parent. A run killed
//! with SIGKILL loses its processes with its sandbox, but empty cgroup directories
//! cannot remove themselves: the next dockerd run removes those whose process is gone.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::{Log, Producer, ProducerError};
use crate::lab::netns::NetNs;
use crate::lab::sandbox::{ExecError, Invocation, Sandbox};
use crate::lab::Lab;
use crate::scenario::{Backend, NodeId, Scenario};

/// The Docker CLI, which talks to the daemon (and honours DOCKER_HOST).
pub const DOCKER_CLI: &str = "docker";

/// Where the daemon keeps everything, inside the sandbox's private /run.
const STATE: &str = "/run/netconform/docker";
/// The image every container runs: busybox-static and nothing else.
const IMAGE: &str = "netconform/busybox:latest";
/// Where busybox-static installs its program.
const BUSYBOX: &str = "/bin/busybox";
/// Cgroups of our daemons start with this; the rest of the name says whose they are.
const CGROUP_PREFIX: &str = "netconform-dockerd.";
/// Docker's name for its default network, the one on docker0.
const DEFAULT_NETWORK: &str = "bridge";
const DEFAULT_BRIDGE: &str = "docker0";

/// Daemons started by this process so far, to tell their cgroups apart.
static DAEMONS: AtomicU32 = AtomicU32::new(0);

#[derive(Default)]
pub struct Dockerd {
    /// ufw is configured before dockerd starts (the scenario has ufw commands).
    ufw: bool,
    sandbox: Option<Sandbox>,
    /// The `nsenter` that runs dockerd; it exits when dockerd does.
    daemon: Option<tokio::process::Child>,
    /// The parent cgroup of this daemon's containers.
    cgroup: Option<String>,
    /// Docker's names for what we created, to remove in teardown.
    containers: Vec<String>,
    networks: Vec<String>,
    step: Duration,
}

impl Dockerd {
    pub fn new(scn: &Scenario) -> Dockerd {
        let ufw = scn.rules.live.as_ref().is_some_and(|l| !l.commands().is_empty());
        Dockerd { ufw, ..Dockerd::default() }
    }
}

impl Producer for Dockerd {
    fn unavailable_here(&self) -> Option<String> {
        super::in_user_namespace()
            .then(|| "dockerd needs real root (cgroups, mounts); this run is in a user namespace".to_string())
    }

    fn programs(&self) -> Vec<&'static str> {
        let mut programs = vec![
            "dockerd",
            DOCKER_CLI,
            "containerd",
            "containerd-shim-runc-v2",
            "runc",
            "busybox",
            "unshare",
            "nsenter",
        ];
        if self.ufw {
            programs.extend(["ufw", "sh", "cp", "ln", "mount"]);
        }
        programs
    }

    fn produce<'a>(
        &'a mut self,
        scn: &'a Scenario,
        lab: &'a mut Lab,
        backend: Backend,
        log: &'a mut Log,
    ) -> BoxFuture<'a, Result<(), ProducerError>> {
        Box::pin(async move {
            let live = scn.rules.live.as_ref().ok_or("no live program")?;
            self.step = live.timeout;
            if super::in_user_namespace() {
                return Err("dockerd needs root of the machine: in a user namespace (a rootless run) no cgroup \
                            file system can be mounted for its containers; run netconform as root"
                    .into());
            }
            let rootfs = rootfs_tar(Path::new(BUSYBOX))?;
            let mut env = super::lab_environment(scn, backend);
            env.push(("DOCKER_HOST".into(), format!("unix://{STATE}/docker.sock")));
            env.push(("DOCKER_CONFIG".into(), format!("{STATE}/cli")));
            env.push(("DOCKER_TLS_VERIFY".into(), String::new()));
            let sandbox = {
                use std::os::fd::AsFd;
                Sandbox::start(lab.host().as_fd(), backend.iptables_flavour(), env)
                    .await
                    .map_err(|e| format!("starting the sandbox: {e}"))?
            };
            self.sandbox = Some(sandbox);
            self.prepare(live.daemon(), log).await?;
            if !live.commands().is_empty() {
                self.ufw_first(live.commands(), backend, scn.ipv6, log).await?;
            }
            self.start_daemon(scn, log).await?;
            self.docker(log, &["import", "-", IMAGE], Some(rootfs)).await?;
            self.create_networks(scn, log).await?;
            self.run_containers(scn, lab, log).await?;
            Ok(())
        })
    }

    fn teardown<'a>(&'a mut self, log: &'a mut Log) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut problems = Vec::new();
            if self.sandbox.is_none() {
                return problems;
            }
            for name in std::mem::take(&mut self.containers) {
                if let Err(e) = self.docker(log, &["rm", "--force", &name], None).await {
                    problems.push(e);
                }
            }
            for name in std::mem::take(&mut self.networks) {
                if let Err(e) = self.docker(log, &["network", "rm", &name], None).await {
                    problems.push(e);
                }
            }
            if let Err(e) = self.stop_daemon(log).await {
                problems.push(e);
            }
            if let Err(e) = self.remove_cgroup(log).await {
                problems.push(e);
            }
            // Whatever is left (a shim that did not exit) dies with the sandbox.
            self.sandbox = None;
            problems
        })
    }
}

impl Dockerd {
    fn sandbox(&self) -> Result<&Sandbox, String> {
        self.sandbox.as_ref().ok_or_else(|| "the sandbox is gone".to_string())
    }

    /// `path` inside the sandbox, as this process reaches it: through the root of the
    /// sandbox's first process, which sees the sandbox's mounts.
    fn outside(&self, path: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(format!("/proc/{}/root{path}", self.sandbox()?.init_pid())))
    }

    /// Runs a program in the sandbox, logs it, and returns what it printed.
    async fn run(&self, log: &mut Log, program: &str, args: &[&str], stdin: Option<Vec<u8>>) -> Result<String, String> {
        let mut inv = Invocation::new(program, args);
        inv.timeout = self.step;
        inv.stdin = stdin;
        match self.sandbox()?.run(&inv).await {
            Ok(out) => {
                log.command(&inv.display(), &out.stdout, &out.stderr);
                Ok(out.stdout)
            }
            Err(ExecError::Failed { command, status, stdout, stderr }) => {
                log.command(&command, &stdout, &stderr);
                Err(format!("{command} failed ({status}):\n{stdout}{stderr}"))
            }
            Err(e) => {
                log.push(format!("$ {}\n  {e}", inv.display()));
                Err(e.to_string())
            }
        }
    }

    async fn docker(&self, log: &mut Log, args: &[&str], stdin: Option<Vec<u8>>) -> Result<String, String> {
        self.run(log, DOCKER_CLI, args, stdin).await
    }

    /// Checks that the sandbox has a /proc of its own, mounts an empty /opt
    /// (containerd makes /opt/containerd), writes the daemon's configuration, and
    /// removes the cgroups of earlier runs that were killed.
    async fn prepare(&mut self, options: &[(String, serde_json::Value)], log: &mut Log) -> Result<(), String> {
        // Docker hands out PIDs of the sandbox's PID namespace, and runc's hooks find
        // dockerd by its PID: with the machine's /proc they would find other processes.
        // The sandbox's first process mounts it before it runs its program, which may
        // not have happened yet.
        let init = self.sandbox()?.init_pid();
        let own = std::fs::read_link(format!("/proc/{init}/ns/pid")).map_err(|e| e.to_string())?;
        let seen = self.outside("/proc/1/ns/pid")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&seen).ok().as_ref() != Some(&own) {
            if Instant::now() > deadline {
                return Err("the sandbox has no /proc of its own PID namespace; dockerd cannot run in it".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if Path::new("/opt").is_dir() {
            self.run(log, "mount", &["-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/opt"], None).await?;
        }
        let state = self.outside(STATE)?;
        std::fs::create_dir_all(&state).map_err(|e| format!("creating {STATE}: {e}"))?;
        let config = daemon_config(options);
        std::fs::write(state.join("daemon.json"), &config).map_err(|e| format!("writing {STATE}/daemon.json: {e}"))?;
        log.push(format!("{STATE}/daemon.json: {}", config.trim_end()));
        let cgroups = self.outside("/sys/fs/cgroup")?;
        for (name, result) in remove_stale_cgroups(&cgroups) {
            match result {
                Ok(()) => log.push(format!("removed the cgroup {name} of a dockerd run that is gone")),
                Err(e) => log.push(format!("could not remove the stale cgroup {name}: {e}")),
            }
        }
        Ok(())
    }

    /// ufw from copies of its configuration, bind-mounted in the sandbox as the `ufw`
    /// producer mounts them (its helpers do the copies' contents), then the
    /// scenario's ufw command lines and `ufw --force enable`.
    async fn ufw_first(
        &self,
        commands: &[String],
        backend: Backend,
        ipv6: bool,
        log: &mut Log,
    ) -> Result<(), ProducerError> {
        super::ufw::configure(self.sandbox()?, commands, backend, ipv6, self.step, log).await
    }

    async fn start_daemon(&mut self, scn: &Scenario, log: &mut Log) -> Result<(), String> {
        let cgroup = cgroup_name();
        let args = daemon_args(scn, &cgroup);
        let inv = Invocation::new("dockerd", &args);
        let log_path = self.outside(&format!("{STATE}/dockerd.log"))?;
        let file = std::fs::File::create(&log_path).map_err(|e| format!("creating {STATE}/dockerd.log: {e}"))?;
        let child = self.sandbox()?.spawn_logged(&inv, file).map_err(|e| e.to_string())?;
        self.daemon = Some(child);
        self.cgroup = Some(cgroup);
        log.push(format!("$ {} &  (its log: {STATE}/dockerd.log)", inv.display()));

        let deadline = Instant::now() + self.step;
        let socket = self.outside(&format!("{STATE}/docker.sock"))?;
        loop {
            if let Some(status) = self.daemon.as_mut().and_then(|d| d.try_wait().ok().flatten()) {
                self.daemon = None;
                log.push(format!("dockerd exited ({status}) before it served its socket"));
                return Err(format!("dockerd exited ({status}) before it served its socket:\n{}", self.log_tail(40)));
            }
            if socket.exists() {
                let mut probe = Invocation::new(DOCKER_CLI, ["version", "--format", "{{.Server.Version}}"]);
                probe.timeout = Duration::from_secs(5);
                if let Ok(out) = self.sandbox()?.run(&probe).await {
                    log.push(format!(
                        "dockerd {} is up; from outside the sandbox its socket is unix://{}",
                        out.stdout.trim(),
                        socket.display()
                    ));
                    break;
                }
            }
            if Instant::now() > deadline {
                log.push(format!("dockerd did not answer on its socket within {:?}", self.step));
                return Err(format!(
                    "dockerd did not answer on its socket within {:?}:\n{}",
                    self.step,
                    self.log_tail(40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Which iptables dockerd found first on PATH: the back end under test.
        self.run(log, "iptables", &["--version"], None).await?;
        Ok(())
    }

    /// The last `lines` lines of the daemon's log.
    fn log_tail(&self, lines: usize) -> String {
        let text = self
            .outside(&format!("{STATE}/dockerd.log"))
            .and_then(|p| std::fs::read_to_string(p).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| format!("(no log: {e})"));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].iter().map(|l| format!("  {l}\n")).collect()
    }

    async fn create_networks(&mut self, scn: &Scenario, log: &mut Log) -> Result<(), String> {
        for n in &scn.networks {
            if n.bridge == DEFAULT_BRIDGE {
                if n.internal {
                    return Err(format!("network {}: Docker's default bridge cannot be internal", n.name));
                }
                if n.subnet6.is_some() {
                    return Err(format!(
                        "network {}: IPv6 on Docker's default bridge comes from fixed-cidr-v6 in daemon.json; \
                         give the IPv6 subnet to a network of its own",
                        n.name
                    ));
                }
                // Made by dockerd itself, from --bip.
                continue;
            }
            let subnet = n.subnet.to_string();
            let gateway = n.gateway.to_string();
            let bridge = format!("com.docker.network.bridge.name={}", n.bridge);
            let mut args = vec!["network", "create", "--driver", "bridge", "--subnet", &subnet, "--gateway", &gateway];
            let (subnet6, gateway6) = (n.subnet6.map(|s| s.to_string()), n.gateway6.map(|g| g.to_string()));
            if let (Some(s), Some(g)) = (&subnet6, &gateway6) {
                args.extend(["--ipv6", "--subnet", s, "--gateway", g]);
            }
            args.extend(["--opt", &bridge]);
            if n.internal {
                args.push("--internal");
            }
            args.push(&n.name);
            self.docker(log, &args, None).await?;
            self.networks.push(n.name.clone());
        }
        Ok(())
    }

    async fn run_containers(&mut self, scn: &Scenario, lab: &mut Lab, log: &mut Log) -> Result<(), String> {
        let own = std::fs::metadata("/proc/self/ns/net").map_err(|e| e.to_string())?.ino();
        let host = inode_of(lab.host())?;
        for (i, node) in scn.nodes.iter().enumerate() {
            let Some(c) = &node.container else { continue };
            let net = &scn.networks[c.network];
            let name = container_name(&node.name, i);
            let default = net.bridge == DEFAULT_BRIDGE;
            let network = if default { DEFAULT_NETWORK } else { net.name.as_str() };
            let address = c.address.to_string();
            let address6 = c.address6.map(|a| a.to_string());
            let publish: Vec<String> = c.publish.iter().map(publish_arg).collect();
            let mut args = vec!["run", "--detach", "--name", &name, "--hostname", &name, "--network", network];
            if !default {
                // Docker assigns addresses on its default bridge itself, in order.
                args.extend(["--ip", &address]);
                if let Some(a) = &address6 {
                    args.extend(["--ip6", a]);
                }
            }
            for p in &publish {
                args.extend(["--publish", p]);
            }
            args.extend([IMAGE, BUSYBOX, "sleep", "1000000"]);
            self.docker(log, &args, None).await?;
            self.containers.push(name.clone());

            let format = "{{.State.Pid}}{{range .NetworkSettings.Networks}} {{.IPAddress}}{{end}}";
            let out = self.docker(log, &["inspect", "--format", format, &name], None).await?;
            let mut words = out.split_whitespace();
            let pid: u32 = words
                .next()
                .and_then(|p| p.parse().ok())
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("docker inspect gave no running PID for {name}: {out}"))?;
            let got: Vec<&str> = words.collect();
            if got != [address.as_str()] {
                return Err(format!(
                    "container {} got the address {} from Docker, the scenario says {address}{}",
                    node.name,
                    got.join(", "),
                    if default { " (Docker numbers its default bridge in order, from .2)" } else { "" }
                ));
            }
            // The PID is the sandbox's; so is the /proc seen through its root.
            let path = self.outside(&format!("/proc/{pid}/ns/net"))?;
            let ns = NetNs::open(&node.name, &path).map_err(|e| format!("opening {}: {e}", path.display()))?;
            let inode = inode_of(&ns)?;
            if inode == own || inode == host {
                return Err(format!("container {} has no network namespace of its own", node.name));
            }
            prepare_container_ns(scn, NodeId(i), &ns)
                .map_err(|e| format!("setting sysctls in container {}: {e}", node.name))?;
            lab.set_ns(NodeId(i), ns);
        }
        Ok(())
    }

    async fn stop_daemon(&mut self, log: &mut Log) -> Result<(), String> {
        let Some(mut daemon) = self.daemon.take() else { return Ok(()) };
        if daemon.try_wait().ok().flatten().is_some() {
            return Err(format!("dockerd had exited before teardown; the end of its log:\n{}", self.log_tail(20)));
        }
        let pidfile = self.outside(&format!("{STATE}/dockerd.pid"))?;
        let pid = std::fs::read_to_string(&pidfile).map_err(|e| format!("reading {STATE}/dockerd.pid: {e}"))?;
        self.run(log, "kill", &["-TERM", pid.trim()], None).await?;
        match tokio::time::timeout(self.step, daemon.wait()).await {
            Ok(_) => {
                log.push("dockerd stopped".to_string());
                Ok(())
            }
            Err(_) => Err(format!(
                "dockerd did not stop within {:?} of SIGTERM (killed with its sandbox); the end of its log:\n{}",
                self.step,
                self.log_tail(20)
            )),
        }
    }

    /// Removes this daemon's parent cgroup. Containers removed and the daemon stopped,
    /// it should hold nothing; whatever it still holds is killed first.
    async fn remove_cgroup(&mut self, log: &mut Log) -> Result<(), String> {
        let Some(name) = self.cgroup.take() else { return Ok(()) };
        let dir = self.outside(&format!("/sys/fs/cgroup/{name}"))?;
        if !dir.exists() {
            return Ok(());
        }
        let mut problem = None;
        if populated(&dir) {
            problem = Some(format!("the cgroup {name} still held processes after dockerd stopped; killed them"));
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            for _ in 0..100 {
                if !populated(&dir) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        remove_tree(&dir).map_err(|e| format!("removing the cgroup {name}: {e}"))?;
        log.push(format!("removed the cgroup {name}"));
        problem.map_or(Ok(()), Err)
    }
}

/// dockerd's command line: everything under [`STATE`], Docker's own iptables rules,
/// the cgroupfs driver under a parent cgroup of ours, and docker0's address from the
/// scenario's network on docker0 if it has one.
fn daemon_args(scn: &Scenario, cgroup: &str) -> Vec<String> {
    let mut args: Vec<String> = vec![
        format!("--config-file={STATE}/daemon.json"),
        format!("--data-root={STATE}/data"),
        format!("--exec-root={STATE}/exec"),
        format!("--pidfile={STATE}/dockerd.pid"),
        format!("--host=unix://{STATE}/docker.sock"),
        // Containers copy the image's files; no overlay mounts to manage.
        "--storage-driver=vfs".into(),
        "--exec-opt=native.cgroupdriver=cgroupfs".into(),
        format!("--cgroup-parent=/{cgroup}"),
    ];
    if let Some(n) = scn.networks.iter().find(|n| n.bridge == DEFAULT_BRIDGE) {
        args.push(format!("--bip={}/{}", n.gateway, n.subnet.prefix_len()));
    }
    args.extend(switched_on(scn.rules.live.as_ref().map(|l| l.daemon()).unwrap_or_default()));
    args
}

/// Docker's own rules and forwarding, unless the scenario's daemon.json settings say
/// otherwise: dockerd refuses a setting given both as a flag and in its file.
fn switched_on(options: &[(String, serde_json::Value)]) -> Vec<String> {
    ["iptables", "ip-forward"]
        .into_iter()
        .filter(|flag| !options.iter().any(|(k, _)| k == flag))
        .map(|flag| format!("--{flag}=true"))
        .collect()
}

/// dockerd's configuration file: the scenario's `daemon` settings, and the trust
/// key's path, which would otherwise be /etc/docker/key.json on the machine.
fn daemon_config(options: &[(String, serde_json::Value)]) -> String {
    let mut config = serde_json::Map::new();
    config.insert("deprecated-key-path".into(), format!("{STATE}/key.json").into());
    for (k, v) in options {
        config.insert(k.clone(), v.clone());
    }
    format!("{}\n", serde_json::Value::Object(config))
}

/// `-p` as Docker reads it.
fn publish_arg(p: &crate::scenario::Publish) -> String {
    let ip = p.host_ip.map(|ip| format!("{ip}:")).unwrap_or_default();
    let proto = if p.udp { "udp" } else { "tcp" };
    format!("{ip}{}:{}/{proto}", p.host_port, p.container_port)
}

/// The node's name if Docker accepts it as a container name, else one made from its
/// position.
fn container_name(node: &str, index: usize) -> String {
    let ok = node.len() >= 2
        && node.starts_with(|c: char| c.is_ascii_alphanumeric())
        && node.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        node.to_string()
    } else {
        format!("node-{index}")
    }
}

fn inode_of(ns: &NetNs) -> Result<u64, String> {
    let path = format!("/proc/self/fd/{}", ns.raw_fd());
    std::fs::metadata(&path).map(|m| m.ino()).map_err(|e| format!("{path}: {e}"))
}

/// A container's namespace gets what the lab gives every namespace it makes for the
/// probes (ICMP datagram sockets, no ICMP rate limit, IPv6 per the scenario), then the
/// node's own sysctls.
fn prepare_container_ns(scn: &Scenario, id: NodeId, ns: &NetNs) -> std::io::Result<()> {
    let v6 = if scn.ipv6 { "0" } else { "1" };
    let mut items = vec![
        ("net.ipv6.conf.all.disable_ipv6", v6),
        ("net.ipv6.conf.default.disable_ipv6", v6),
        ("net.ipv4.ping_group_range", "0 2147483647"),
        ("net.ipv4.icmp_ratemask", "0"),
        ("net.ipv4.icmp_ratelimit", "0"),
    ];
    items.extend(scn.node(id).sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    ns.write_sysctls(items)
}

/// A name for a new daemon's parent cgroup: this process, its start time (a PID alone
/// may be reused), and a counter.
fn cgroup_name() -> String {
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    format!("{CGROUP_PREFIX}{pid}.{start}.{}", DAEMONS.fetch_add(1, Ordering::Relaxed))
}

/// When process `pid` started, in clock ticks since boot (field 22 of its stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the cgroup named `name` belongs to a process that is gone.
fn is_stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(CGROUP_PREFIX) else { return false };
    let mut parts = rest.split('.');
    let (Some(pid), Some(start)) =
        (parts.next().and_then(|p| p.parse::<u32>().ok()), parts.next().and_then(|s| s.parse::<u64>().ok()))
    else {
        return false;
    };
    start_time(pid) != Some(start)
}

/// Removes the cgroups under `root` left by dockerd runs whose process is gone (killed
/// before teardown), if nothing runs in them any more.
fn remove_stale_cgroups(root: &Path) -> Vec<(String, std::io::Result<()>)> {
    let mut done = Vec::new();
    for entry in std::fs::read_dir(root).into_iter().flatten().filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_stale(&name) || !entry.path().is_dir() {
            continue;
        }
        let result = if populated(&entry.path()) {
            Err(std::io::Error::other("processes still run in it"))
        } else {
            remove_tree(&entry.path())
        };
        done.push((name, result));
    }
    done
}

/// Whether processes run in the cgroup `dir` or below it.
fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

/// Removes the cgroup `dir` and the cgroups below it, deepest first (a cgroup
/// directory goes with rmdir, its files with it).
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

/// A root file system for `docker import`, as a tar archive: `bin/busybox` (which
/// must be statically linked: nothing else is in it) and `bin/sh`, `bin/sleep` links.
fn rootfs_tar(busybox: &Path) -> Result<Vec<u8>, String> {
    let program =
        std::fs::read(busybox).map_err(|e| format!("reading {}: {e} (install busybox-static)", busybox.display()))?;
    if !is_static_elf(&program) {
        return Err(format!(
            "{} is dynamically linked; containers need busybox-static, which installs a static {}",
            busybox.display(),
            BUSYBOX
        ));
    }
    let mut tar = Vec::with_capacity(program.len() + 8 * 512);
    tar_entry(&mut tar, "bin/", b'5', 0o755, "", &[]);
    tar_entry(&mut tar, "bin/busybox", b'0', 0o755, "", &program);
    tar_entry(&mut tar, "bin/sh", b'2', 0o777, "busybox", &[]);
    tar_entry(&mut tar, "bin/sleep", b'2', 0o777, "busybox", &[]);
    tar_entry(&mut tar, "tmp/", b'5', 0o1777, "", &[]);
    tar.extend_from_slice(&[0u8; 1024]);
    Ok(tar)
}

/// One ustar header (and the data, padded to 512 bytes).
fn tar_entry(out: &mut Vec<u8>, name: &str, kind: u8, mode: u32, link: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut h, 0, name.as_bytes());
    put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{:011o}\0", data.len()).as_bytes());
    put(&mut h, 136, b"00000000000\0");
    h[156] = kind;
    put(&mut h, 157, link.as_bytes());
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    // The checksum is taken with its own field as spaces.
    put(&mut h, 148, b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// Whether `elf` is a 64-bit ELF program without an interpreter (statically linked).
fn is_static_elf(elf: &[u8]) -> bool {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let at = phoff + i * size;
        // PT_INTERP names the dynamic loader.
        elf.get(at..at + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != 3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_settings_go_to_the_file_and_replace_the_flags() {
        let options = vec![("icc".to_string(), serde_json::Value::Bool(false)), ("iptables".into(), false.into())];
        assert_eq!(switched_on(&options), vec!["--ip-forward=true".to_string()]);
        assert_eq!(switched_on(&[]), vec!["--iptables=true".to_string(), "--ip-forward=true".to_string()]);
        let config: serde_json::Value = serde_json::from_str(&daemon_config(&options)).expect("JSON");
        assert_eq!(config["icc"], serde_json::Value::Bool(false));
        assert_eq!(config["iptables"], serde_json::Value::Bool(false));
        assert_eq!(config["deprecated-key-path"], format!("{STATE}/key.json").as_str());
    }

    #[test]
    fn tar_headers_have_valid_checksums_and_sizes() {
        let mut tar = Vec::new();
        tar_entry(&mut tar, "bin/busybox", b'0', 0o755, "", b"hello");
        tar_entry(&mut tar, "bin/sh", b'2', 0o777, "busybox", &[]);
        assert_eq!(tar.len(), 3 * 512);
        let h = &tar[..512];
        let stored = std::str::from_utf8(&h[148..154]).unwrap();
        let mut copy = h.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&h[124..135], b"00000000005");
        assert_eq!(&tar[512..517], b"hello");
        assert_eq!(tar[1024 + 156], b'2');
        assert_eq!(&tar[1024 + 157..1024 + 164], b"busybox");
    }

    #[test]
    fn system_tar_reads_the_rootfs() {
        let Some(tar) = crate::lab::sandbox::which("tar") else { return };
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("busybox");
        // A static ELF header with no program headers.
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        std::fs::write(&fake, &elf).unwrap();
        let archive = dir.path().join("rootfs.tar");
        std::fs::write(&archive, rootfs_tar(&fake).unwrap()).unwrap();
        let out = std::process::Command::new(tar).arg("-tvf").arg(&archive).output().unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(list.contains("bin/busybox"), "{list}");
        assert!(list.contains("bin/sleep -> busybox"), "{list}");
        assert!(list.contains("drwxrwxrwt"), "{list}");
    }

    #[test]
    fn dynamic_programs_are_told_apart() {
        if let Ok(sh) = std::fs::read("/bin/sh") {
            assert!(!is_static_elf(&sh), "/bin/sh is dynamically linked on every supported system");
        }
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn stale_cgroups_are_those_of_processes_gone() {
        let own = cgroup_name();
        assert!(!is_stale(&own), "{own}");
        assert!(is_stale(&format!("{CGROUP_PREFIX}{}.1.0", std::process::id())));
        assert!(is_stale(&format!("{CGROUP_PREFIX}4194305.1.0")));
        assert!(!is_stale("docker"));
        assert!(!is_stale(&format!("{CGROUP_PREFIX}x")));
    }

    #[test]
    fn container_names_docker_accepts() {
        assert_eq!(container_name("web", 3), "web");
        assert_eq!(container_name("a", 3), "node-3");
        assert_eq!(container_name("ü1", 4), "node-4");
        assert_eq!(container_name("-x", 2), "node-2");
    }

    #[test]
    fn publish_arguments() {
        use crate::scenario::Publish;
        let p = Publish { host_ip: None, host_port: 8080, container_port: 80, udp: false };
        assert_eq!(publish_arg(&p), "8080:80/tcp");
        let p = Publish { host_ip: Some("127.0.0.1".parse().unwrap()), host_port: 53, container_port: 53, udp: true };
        assert_eq!(publish_arg(&p), "127.0.0.1:53:53/udp");
    }
}
