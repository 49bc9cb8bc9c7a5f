//! nftrace on the real kernel, in throwaway labs: a probe dropped by a rule of the
//! loaded rule set is reported as dropped as soon as the drop verdict comes, well
//! before its timeout, and the deciding rule is named in the syntax it was loaded in;
//! a rejected probe is left to get its reset, and a probe that gets through is never
//! reported as dropped. Once under iptables-nft, once under nft, and once under
//! iptables-legacy, whose TRACE lines come over nfnetlink_log.
//!
//! Each is a trial that is reported ignored, with the reason, where it cannot run.

use std::path::Path;
use std::time::{Duration, Instant};

use harness::backend;
use harness::backend::trace::{self, Direction, Dumps, TraceSession};
use harness::lab::Lab;
use harness::scenario::{self, Backend, Scenario};
use harness::traffic::probe::{self, OutcomeKind};
use harness::traffic::service::Services;

/// Why these tests cannot run here, if they cannot: `tools` are the rule tools the
/// trial needs besides nft.
pub fn unavailable(tools: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to build network namespaces".into());
    }
    std::iter::once(&"nft")
        .chain(tools)
        .find(|t| harness::lab::sandbox::which(t).is_none())
        .map(|t| format!("{t} is not installed; run ci/install-deps"))
}

const NFT_TOOLS: &[&str] = &["iptables-nft-restore", "iptables-nft-save"];
const LEGACY_TOOLS: &[&str] = &["iptables-legacy-restore", "iptables-legacy-save"];

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    // Decided while listing too, so that nextest shows the trial skipped.
    let trial = |name: &str, tools: &'static [&'static str], body: fn() -> Result<(), String>| {
        let ignored = unavailable(tools);
        if let Some(why) = &ignored {
            eprintln!("{name} is ignored here: {why}");
        }
        libtest_mimic::Trial::ignorable_test(name, move || match unavailable(tools) {
            Some(why) => Ok(libtest_mimic::Completion::ignored_with(why)),
            None => body().map(|()| libtest_mimic::Completion::Completed).map_err(Into::into),
        })
        .with_kind("kernel")
        .with_ignored_flag(ignored.is_some())
    };
    let trials = vec![
        trial("trace::iptables_nft_drop_is_named_in_iptables_syntax", NFT_TOOLS, iptables_nft),
        trial("trace::nft_drop_is_named_in_nft_syntax", &[], nft),
        trial("trace::iptables_legacy_drop_is_named_in_iptables_syntax", LEGACY_TOOLS, iptables_legacy),
    ];
    libtest_mimic::run(&args, trials).exit();
}

/// Two nodes on uplinks of a forwarding host; `b` serves everything the probes ask for.
const LAB: &str = "\
timeout: 2s
host:
  forwarding: true
  uplinks:
    a0: { address: 10.1.0.1/24 }
    b0: { address: 10.2.0.1/24 }
nodes:
  a:
    interfaces: [{ uplink: a0, address: 10.1.0.2/24, gateway: 10.1.0.1 }]
  b:
    interfaces: [{ uplink: b0, address: 10.2.0.2/24, gateway: 10.2.0.1 }]
    services: { tcp: [80, 81, 82], udp: [53] }
";

const PROBES: &str = "\
probes:
  - { from: a, to: b, proto: tcp, port: 81, expect: dropped }
  - { from: a, to: b, proto: tcp, port: 80, expect: reached }
  - { from: a, to: b, proto: tcp, port: 82, expect: refused }
  - { from: a, to: b, proto: udp, port: 53, expect: dropped }
  - { from: a, to: b, proto: icmp, expect: dropped }
";

const IPTABLES_RULES: &str = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:LAB-FWD - [0:0]
-A FORWARD -j LAB-FWD
-A LAB-FWD -p tcp -m tcp --dport 81 -m comment --comment \"no 81\" -j DROP
-A LAB-FWD -p tcp -m tcp --dport 82 -j REJECT --reject-with tcp-reset
-A LAB-FWD -p udp -m udp --dport 53 -j DROP
-A LAB-FWD -p icmp -m icmp --icmp-type 8 -j DROP
-A LAB-FWD -j RETURN
COMMIT
";

const NFT_RULES: &str = "\
flush ruleset
table inet lab {
  chain forward {
    type filter hook forward priority filter; policy accept;
    tcp dport 81 counter drop comment \"no 81\"
    tcp dport 82 reject with tcp reset
    udp dport 53 drop
    icmp type echo-request drop
  }
}
";

/// What a run of the test scenario should find, per probe index.
struct Expected {
    backend: Backend,
    /// Deciding rule of probes 0, 3 and 4, as [`trace::describe`] prints it.
    tcp81: &'static str,
    udp53: &'static str,
    icmp: &'static str,
}

fn iptables_nft() -> Result<(), String> {
    check(
        IPTABLES_RULES,
        "rules",
        Expected {
            backend: Backend::IptablesNft,
            tcp81: "filter LAB-FWD rule 1 `-A LAB-FWD -p tcp -m tcp --dport 81 -m comment --comment \"no 81\" -j DROP`: DROP",
            udp53: "filter LAB-FWD rule 3 `-A LAB-FWD -p udp -m udp --dport 53 -j DROP`: DROP",
            icmp: "filter LAB-FWD rule 4 `-A LAB-FWD -p icmp -m icmp --icmp-type 8 -j DROP`: DROP",
        },
    )
}

fn iptables_legacy() -> Result<(), String> {
    check(
        IPTABLES_RULES,
        "rules",
        Expected {
            backend: Backend::IptablesLegacy,
            tcp81: "filter LAB-FWD rule 1 `-A LAB-FWD -p tcp -m tcp --dport 81 -m comment --comment \"no 81\" -j DROP`: DROP",
            udp53: "filter LAB-FWD rule 3 `-A LAB-FWD -p udp -m udp --dport 53 -j DROP`: DROP",
            icmp: "filter LAB-FWD rule 4 `-A LAB-FWD -p icmp -m icmp --icmp-type 8 -j DROP`: DROP",
        },
    )
}

