//! netconform's half of the benchmark in bench/ (see bench/README.md): lab build, rule
//! load, one probe, the 324-probe matrix and the seed suite, timed through the
//! library (and the `netconform` binary for the suite). bench/shell-harness.sh does the
//! same work with `ip`, `iptables-restore`, `ping` and `nc`; ci/bench runs both and
//! prints the ratios.
//!
//!     bench [--out FILE] [--plan FILE] [--quick] [--only NAME,...] [--profile WORK]
//!
//! `--out` writes one line per measure, `key<TAB>median ms<TAB>runs<TAB>min<TAB>max`.
//! `--plan` writes the seed scenarios as a plan for the shell harness and exits.
//! `--only` picks measures: build, rules, probe, matrix, seed.
//! `--profile build:N:K` builds an N-node lab K times, `--profile matrix:K` runs the
//! matrix scenario K times: a workload for perf or callgrind. `--profile parts:N`
//! times the pieces of a lab build's first phase (namespaces, threads, sysctls).
//!
//! Nothing here touches the root namespace: every namespace is the library's own,
//! held by descriptor and gone when dropped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::backend;
use harness::backend::trace::TraceSession;
use harness::lab::netns::NetNs;
use harness::lab::Lab;
use harness::run::{self, Status};
use harness::scenario::{self, Attach, Backend, Count, Expect, NodeId, Probe, Proto, RuleFile, RuleSelector, Scenario};
use harness::traffic::probe::{self, OutcomeKind};
use harness::traffic::service::Services;

const MEASURES: [&str; 5] = ["build", "rules", "probe", "matrix", "seed"];
const LAB_SIZES: [usize; 4] = [1, 10, 50, 200];
/// Dual-stack labs measured beside the IPv4 ones of the same size.
const LAB_SIZES_DUAL: [usize; 2] = [1, 50];
const RULE_COUNTS: [usize; 2] = [30, 1000];
/// The matrix: every node probes every node (itself too) on each port.
const MATRIX_NODES: usize = 9;
const MATRIX_PORTS: [u16; 4] = [22, 80, 443, 8080];

struct Opts {
    out: Option<PathBuf>,
    plan: Option<PathBuf>,
    quick: bool,
    only: Vec<String>,
    profile: Option<String>,
}

fn parse_args() -> Opts {
    let mut opts = Opts { out: None, plan: None, quick: false, only: Vec::new(), profile: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            "--quick" => opts.quick = true,
            "--out" => opts.out = args.next().map(PathBuf::from),
            "--plan" => opts.plan = args.next().map(PathBuf::from),
            "--profile" => opts.profile = args.next(),
            "--only" => {
                opts.only = args.next().unwrap_or_default().split(',').map(str::to_string).collect();
                if let Some(bad) = opts.only.iter().find(|m| !MEASURES.contains(&m.as_str())) {
                    die(&format!("unknown measure {bad:?}; measures: {}", MEASURES.join(", ")));
                }
            }
            // A filter argument from `cargo bench NAME` is ignored, not guessed at.
            other if !other.starts_with('-') => {}
            other => die(&format!("unknown option {other}")),
        }
    }
    opts
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    std::process::exit(2)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Repeated timings of one measure.
struct Samples {
    key: String,
    ms: Vec<f64>,
    /// What went wrong in some runs, if anything did; the time is kept.
    note: String,
}

impl Samples {
    fn new(key: &str) -> Samples {
        Samples { key: key.to_string(), ms: Vec::new(), note: String::new() }
    }

    fn push(&mut self, d: Duration) {
        self.ms.push(d.as_secs_f64() * 1000.0);
    }

    fn median(&self) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }

    fn line(&self) -> String {
        let min = self.ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.ms.iter().copied().fold(0.0, f64::max);
        format!("{}\t{:.3}\t{}\t{:.3}\t{:.3}\t{}", self.key, self.median(), self.ms.len(), min, max, self.note)
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    quick: bool,
    results: Vec<Samples>,
}

impl Bench {
    fn reps(&self, full: usize) -> usize {
        if self.quick {
            full.div_ceil(2).max(1)
        } else {
            full
        }
    }

