//! The dockerd producer under SIGKILL, and `netconform init --docker` against it.
//!
//! Under SIGKILL: the runner is killed while dockerd starts,
//! while runc creates a container, while probes are in flight and while containers are
//! removed; each time, nothing the run started may be left: no process in a PID
//! namespace it made (dockerd, containerd, containerd-shim, runc, docker-proxy, the
//! containers' own processes), no network or mount namespace held, no mount on the
//! machine, no cgroup with a process in it, and no Docker or containerd state on the
//! machine. Docker's empty cgroup directories are the one thing a killed run cannot
//! remove; the next dockerd run removes them, which is checked last.
//!
//! `init --docker` reads a private dockerd (run by the producer in a lab, its socket
//! reached through the sandbox) and the lab host's rules, never this machine's; the
//! scenario it writes must load and pass, under each iptables back end.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

/// A dockerd scenario that stays in each phase long enough to be killed in it: the
/// dropped probe waits three seconds with the containers up.
const SCENARIO: &str = "\
description: published port and a slow dropped probe, for the SIGKILL test
host:
  uplinks:
    eno1: { address: 192.0.2.1/24 }
nodes:
  lan:
    interfaces:
      - { uplink: eno1, address: 192.0.2.2/24, gateway: 192.0.2.1 }
networks:
  web: { bridge: br-web, subnet: 172.30.0.0/24, gateway: 172.30.0.1 }
  back: { bridge: br-back, subnet: 172.30.1.0/24, gateway: 172.30.1.1 }
containers:
  web:
    network: web
    address: 172.30.0.2
    publish: [\"8080:80\"]
    services: { tcp: [80] }
  db:
    network: back
    address: 172.30.1.2
rules:
  backends: [iptables-nft, iptables-legacy]
  live: { program: dockerd }
probes:
  - { from: lan, to: 192.0.2.1, port: 8080, expect: reached, served_by: web, source_seen: lan }
  - { from: web, to: db, proto: icmp, expect: dropped, timeout: 3s }
";

/// Where in a run the runner is killed: when a process matching `trigger` first
/// shows, after `then` more.
struct Point {
    name: &'static str,
    trigger: fn(&Proc) -> bool,
    then: Duration,
}

const POINTS: [Point; 5] = [
    Point { name: "dockerd starting", trigger: |p| p.comm == "dockerd", then: Duration::from_millis(150) },
    Point { name: "containerd starting", trigger: |p| p.comm == "containerd", then: Duration::ZERO },
    Point { name: "runc creating a container", trigger: |p| p.comm == "runc", then: Duration::ZERO },
    Point { name: "probes in flight", trigger: |p| p.comm == "busybox", then: Duration::from_millis(1500) },
    Point { name: "containers being removed", trigger: |p| p.cmdline.contains("rm --force"), then: Duration::ZERO },
];

/// Process names that belong to a dockerd run.
const DOCKER_PROGRAMS: [&str; 7] =
    ["dockerd", "containerd", "containerd-shim", "runc", "docker-proxy", "docker", "busybox"];

use crate::kernel::netconform;

fn trial(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    crate::kernel::trial_unless(name, unavailable, f)
}

pub fn trials() -> Vec<Trial> {
    vec![
        trial("dockerd_sigkill_leaves_nothing_behind", sigkill_leaves_nothing),
        trial("init_docker_writes_a_scenario_that_passes", init_docker),
    ]
}

/// Why the test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to build namespaces and run dockerd".into());
    }
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join("slow.yaml");
    std::fs::write(&path, SCENARIO).ok()?;
    let scn = match harness::scenario::load(&path, "slow.yaml") {
        Ok(s) => s,
        Err(e) => return Some(format!("the test's scenario does not load: {e}")),
    };
    harness::producer::unavailable(&scn)
        .or_else(|| harness::run::requirements(&scn, harness::scenario::Backend::IptablesNft).err())
}

/// One process as /proc shows it.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    comm: String,
    cmdline: String,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_string();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string();
    Some(Proc { pid, comm, cmdline })
}

/// `pid` and every process below it.
fn descendants(pid: u32) -> Vec<Proc> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        if let Some(proc) = read_proc(p) {
            found.push(proc);
        }
        for task in std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().filter_map(|e| e.ok()) {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            queue.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    found
}

