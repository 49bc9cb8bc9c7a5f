//! Tests of the whole program on the real kernel: a broken rule set fails with a
//! message that names the probe; a run leaves the root namespace as it found it; a
//! run killed with SIGKILL leaves no namespace, interface or process behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed, Trial};

pub fn netconform() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netconform"));
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    cmd
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The programs the kernel tests run or read the machine with.
const TOOLS: [&str; 9] = [
    "iptables-nft-restore",
    "iptables-legacy-restore",
    "iptables-nft-save",
    "iptables-legacy-save",
    "ip6tables-save",
    "nft",
    "ip",
    "ipset",
    "xmllint",
];

/// Why a kernel test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to build namespaces".into());
    }
    if harness::producer::in_user_namespace() {
        return Some("needs real root: compares and watches the machine's own namespaces and processes".into());
    }
    TOOLS
        .iter()
        .find(|t| harness::lab::sandbox::which(t).is_none())
        .map(|t| format!("{t} is not installed; run ci/install-deps"))
}

fn kernel_trial(name: &str, f: fn() -> Result<(), Failed>) -> Trial {
    trial_unless(name, unavailable, f)
}

/// A kernel trial, reported ignored with the reason `unavailable` gives, if any.
/// The reason is decided while the trials are listed, so that a runner that lists
/// before it runs (nextest) shows the trial as skipped; it is checked again when the
/// trial runs, for `--include-ignored`.
pub fn trial_unless(name: &str, unavailable: fn() -> Option<String>, f: fn() -> Result<(), Failed>) -> Trial {
    let name = format!("kernel::{name}");
    let ignored = unavailable();
    if let Some(why) = &ignored {
        crate::note_ignored(&name, why);
    }
    Trial::ignorable_test(name, move || match unavailable() {
        Some(why) => Ok(Completion::ignored_with(why)),
        None => f().map(|()| Completion::Completed),
    })
    .with_kind("kernel")
    .with_ignored_flag(ignored.is_some())
}

pub fn trials() -> Vec<Trial> {
    vec![
        kernel_trial("broken_isolation_rules_fail_and_name_the_probe", broken_isolation),
        kernel_trial("root_namespace_unchanged_by_runs", root_namespace_unchanged),
        kernel_trial("sigkill_leaves_nothing_behind", sigkill_leaves_nothing),
        kernel_trial("rootless_run_in_a_user_namespace", rootless),
        kernel_trial("concurrent_runs_agree_with_a_serial_run", concurrent_runs_agree),
        kernel_trial("no_flakes_over_50_repeats", no_flakes_over_50_repeats),
        kernel_trial("lab_namespaces_have_ipv6_off_and_scenario_sysctls", lab_sysctls),
        kernel_trial("rejected_rule_file_fails_with_the_tools_message", rejected_rules),
        kernel_trial("repeat_counts_every_failing_run", repeat_counts_failures),
        kernel_trial("quiet_run_recaps_failures_and_reports_a_bad_file_among_good_ones", quiet_recap_bad_file),
        kernel_trial("mutate_scores_the_seed_rules", mutation_score),
        kernel_trial("a_failing_scenario_explains_itself", failing_fixture_explains_itself),
        kernel_trial("a_file_that_did_not_load_is_a_junit_error", junit_names_a_file_that_did_not_load),
        kernel_trial("capture_writes_a_static_fixture_that_replays", capture_replays),
        kernel_trial("diff_lists_the_probes_two_rule_sets_disagree_on", diff_rule_sets),
        Trial::test("cli::bad_input_exits_2_with_position", bad_input).with_kind("cli"),
    ]
}

/// `--repeat` counts the failures of every repeat in its summary and exit status,
/// not only the last repeat's.
fn repeat_counts_failures() -> Result<(), Failed> {
    let dir = broken_isolation_copy()?;
    let out = netconform().args(["run", "--repeat", "3"]).arg(dir.path().join("isolation.yaml")).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed_lines = stdout.lines().filter(|l| l.trim_start().starts_with("FAILED isolation.yaml")).count();
    if out.status.code() != Some(1) || !stdout.contains("0 passed, 6 failed, 0 ignored") || failed_lines != 6 {
        return Err(format!(
            "expected exit 1, '0 passed, 6 failed' and 6 FAILED lines, got {:?} and {failed_lines}:\n{stdout}",
            out.status.code()
        )
        .into());
    }
    Ok(())
}