    fn record(&mut self, s: Samples) {
        eprintln!("  {:<28} median {:>10.3} ms over {} runs {}", s.key, s.median(), s.ms.len(), s.note);
        self.results.push(s);
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| die(&format!("writing {}: {e}", path.display())));
        path
    }

    fn scenario(&self, name: &str, yaml: &str) -> Scenario {
        let path = self.write(name, yaml);
        scenario::load(&path, name).unwrap_or_else(|e| die(&format!("generated scenario {name} is invalid:\n{e}")))
    }
}

/// The kernel frees a namespace's devices on a work queue after the last reference
/// goes; let it finish before the next run so one run's teardown is not the next one's
/// cost. The shell harness waits the same way.
fn settle(nodes: usize) {
    std::thread::sleep(Duration::from_millis(50 + 4 * nodes as u64));
}

// ---------------------------------------------------------------- generated input

fn node_addr(i: usize) -> Ipv4Addr {
    // Node i (from 1) is 10.0.0.(i+1); the host is 10.0.0.1 on br0.
    Ipv4Addr::new(10, 0, 0, (i + 1) as u8)
}

fn node_addr6(i: usize) -> std::net::Ipv6Addr {
    // Node i is fd00::(i+1); the host is fd00::1 on br0.
    std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, (i + 1) as u16)
}

/// n nodes on one bridge of the host, each with a default route via the host.
fn lab_yaml(n: usize, rules: &str, services: &str) -> String {
    lab_yaml_family(n, rules, services, false)
}

/// [`lab_yaml`], with `dual` every address and route in IPv6 as well.
fn lab_yaml_family(n: usize, rules: &str, services: &str, dual: bool) -> String {
    let bridge = if dual { "[10.0.0.1/24, \"fd00::1/64\"]" } else { "10.0.0.1/24" };
    let mut y = format!("host:\n  forwarding: true\n  bridges:\n    br0: {{ address: {bridge} }}\nnodes:\n");
    for i in 1..=n {
        let (address, gateway) = match dual {
            true => (format!("[{}/24, \"{}/64\"]", node_addr(i), node_addr6(i)), "[10.0.0.1, \"fd00::1\"]"),
            false => (format!("{}/24", node_addr(i)), "10.0.0.1"),
        };
        let _ = writeln!(y, "  n{i}:\n    interfaces: [{{ bridge: br0, address: {address}, gateway: {gateway} }}]");
        if !services.is_empty() {
            let _ = writeln!(y, "    services: {services}");
        }
    }
    let _ = writeln!(y, "rules:\n  backends: [iptables-nft]\n  files: [{rules}]");
    y
}

/// `n` rules in a chain of their own, jumped to from FORWARD; the same rules in both
/// formats. The nft script starts from an empty rule set, as a restore does.
fn rules_text(n: usize, format: scenario::RuleFormat) -> String {
    let rule = |i: usize| (Ipv4Addr::new(10, 1 + (i / 250) as u8, (i % 250) as u8, 1), 1000 + (i % 60000) as u16);
    let mut t = String::new();
    match format {
        scenario::RuleFormat::Iptables | scenario::RuleFormat::Ip6tables => {
            t.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:BENCH - [0:0]\n");
            t.push_str("-A FORWARD -j BENCH\n");
            for i in 0..n {
                let (a, p) = rule(i);
                let _ = writeln!(t, "-A BENCH -s {a}/32 -p tcp -m tcp --dport {p} -j ACCEPT");
            }
            t.push_str("COMMIT\n");
        }
        scenario::RuleFormat::Nft => {
            t.push_str("flush ruleset\ntable ip filter {\n  chain BENCH {\n");
            for i in 0..n {
                let (a, p) = rule(i);
                let _ = writeln!(t, "    ip saddr {a} tcp dport {p} accept");
            }
            t.push_str("  }\n  chain FORWARD {\n    type filter hook forward priority 0; policy accept;\n");
            t.push_str("    jump BENCH\n  }\n}\n");
        }
    }
    t
}

const EMPTY_RULES: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