/// The namespace `kind` (net, mnt, pid) that `pid` is in, as `kind:[inode]`.
fn ns_of(pid: u32, kind: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok().map(|t| t.to_string_lossy().into_owned())
}

/// Namespaces `pid` refers to through its descriptors (the lab's are held so).
fn ns_fds(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with("net:[") || t.starts_with("mnt:[") || t.starts_with("pid:["))
        .collect()
}

/// Descriptors of the namespaces `pid` is in or holds, each with its name
/// (`net:[4026532301]`). Holding them keeps the namespaces alive, so that their
/// numbers are not given to new namespaces (of other tests, say) while the test looks
/// for what still refers to them.
fn hold_namespaces(pid: u32) -> Vec<(String, std::fs::File)> {
    let links = ["net", "mnt", "pid"].map(|k| PathBuf::from(format!("/proc/{pid}/ns/{k}")));
    let fds =
        std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.path());
    links
        .into_iter()
        .chain(fds)
        .filter(|path| {
            std::fs::read_link(path).is_ok_and(|t| {
                let t = t.to_string_lossy();
                t.starts_with("net:[") || t.starts_with("mnt:[") || t.starts_with("pid:[")
            })
        })
        .filter_map(|path| {
            let file = std::fs::File::open(&path).ok()?;
            // What was opened, not what the path showed a moment before.
            let name = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
            Some((name.to_string_lossy().into_owned(), file))
        })
        .collect()
}

/// Every process but this one that is in, or holds a descriptor of, one of
/// `namespaces`.
fn holders(namespaces: &BTreeSet<String>) -> Vec<Proc> {
    let mut held = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if pid == std::process::id() {
            continue;
        }
        let mut refs = ns_fds(pid);
        refs.extend(["net", "mnt", "pid"].iter().filter_map(|k| ns_of(pid, k)));
        if !refs.is_disjoint(namespaces) && !crate::kernel::zombie(pid) {
            held.extend(read_proc(pid));
        }
    }
    held
}

/// Where the machine mounts cgroup2, if it does.
fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let target = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next() == Some("cgroup2")).then(|| PathBuf::from(target))
    })
}

/// The cgroups a dockerd run of process `pid` made, with whether processes run in
/// them.
fn run_cgroups(root: &Path, pid: u32) -> Vec<(String, bool)> {
    let prefix = format!("netconform-dockerd.{pid}.");
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .map(|n| {
            let events = std::fs::read_to_string(root.join(&n).join("cgroup.events")).unwrap_or_default();
            let populated = events.lines().any(|l| l.trim() == "populated 1");
            (n, populated)
        })
        .collect()
}

/// The machine's mount table, without what other tests mount and unmount meanwhile
/// (their labs never mount in this namespace; only the mount points are compared).
fn mounts() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(format!("{} {}", f.get(4)?, l.split_once(" - ")?.1.split_whitespace().next()?))
        })
        .collect()
}

/// State Docker or containerd would leave on the machine if they escaped the sandbox.
fn machine_state() -> Vec<String> {
    let mut found = Vec::new();
    for p in ["/etc/docker/key.json", "/opt/containerd", "/var/lib/docker", "/var/lib/containerd", "/run/docker"] {
        if Path::new(p).exists() {
            found.push(p.to_string());
        }
    }
    for entry in std::fs::read_dir("/run").into_iter().flatten().filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("docker") || name == "containerd" || name == "netconform" {
            found.push(format!("/run/{name}"));
        }
    }
    found
}