/// A file that does not load is an error run while the others run, and exit status 2
/// wins; `--quiet` leaves out the passing runs; the recap lists every failure and error.
fn quiet_recap_bad_file() -> Result<(), Failed> {
    let dir = broken_isolation_copy()?;
    std::fs::copy(repo().join("scenarios/seed/same-bridge.yaml"), dir.path().join("same-bridge.yaml"))?;
    std::fs::write(dir.path().join("bad.yaml"), "name: bad\nnodes: [\n")?;
    let loud = netconform().arg("run").arg(dir.path()).output()?;
    let quiet = netconform().args(["run", "--quiet"]).arg(dir.path()).output()?;
    let (loud_out, quiet_out) = (String::from_utf8_lossy(&loud.stdout), String::from_utf8_lossy(&quiet.stdout));
    for (out, text) in [(&loud, &loud_out), (&quiet, &quiet_out)] {
        if out.status.code() != Some(2) {
            return Err(format!("expected exit status 2, got {:?}\n{text}", out.status.code()).into());
        }
        for needle in [
            "failures and errors (3):",
            "isolation.yaml [iptables-nft]: probe ",
            "isolation.yaml [iptables-legacy]: probe ",
            "bad.yaml:3:1: did not find expected node content",
            ", 1 scenario file did not load in ",
        ] {
            if !text.contains(needle) {
                return Err(format!("report lacks {needle:?}:\n{text}").into());
            }
        }
    }
    if !loud_out.contains("same-bridge.yaml [iptables-nft] (") {
        return Err(format!("the passing run is missing without --quiet:\n{loud_out}").into());
    }
    if quiet_out.contains("PASS ") || !quiet_out.contains("isolation.yaml [iptables-nft] (7 probes") {
        return Err(format!("--quiet should print the failing runs only:\n{quiet_out}").into());
    }
    Ok(())
}

/// A copy of the seed isolation scenario whose rules lack the
/// DOCKER-ISOLATION-STAGE-2 DROP for docker0.
fn broken_isolation_copy() -> Result<tempfile::TempDir, Failed> {
    let dir = tempfile::tempdir()?;
    let seed = repo().join("scenarios/seed");
    std::fs::create_dir(dir.path().join("rules"))?;
    std::fs::copy(seed.join("isolation.yaml"), dir.path().join("isolation.yaml"))?;
    for entry in std::fs::read_dir(seed.join("rules"))? {
        let entry = entry?;
        let text = std::fs::read_to_string(entry.path())?;
        let kept: Vec<&str> =
            text.lines().filter(|l| l.trim() != "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP").collect();
        std::fs::write(dir.path().join("rules").join(entry.file_name()), kept.join("\n") + "\n")?;
    }
    Ok(dir)
}

fn broken_isolation() -> Result<(), Failed> {
    let dir = broken_isolation_copy()?;
    let out = netconform().arg("run").arg(dir.path().join("isolation.yaml")).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(1) {
        return Err(format!("expected exit status 1, got {:?}\n{stdout}", out.status.code()).into());
    }
    for backend in ["iptables-nft", "iptables-legacy"] {
        if !stdout.contains(&format!("FAIL  isolation.yaml [{backend}]")) {
            return Err(format!("no failure reported under {backend}:\n{stdout}").into());
        }
    }
    for needle in [
        "FAIL n2 -> c1:53/udp: expected dropped, got dropped on the way back (the request reached c1;",
        "isolation.yaml:40:5",
        "expected dropped: no answer came back, but the request reached c1",
        "FAIL n2 -> c1:80/tcp: expected dropped, got dropped on the way back (the request reached c1;",
        "no rule `-o docker0 -j DROP` in filter DOCKER-ISOLATION-STAGE-2",
    ] {
        if !stdout.contains(needle) {
            return Err(format!("report lacks {needle:?}:\n{stdout}").into());
        }
    }
    Ok(())
}

