//! Which rule decided a probe's packet, read from the kernel's own trace.
//!
//! A table of ours, [`TABLE`], hooks prerouting and output ahead of every other chain
//! and sets `meta nftrace set 1` on the probes' packets only: TCP and UDP packets whose
//! source or destination port is a probe tag ([`crate::traffic::probe::tag`]), ICMP echo
//! requests and replies whose identifier is one. That sets the packet's trace bit,
//! which both rule engines of the kernel obey:
//!
//! - nf_tables (the iptables-nft and nft back ends) reports each rule that matched,
//!   each jump, return and policy as an `NFT_MSG_TRACE` message to the nfnetlink group
//!   `NFNLGRP_NFTRACE`, the messages `nft monitor trace` prints. The kernel puts the
//!   packet's IP and transport headers into the first event at each hook and a pseudo
//!   id (the same for every event of one packet) into all of them.
//! - x_tables (the iptables-legacy back end) logs each rule that matched, and each
//!   chain's end, as the `TRACE` target does: a log line `TRACE: table:chain:type:N`
//!   through the logger bound to IPv4 (`net.netfilter.nf_log.2`). The session binds
//!   `nfnetlink_log` there, in the lab host only, so the lines arrive over netlink as
//!   NFLOG packet messages of group 0, each with the packet's headers. x_tables does not
//!   say what a rule did: the verdict comes from the rule at that position in the rule
//!   set as `iptables-legacy-save` showed it when the session started (its target, or
//!   the chain's policy).
//!
//! [`TraceSession`] reads both over one `NETLINK_NETFILTER` socket created inside the
//! lab host and decodes the messages itself. Every event is tied to a probe by the tag
//! in the headers: the source port or echo identifier of a request, the destination
//! port of a reply. NAT keeps the tag in practice: DNAT changes the destination, and
//! masquerade keeps a source port that is free.
//!
//! A probe whose opening packet meets a drop verdict can be ended at once
//! ([`TraceSession::dropped`]) instead of waiting out its timeout, and [`describe`]
//! names the deciding rule in the syntax the user loaded it in: the `iptables-save`
//! line for iptables-nft (found by the rule's position among the handles of its chain
//! in `nft -a list ruleset`) and iptables-legacy (by its position), the nft rule
//! otherwise.

mod codec;
mod describe;
mod event;
mod session;
mod verdicts;

#[cfg(test)]
mod tests;

use std::io;

pub use describe::{describe, locate, Dumps, RuleRef};
pub use event::{deciding, Direction, EventKind, Packet, RuleVerdict, TraceEvent};
pub use session::TraceSession;

use crate::backend::BackendError;
use crate::lab::sandbox::ExecError;

/// A probe's tag: the source port of its TCP and UDP packets, the identifier of its
/// ICMP echoes (see [`crate::traffic::probe::tag`]).
pub type ProbeTag = u16;

/// The harness's own table in the lab host, family `ip`.
pub const TABLE: &str = "netconform_trace";

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("opening the nftrace socket in {ns}: {source}")]
    Socket { ns: String, source: io::Error },
    #[error("binding nfnetlink_log for the x_tables trace in {ns}: {source}")]
    Logger { ns: String, source: io::Error },
    #[error("loading the trace table into {ns}: {source}")]
    Table { ns: String, source: ExecError },
    #[error("listing the rule set of {ns}: {source}")]
    List { ns: String, source: ExecError },
    #[error(transparent)]
    Dump(#[from] BackendError),
}