/// The matrix scenario: 9 nodes with services on 80, 443 and 8080; nothing listens
/// on 22, so 22 is refused, except that the host drops 22 to the last node: those 8
/// probes (the last node's own goes over lo) are dropped. 324 probes in all, and the
/// counter of the DROP rule.
fn matrix_yaml(rules: &str) -> String {
    let mut y = lab_yaml(MATRIX_NODES, rules, "{ tcp: [80, 443, 8080] }");
    y.push_str("probes:\n");
    for (from, to, port) in matrix_cells() {
        let _ =
            writeln!(y, "  - {{ from: n{from}, to: n{to}, port: {port}, expect: {} }}", matrix_expect(from, to, port));
    }
    let _ = write!(
        y,
        "counters:\n  - {{ table: filter, chain: FORWARD, rule: '-d {}/32 -p tcp -m tcp --dport 22 -j DROP', packets: {} }}\n",
        node_addr(MATRIX_NODES),
        MATRIX_NODES - 1
    );
    y
}

fn matrix_rules() -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -d {}/32 -p tcp -m tcp --dport 22 -j DROP\nCOMMIT\n",
        node_addr(MATRIX_NODES)
    )
}

fn matrix_cells() -> impl Iterator<Item = (usize, usize, u16)> {
    (1..=MATRIX_NODES)
        .flat_map(|from| (1..=MATRIX_NODES).flat_map(move |to| MATRIX_PORTS.iter().map(move |&p| (from, to, p))))
}

fn matrix_expect(from: usize, to: usize, port: u16) -> &'static str {
    match port {
        22 if to == MATRIX_NODES && from != to => "dropped",
        22 => "refused",
        _ => "reached",
    }
}

// ---------------------------------------------------------------- measures

fn build(b: &mut Bench) {
    eprintln!("lab build");
    b.write("empty.rules", EMPTY_RULES);
    for n in LAB_SIZES {
        let scn = b.scenario(&format!("lab-{n}.yaml"), &lab_yaml(n, "empty.rules", ""));
        let reps = b.reps(if n >= 200 { 3 } else { 5 });
        let mut built = Samples::new(&format!("build_{n}"));
        let mut dropped = Samples::new(&format!("teardown_{n}"));
        // One unmeasured build first: page cache, module and allocator warm-up.
        drop(b.rt.block_on(Lab::build(&scn)).unwrap_or_else(|e| die(&e.to_string())));
        settle(n);
        for _ in 0..reps {
            let t = Instant::now();
            let lab = b.rt.block_on(Lab::build(&scn)).unwrap_or_else(|e| die(&e.to_string()));
            built.push(t.elapsed());
            let t = Instant::now();
            drop(lab);
            dropped.push(t.elapsed());
            settle(n);
        }
        b.record(built);
        b.record(dropped);
    }
    // The same labs in both families, built in turn, so that both see the same machine:
    // `build6_N` is dual stack, `build6base_N` its IPv4 twin in the same loop.
    for n in LAB_SIZES_DUAL {
        let twins = [
            (format!("build6base_{n}"), b.scenario(&format!("lab4-{n}.yaml"), &lab_yaml(n, "empty.rules", ""))),
            (
                format!("build6_{n}"),
                b.scenario(&format!("lab6-{n}.yaml"), &lab_yaml_family(n, "empty.rules", "", true)),
            ),
        ];
        let mut samples: Vec<Samples> = twins.iter().map(|(key, _)| Samples::new(key)).collect();
        for (_, scn) in &twins {
            drop(b.rt.block_on(Lab::build(scn)).unwrap_or_else(|e| die(&e.to_string())));
            settle(n);
        }
        for _ in 0..b.reps(7) {
            for ((_, scn), s) in twins.iter().zip(&mut samples) {
                let t = Instant::now();
                let lab = b.rt.block_on(Lab::build(scn)).unwrap_or_else(|e| die(&e.to_string()));
                s.push(t.elapsed());
                drop(lab);
                settle(n);
            }
        }
        for s in samples {
            b.record(s);
        }
    }
}