/// What a read-only command prints; any failure is the test's failure.
fn read_machine(cmd: &str, args: &[&str]) -> Result<String, Failed> {
    let out = Command::new(cmd).args(args).stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        return Err(format!("{cmd} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lines of `before` missing from `after` (-) and lines new in `after` (+).
fn line_diff(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let gone = a.iter().filter(|l| !b.contains(l)).map(|l| format!("- {l}"));
    let new = b.iter().filter(|l| !a.contains(l)).map(|l| format!("+ {l}"));
    gone.chain(new).collect::<Vec<_>>().join("\n")
}

/// What a run must never change in the root namespace. Counters move with the
/// machine's own traffic, so they are left out.
fn root_snapshot() -> Result<String, Failed> {
    let mut snap = String::new();
    for (cmd, args) in [
        ("ip", &["-o", "link", "show"][..]),
        ("ip", &["-o", "addr", "show"]),
        ("ip", &["route", "show", "table", "all"]),
        ("ip", &["rule", "show"]),
        ("iptables-nft-save", &[]),
        ("iptables-legacy-save", &[]),
        ("ip6tables-save", &[]),
        ("nft", &["list", "ruleset"]),
    ] {
        snap += &format!("== {cmd} {}\n{}\n", args.join(" "), strip_counters(&read_machine(cmd, args)?));
    }
    for key in [
        "net/ipv4/ip_forward",
        "net/ipv4/ping_group_range",
        "net/ipv6/conf/all/disable_ipv6",
        "net/bridge/bridge-nf-call-iptables",
    ] {
        let value = std::fs::read_to_string(Path::new("/proc/sys").join(key)).unwrap_or_else(|e| e.to_string());
        snap += &format!("== {key} = {}\n", value.trim());
    }
    let netns: BTreeSet<String> = std::fs::read_dir("/run/netns")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    snap += &format!("== /run/netns {netns:?}\n");
    snap += &format!("== /run/xtables.lock exists: {}\n", Path::new("/run/xtables.lock").exists());
    Ok(snap)
}

/// Drops comment lines and `[packets:bytes]` / `counter packets N bytes M`.
fn strip_counters(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut out = String::new();
            let mut words = l.split(' ').peekable();
            while let Some(w) = words.next() {
                if w.starts_with('[') && w.ends_with(']') && w.contains(':') {
                    continue;
                }
                if w == "packets" || w == "bytes" {
                    words.next();
                    continue;
                }
                out.push_str(w);
                out.push(' ');
            }
            out.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn root_namespace_unchanged() -> Result<(), Failed> {
    let before = root_snapshot()?;
    // The whole suite, live producers included. Its verdicts are the scenario trials'
    // business; here it must only have run (exit 0 or 1, not 2).
    let suite = netconform().arg("run").arg("scenarios").output()?;
    let stdout = String::from_utf8_lossy(&suite.stdout);
    if !matches!(suite.status.code(), Some(0 | 1)) || !stdout.contains(" passed, ") {
        return Err(format!("the suite did not run ({:?}):\n{stdout}", suite.status.code()).into());
    }
    let broken = broken_isolation_copy()?;
    let failing = netconform().arg("run").arg(broken.path()).output()?;
    if failing.status.code() != Some(1) {
        return Err("the broken copy did not fail".into());
    }
    // And runs killed part way, one of them while its live producer runs.
    let own = std::fs::read_link("/proc/self/ns/net")?.to_string_lossy().into_owned();
    kill_and_check(&repo().join("runner/tests/data/slow/slow.yaml"), 300, &own)?;
    kill_and_check(&repo().join("runner/tests/data/slow-live/slow-live.yaml"), 300, &own)?;
    let after = root_snapshot()?;
    if before != after {
        return Err(format!("the root namespace changed:\n{}", line_diff(&before, &after)).into());
    }
    Ok(())
}

/// Inodes of the network namespaces `pid` refers to, by descriptor or by thread.
fn netns_of(pid: u32) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let links = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .chain(std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten())
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.parent().is_some_and(|d| d.ends_with("task")) {
                p.join("ns/net")
            } else {
                p
            }
        });
    for link in links {
        if let Ok(target) = std::fs::read_link(&link) {
            let t = target.to_string_lossy();
            if t.starts_with("net:[") {
                found.insert(t.into_owned());
            }
        }
    }
    found
}

/// Every process (pid, name) that refers to one of `inodes`.
fn holders(inodes: &BTreeSet<String>) -> Vec<(u32, String)> {
    let mut held = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if !netns_of(pid).is_disjoint(inodes) && !zombie(pid) {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            held.push((pid, name.trim().to_string()));
        }
    }
    held
}

/// Whether `pid` has exited and only waits to be reaped: it holds no namespace any
/// more, and reaping it is the business of the machine's init, which an orphan of a
/// killed run is handed to.
pub fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Kill points for a chaos run: each fixed point moved by up to `jitter` ms, from a
/// seed printed with any failure so it can be replayed.
fn kill_points(fixed: &[u64], jitter: u64, seed: u64) -> Vec<u64> {
    let mut state = seed | 1;
    fixed
        .iter()
        .map(|&ms| {
            // xorshift64: enough to spread the points, no crate needed.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ms + state % (jitter + 1)
        })
        .collect()
}