fn sigkill_leaves_nothing() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let scenario = dir.path().join("slow.yaml");
    std::fs::write(&scenario, SCENARIO)?;
    let own: BTreeSet<String> = ["net", "mnt", "pid"].iter().filter_map(|k| ns_of(std::process::id(), k)).collect();
    let mounts_before = mounts();
    let state_before = machine_state();
    let cgroups = cgroup2_root();
    let mut killed = Vec::new();

    for (i, point) in POINTS.iter().enumerate() {
        let backend = if i % 2 == 0 { "iptables-nft" } else { "iptables-legacy" };
        let mut child = netconform()
            .args(["run", "--backend", backend])
            .arg(&scenario)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        let mut seen_ns = BTreeSet::new();
        let mut held = std::collections::HashMap::new();
        let mut seen_procs: Vec<Proc> = Vec::new();
        let mut fired: Option<Instant> = None;
        let start = Instant::now();
        loop {
            let procs = descendants(pid);
            for p in &procs {
                for (name, file) in hold_namespaces(p.pid) {
                    seen_ns.insert(name.clone());
                    held.entry(name).or_insert(file);
                }
            }
            if fired.is_none() && procs.iter().any(point.trigger) {
                fired = Some(Instant::now());
            }
            seen_procs.extend(procs);
            if fired.is_some_and(|t| t.elapsed() >= point.then) {
                break;
            }
            if child.try_wait()?.is_some() || start.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(
                    format!("{}: the run ended before the point was seen; the test did not test", point.name).into()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)?;
        child.wait()?;
        killed.push(pid);
        for ns in &own {
            seen_ns.remove(ns);
        }
        if !seen_ns.iter().any(|n| n.starts_with("pid:[")) {
            return Err(format!("{}: no PID namespace of the run was seen; the test did not test", point.name).into());
        }

        // The kernel kills a PID namespace's processes when its first one dies; give it
        // a moment for the rest.
        let mut left = holders(&seen_ns);
        for _ in 0..150 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            left = holders(&seen_ns);
        }
        if !left.is_empty() {
            let shown: Vec<String> = left.iter().map(|p| format!("{} {} ({})", p.pid, p.comm, p.cmdline)).collect();
            return Err(format!(
                "after SIGKILL at {}, processes are still in or holding the run's namespaces:\n  {}",
                point.name,
                shown.join("\n  ")
            )
            .into());
        }
        let docker_seen: BTreeSet<&str> =
            seen_procs.iter().filter(|p| DOCKER_PROGRAMS.contains(&p.comm.as_str())).map(|p| p.comm.as_str()).collect();
        for p in &seen_procs {
            if let Some(now) = read_proc(p.pid) {
                if now.comm == p.comm && now.cmdline == p.cmdline && DOCKER_PROGRAMS.contains(&p.comm.as_str()) {
                    return Err(
                        format!("after SIGKILL at {}, {} ({}) still runs", point.name, p.comm, p.cmdline).into()
                    );
                }
            }
        }
        if let Some(root) = &cgroups {
            let busy: Vec<String> = run_cgroups(root, pid).into_iter().filter(|(_, p)| *p).map(|(n, _)| n).collect();
            if !busy.is_empty() {
                return Err(format!("after SIGKILL at {}, processes still run in cgroups {busy:?}", point.name).into());
            }
        }
        let mounts_now = mounts();
        if mounts_now != mounts_before {
            let new: Vec<&String> = mounts_now.difference(&mounts_before).collect();
            return Err(format!("after SIGKILL at {}, the machine's mounts changed: {new:?}", point.name).into());
        }
        let state = machine_state();
        if state != state_before {
            return Err(format!("after SIGKILL at {}, Docker state on the machine: {state:?}", point.name).into());
        }
        drop(held);
        eprintln!("  SIGKILL at {} ({backend}): nothing left; programs seen: {docker_seen:?}", point.name);
    }

    // The next run passes, and removes the empty cgroups the killed runs had to leave.
    let again = netconform().args(["run", "--backend", "iptables-nft"]).arg(&scenario).output()?;
    if !again.status.success() {
        return Err(format!("the run after the kills failed:\n{}", String::from_utf8_lossy(&again.stdout)).into());
    }
    if let Some(root) = &cgroups {
        let left: Vec<String> = killed.iter().flat_map(|&pid| run_cgroups(root, pid)).map(|(n, _)| n).collect();
        if !left.is_empty() {
            return Err(format!("the next dockerd run did not remove the killed runs' cgroups: {left:?}").into());
        }
    }
    Ok(())
}

/// A Docker host for `init --docker`: the default bridge, a user network with
/// published ports, and an internal network.
const HOST_SCENARIO: &str = "\
description: a Docker host for init --docker to read
host:
  uplinks:
    eno1: { address: 192.0.2.1/24 }
nodes:
  lan:
    interfaces:
      - { uplink: eno1, address: 192.0.2.2/24, gateway: 192.0.2.1 }
networks:
  bridge: { bridge: docker0, subnet: 172.18.0.0/16, gateway: 172.18.0.1 }
  front: { bridge: br-front, subnet: 10.99.0.0/24, gateway: 10.99.0.1 }
  back: { bridge: br-back, subnet: 10.98.0.0/24, gateway: 10.98.0.1, internal: true }