fn rules(b: &mut Bench) {
    eprintln!("rule load");
    b.write("empty.rules", EMPTY_RULES);
    let scn = b.scenario("lab-rules.yaml", &lab_yaml(1, "empty.rules", ""));
    for be in harness::backend::ALL {
        let lab = b.rt.block_on(Lab::build(&scn)).unwrap_or_else(|e| die(&e.to_string()));
        let rb = backend::for_backend(be);
        for n in RULE_COUNTS {
            let ext = if be == Backend::Nft { "nft" } else { "rules" };
            let path = b.write(&format!("bench-{n}.{ext}"), &rules_text(n, be.format()));
            let files = [RuleFile { path, format: be.format(), text: None }];
            let load = || b.rt.block_on(backend::load(rb.as_ref(), lab.host(), &files));
            load().unwrap_or_else(|e| die(&format!("{be}: {e}")));
            let mut s = Samples::new(&format!("rules_{}_{n}", be.name()));
            for _ in 0..b.reps(5) {
                let t = Instant::now();
                load().unwrap_or_else(|e| die(&format!("{be}: {e}")));
                s.push(t.elapsed());
            }
            // The rules are really there: the dump holds every one of them.
            let (_, text) =
                b.rt.block_on(backend::dump(rb.as_ref(), lab.host(), false)).unwrap_or_else(|e| die(&e.to_string()));
            let found =
                text.lines().filter(|l| l.contains("-A BENCH ") || l.trim_start().starts_with("ip saddr 10.")).count();
            if found != n {
                die(&format!("{be}: loaded {n} rules, the dump shows {found}"));
            }
            b.record(s);
        }
        drop(lab);
        settle(1);
    }
}

fn probes(b: &mut Bench) {
    eprintln!("probes");
    probes_of(b, false);
    eprintln!("probes over IPv6");
    probes_of(b, true);
}