/// Starts `netconform run SCENARIO`, kills it with SIGKILL after `delay_ms`, and checks
/// that no process holds any namespace it had made. Returns how many lab namespaces
/// were seen.
fn kill_and_check(scenario: &Path, delay_ms: u64, own: &str) -> Result<usize, String> {
    let mut child = netconform().arg("run").arg(scenario).stdout(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    let pid = child.id();
    let mut seen = BTreeSet::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(delay_ms) {
        seen.extend(netns_of(pid));
        // The sandbox of a live producer: its processes hold the lab host too.
        for child_pid in children(pid) {
            seen.extend(netns_of(child_pid));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    seen.extend(netns_of(pid));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    seen.remove(own);
    // Everything that held a lab namespace was ours or a descendant; the kernel ends
    // them with us, which can take a moment.
    let mut left = holders(&seen);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        left = holders(&seen);
    }
    if !left.is_empty() {
        return Err(format!("after SIGKILL at {delay_ms} ms, processes still hold lab namespaces: {left:?}"));
    }
    Ok(seen.len())
}

/// Direct children of `pid`, from every thread.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| text.split_whitespace().filter_map(|c| c.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

fn sigkill_leaves_nothing() -> Result<(), Failed> {
    let own = std::fs::read_link("/proc/self/ns/net")?.to_string_lossy().into_owned();
    let links_before = read_machine("ip", &["-o", "link", "show"])?;
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")?;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    // Lab build, rule load and probes (slow.yaml waits 2 s on its probes, then tears
    // down); a live producer running (slow-live.yaml's script takes 0.6 s and leaves a
    // child behind).
    let slow = repo().join("runner/tests/data/slow/slow.yaml");
    let live = repo().join("runner/tests/data/slow-live/slow-live.yaml");
    let plan: Vec<(&Path, u64)> =
        kill_points(&[2, 10, 25, 45, 70, 100, 140, 200, 300, 500, 800, 1200, 1700, 2050], 40, seed)
            .into_iter()
            .map(|ms| (slow.as_path(), ms))
            .chain(
                kill_points(&[10, 60, 150, 300, 450, 700], 40, seed ^ 0x9e37)
                    .into_iter()
                    .map(|ms| (live.as_path(), ms)),
            )
            .collect();
    let mut saw_labs = 0;
    for (scenario, ms) in &plan {
        let seen = kill_and_check(scenario, *ms, &own).map_err(|e| format!("{e} (seed {seed})"))?;
        if seen > 0 {
            saw_labs += 1;
        }
    }
    if saw_labs < plan.len() / 2 {
        return Err(format!(
            "only {saw_labs} of {} kills caught a lab; the test did not test (seed {seed})",
            plan.len()
        )
        .into());
    }
    let links_after = read_machine("ip", &["-o", "link", "show"])?;
    if links_before != links_after {
        return Err(format!("root namespace links changed:\n{}", line_diff(&links_before, &links_after)).into());
    }
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")?;
    if mounts_before != mounts_after {
        return Err(format!("mounts changed:\n{}", line_diff(&mounts_before, &mounts_after)).into());
    }
    // And the next runs pass.
    for scenario in [&slow, &live] {
        let again = netconform().arg("run").arg(scenario).output()?;
        if !again.status.success() {
            return Err(format!("the run after the kills failed:\n{}", String::from_utf8_lossy(&again.stdout)).into());
        }
    }
    Ok(())
}

/// The seed scenarios, and a small nft one, as an unprivileged user: netconform
/// re-runs itself in a user namespace.
fn rootless() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let copy = Command::new("cp").arg("-r").arg(repo().join("scenarios/seed")).arg(root.join("seed")).status()?;
    let bin = root.join("netconform");
    std::fs::copy(env!("CARGO_BIN_EXE_netconform"), &bin)?;
    std::fs::create_dir(root.join("nft"))?;
    std::fs::write(
        root.join("nft/drop.nft"),
        "table inet f {\n chain fw {\n  type filter hook forward priority 0; policy accept;\n  tcp dport 81 counter drop\n }\n}\n",
    )?;
    std::fs::write(
        root.join("nft/drop.yaml"),
        "host: { forwarding: true, bridges: { br0: { address: 10.0.0.1/24 } } }\n\
         nodes:\n  a: { interfaces: [{ bridge: br0, address: 10.0.0.2/24, gateway: 10.0.0.1 }], services: { tcp: [80, 81] } }\n\
         \x20 b: { interfaces: [{ bridge: br0, address: 10.0.0.3/24, gateway: 10.0.0.1 }] }\n\
         rules: { backends: [nft], files: [drop.nft] }\n\
         probes:\n  - { from: b, to: a, port: 80, expect: reached }\n  - { from: b, to: a, port: 81, expect: dropped }\n\
         counters:\n  - { family: inet, table: f, chain: fw, position: 1, packets: 1 }\n",
    )?;
    if !copy.success() {
        return Err("copying the seed scenarios failed".into());
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["run", "seed", "nft"])
        .current_dir(root)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("11 passed, 0 failed") {
        return Err(format!(
            "the rootless run did not pass ({:?}):\n{stdout}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    // dockerd cannot run rootless, and ufw's configuration is not readable there:
    // both are ignored with the reason, and --fail-on-ignored turns that into a
    // failure unless the scenarios are named as allowed.
    for folder in ["live/dockerd", "live/ufw"] {
        let to = root.join(folder);
        std::fs::create_dir_all(to.parent().ok_or("no parent")?)?;
        Command::new("cp").arg("-r").arg(repo().join("scenarios").join(folder)).arg(&to).status()?;
    }
    let rootless_run = |extra: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args(["run", "--fail-on-ignored"])
            .args(extra)
            .args(["nft", "live/dockerd/published-port.yaml", "live/ufw/default-deny.yaml"])
            .current_dir(root)
            .output()
    };
    let out = rootless_run(&[])?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for needle in [
        "IGNORED published-port.yaml [iptables-nft]: dockerd needs real root",
        "IGNORED default-deny.yaml [iptables-nft]: /etc/ufw",
        "cannot be read here",
    ] {
        if out.status.code() != Some(1) || !stderr.contains(needle) {
            return Err(format!(
                "--fail-on-ignored, rootless: expected exit 1 and {needle:?} in stderr, got {:?}:\n{stdout}\n{stderr}",
                out.status.code()
            )
            .into());
        }
    }
    let out = rootless_run(&["--allow-ignored", "published-port.yaml", "--allow-ignored", "default-deny.yaml"])?;
    if !out.status.success() {
        return Err(failed("--allow-ignored did not allow the named scenarios", &out));
    }
    Ok(())
}

/// `what`, with the exit status and output of the run that showed it.
fn failed(what: &str, out: &std::process::Output) -> Failed {
    format!(
        "{what} ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .into()
}

/// Two netconform processes at once, each with parallel jobs, give the results of one
/// serial run.
fn concurrent_runs_agree() -> Result<(), Failed> {
    let outcomes = |stdout: &[u8]| -> Result<Vec<String>, Failed> {
        let doc: serde_json::Value = serde_json::from_slice(stdout)?;
        let mut runs: Vec<String> = doc["runs"]
            .as_array()
            .ok_or("no runs")?
            .iter()
            .map(|r| {
                let probes: Vec<&str> =
                    r["probes"].as_array().into_iter().flatten().filter_map(|p| p["outcome"].as_str()).collect();
                format!("{} {} {} {probes:?}", r["scenario"], r["backend"], r["status"])
            })
            .collect();
        runs.sort();
        Ok(runs)
    };
    let serial = netconform().args(["run", "--jobs", "1", "--format", "json", "scenarios/seed"]).output()?;
    let spawn = || {
        netconform().args(["run", "--jobs", "4", "--format", "json", "scenarios/seed"]).stdout(Stdio::piped()).spawn()
    };
    let (a, b) = (spawn()?, spawn()?);
    let (a, b) = (a.wait_with_output()?, b.wait_with_output()?);
    for (label, out) in [("serial", &serial), ("first parallel", &a), ("second parallel", &b)] {
        if !out.status.success() {
            return Err(failed(&format!("the {label} run failed"), out));
        }
    }
    let want = outcomes(&serial.stdout)?;
    for out in [&a, &b] {
        let got = outcomes(&out.stdout)?;
        if got != want {
            return Err(format!("parallel results differ from the serial run:\n{got:#?}\nvs\n{want:#?}").into());
        }
    }
    Ok(())
}

/// The seed suite fifty times over: every verdict the same each time.
fn no_flakes_over_50_repeats() -> Result<(), Failed> {
    let out = netconform().args(["run", "--repeat", "50", "scenarios/seed"]).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("0 flaky of 10 scenario runs, 500 runs in all over 50 repeats") {
        let tail: Vec<&str> = stdout.lines().rev().take(30).collect();
        return Err(format!(
            "flakes or failures over 50 repeats:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
        .into());
    }
    Ok(())
}

fn bad_input() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "host:\n  bridges:\n    br0: { address: 10.0.0.1/24 }\nnodes:\n  a:\n    interfaces:\n      - { bridge: br9, address: 10.0.0.2/24 }\nrules:\n  backends: [iptables-nft]\n  files: [missing.rules]\n",
    )?;
    for sub in ["run", "check"] {
        let out = netconform().arg(sub).arg(&path).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) {
            return Err(format!("{sub}: expected exit status 2, got {:?}: {stderr}", out.status.code()).into());
        }
        let at = format!("{}:7:", path.display());
        if !stderr.contains(&at) || !stderr.contains("br9") || !stderr.contains("missing.rules") {
            return Err(format!("{sub}: message lacks the position, the bridge or the file:\n{stderr}").into());
        }
    }
    Ok(())
}

fn lab_sysctls() -> Result<(), Failed> {
    use harness::lab::Lab;
    use harness::scenario::{self, NodeId};

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("r.rules"), "*filter\nCOMMIT\n")?;
    let path = dir.path().join("s.yaml");
    std::fs::write(
        &path,
        "host:\n  forwarding: true\n  sysctls: { net.ipv4.conf.all.route_localnet: 1 }\n  \
         bridges: { br0: { address: 10.0.0.1/24 } }\n\
         nodes:\n  a:\n    interfaces: [{ bridge: br0, address: 10.0.0.2/24 }]\n    \
         sysctls: { net.ipv4.conf.eth0.arp_ignore: 2 }\n\
         rules: { backends: [iptables-nft], files: [r.rules] }\n",
    )?;
    let scn = scenario::load(&path, "s.yaml")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let lab = rt.block_on(Lab::build(&scn))?;
    let (host, a) = (lab.host(), lab.ns(NodeId(1)));
    let gid = nix::unistd::getegid();
    let ping_group = format!("{gid}\t{gid}");
    let mut expected: Vec<(&harness::lab::netns::NetNs, &str, &str)> = Vec::new();
    for ns in [host, a] {
        expected.push((ns, "net.ipv6.conf.default.disable_ipv6", "1"));
        expected.push((ns, "net.ipv4.conf.all.rp_filter", "0"));
        expected.push((ns, "net.ipv4.icmp_ratemask", "0"));
        expected.push((ns, "net.ipv4.icmp_ratelimit", "0"));
        expected.push((ns, "net.ipv4.ping_group_range", &ping_group));
    }
    expected.extend([
        (host, "net.ipv6.conf.all.disable_ipv6", "1"),
        (host, "net.ipv6.conf.br0.disable_ipv6", "1"),
        (a, "net.ipv6.conf.eth0.disable_ipv6", "1"),
        // Unanswered ARP is repeated after 100 ms on every lab interface.
        (host, "net.ipv4.neigh.br0.retrans_time_ms", "100"),
        (a, "net.ipv4.neigh.eth0.retrans_time_ms", "100"),
        (host, "net.ipv4.ip_forward", "1"),
        (host, "net.ipv4.conf.all.route_localnet", "1"),
        (host, "net.bridge.bridge-nf-call-iptables", "1"),
        // Whatever the machine's own settings are, a node starts from the kernel's.
        (a, "net.ipv4.ip_forward", "0"),
        (a, "net.ipv4.conf.all.route_localnet", "0"),
        (a, "net.ipv4.conf.eth0.arp_ignore", "2"),
    ]);
    for (ns, key, want) in expected {
        let got = ns.read_sysctl(key)?;
        if got != want {
            return Err(format!("{key} is {got} in {}, expected {want}", ns.name()).into());
        }
    }
    // The test thread itself is back in its own namespace.
    if std::fs::read_link("/proc/self/ns/net")? != std::fs::read_link("/proc/thread-self/ns/net")? {
        return Err("the test thread was left in another namespace".into());
    }
    Ok(())
}

fn mutation_score() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let md = dir.path().join("m.md");
    let out = netconform()
        .args(["mutate", "--rules", "scenarios/seed/rules/docker-18.05-seed.rules", "--timeout", "100ms", "--markdown"])
        .arg(&md)
        .arg("scenarios/seed")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(0) || !stdout.starts_with("mutation score of") || !stdout.contains("survivors (") {
        return Err(format!("unexpected mutate result {:?}:\n{stdout}", out.status.code()).into());
    }
    if !std::fs::read_to_string(&md)?.contains("| line | surviving mutation |") {
        return Err("the Markdown report lacks the survivors table".into());
    }
    // A rule file that no scenario loads is an input error.
    let unused = dir.path().join("unused.rules");
    std::fs::write(&unused, "*filter\nCOMMIT\n")?;
    let none = netconform().args(["mutate", "--rules"]).arg(&unused).arg("scenarios/seed").output()?;
    if none.status.code() != Some(2) {
        return Err(format!("expected exit status 2 for an unused rule file, got {:?}", none.status.code()).into());
    }
    Ok(())
}

