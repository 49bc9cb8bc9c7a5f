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

mod common;

use std::os::fd::AsFd;

use harness::backend::trace::{self, TraceSession};
use harness::lab::sandbox::{self, Invocation};
use harness::lab::Lab;
use harness::run;
use harness::traffic::probe::{self, Evidence, OutcomeKind};
use harness::traffic::service::Services;

fn main() {
    let nft_missing =
        || sandbox::which("nft").is_none().then(|| "nft is not installed; run ci/install-deps".to_string());
    common::run_trials(
        "retry",
        common::needs_root().or_else(nft_missing),
        vec![
            ("tcp_probe_that_met_silence_is_sent_again", || silence_first("tcp, port: 80", "reached")),
            ("icmp_probe_that_met_silence_is_sent_again", || silence_first("icmp", "reached")),
            ("probe_expected_dropped_is_not_sent_again", || silence_first("tcp, port: 80", "dropped")),
        ],
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

fn silence_first(probe: &str, expect: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scn = common::scenario(
        dir.path(),
        &common::two_routed_nodes("300ms", &format!("{{ from: a, to: b, proto: {probe}, expect: {expect} }}")),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let lab = Lab::build(&scn).await.map_err(|e| e.to_string())?;
        let _services = Services::start(&lab, &scn).map_err(|e| e.to_string())?;
        let b = scn.owner_of_ip(scn.probes[0].to).ok_or("no node owns b's address")?;
        let lossy =
            Invocation { stdin: Some(FIRST_PACKET_LOST.as_bytes().to_vec()), ..Invocation::new("nft", ["-f", "-"]) };
        sandbox::run_in(lab.ns(b).as_fd(), &lossy).await.map_err(|e| e.to_string())?;
        // As a run does: the host's trace sees the request forwarded, not dropped.
        let session = TraceSession::start(lab.host(), &[probe::tag(0)], scn.rules.backends[0], scn.ipv6)
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