/// n1 probes n2: 80 is served, the host drops 81; the same rule in both formats. With
/// `v6`, in a dual-stack lab, over IPv6, under keys that start with `probe6_`.
fn probes_of(b: &mut Bench, v6: bool) {
    let (target, family, prefix) = match v6 {
        true => (format!("{}/128", node_addr6(2)), "ip6", "probe6_"),
        false => (format!("{}/32", node_addr(2)), "ip", "probe_"),
    };
    let rules = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -d {target} -p tcp -m tcp --dport 81 -j DROP\nCOMMIT\n"
    );
    let nft_rules = format!(
        "table {family} filter {{\n  chain FORWARD {{\n    type filter hook forward priority 0; policy accept;\n    \
         {family} daddr {target} tcp dport 81 drop\n  }}\n}}\n"
    );
    let name = if v6 { "probe6" } else { "probe" };
    b.write(&format!("{name}.rules"), &rules);
    let nft_path = b.write(&format!("{name}.nft"), &nft_rules);
    let mut y = lab_yaml_family(2, &format!("{name}.rules"), "{ tcp: [80] }", v6);
    if v6 {
        // The IPv6 rule in the ip6tables file; the IPv4 one empty.
        y = y.replace(&format!("files: [{name}.rules]"), &format!("files: [empty.rules]\n  files6: [{name}.rules]"));
        b.write("empty.rules", EMPTY_RULES);
    }
    let family_key = if v6 { ", family: ipv6" } else { "" };
    y.push_str(&format!("probes:\n  - {{ from: n1, to: n2{family_key}, port: 80, expect: reached }}\n"));
    y.push_str(&format!("  - {{ from: n1, to: n2{family_key}, port: 81, expect: dropped }}\n"));
    y.push_str(&format!("  - {{ from: n1, to: n2{family_key}, proto: icmp, expect: reached }}\n"));
    let scn = b.scenario(&format!("{name}.yaml"), &y);
    let mut index = 0;
    for be in [Backend::IptablesNft, Backend::Nft, Backend::IptablesLegacy] {
        let lab = b.rt.block_on(Lab::build(&scn)).unwrap_or_else(|e| die(&e.to_string()));
        let files = match be {
            Backend::Nft => vec![RuleFile { path: nft_path.clone(), format: be.format(), text: None }],
            _ => scn.rules.files.clone(),
        };
        let rb = backend::for_backend(be);
        b.rt.block_on(backend::load(rb.as_ref(), lab.host(), &files)).unwrap_or_else(|e| die(&e.to_string()));
        let services = {
            let _guard = b.rt.enter();
            Services::start(&lab, &scn).unwrap_or_else(|e| die(&e.to_string()))
        };
        let from = lab.ns(scn.probes[0].from);
        // Without trace: probe::send alone, as when tracing is off, where a drop is known
        // only when the timeout (the scenario's 200 ms) has passed.
        let plain: &[(usize, &str, OutcomeKind, usize)] = if be == Backend::IptablesNft {
            &[
                (0, "tcp_reached", OutcomeKind::Reached, 21),
                (1, "tcp_dropped", OutcomeKind::Dropped, 5),
                (2, "icmp_reached", OutcomeKind::Reached, 21),
            ]
        } else {
            &[]
        };
        for &(i, key, want, reps) in plain {
            let key = format!("{prefix}{key}");
            let mut s = Samples::new(&key);
            for r in 0..=b.reps(reps) {
                // Each send gets its own tag (source port), as the probes of a scenario do.
                index += 1;
                let t = Instant::now();
                let outcome = b.rt.block_on(probe::send(from, &scn.probes[i], index));
                let took = t.elapsed();
                if outcome.kind != want {
                    die(&format!("{key}: expected {want}, got {} ({})", outcome.kind, outcome.detail));
                }
                // The first send is a warm-up (ARP, the first connection's conntrack entry).
                if r > 0 {
                    s.push(took);
                }
            }
            b.record(s);
        }
        // With trace, as run_scenario sends a probe (run.rs, `send`): the probe races the
        // drop verdict of its packets, from nftrace or, under iptables-legacy, NFLOG.
        let reps = b.reps(11);
        let tags: Vec<u16> = (index + 1..=index + 1 + reps).map(probe::tag).collect();
        let session =
            b.rt.block_on(TraceSession::start(lab.host(), &tags, be, v6))
                .unwrap_or_else(|e| die(&format!("{be}: {e}")));
        let key = format!("{prefix}tcp_dropped_traced_{}", be.name());
        let mut s = Samples::new(&key);
        for r in 0..=reps {
            index += 1;
            let t = Instant::now();
            let (_, traced) = b.rt.block_on(send(from, &scn.probes[1], index, Some(&session)));
            let took = t.elapsed();
            if !traced {
                die(&format!("{key}: the drop was not traced"));
            }
            if r > 0 {
                s.push(took);
            }
        }
        b.record(s);
        drop(session);
        drop(services);
        drop(lab);
        settle(2);
    }
}

/// A probe as run_scenario sends it (run.rs, `send`, which is private): with a trace
/// session, the probe races the drop verdict of its packets. Returns the outcome and
/// whether the trace decided it.
async fn send(ns: &NetNs, p: &Probe, index: usize, session: Option<&TraceSession>) -> (OutcomeKind, bool) {
    let sending = probe::send(ns, p, index);
    let Some(session) = session else { return (sending.await.kind, false) };
    tokio::select! {
        biased;
        outcome = sending => (outcome.kind, false),
        _ = session.dropped(probe::tag(index)) => (OutcomeKind::Dropped, true),
    }
}