fn rejected_rules() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("bad.rules"),
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j NO-SUCH-CHAIN\nCOMMIT\n",
    )?;
    std::fs::write(
        dir.path().join("s.yaml"),
        "host:\n  bridges: { br0: { address: 10.0.0.1/24 } }\n\
         nodes:\n  a: { interfaces: [{ bridge: br0, address: 10.0.0.2/24 }] }\n\
         rules: { backends: [iptables-nft, iptables-legacy], files: [bad.rules] }\n\
         probes:\n  - { from: a, to: host, proto: icmp, expect: reached }\n",
    )?;
    let out = netconform().arg("run").arg(dir.path().join("s.yaml")).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(1) {
        return Err(format!("expected exit status 1, got {:?}:\n{stdout}", out.status.code()).into());
    }
    for needle in [
        "ERROR s.yaml [iptables-nft]",
        "ERROR s.yaml [iptables-legacy]",
        "bad.rules",
        "NO-SUCH-CHAIN",
        "Error occurred at line",
    ] {
        if !stdout.contains(needle) {
            return Err(format!("report lacks {needle:?}:\n{stdout}").into());
        }
    }
    Ok(())
}

/// The fixture under runner/tests/data/failing fails on purpose: the report names the
/// deciding rule, the connectivity table marks the cell, the evidence folder holds
/// everything, and the JUnit report validates against the schema CI systems read.
fn failing_fixture_explains_itself() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let (junit, evidence) = (dir.path().join("junit.xml"), dir.path().join("evidence"));
    let out = netconform()
        .args(["run", "--matrix", "runner/tests/data/failing", "--junit"])
        .arg(&junit)
        .arg("--evidence")
        .arg(&evidence)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(1) {
        return Err(format!("expected exit status 1, got {:?}:\n{stdout}", out.status.code()).into());
    }
    for needle in [
        "FAIL a -> b:81/tcp: expected reached, got dropped",
        "decided by filter FORWARD rule 1 `-A FORWARD -p tcp -m tcp --dport 81 -m comment --comment \"no web on 81\" -j DROP`: DROP",
        "filter FORWARD #1: -p tcp -m tcp --dport 81",
        "ok>drop*",
        "IGNORED failing/skipped.yaml",
    ] {
        if !stdout.contains(needle) {
            return Err(format!("the report lacks {needle:?}:\n{stdout}").into());
        }
    }
    let folder = evidence.join("failing_wrong-expectation.yaml__iptables-nft");
    for (file, needle) in [
        ("scenario.yaml", "expect: reached"),
        ("rules/01-no-81.rules", "--dport 81"),
        ("rules-before.txt", "[0:0] -A FORWARD"),
        ("rules-after.txt", "[1:60] -A FORWARD"),
        ("trace.txt", "DROP"),
        ("probes.txt", "path:"),
        ("lab.txt", "node b"),
        ("report.txt", "decided by"),
    ] {
        let text = std::fs::read_to_string(folder.join(file)).map_err(|e| format!("{file}: {e}"))?;
        if !text.contains(needle) {
            return Err(format!("evidence {file} lacks {needle:?}:\n{text}").into());
        }
    }
    validate_junit(&junit)?;
    let xml = std::fs::read_to_string(&junit)?;
    if !xml.contains("<failure") || !xml.contains("<skipped") {
        return Err(format!("the JUnit report lacks a failure or a skipped case:\n{xml}").into());
    }
    // The validation can fail: a test case without a name is refused.
    let broken = dir.path().join("broken.xml");
    std::fs::write(&broken, xml.replacen("<testcase name=", "<testcase label=", 1))?;
    if validate_junit(&broken).is_ok() {
        return Err("xmllint accepted a test case without a name: the check checks nothing".into());
    }
    Ok(())
}

