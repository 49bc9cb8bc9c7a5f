//! Neighbour resolution on the real kernel, under a condition a loaded machine
//! creates by chance: the answer to an ARP request comes late. Here it is made late
//! on purpose, so the test is the same on a quiet machine as on a busy one: the
//! target does not answer ARP at all (`arp_ignore=8`) for longer than the kernel's
//! default three requests last at the lab's retransmit time, then answers. A lab
//! that gives up on a neighbour early turns that reachable node into "ICMP host
//! unreachable"; the lab must keep asking until the probe's own deadline.
//!
//! The same holds for IPv6's neighbour discovery: there the target drops the
//! neighbour solicitations it gets, with an nft table of its own, for as long.
//!
//! A trial that cannot run here is reported ignored, with the reason.

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use harness::lab::sandbox::{self, Invocation};
use harness::lab::Lab;
use harness::traffic::probe::{self, OutcomeKind};
use harness::traffic::service::Services;

fn main() {
    common::run_trials(
        "neighbour",
        common::needs_root(),
        vec![
            ("late_arp_answer_from_a_routed_node_is_waited_for", || late_answer("icmp", None)),
            ("late_arp_answer_to_a_tcp_probe_is_waited_for", || late_answer("tcp", Some(80))),
            ("late_neighbour_advertisement_for_an_icmpv6_probe_is_waited_for", || late_advertisement("icmp", None)),
            ("late_neighbour_advertisement_for_a_tcp_probe_is_waited_for", || late_advertisement("tcp", Some(80))),
        ],
    )
}

/// `a` reaches `b` through the host: the host resolves `b` on its uplink, where the
/// answer is held back.
fn lab(proto: &str, port: Option<u16>) -> String {
    let port = port.map(|p| format!(", port: {p}")).unwrap_or_default();
    common::two_routed_nodes("3s", &format!("{{ from: a, to: b, proto: {proto}{port}, expect: reached }}"))
}

/// How long `b` stays silent to ARP: twice what three requests at the lab's 100 ms
/// retransmit time last, so an entry that fails after three is sure to have failed.
const SILENT: Duration = Duration::from_millis(700);

fn late_answer(proto: &str, port: Option<u16>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let scn = common::scenario(dir.path(), &lab(proto, port))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let lab = Lab::build(&scn).await.map_err(|e| e.to_string())?;
        let _services = Services::start(&lab, &scn).map_err(|e| e.to_string())?;
        let (a, b) = (scn.probes[0].from, scn.owner_of_ip(scn.probes[0].to).ok_or("no node owns b's address")?);
        lab.ns(b).write_sysctls([("net.ipv4.conf.all.arp_ignore", "8")]).map_err(|e| e.to_string())?;
        let target = lab.ns(b).try_clone().map_err(|e| e.to_string())?;
        let release = tokio::spawn(async move {
            tokio::time::sleep(SILENT).await;
            tokio::task::spawn_blocking(move || target.write_sysctls([("net.ipv4.conf.all.arp_ignore", "0")]))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        });
        let outcome = probe::send(lab.ns(a), &scn.probes[0], 0).await;
        release.await.map_err(|e| e.to_string())??;
        waited_for(&outcome, "ARP")
    })
}

/// The probe got through, and only once `b` answered `what` again: the condition held.
fn waited_for(outcome: &probe::Outcome, what: &str) -> Result<(), String> {
    if outcome.kind != OutcomeKind::Reached {
        return Err(format!(
            "a probe to a node that answers {what} after {SILENT:?} ended {} ({}) after {:?}",
            outcome.kind.name(),
            outcome.detail,
            outcome.elapsed
        ));
    }
    if outcome.elapsed < SILENT {
        return Err(format!(
            "answered after {:?}, before b answered {what}: the test did not hold {what} back",
            outcome.elapsed
        ));
    }
    Ok(())
}

/// Neighbour solicitations dropped as they arrive, before anything else sees them.
const DEAF_TO_NS: &str = "table inet deaf {
  chain input {
    type filter hook input priority raw - 10; policy accept;
    icmpv6 type nd-neighbor-solicit drop
  }
}
";

/// [`late_answer`] over IPv6: `b` drops neighbour solicitations for [`SILENT`].
fn late_advertisement(proto: &str, port: Option<u16>) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = port.map(|p| format!(", port: {p}")).unwrap_or_default();
    let probe = format!("{{ from: a, to: b, family: ipv6, proto: {proto}{port}, expect: reached }}");
    let scn = common::scenario(dir.path(), &two_routed_nodes_dual("3s", &probe))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let lab = Lab::build(&scn).await.map_err(|e| e.to_string())?;
        let _services = Services::start(&lab, &scn).map_err(|e| e.to_string())?;
        let (a, b) = (scn.probes[0].from, scn.owner_of_ip(scn.probes[0].to).ok_or("no node owns b's address")?);
        let deaf = Invocation { stdin: Some(DEAF_TO_NS.as_bytes().to_vec()), ..Invocation::new("nft", ["-f", "-"]) };
        sandbox::run_in(lab.ns(b).as_fd(), &deaf).await.map_err(|e| e.to_string())?;
        let target = lab.ns(b).try_clone().map_err(|e| e.to_string())?;
        let release = tokio::spawn(async move {
            tokio::time::sleep(SILENT).await;
            let hear = Invocation::new("nft", ["delete", "table", "inet", "deaf"]);
            sandbox::run_in(target.as_fd(), &hear).await.map(drop).map_err(|e| e.to_string())
        });
        let outcome = probe::send(lab.ns(a), &scn.probes[0], 0).await;
        release.await.map_err(|e| e.to_string())??;
        waited_for(&outcome, "neighbour solicitations")
    })
}

/// [`common::two_routed_nodes`] in both families: `a` reaches `b` over IPv6 with `family:
/// ipv6` in the probe.
fn two_routed_nodes_dual(timeout: &str, probe: &str) -> String {
    common::two_routed_nodes(timeout, probe)
        .replace("{ address: 10.1.0.1/24 }", "{ address: [10.1.0.1/24, \"fd00:1::1/64\"] }")
        .replace("{ address: 10.2.0.1/24 }", "{ address: [10.2.0.1/24, \"fd00:2::1/64\"] }")
        .replace(
            "address: 10.1.0.2/24, gateway: 10.1.0.1",
            "address: [10.1.0.2/24, \"fd00:1::2/64\"], gateway: [10.1.0.1, \"fd00:1::1\"]",
        )
        .replace(
            "address: 10.2.0.2/24, gateway: 10.2.0.1",
            "address: [10.2.0.2/24, \"fd00:2::2/64\"], gateway: [10.2.0.1, \"fd00:2::1\"]",
        )
}