fn matrix(b: &mut Bench) {
    eprintln!("324-probe matrix");
    b.write("matrix.rules", &matrix_rules());
    let scn = b.scenario("matrix.yaml", &matrix_yaml("matrix.rules"));
    assert_eq!(scn.probes.len(), 324);
    // The whole scenario as `netconform run` does it: build, load, services, probes,
    // counters, judge, teardown.
    let mut whole = Samples::new("matrix_scenario");
    let (runs, mut failed) = (b.reps(3), 0);
    for _ in 0..runs {
        let t = Instant::now();
        let report = b.rt.block_on(run::run_scenario(&scn, Backend::IptablesNft));
        whole.push(t.elapsed());
        if report.status != Status::Passed {
            failed += 1;
            let failing: Vec<String> = report
                .probes
                .iter()
                .filter(|p| !p.verdict.pass())
                .take(5)
                .map(|p| format!("{}: {}", scn.probes[p.probe].name, p.outcome.detail))
                .collect();
            eprintln!("  the matrix scenario did not pass: {:?}; first failures: {failing:?}", report.status);
        }
        settle(MATRIX_NODES);
    }
    if failed > 0 {
        whole.note = format!("{failed} of {runs} runs did not pass");
    }
    b.record(whole);

    // The probes alone: the same 324 sends, all at once as run_scenario sends them,
    // in a lab that is built, loaded and serving.
    let lab = b.rt.block_on(Lab::build(&scn)).unwrap_or_else(|e| die(&e.to_string()));
    let rb = backend::for_backend(Backend::IptablesNft);
    b.rt.block_on(backend::load(rb.as_ref(), lab.host(), &scn.rules.files)).unwrap_or_else(|e| die(&e.to_string()));
    let services = {
        let _guard = b.rt.enter();
        Services::start(&lab, &scn).unwrap_or_else(|e| die(&e.to_string()))
    };
    // Traced, as run_scenario sends them (run.rs, `send`), and untraced, as when
    // tracing is off: every drop then waits out the 200 ms timeout.
    let n = scn.probes.len();
    let mut base = 0;
    for (key, traced) in [("matrix_probes", true), ("matrix_probes_untraced", false)] {
        let mut phase = Samples::new(key);
        for _ in 0..b.reps(3) {
            base += n;
            let tags: Vec<u16> = (base..base + n).map(probe::tag).collect();
            let session = match traced {
                true => Some(
                    b.rt.block_on(TraceSession::start(lab.host(), &tags, Backend::IptablesNft, false))
                        .unwrap_or_else(|e| die(&e.to_string())),
                ),
                false => None,
            };
            let t = Instant::now();
            let outcomes = b.rt.block_on(futures::future::join_all(
                scn.probes.iter().enumerate().map(|(i, p)| send(lab.ns(p.from), p, base + i, session.as_ref())),
            ));
            phase.push(t.elapsed());
            for (p, (kind, _)) in scn.probes.iter().zip(&outcomes) {
                let want = match p.expect {
                    Expect::Reached => OutcomeKind::Reached,
                    Expect::Refused => OutcomeKind::Refused,
                    Expect::Dropped => OutcomeKind::Dropped,
                };
                if *kind != want {
                    eprintln!("  matrix probe {}: expected {want}, got {kind}", p.name);
                    phase.note = "wrong verdicts in some runs".into();
                }
            }
        }
        b.record(phase);
    }
    drop(services);
    drop(lab);
    settle(MATRIX_NODES);
}

fn seed(b: &mut Bench) {
    eprintln!("seed suite (netconform run scenarios/seed)");
    let bin = env!("CARGO_BIN_EXE_netconform");
    let mut s = Samples::new("seed_suite");
    let (runs, mut failed) = (b.reps(3), 0);
    for _ in 0..runs {
        let t = Instant::now();
        let out = std::process::Command::new(bin)
            .args(["run", "scenarios/seed"])
            .current_dir(repo())
            .output()
            .unwrap_or_else(|e| die(&format!("running {bin}: {e}")));
        s.push(t.elapsed());
        if !out.status.success() {
            // Timed all the same; the failure is shown and noted beside the time.
            failed += 1;
            let stdout = String::from_utf8_lossy(&out.stdout);
            eprintln!("  netconform run scenarios/seed exited {:?}:", out.status.code());
            for line in
                stdout.lines().filter(|l| l.starts_with("FAIL") || l.starts_with("ERROR") || l.contains("  FAIL"))
            {
                eprintln!("    {line}");
            }
        }
        settle(5);
    }
    if failed > 0 {
        s.note = format!("{failed} of {runs} runs had failing scenarios");
    }
    b.record(s);
}

// ---------------------------------------------------------------- shell plan