/// Whether the JUnit file validates against the schema CI systems read.
fn validate_junit(path: &Path) -> Result<(), Failed> {
    let schema = repo().join("ci/junit.xsd");
    let valid = Command::new("xmllint").arg("--noout").arg("--schema").arg(&schema).arg(path).output()?;
    if !valid.status.success() {
        return Err(format!("the JUnit report does not validate:\n{}", String::from_utf8_lossy(&valid.stderr)).into());
    }
    Ok(())
}

/// A scenario file that did not load, beside one that runs: the JUnit report holds the
/// run and one error case named by the bad file's path, and still validates.
fn junit_names_a_file_that_did_not_load() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let junit = dir.path().join("junit.xml");
    let case = "runner/tests/data/bad-input/file-one-bad-file-beside-good-ones";
    let out = netconform().args(["run", case, "--junit"]).arg(&junit).output()?;
    if out.status.code() != Some(2) {
        return Err(format!("expected exit status 2, got {:?}", out.status.code()).into());
    }
    validate_junit(&junit)?;
    let xml = std::fs::read_to_string(&junit)?;
    for needle in [
        "<testcase name=\"file-one-bad-file-beside-good-ones/more/good.yaml [iptables-nft]\"",
        &format!("<testcase name=\"{case}/case.yaml\" classname=\"invalid\">"),
        "type=\"invalid\"",
        "probes[0].to: expected a node name",
    ] {
        if !xml.contains(needle) {
            return Err(format!("the JUnit report lacks {needle:?}:\n{xml}").into());
        }
    }
    Ok(())
}