containers:
  c0: { network: bridge, address: 172.18.0.2 }
  web: { network: front, address: 10.99.0.2, publish: [\"8080:80\", \"5353:53/udp\"] }
  db: { network: back, address: 10.98.0.2 }
rules:
  backends: [iptables-nft, iptables-legacy]
  live: { program: dockerd }
";

fn init_docker() -> Result<(), Failed> {
    use harness::scenario::Backend;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("host.yaml");
    std::fs::write(&path, HOST_SCENARIO)?;
    let scn = harness::scenario::load(&path, "host.yaml")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    for (backend, save) in
        [(Backend::IptablesNft, "iptables-nft-save"), (Backend::IptablesLegacy, "iptables-legacy-save")]
    {
        let out = dir.path().join(backend.name()).join("docker-host.yaml");
        let written = rt.block_on(async {
            let mut lab = harness::lab::Lab::build(&scn).await.map_err(|e| e.to_string())?;
            let mut producer = harness::producer::for_scenario(&scn);
            let mut log = harness::producer::Log::default();
            let produced = producer.produce(&scn, &mut lab, backend, &mut log).await;
            let result = match produced {
                Ok(()) => read_host(&log, &lab, save, &out, dir.path()),
                Err(e) => Err(format!("the private dockerd did not come up: {e}\n{log}")),
            };
            let problems = producer.teardown(&mut log).await;
            drop(producer);
            drop(lab);
            if !problems.is_empty() {
                return Err(format!("tearing the private dockerd down: {problems:?}"));
            }
            result
        })?;
        let text = std::fs::read_to_string(&out)?;
        let rules = std::fs::read_to_string(out.with_file_name("rules").join("docker-host.rules"))?;
        for needle in [
            "    docker0: { address: 172.18.0.1/16 }",
            "    br-front: { address: 10.99.0.1/24 }",
            "    eno1: { address: 192.0.2.1/24 }",
            "      - { uplink: eno1, address: 192.0.2.2/24, gateway: 192.0.2.1 }",
            "      - { bridge: br-back, address: 10.98.0.2/24, gateway: 10.98.0.1 }",
            &format!("  backends: [{}]", backend.name()),
        ] {
            if !text.contains(needle) {
                return Err(format!("[{backend}] the scenario lacks {needle:?}:\n{text}").into());
            }
        }
        if !rules.contains("-j DNAT --to-destination 10.99.0.2:80") || !rules.contains("DOCKER-ISOLATION-STAGE-2") {
            return Err(format!("[{backend}] the rules lack Docker's:\n{rules}").into());
        }
        let check = netconform().arg("check").arg(&out).output()?;
        if !check.status.success() {
            return Err(format!("[{backend}] check failed:\n{}", String::from_utf8_lossy(&check.stderr)).into());
        }
        let run = netconform().arg("run").arg(&out).output()?;
        let stdout = String::from_utf8_lossy(&run.stdout);
        if !run.status.success() || !stdout.contains("1 passed, 0 failed") {
            return Err(format!("[{backend}] the written scenario did not pass:\n{written}\n{stdout}\n{text}").into());
        }
        eprintln!("  [{backend}] {written}");
    }
    Ok(())
}

/// Runs `netconform init --docker` against the private dockerd whose log is `log`,
/// reading the lab host's rules with `save`.
fn read_host(
    log: &harness::producer::Log,
    lab: &harness::lab::Lab,
    save: &str,
    out: &Path,
    config: &Path,
) -> Result<String, String> {
    let socket = log
        .entries
        .iter()
        .find_map(|e| e.split("its socket is ").nth(1))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| format!("no socket in the producer's log:\n{log}"))?;
    std::fs::create_dir_all(out.parent().expect("a folder")).map_err(|e| e.to_string())?;
    let host = format!("/proc/{}/fd/{}", std::process::id(), lab.host().raw_fd());
    let run = netconform()
        .args(["init", "--docker", "--iptables-save", save, "--netns", &host, "--output"])
        .arg(out)
        .env("DOCKER_HOST", &socket)
        .env("DOCKER_CONFIG", config)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    if !run.status.success() {
        return Err(format!("init failed: {}{stdout}", String::from_utf8_lossy(&run.stderr)));
    }
    Ok(stdout.lines().next().unwrap_or_default().to_string())
}