/// The seed scenarios as a plan for bench/shell-harness.sh: one directive a line, the
/// lab, the rules, services, counters and probes of each scenario under each back end.
fn write_plan(path: &Path) {
    let root = repo();
    let found = scenario::discover(&[root.join("scenarios/seed")]).unwrap_or_else(|e| die(&e.to_string()));
    let mut plan = String::from("# generated by runner/benches/bench.rs --plan from scenarios/seed\n");
    for (file, name) in found {
        for scn in scenario::load_file(&file, &name).unwrap_or_else(|e| die(&e.to_string())) {
            for &be in &scn.rules.backends {
                plan_scenario(&mut plan, &scn, be);
            }
        }
    }
    std::fs::write(path, plan).unwrap_or_else(|e| die(&format!("writing {}: {e}", path.display())));
}

fn plan_scenario(p: &mut String, scn: &Scenario, be: Backend) {
    if scn.rules.live.is_some() || !scn.rules.ipsets.is_empty() || scn.ipv6 {
        die(&format!("{}: the shell plan covers rule files only, without ipsets or IPv6", scn.name));
    }
    let name = |id: NodeId| scn.node(id).name.clone();
    let _ = writeln!(p, "scenario {} {}", scn.name, be.name());
    let _ = writeln!(p, "timeout {}", scn.timeout.as_millis());
    for (id, node) in scn.nodes.iter().enumerate() {
        let _ = writeln!(p, "node {}", node.name);
        let mut sysctls = Vec::new();
        if id == 0 {
            sysctls.push(format!("net.ipv4.ip_forward={}", u8::from(scn.host.forwarding)));
            if !scn.host.bridges.is_empty() {
                sysctls.push("net.bridge.bridge-nf-call-iptables=1".to_string());
            }
        }
        sysctls.extend(node.sysctls.iter().map(|(k, v)| format!("{k}={v}")));
        if !sysctls.is_empty() {
            // '|' between settings: a value may hold spaces.
            let _ = writeln!(p, "sysctl {} {}", node.name, sysctls.join("|"));
        }
    }
    for br in &scn.host.bridges {
        let addr = br.address.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        let _ = writeln!(p, "bridge {} {addr}", br.name);
    }
    for (id, node) in scn.nodes.iter().enumerate().skip(1) {
        if node.container.is_some() {
            die(&format!("{}: containers are wired by live producers, not the shell plan", scn.name));
        }
        for iface in &node.interfaces {
            let gw = iface.gateway.map(|g| g.to_string()).unwrap_or_else(|| "-".into());
            let (kind, arg) = match iface.attach {
                Attach::Bridge(i) => ("bridge", scn.host.bridges[i].name.clone()),
                Attach::Uplink(u) => ("uplink", scn.host.uplinks[u].address.to_string()),
            };
            let _ = writeln!(
                p,
                "veth {} {} {} {kind} {arg} {} {gw}",
                name(NodeId(id)),
                iface.name,
                iface.host_side,
                iface.address
            );
        }
    }
    let files: Vec<String> = scn.rules.files.iter().map(|f| f.path.display().to_string()).collect();
    if scn.rules.files.iter().any(|f| f.text.is_some()) {
        die(&format!("{}: rule files with variables put in are not in the shell plan", scn.name));
    }
    let _ = writeln!(p, "rules {} {}", be.name(), files.join(" "));
    for node in &scn.nodes {
        for port in &node.services.tcp {
            let _ = writeln!(p, "tcp {} {port}", node.name);
        }
        for port in &node.services.udp {
            let _ = writeln!(p, "udp {} {port}", node.name);
        }
        if !node.services.forward.is_empty() {
            die(&format!("{}: forwarders are not in the shell plan", scn.name));
        }
    }
    for c in &scn.counters {
        let RuleSelector::Text(rule) = &c.rule else {
            die(&format!("{}: the shell plan matches counters by rule text only", scn.name));
        };
        let count = match c.packets {
            Count::Exactly(n) => format!("={n}"),
            Count::AtLeast(n) => format!(">={n}"),
        };
        let _ = writeln!(p, "counter {} {} {count} {rule}", c.table, c.chain);
    }
    for pr in &scn.probes {
        let (proto, port) = match pr.proto {
            Proto::Icmp => ("icmp", 0),
            Proto::Tcp(port) => ("tcp", port),
            Proto::Udp(port) => ("udp", port),
        };
        let _ = writeln!(p, "probe {} {proto} {} {port} {}", name(pr.from), pr.to, pr.expect.name());
    }
    p.push_str("end\n");
}