/// `capture` keeps what a live producer wrote; the static scenario it writes passes.
fn capture_replays() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    for backend in ["iptables-nft", "iptables-legacy"] {
        capture_and_replay(dir.path(), "web-only", backend)?;
        let rules = std::fs::read_to_string(dir.path().join(format!("rules/web-only-{backend}.rules")))?;
        if !rules.contains("-A FORWARD -d 10.1.0.2/32 -p tcp -m tcp --dport 80 -j ACCEPT")
            || rules.contains("# Generated by")
        {
            return Err(format!("the captured rules are not the producer's:\n{rules}").into());
        }
        // Both families: the IPv6 rules in a file of their own, named in `files6`.
        capture_and_replay(dir.path(), "web-only-dual-stack", backend)?;
        let rules6 =
            std::fs::read_to_string(dir.path().join(format!("rules/web-only-dual-stack-{backend}-ip6.rules")))?;
        let scenario = std::fs::read_to_string(dir.path().join(format!("web-only-dual-stack-{backend}.yaml")))?;
        if !rules6.contains("-A FORWARD -p tcp -m tcp --dport 80 -m comment --comment web -j ACCEPT")
            || !scenario.contains("files6:")
        {
            return Err(format!("the IPv6 rules were not kept:\n{rules6}\n{scenario}").into());
        }
    }
    Ok(())
}

