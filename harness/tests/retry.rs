//! A probe that meets only silence, on the real kernel. The silence is made on
//! purpose, so the test is the same on a quiet machine as on a busy one: the target
//! drops the first packet of each probe in its own namespace, where no trace of the
//! lab host sees it (an nft set remembers the sources it has dropped once). TCP sends
//! its SYN again only after a second, later than a probe waits, and an echo request
//! is never sent again: only sending the probe again gets the answer.
//!
//! A probe that expects an answer is sent once more and passes, and says so; a probe
//! that expects `dropped` is never sent again, so a retry can never turn a real drop
//! into a pass. A trial that cannot run here is reported ignored, with the reason.

use std::os::fd::AsFd;
use std::path::Path;

use harness::exec::{self, Invocation};
use harness::lab::Lab;
use harness::probe::{self, Evidence, OutcomeKind};
use harness::run;
use harness::scenario::{self, Scenario};
use harness::service::Services;
use harness::trace::{self, TraceSession};

fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root to build network namespaces".into());
    }
    exec::which("nft").is_none().then(|| "nft is not installed; run ci/install-deps".into())
}

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let ignored = unavailable();
    if let Some(why) = &ignored {
        eprintln!("the retry trials are ignored here: {why}");
    }
    let trial = |name: &str, body: fn() -> Result<(), String>| {
        libtest_mimic::Trial::test(name, move || body().map_err(Into::into))
            .with_kind("kernel")
            .with_ignored_flag(ignored.is_some())
    };
    let trials = vec![
        trial("retry::tcp_probe_that_met_silence_is_sent_again", || silence_first("tcp, port: 80", "reached")),
        trial("retry::icmp_probe_that_met_silence_is_sent_again", || silence_first("icmp", "reached")),
        trial("retry::probe_expected_dropped_is_not_sent_again", || silence_first("tcp, port: 80", "dropped")),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn lab(probe: &str, expect: &str) -> String {
    format!(
        "\
timeout: 300ms
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
  - {{ from: a, to: b, proto: {probe}, expect: {expect} }}
"
    )
}

/// In the target's namespace: the first packet from each source is dropped, the rest
/// pass.
const FIRST_PACKET_LOST: &str = "\
table inet lossy {
  set seen { type ipv4_addr; flags dynamic; }
  chain input {
    type filter hook input priority filter; policy accept;
    ip saddr != @seen add @seen { ip saddr } drop
  }
}
";

fn scenario(dir: &Path, text: &str) -> Result<Scenario, String> {
    std::fs::write(dir.join("r.nft"), "table inet lab {\n}\n").map_err(|e| e.to_string())?;
    let path = dir.join("s.yaml");
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    scenario::load(&path, "s.yaml").map_err(|e| e.to_string())
}

fn silence_first(probe: &str, expect: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scn = scenario(dir.path(), &lab(probe, expect))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let lab = Lab::build(&scn).await.map_err(|e| e.to_string())?;
        let _services = Services::start(&lab, &scn).map_err(|e| e.to_string())?;
        let b = scn.owner_of(scn.probes[0].to).ok_or("no node owns b's address")?;
        let lossy =
            Invocation { stdin: Some(FIRST_PACKET_LOST.as_bytes().to_vec()), ..Invocation::new("nft", ["-f", "-"]) };
        exec::run_in(lab.ns(b).as_fd(), &lossy).await.map_err(|e| e.to_string())?;
        // As a run does: the host's trace sees the request forwarded, not dropped.
        let session = TraceSession::start(lab.host(), &[probe::tag(0)], scn.rules.backends[0])
            .await
            .map_err(|e| e.to_string())?;
        let outcome = run::send(&lab, &scn, &scn.probes[0], 0, Some(&session)).await;
        let traced_drop = session.deciding(probe::tag(0)).filter(|e| e.verdict == Some(trace::RuleVerdict::Drop));
        session.close().await.map_err(|e| e.to_string())?;
        if let Some(e) = traced_drop {
            return Err(format!("the host's trace saw a drop, not silence: {e:?}"));
        }
        let described = format!(
            "{} ({}), {:?}, retried: {}",
            outcome.kind.name(),
            outcome.detail,
            outcome.evidence,
            outcome.retried
        );
        match expect {
            "reached"
                if outcome.kind == OutcomeKind::Reached && outcome.retried && outcome.evidence == Evidence::Answer =>
            {
                Ok(())
            }
            "dropped"
                if outcome.kind == OutcomeKind::Dropped
                    && !outcome.retried
                    && outcome.evidence == Evidence::Silence =>
            {
                Ok(())
            }
            _ => Err(format!("a probe that expects {expect} and whose first packet is lost ended {described}")),
        }
    })
}