// ---------------------------------------------------------------- profiling

/// Run one workload over and over for a profiler; nothing is measured.
fn profile(b: &mut Bench, what: &str) {
    let parts: Vec<&str> = what.split(':').collect();
    let num = |i: usize, default: usize| parts.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    match parts[0] {
        "build" => {
            let (n, k) = (num(1, 200), num(2, 3));
            b.write("empty.rules", EMPTY_RULES);
            let scn = b.scenario("lab.yaml", &lab_yaml(n, "empty.rules", ""));
            for _ in 0..k {
                let t = Instant::now();
                let lab = b.rt.block_on(Lab::build(&scn)).unwrap_or_else(|e| die(&e.to_string()));
                eprintln!("build {n}: {:?}", t.elapsed());
                drop(lab);
                settle(n);
            }
        }
        "matrix" => {
            b.write("matrix.rules", &matrix_rules());
            let scn = b.scenario("matrix.yaml", &matrix_yaml("matrix.rules"));
            for _ in 0..num(1, 3) {
                let t = Instant::now();
                let report = b.rt.block_on(run::run_scenario(&scn, Backend::IptablesNft));
                eprintln!("matrix: {:?} {:?}", t.elapsed(), report.status);
                settle(MATRIX_NODES);
            }
        }
        "parts" => {
            // What Lab::build's first phase costs, piece by piece, through the public
            // API: N namespaces created, an empty closure run in each (the thread that
            // NetNs::run spawns), then the lab's baseline settings, all of them (as the
            // host reads them; the nodes write only those that differ).
            let n = num(1, 200);
            let t = Instant::now();
            let spaces: Vec<NetNs> =
                (0..n).map(|i| NetNs::create(&format!("p{i}")).unwrap_or_else(|e| die(&e.to_string()))).collect();
            eprintln!("create {n} namespaces: {:?}", t.elapsed());
            let t = Instant::now();
            for ns in &spaces {
                ns.run(|| ()).unwrap_or_else(|e| die(&e.to_string()));
            }
            eprintln!("{n} x NetNs::run(|| ()): {:?}", t.elapsed());
            let settings = harness::lab::baseline(false);
            let t = Instant::now();
            for ns in &spaces {
                ns.write_sysctls(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .unwrap_or_else(|e| die(&e.to_string()));
            }
            eprintln!("{n} x the {} baseline sysctls: {:?}", settings.len(), t.elapsed());
            let t = Instant::now();
            drop(spaces);
            eprintln!("drop: {:?}", t.elapsed());
            settle(n);
        }
        other => die(&format!("unknown profile workload {other:?}: build:N:K, matrix:K or parts:N")),
    }
}

fn main() {
    let opts = parse_args();
    if let Some(path) = &opts.plan {
        write_plan(path);
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        die("needs root: labs are network namespaces");
    }
    if let Err(why) = run::machine_requirements(Backend::IptablesNft) {
        die(&why);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| die(&e.to_string()));
    let dir = tempfile::tempdir().unwrap_or_else(|e| die(&e.to_string()));
    let mut b = Bench { rt, dir, quick: opts.quick, results: Vec::new() };
    if let Some(what) = &opts.profile {
        profile(&mut b, what);
        return;
    }
    let wanted = |m: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == m);
    let start = Instant::now();
    if wanted("build") {
        build(&mut b);
    }
    if wanted("rules") {
        rules(&mut b);
    }
    if wanted("probe") {
        probes(&mut b);
    }
    if wanted("matrix") {
        matrix(&mut b);
    }
    if wanted("seed") {
        seed(&mut b);
    }
    eprintln!("netconform side done in {:.1} s", start.elapsed().as_secs_f64());
    let text: String = b.results.iter().map(|s| s.line() + "\n").collect();
    match &opts.out {
        Some(path) => std::fs::write(path, text).unwrap_or_else(|e| die(&format!("writing {}: {e}", path.display()))),
        None => {
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
    }
}