/// `capture` of scenarios/live/command/NAME.yaml under `backend` into `dir`, then a
/// run of the scenario it wrote, which must pass.
fn capture_and_replay(dir: &Path, name: &str, backend: &str) -> Result<(), Failed> {
    let scenario = format!("scenarios/live/command/{name}.yaml");
    let out = netconform().args(["capture", &scenario, "--backend", backend, "-o"]).arg(dir).output()?;
    if !out.status.success() {
        return Err(format!("capture failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let replay = netconform().arg("run").arg(dir.join(format!("{name}-{backend}.yaml"))).output()?;
    if !replay.status.success() {
        return Err(format!("the captured scenario fails:\n{}", String::from_utf8_lossy(&replay.stdout)).into());
    }
    Ok(())
}

/// `diff` runs one scenario's probes against two rule files: green when they behave
/// the same, whatever their text; the differing probes listed otherwise.
fn diff_rule_sets() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let scenario = repo().join("runner/tests/data/failing/wrong-expectation.yaml");
    let old = repo().join("runner/tests/data/failing/rules/no-81.rules");
    // The same behaviour in other words: a chain of its own, and a comment.
    let same = dir.path().join("same.rules");
    std::fs::write(
        &same,
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:WEB - [0:0]\n\
         -A FORWARD -j WEB\n-A WEB -p tcp -m tcp --dport 81 -j DROP\nCOMMIT\n",
    )?;
    let open = dir.path().join("open.rules");
    std::fs::write(&open, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")?;
    let run = |new: &Path| netconform().arg("diff").arg(&scenario).arg(&old).arg(new).output();
    let agree = run(&same)?;
    let stdout = String::from_utf8_lossy(&agree.stdout);
    if agree.status.code() != Some(0) || !stdout.contains("0 of 2 probes differ") {
        return Err(
            format!("rule sets that behave the same were told apart ({:?}):\n{stdout}", agree.status.code()).into()
        );
    }
    let differ = run(&open)?;
    let stdout = String::from_utf8_lossy(&differ.stdout);
    if differ.status.code() != Some(1)
        || !stdout.contains("DIFFERS a -> b:81/tcp: old dropped")
        || !stdout.contains("new reached by b")
        || !stdout.contains("1 of 2 probes differ")
    {
        return Err(format!("the differing probe was not listed ({:?}):\n{stdout}", differ.status.code()).into());
    }
    Ok(())
}