fn nft() -> Result<(), String> {
    check(
        NFT_RULES,
        "nft",
        Expected {
            backend: Backend::Nft,
            tcp81: "inet lab forward rule 1 `tcp dport 81 counter drop comment \"no 81\"`: drop",
            udp53: "inet lab forward rule 3 `udp dport 53 drop`: drop",
            icmp: "inet lab forward rule 4 `icmp type echo-request drop`: drop",
        },
    )
}

/// The scenario with `rules` (a file with extension `ext`) under `backend`, loaded from
/// a temporary folder.
fn scenario(dir: &Path, rules: &str, ext: &str, backend: Backend, probes: &str) -> Result<Scenario, String> {
    let file = format!("r.{ext}");
    std::fs::write(dir.join(&file), rules).map_err(|e| e.to_string())?;
    let text = format!("{LAB}rules: {{ backends: [{backend}], files: [{file}] }}\n{probes}");
    let path = dir.join("s.yaml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    scenario::load(&path, "s.yaml").map_err(|e| e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    // As the runner does.
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())
}

/// A lab with its rules and services, and a trace session over all its probes.
struct Running {
    scn: Scenario,
    lab: Lab,
    _services: Services,
    session: TraceSession,
}

async fn bring_up(scn: Scenario) -> Result<Running, String> {
    let lab = Lab::build(&scn).await.map_err(|e| e.to_string())?;
    let rb = backend::for_backend(scn.rules.backends[0]);
    backend::load(rb.as_ref(), lab.host(), &scn.rules.files).await.map_err(|e| e.to_string())?;
    let services = Services::start(&lab, &scn).map_err(|e| e.to_string())?;
    let tags: Vec<u16> = (0..scn.probes.len()).map(probe::tag).collect();
    let start = Instant::now();
    let session =
        TraceSession::start(lab.host(), &tags, scn.rules.backends[0], scn.ipv6).await.map_err(|e| e.to_string())?;
    println!("trace session started in {:?}", start.elapsed());
    Ok(Running { scn, lab, _services: services, session })
}

impl Running {
    /// Send probe `i` and race it against the trace's drop verdict: the time to
    /// whichever came first, and which.
    async fn race(&self, i: usize) -> (Duration, Result<trace::TraceEvent, probe::Outcome>) {
        let p = &self.scn.probes[i];
        let start = Instant::now();
        tokio::select! {
            biased;
            event = self.session.dropped(probe::tag(i)) => (start.elapsed(), Ok(event)),
            outcome = probe::send(self.lab.ns(p.from), p, i) => (start.elapsed(), Err(outcome)),
        }
    }
}

fn check(rules: &str, ext: &str, want: Expected) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scn = scenario(dir.path(), rules, ext, want.backend, PROBES)?;
    let rt = runtime()?;
    rt.block_on(async {
        let up = bring_up(scn).await?;
        let mut problems = Vec::new();
        let mut results = Vec::new();
        for i in 0..up.scn.probes.len() {
            results.push(up.race(i).await);
        }
        // Reached and refused probes have finished by themselves; what the trace saw of
        // them is complete once their last packets are through.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let dumps = Dumps::read(up.lab.host(), want.backend, false).await.map_err(|e| e.to_string())?;
        for (i, (elapsed, result)) in results.iter().enumerate() {
            let tag = probe::tag(i);
            let path: Vec<String> = up.session.events(tag).iter().map(|e| trace::describe(e, &dumps)).collect();
            let path = path.join("\n    ");
            let named = |event: &trace::TraceEvent, expected: &str, problems: &mut Vec<String>| {
                let got = trace::describe(event, &dumps);
                if got != expected {
                    problems.push(format!("probe {i}: deciding rule\n  got      {got}\n  expected {expected}"));
                }
                if *elapsed > Duration::from_millis(20) {
                    problems.push(format!("probe {i}: the drop verdict took {elapsed:?}"));
                }
                if event.direction != Direction::Request {
                    problems.push(format!("probe {i}: dropped {:?}, expected the request", event.direction));
                }
            };
            match (i, result) {
                (0, Ok(e)) => named(e, want.tcp81, &mut problems),
                (3, Ok(e)) => named(e, want.udp53, &mut problems),
                (4, Ok(e)) => named(e, want.icmp, &mut problems),
                (1, Err(o)) if o.kind == OutcomeKind::Reached => match up.session.deciding(tag) {
                    Some(e) if e.verdict == Some(trace::RuleVerdict::Accept) => {}
                    other => problems.push(format!("probe 1: deciding event {other:?}, expected an accept")),
                },
                (2, Err(o)) if o.kind == OutcomeKind::Refused => {
                    let rejected = up.session.events(tag).iter().any(|e| e.rejects);
                    if !rejected {
                        problems.push(format!("probe 2: no reject in its trace:\n    {path}"));
                    }
                }
                (_, Ok(e)) => problems.push(format!(
                    "probe {i}: reported dropped after {elapsed:?} by {}\n    {path}",
                    trace::describe(e, &dumps)
                )),
                (_, Err(o)) => problems.push(format!(
                    "probe {i}: the probe ended first after {elapsed:?}: {} ({})\n    {path}",
                    o.kind, o.detail
                )),
            }
            println!("probe {i} ({elapsed:?}):\n    {path}");
        }
        if up.session.lost_events() {
            problems.push("the trace socket overflowed".into());
        }
        up.session.close().await.map_err(|e| e.to_string())?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    })
}
