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

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::backend::counters::Dump;
use crate::backend::{self, BackendError};
use crate::lab::netns::{read_sysctl, write_sysctl, NetNs};
use crate::lab::sandbox::{self, ExecError, Invocation};
use crate::scenario::Backend;

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

// ---------------------------------------------------------------------------------------
// Events

/// What kind of step of the rule set an event reports (`enum nft_trace_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A rule matched; its verdict says what followed (continue, jump, accept, ...).
    Rule,
    /// The end of a chain that was jumped to: back to the calling chain.
    Return,
    /// The end of a base chain: its policy decided.
    Policy,
    Other(u32),
}

/// A verdict as nf_tables reports it. `reject` rules report [`RuleVerdict::Drop`]
/// too (the packet is dropped; the answer is a new packet): see [`TraceEvent::rejects`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleVerdict {
    Accept,
    Drop,
    Stolen,
    Queue,
    Repeat,
    Stop,
    /// The rule matched and evaluation went on with the next rule (counter, log, mark).
    Continue,
    Break,
    Jump(String),
    Goto(String),
    Return,
    Other(i32),
}

impl RuleVerdict {
    fn from_code(code: i32, chain: Option<String>) -> RuleVerdict {
        let chain = || chain.clone().unwrap_or_default();
        match code {
            0 => RuleVerdict::Drop,
            1 => RuleVerdict::Accept,
            2 => RuleVerdict::Stolen,
            3 => RuleVerdict::Queue,
            4 => RuleVerdict::Repeat,
            5 => RuleVerdict::Stop,
            -1 => RuleVerdict::Continue,
            -2 => RuleVerdict::Break,
            -3 => RuleVerdict::Jump(chain()),
            -4 => RuleVerdict::Goto(chain()),
            -5 => RuleVerdict::Return,
            // NF_QUEUE with a queue number in the upper bits.
            c if c > 0 && c & 0xff == 3 => RuleVerdict::Queue,
            c => RuleVerdict::Other(c),
        }
    }

    /// The verdict as nft prints it.
    pub fn nft_name(&self) -> String {
        match self {
            RuleVerdict::Accept => "accept".into(),
            RuleVerdict::Drop => "drop".into(),
            RuleVerdict::Stolen => "stolen".into(),
            RuleVerdict::Queue => "queue".into(),
            RuleVerdict::Repeat => "repeat".into(),
            RuleVerdict::Stop => "stop".into(),
            RuleVerdict::Continue => "continue".into(),
            RuleVerdict::Break => "break".into(),
            RuleVerdict::Jump(c) => format!("jump {c}"),
            RuleVerdict::Goto(c) => format!("goto {c}"),
            RuleVerdict::Return => "return".into(),
            RuleVerdict::Other(c) => format!("verdict {c}"),
        }
    }

    /// The verdict as iptables names targets.
    pub fn iptables_name(&self) -> String {
        match self {
            RuleVerdict::Jump(c) => format!("-j {c}"),
            RuleVerdict::Goto(c) => format!("-g {c}"),
            RuleVerdict::Continue => "continue".into(),
            other => other.nft_name().to_uppercase(),
        }
    }
}

impl fmt::Display for RuleVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.nft_name())
    }
}

/// Which way a probe's packet was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the probe's sender: the tag is the source port or the echo request's id.
    Request,
    /// Back to the sender: the tag is the destination port or the echo reply's id.
    Reply,
}

/// The IPv4 and transport headers of a traced packet, as the chain saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// IP protocol number: 1 ICMP, 6 TCP, 17 UDP.
    pub protocol: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp_flags: Option<u8>,
    pub icmp_type: Option<u8>,
    pub icmp_id: Option<u16>,
}

const TCP_SYN: u8 = 0x02;

impl Packet {
    /// Headers from NFTA_TRACE_NETWORK_HEADER and NFTA_TRACE_TRANSPORT_HEADER. Only
    /// IPv4: probes are IPv4.
    fn parse(network: &[u8], transport: &[u8]) -> Option<Packet> {
        if network.len() < 20 || network[0] >> 4 != 4 {
            return None;
        }
        let mut p = Packet {
            src: Ipv4Addr::new(network[12], network[13], network[14], network[15]),
            dst: Ipv4Addr::new(network[16], network[17], network[18], network[19]),
            protocol: network[9],
            sport: None,
            dport: None,
            tcp_flags: None,
            icmp_type: None,
            icmp_id: None,
        };
        let be16 = |i: usize| transport.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        match p.protocol {
            6 | 17 => {
                p.sport = be16(0);
                p.dport = be16(2);
                if p.protocol == 6 {
                    p.tcp_flags = transport.get(13).copied();
                }
            }
            1 => {
                p.icmp_type = transport.first().copied();
                if matches!(p.icmp_type, Some(0 | 8)) {
                    p.icmp_id = be16(4);
                }
            }
            _ => {}
        }
        Some(p)
    }

    /// The probe this packet belongs to, if any, and which way it goes.
    fn tie(&self, tags: &HashSet<ProbeTag>) -> Option<(ProbeTag, Direction)> {
        match self.protocol {
            6 | 17 => {
                if let Some(t) = self.sport.filter(|t| tags.contains(t)) {
                    Some((t, Direction::Request))
                } else {
                    self.dport.filter(|t| tags.contains(t)).map(|t| (t, Direction::Reply))
                }
            }
            1 => {
                let id = self.icmp_id.filter(|t| tags.contains(t))?;
                match self.icmp_type {
                    Some(8) => Some((id, Direction::Request)),
                    Some(0) => Some((id, Direction::Reply)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The packet that starts the exchange in its direction: a TCP SYN or SYN-ACK, a
    /// UDP datagram, an echo request or reply. Losing it loses the probe (a SYN is sent
    /// again only after a second, longer than a probe waits).
    pub fn opens_exchange(&self) -> bool {
        match self.protocol {
            6 => self.tcp_flags.is_some_and(|f| f & TCP_SYN != 0),
            17 => true,
            1 => matches!(self.icmp_type, Some(0 | 8)),
            _ => false,
        }
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.protocol, self.sport, self.dport) {
            (6, Some(s), Some(d)) => write!(f, "tcp {}:{s} -> {}:{d}", self.src, self.dst),
            (17, Some(s), Some(d)) => write!(f, "udp {}:{s} -> {}:{d}", self.src, self.dst),
            (1, _, _) => write!(
                f,
                "icmp {} -> {} type {} id {}",
                self.src,
                self.dst,
                self.icmp_type.map_or("?".into(), |t| t.to_string()),
                self.icmp_id.map_or("-".into(), |t| t.to_string())
            ),
            (p, _, _) => write!(f, "proto {p} {} -> {}", self.src, self.dst),
        }
    }
}

/// One step of a probe's packet through the lab host's nf_tables chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// The kernel's pseudo id of the packet: the same for all events of one packet in
    /// this namespace (and possibly reused by a later packet). x_tables has none: 0.
    pub id: u32,
    /// The nft family of the table: `ip`, `ip6`, `inet`, `bridge`, `arp`, `netdev`.
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The rule's nft handle (Rule events and explicit returns).
    pub rule_handle: Option<u64>,
    /// x_tables: the 1-based position of the rule in its chain, as TRACE logs it (for
    /// the end of a chain, one past its last rule).
    pub position: Option<usize>,
    pub kind: EventKind,
    /// What followed: the rule's verdict, or for [`EventKind::Policy`] the policy.
    pub verdict: Option<RuleVerdict>,
    /// Input and output interfaces, as far as the hook knows them; the names are those
    /// the lab host had when the session started.
    pub iif: Option<u32>,
    pub iif_name: Option<String>,
    pub oif: Option<u32>,
    pub oif_name: Option<String>,
    pub mark: Option<u32>,
    /// The headers as the first event of this chain traversal reported them; later
    /// events of the traversal repeat them.
    pub packet: Packet,
    pub tag: ProbeTag,
    pub direction: Direction,
    /// The rule answers the sender (reject) rather than dropping silently; nf_tables
    /// reports both as drop. Known for rules present when the session started.
    pub rejects: bool,
    /// When the event was read off the socket.
    pub seen: Instant,
}

impl TraceEvent {
    /// An event of our own table: the rule that turned tracing on, which tells where
    /// and how the packet entered the host (the only event of ours that is kept).
    pub fn is_ours(&self) -> bool {
        self.family == "ip" && self.table == TABLE && self.position.is_none()
    }

    /// A drop (not a reject) of the packet that opens the probe's exchange: the probe
    /// cannot get an answer any more.
    pub fn is_final_drop(&self) -> bool {
        self.verdict == Some(RuleVerdict::Drop) && !self.rejects && !self.is_ours() && self.packet.opens_exchange()
    }
}

/// The event that decided a probe's fate among `events` (one probe's, in order): the
/// first drop of the packet that opens the exchange towards the target, else of the
/// answer, else any drop; for a probe nothing dropped, the last accept of the opening
/// request by a rule of the user's (the rule that let it through, not one that accepts
/// the established packets after it), else its last accepting policy.
pub fn deciding(events: &[TraceEvent]) -> Option<&TraceEvent> {
    let theirs = || events.iter().filter(|e| !e.is_ours());
    let drop = |dir: Direction| {
        theirs().find(|e| e.direction == dir && e.verdict == Some(RuleVerdict::Drop) && e.packet.opens_exchange())
    };
    let accept = |opening: bool| {
        let candidates = || {
            theirs().filter(move |e| {
                e.verdict == Some(RuleVerdict::Accept)
                    && (!opening || (e.direction == Direction::Request && e.packet.opens_exchange()))
            })
        };
        candidates().rev().find(|e| e.kind == EventKind::Rule).or_else(|| candidates().next_back())
    };
    drop(Direction::Request)
        .or_else(|| drop(Direction::Reply))
        .or_else(|| theirs().find(|e| e.verdict == Some(RuleVerdict::Drop)))
        .or_else(|| accept(true))
        .or_else(|| accept(false))
}

// ---------------------------------------------------------------------------------------
// The netlink codec

const NETLINK_NETFILTER: isize = 12;
/// `enum nfnetlink_groups`: NFNLGRP_NFTRACE.
const NFNLGRP_NFTRACE: u32 = 9;
/// (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE
const NFT_TRACE_MESSAGE: u16 = (10 << 8) | 17;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// Attribute types carry NLA_F_NESTED and NLA_F_NET_BYTEORDER in their top bits.
const NLA_TYPE_MASK: u16 = 0x3fff;

// enum nft_trace_attributes
const NFTA_TRACE_TABLE: u16 = 1;
const NFTA_TRACE_CHAIN: u16 = 2;
const NFTA_TRACE_RULE_HANDLE: u16 = 3;
const NFTA_TRACE_TYPE: u16 = 4;
const NFTA_TRACE_VERDICT: u16 = 5;
const NFTA_TRACE_ID: u16 = 6;
const NFTA_TRACE_NETWORK_HEADER: u16 = 8;
const NFTA_TRACE_TRANSPORT_HEADER: u16 = 9;
const NFTA_TRACE_IIF: u16 = 10;
const NFTA_TRACE_OIF: u16 = 12;
const NFTA_TRACE_MARK: u16 = 14;
const NFTA_TRACE_POLICY: u16 = 16;
// enum nft_verdict_attributes
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The messages of one netlink datagram: (type, payload after the header, sequence
/// number).
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8], u32)> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let payload = &buf[NLMSG_HDRLEN..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, payload, seq))
    })
}

/// The attributes in `buf`: (type without flags, payload).
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, payload))
    })
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

fn nla_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn family_name(nfproto: u8) -> String {
    match nfproto {
        1 => "inet".into(),
        2 => "ip".into(),
        3 => "arp".into(),
        5 => "netdev".into(),
        7 => "bridge".into(),
        10 => "ip6".into(),
        n => format!("family {n}"),
    }
}

/// One NFT_MSG_TRACE message, decoded but not yet tied to a probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RawTrace {
    family: u8,
    id: u32,
    kind: u32,
    table: String,
    chain: String,
    rule_handle: Option<u64>,
    verdict: Option<(i32, Option<String>)>,
    policy: Option<u32>,
    iif: Option<u32>,
    oif: Option<u32>,
    mark: Option<u32>,
    network: Option<Vec<u8>>,
    transport: Option<Vec<u8>>,
}

/// Decode the payload of an NFT_MSG_TRACE message (nfgenmsg, then attributes).
fn decode_trace(payload: &[u8]) -> Option<RawTrace> {
    if payload.len() < NFGENMSG_LEN {
        return None;
    }
    let mut t = RawTrace { family: payload[0], ..RawTrace::default() };
    for (ty, value) in attributes(&payload[NFGENMSG_LEN..]) {
        match ty {
            NFTA_TRACE_TABLE => t.table = nla_string(value),
            NFTA_TRACE_CHAIN => t.chain = nla_string(value),
            NFTA_TRACE_RULE_HANDLE => t.rule_handle = be64(value),
            NFTA_TRACE_TYPE => t.kind = be32(value)?,
            NFTA_TRACE_ID => t.id = be32(value)?,
            NFTA_TRACE_VERDICT => {
                let mut code = None;
                let mut chain = None;
                for (vt, vv) in attributes(value) {
                    match vt {
                        NFTA_VERDICT_CODE => code = be32(vv).map(|c| c as i32),
                        NFTA_VERDICT_CHAIN => chain = Some(nla_string(vv)),
                        _ => {}
                    }
                }
                t.verdict = code.map(|c| (c, chain));
            }
            NFTA_TRACE_POLICY => t.policy = be32(value),
            NFTA_TRACE_IIF => t.iif = be32(value),
            NFTA_TRACE_OIF => t.oif = be32(value),
            NFTA_TRACE_MARK => t.mark = be32(value),
            NFTA_TRACE_NETWORK_HEADER => t.network = Some(value.to_vec()),
            NFTA_TRACE_TRANSPORT_HEADER => t.transport = Some(value.to_vec()),
            _ => {}
        }
    }
    Some(t)
}

// ---------------------------------------------------------------------------------------
// The x_tables trace: TRACE log lines as NFLOG messages

/// (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
const NFLOG_PACKET_MESSAGE: u16 = 4 << 8;
/// (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
const NFLOG_CONFIG_MESSAGE: u16 = (4 << 8) | 1;
const NLMSG_ERROR: u16 = 2;
// enum nfulnl_attr_type
const NFULA_MARK: u16 = 2;
const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_IFINDEX_OUTDEV: u16 = 5;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
// enum nfulnl_attr_config
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 5;
// enum nfulnl_msg_config_cmds
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_CFG_CMD_PF_BIND: u8 = 3;
const NFULNL_COPY_PACKET: u8 = 2;
/// The group the kernel logs to when the caller names none, as `nf_log_trace` does.
const NFLOG_DEFAULT_GROUP: u16 = 0;
/// Enough of each packet for the largest IPv4 and TCP headers.
const NFLOG_COPY_RANGE: u32 = 160;
/// The IPv4 logger's sysctl: which logger `nf_log_trace` uses for IPv4.
pub const IPV4_LOGGER_SYSCTL: &str = "net.netfilter.nf_log.2";
/// The logger that sends log lines over netlink.
pub const NFNETLINK_LOG: &str = "nfnetlink_log";

/// One TRACE line of x_tables, decoded but not yet tied to a probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct XtTrace {
    table: String,
    chain: String,
    /// `rule`, `return` or `policy`.
    kind: String,
    position: usize,
    iif: Option<u32>,
    oif: Option<u32>,
    mark: Option<u32>,
    /// The packet from its IP header on.
    payload: Vec<u8>,
}

/// `TRACE: filter:FORWARD:rule:3 ` -> (`filter`, `FORWARD`, `rule`, 3). The table
/// comes first and the type and number last, so a chain name with a colon survives.
fn parse_trace_prefix(prefix: &str) -> Option<(String, String, String, usize)> {
    let rest = prefix.trim_end_matches(['\0', ' ']).strip_prefix("TRACE: ")?;
    let (table, rest) = rest.split_once(':')?;
    let mut tail = rest.rsplitn(3, ':');
    let position = tail.next()?.parse().ok()?;
    let kind = tail.next()?;
    let chain = tail.next()?;
    if !matches!(kind, "rule" | "return" | "policy") || chain.is_empty() {
        return None;
    }
    Some((table.to_string(), chain.to_string(), kind.to_string(), position))
}

/// Decode the payload of an NFLOG packet message (nfgenmsg, then attributes); None
/// unless it is a TRACE line of an IPv4 packet.
fn decode_nflog(payload: &[u8]) -> Option<XtTrace> {
    if payload.len() < NFGENMSG_LEN || payload[0] != libc::AF_INET as u8 {
        return None;
    }
    let mut prefix = None;
    let mut t = XtTrace::default();
    for (ty, value) in attributes(&payload[NFGENMSG_LEN..]) {
        match ty {
            NFULA_PREFIX => prefix = Some(nla_string(value)),
            NFULA_PAYLOAD => t.payload = value.to_vec(),
            NFULA_IFINDEX_INDEV => t.iif = be32(value),
            NFULA_IFINDEX_OUTDEV => t.oif = be32(value),
            NFULA_MARK => t.mark = be32(value),
            _ => {}
        }
    }
    (t.table, t.chain, t.kind, t.position) = parse_trace_prefix(&prefix?)?;
    Some(t)
}

/// What each rule and chain end of an x_tables rule set does, from its dump: TRACE
/// names a rule by its position, not its verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct XtRules {
    /// (table, chain, position) -> the rule's verdict, and whether it rejects.
    rules: HashMap<(String, String, usize), (RuleVerdict, bool)>,
    /// (table, chain) -> the built-in chain's policy.
    policies: HashMap<(String, String), RuleVerdict>,
}

impl XtRules {
    fn from_dump(dump: &Dump) -> XtRules {
        let chains: HashSet<(&str, &str)> = dump.chains.iter().map(|c| (c.table.as_str(), c.chain.as_str())).collect();
        let rules = dump
            .rules
            .iter()
            .map(|r| {
                let is_chain = |name: &str| chains.contains(&(r.table.as_str(), name));
                ((r.table.clone(), r.chain.clone(), r.position), xt_verdict(&r.text, is_chain))
            })
            .collect();
        let policies = dump
            .policies
            .iter()
            .filter_map(|p| {
                let verdict = match p.policy.as_str() {
                    "ACCEPT" => RuleVerdict::Accept,
                    "DROP" => RuleVerdict::Drop,
                    _ => return None,
                };
                Some(((p.table.clone(), p.chain.clone()), verdict))
            })
            .collect();
        XtRules { rules, policies }
    }
}

/// What an `iptables-save` rule (the text after `-A CHAIN`) does to a packet it
/// matches, as nf_tables would report it, and whether it rejects. Targets that let the
/// packet on to the next rule (LOG, MARK, CT, ...) and rules without one continue; NAT
/// targets end the nat chain as an accept does.
fn xt_verdict(text: &str, is_chain: impl Fn(&str) -> bool) -> (RuleVerdict, bool) {
    let mut words = Vec::new();
    let mut quoted = false;
    for word in text.split_whitespace() {
        // Quoted arguments (comments) hold no options.
        let starts = !quoted;
        quoted ^= word.matches('"').count() % 2 == 1;
        if starts {
            words.push(word);
        }
    }
    let target = |flags: &[&str]| {
        words.iter().position(|w| flags.contains(w)).and_then(|i| words.get(i + 1)).map(|w| w.to_string())
    };
    if let Some(chain) = target(&["-g", "--goto"]) {
        return (RuleVerdict::Goto(chain), false);
    }
    let Some(name) = target(&["-j", "--jump"]) else { return (RuleVerdict::Continue, false) };
    let verdict = match name.as_str() {
        "ACCEPT" => RuleVerdict::Accept,
        "DROP" => RuleVerdict::Drop,
        "REJECT" => return (RuleVerdict::Drop, true),
        "RETURN" => RuleVerdict::Return,
        "QUEUE" | "NFQUEUE" => RuleVerdict::Queue,
        "DNAT" | "SNAT" | "MASQUERADE" | "REDIRECT" | "NETMAP" => RuleVerdict::Accept,
        chain if is_chain(chain) => RuleVerdict::Jump(name.clone()),
        _ => RuleVerdict::Continue,
    };
    (verdict, false)
}

/// One netlink attribute, padded.
fn nla(ty: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity(align4(len));
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(len), 0);
    out
}

/// An NFLOG configuration request for `group` (nfgenmsg with `family`, then `attrs`).
fn nflog_config(seq: u32, family: u8, group: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
    let body_len: usize = NFGENMSG_LEN + attrs.iter().map(Vec::len).sum::<usize>();
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body_len);
    msg.extend_from_slice(&((NLMSG_HDRLEN + body_len) as u32).to_ne_bytes());
    msg.extend_from_slice(&NFLOG_CONFIG_MESSAGE.to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[family, 0]);
    msg.extend_from_slice(&group.to_be_bytes());
    for a in attrs {
        msg.extend_from_slice(a);
    }
    msg
}

/// Bind `sock` to NFLOG group 0 in the calling thread's namespace, copying the first
/// [`NFLOG_COPY_RANGE`] bytes of each packet and sending each line at once. Each
/// request is acknowledged synchronously; an error in the acknowledgement (EBUSY:
/// another socket holds the group) fails the bind.
fn bind_nflog(sock: &netlink_sys::Socket) -> io::Result<()> {
    let mut mode = NFLOG_COPY_RANGE.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    let inet = libc::AF_INET as u8;
    let requests = [
        // A no-op since Linux 3.17; needed before it.
        nflog_config(1, inet, 0, &[nla(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_PF_BIND])]),
        nflog_config(2, inet, NFLOG_DEFAULT_GROUP, &[nla(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])]),
        nflog_config(
            3,
            inet,
            NFLOG_DEFAULT_GROUP,
            &[nla(NFULA_CFG_MODE, &mode), nla(NFULA_CFG_QTHRESH, &1u32.to_be_bytes())],
        ),
    ];
    let mut buf = vec![0u8; 1 << 16];
    for (i, request) in requests.iter().enumerate() {
        let seq = i as u32 + 1;
        sock.send(request, 0)?;
        // The answer is queued before send returns; trace events of other packets may
        // come first.
        'answer: loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let datagram = &buf[..n as usize];
            for (ty, payload, got_seq) in messages(datagram) {
                if ty == NLMSG_ERROR && got_seq == seq {
                    let code = payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if code < 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    break 'answer;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The session

/// What the reading task found so far.
#[derive(Default)]
struct State {
    events: HashMap<ProbeTag, Vec<TraceEvent>>,
    /// The first final drop of each probe.
    drops: HashMap<ProbeTag, TraceEvent>,
    /// The packet each trace id last reported headers for, tied to a probe or not:
    /// events without headers belong to it.
    packets: HashMap<u32, Option<(Packet, ProbeTag, Direction)>>,
    /// Events of packets that are no probe's (another rule set's nftrace, say).
    untied: usize,
    /// The socket overflowed at least once: some events are missing.
    lost: bool,
    /// Why the reading task stopped, if it did.
    failed: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    notify: Notify,
    tags: HashSet<ProbeTag>,
    /// (family, table, handle) of the rules that reject.
    rejects: HashSet<(String, String, u64)>,
    /// Under iptables-legacy, what the rules at each position do.
    xtables: XtRules,
    interfaces: HashMap<u32, String>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take in one datagram; true if it added events.
    fn ingest(&self, datagram: &[u8], seen: Instant) -> bool {
        let mut added = false;
        let mut state = self.lock();
        for (ty, payload, _) in messages(datagram) {
            let event = match ty {
                NFT_TRACE_MESSAGE => decode_trace(payload).and_then(|raw| self.tie(&mut state, raw, seen)),
                NFLOG_PACKET_MESSAGE => decode_nflog(payload).and_then(|raw| self.tie_xt(&mut state, raw, seen)),
                _ => continue,
            };
            if let Some(event) = event {
                // Of our own chain only the rule that turned tracing on tells something
                // (where the packet came in); its end and policy are noise.
                if event.is_ours() && event.rule_handle.is_none() {
                    continue;
                }
                if event.is_final_drop() {
                    state.drops.entry(event.tag).or_insert_with(|| event.clone());
                }
                state.events.entry(event.tag).or_default().push(event);
                added = true;
            }
        }
        added
    }

    /// An x_tables TRACE line as an event; every line carries the packet's headers.
    fn tie_xt(&self, state: &mut State, raw: XtTrace, seen: Instant) -> Option<TraceEvent> {
        let header_len = usize::from(raw.payload.first()? & 0x0f) * 4;
        let tied = Packet::parse(&raw.payload, raw.payload.get(header_len..).unwrap_or(&[]))
            .and_then(|p| p.tie(&self.tags).map(|(tag, dir)| (p, tag, dir)));
        let Some((packet, tag, direction)) = tied else {
            state.untied += 1;
            return None;
        };
        let (kind, verdict, rejects) = match raw.kind.as_str() {
            "policy" => {
                (EventKind::Policy, self.xtables.policies.get(&(raw.table.clone(), raw.chain.clone())).cloned(), false)
            }
            "return" => (EventKind::Return, Some(RuleVerdict::Return), false),
            _ => match self.xtables.rules.get(&(raw.table.clone(), raw.chain.clone(), raw.position)) {
                Some((verdict, rejects)) => (EventKind::Rule, Some(verdict.clone()), *rejects),
                None => (EventKind::Rule, None, false),
            },
        };
        let mut event = self.blank(packet, tag, direction, seen);
        (event.family, event.table, event.chain) = ("ip".into(), raw.table, raw.chain);
        (event.position, event.kind, event.verdict, event.rejects) = (Some(raw.position), kind, verdict, rejects);
        (event.iif, event.oif, event.mark) = (raw.iif, raw.oif, raw.mark);
        Some(self.named(event))
    }

    /// An event of `packet` with nothing known of where it was yet.
    fn blank(&self, packet: Packet, tag: ProbeTag, direction: Direction, seen: Instant) -> TraceEvent {
        TraceEvent {
            id: 0,
            family: String::new(),
            table: String::new(),
            chain: String::new(),
            rule_handle: None,
            position: None,
            kind: EventKind::Other(0),
            verdict: None,
            iif: None,
            iif_name: None,
            oif: None,
            oif_name: None,
            mark: None,
            packet,
            tag,
            direction,
            rejects: false,
            seen,
        }
    }

    /// `event` with the names of its interfaces.
    fn named(&self, mut event: TraceEvent) -> TraceEvent {
        event.iif_name = event.iif.and_then(|i| self.interfaces.get(&i).cloned());
        event.oif_name = event.oif.and_then(|i| self.interfaces.get(&i).cloned());
        event
    }

    fn tie(&self, state: &mut State, raw: RawTrace, seen: Instant) -> Option<TraceEvent> {
        let tied = match (&raw.network, &raw.transport) {
            (Some(n), t) => {
                let tied = Packet::parse(n, t.as_deref().unwrap_or(&[]))
                    .and_then(|p| p.tie(&self.tags).map(|(tag, dir)| (p, tag, dir)));
                // Ids are hashes of the packet buffer; a long session must not keep
                // every id it ever saw.
                if state.packets.len() > 1 << 16 {
                    state.packets.clear();
                }
                state.packets.insert(raw.id, tied);
                tied
            }
            (None, _) => state.packets.get(&raw.id).copied().flatten(),
        };
        let Some((packet, tag, direction)) = tied else {
            state.untied += 1;
            return None;
        };
        let family = family_name(raw.family);
        let kind = match raw.kind {
            1 => EventKind::Policy,
            2 => EventKind::Return,
            3 => EventKind::Rule,
            k => EventKind::Other(k),
        };
        let verdict = match kind {
            EventKind::Policy => raw.policy.map(|p| RuleVerdict::from_code(p as i32, None)),
            _ => raw.verdict.map(|(code, chain)| RuleVerdict::from_code(code, chain)),
        };
        let rejects = raw.rule_handle.is_some_and(|h| self.rejects.contains(&(family.clone(), raw.table.clone(), h)));
        let event = TraceEvent {
            id: raw.id,
            family,
            table: raw.table,
            chain: raw.chain,
            rule_handle: raw.rule_handle,
            kind,
            verdict,
            iif: raw.iif,
            oif: raw.oif,
            mark: raw.mark,
            rejects,
            ..self.blank(packet, tag, direction, seen)
        };
        Some(self.named(event))
    }
}

/// Tracing the probes' packets in one lab host: a netlink socket subscribed to the
/// trace group in that namespace, a task reading it, and the table [`TABLE`] that
/// turns tracing on. Dropping the session stops the task and closes the socket; the
/// table stays until [`TraceSession::close`] or the end of the lab.
pub struct TraceSession {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    host: NetNs,
    /// Under iptables-legacy, the IPv4 logger the lab host had before, put back on close.
    logger: Option<String>,
}

impl fmt::Debug for TraceSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceSession").field("host", &self.host.name()).finish_non_exhaustive()
    }
}

impl Drop for TraceSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TraceSession {
    /// Start tracing the packets of the probes with `tags` (all of a scenario's) in the
    /// lab host `host`, whose rule set is loaded with `backend`. Call it once the rule
    /// set is loaded: a rule file that flushes the whole rule set (`flush ruleset`)
    /// removes our table with everything else, and under iptables-legacy the verdicts
    /// are read from the rule set as it is now.
    ///
    /// The socket is created on a thread inside `host` and subscribed before the table
    /// is loaded, so no event of a traced packet is missed. Needs `nft` on PATH, which
    /// it runs twice: `nft -f -` to load the table, `nft -a list ruleset` to learn which
    /// rules reject. Under iptables-legacy it binds `nfnetlink_log` as the lab host's
    /// IPv4 logger and NFLOG group 0 to the socket, and reads `iptables-legacy-save`.
    pub async fn start(host: &NetNs, tags: &[ProbeTag], backend: Backend) -> Result<TraceSession, TraceError> {
        let ns = host.name().to_string();
        let xtables = backend == Backend::IptablesLegacy;
        let sock_err = |source| TraceError::Socket { ns: ns.clone(), source };
        let logger_err = |source| TraceError::Logger { ns: ns.clone(), source };
        let (sock, interfaces) =
            host.run(|| open_socket().map(|s| (s, interface_names()))).and_then(|r| r).map_err(sock_err)?;
        let logger = if xtables {
            let previous = host
                .run(|| -> io::Result<String> {
                    let previous = read_sysctl(IPV4_LOGGER_SYSCTL)?;
                    write_sysctl(IPV4_LOGGER_SYSCTL, NFNETLINK_LOG)?;
                    bind_nflog(&sock)?;
                    Ok(previous)
                })
                .and_then(|r| r)
                .map_err(logger_err)?;
            Some(previous)
        } else {
            None
        };
        // SAFETY: the socket is owned by the AsyncFd and closed only when it drops.
        let sock = unsafe { AsyncFd::register(sock) }.map_err(|e| sock_err(io::Error::from(e)))?;
        let host = host.try_clone().map_err(sock_err)?;

        let table = Invocation { stdin: Some(table_script(tags).into_bytes()), ..Invocation::new("nft", ["-f", "-"]) };
        sandbox::run_in(host.as_fd(), &table).await.map_err(|source| TraceError::Table { ns: ns.clone(), source })?;
        let (rejects, xtables) = if xtables {
            let dump = backend::dump(backend::for_backend(backend).as_ref(), &host).await?.0;
            (HashSet::new(), XtRules::from_dump(&dump))
        } else {
            let listing = list_ruleset(&host).await?;
            let rejects = parse_listing(&listing)
                .chains
                .into_iter()
                .flat_map(|c| {
                    let (family, table) = (c.family, c.table);
                    c.rules
                        .into_iter()
                        .filter(|r| rejects(&r.text))
                        .map(move |r| (family.clone(), table.clone(), r.handle))
                })
                .collect();
            (rejects, XtRules::default())
        };

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            tags: tags.iter().copied().collect(),
            rejects,
            xtables,
            interfaces,
        });
        let task = tokio::spawn(read_events(sock, shared.clone()));
        Ok(TraceSession { shared, task, host, logger })
    }

    /// The events of the probe with `tag` so far, in the order the kernel sent them.
    pub fn events(&self, tag: ProbeTag) -> Vec<TraceEvent> {
        self.shared.lock().events.get(&tag).cloned().unwrap_or_default()
    }

    /// The event that decided the probe's fate so far (see [`deciding`]).
    pub fn deciding(&self, tag: ProbeTag) -> Option<TraceEvent> {
        deciding(&self.events(tag)).cloned()
    }

    /// Resolves with the event as soon as the probe's opening packet (a SYN or SYN-ACK,
    /// a UDP datagram, an echo request or reply) meets a drop verdict of the user's
    /// rules; never, if it does not. A reject does not resolve it: the probe gets its
    /// answer (a reset, an ICMP error) by itself.
    ///
    /// A drop of the reply ([`Direction::Reply`]) means the request did arrive.
    pub async fn dropped(&self, tag: ProbeTag) -> TraceEvent {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so an event that comes in between wakes us.
            notified.as_mut().enable();
            if let Some(event) = self.shared.lock().drops.get(&tag) {
                return event.clone();
            }
            notified.await;
        }
    }

    /// Forget what was seen of the probe with `tag`, before sending it again.
    pub fn forget(&self, tag: ProbeTag) {
        let mut state = self.shared.lock();
        state.events.remove(&tag);
        state.drops.remove(&tag);
    }

    /// Whether the kernel had to discard events because we read too slowly: the
    /// events of some probes may be incomplete.
    pub fn lost_events(&self) -> bool {
        self.shared.lock().lost
    }

    /// Events of traced packets that belong to no probe.
    pub fn untied_events(&self) -> usize {
        self.shared.lock().untied
    }

    /// Why the reading task stopped, if it did; no event comes after that.
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// Stop tracing and remove our table, so that a dump taken afterwards shows only
    /// the user's rule set.
    pub async fn close(self) -> Result<(), TraceError> {
        let ns = self.host.name().to_string();
        let inv = Invocation::new("nft", ["delete", "table", "ip", TABLE]);
        sandbox::run_in(self.host.as_fd(), &inv)
            .await
            .map_err(|source| TraceError::Table { ns: ns.clone(), source })?;
        if let Some(previous) = &self.logger {
            self.host
                .run(|| write_sysctl(IPV4_LOGGER_SYSCTL, previous))
                .and_then(|r| r)
                .map_err(|source| TraceError::Logger { ns, source })?;
        }
        Ok(())
    }
}

/// The nft script of our table: replaces any earlier one in one transaction. The
/// chains run before raw (-300), conntrack (-200) and DNAT (-100), so they see every
/// packet as it arrived; output catches what the host itself sends (a probe from the
/// host, a reset a reject rule sends back).
fn table_script(tags: &[ProbeTag]) -> String {
    let mut rules = String::new();
    if !tags.is_empty() {
        let mut sorted: Vec<ProbeTag> = tags.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let set = sorted.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
        for field in ["sport", "dport"] {
            rules.push_str(&format!("\t\tmeta l4proto {{ tcp, udp }} th {field} {{ {set} }} meta nftrace set 1\n"));
        }
        rules.push_str(&format!(
            "\t\ticmp type {{ echo-request, echo-reply }} icmp id {{ {set} }} meta nftrace set 1\n"
        ));
    }
    let mut script = format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    for (chain, hook) in [("pre", "prerouting"), ("out", "output")] {
        script.push_str(&format!(
            "\tchain {chain} {{\n\t\ttype filter hook {hook} priority raw - 10; policy accept;\n{rules}\t}}\n"
        ));
    }
    script.push_str("}\n");
    script
}

/// A NETLINK_NETFILTER socket in the calling thread's namespace, subscribed to the
/// trace group, non-blocking.
fn open_socket() -> io::Result<netlink_sys::Socket> {
    let mut sock = netlink_sys::Socket::new(NETLINK_NETFILTER)?;
    sock.bind(&netlink_sys::SocketAddr::new(0, 0))?;
    sock.add_membership(NFNLGRP_NFTRACE)?;
    sock.set_non_blocking(true)?;
    // A scenario's probes go out at once and every packet makes a dozen events; the
    // default buffer would overflow. FORCE passes over rmem_max, as root may.
    let size: libc::c_int = 8 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid descriptor and a correctly sized option value.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            break;
        }
    }
    Ok(sock)
}

/// Interface index -> name in the calling thread's namespace.
fn interface_names() -> HashMap<u32, String> {
    let mut names = HashMap::new();
    // SAFETY: if_nameindex returns an array ended by a zero entry, or NULL; it is
    // freed once, after the last read.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return names;
        }
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*p).if_name).to_string_lossy().into_owned();
            names.insert((*p).if_index, name);
            p = p.add(1);
        }
        libc::if_freenameindex(list);
    }
    names
}

async fn read_events(sock: AsyncFd<netlink_sys::Socket>, shared: Arc<Shared>) {
    // Trace messages are well under 1 KiB; one datagram holds one message.
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let mut guard = match sock.readable().await {
            Ok(g) => g,
            Err(e) => {
                shared.lock().failed = Some(e.to_string());
                return;
            }
        };
        loop {
            let got = guard.try_io(|s| {
                // SAFETY: buf is valid for buf.len() bytes.
                let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match got {
                Ok(Ok(n)) => {
                    if shared.ingest(&buf[..n.min(buf.len())], Instant::now()) {
                        shared.notify.notify_waiters();
                    }
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => shared.lock().lost = true,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => {
                    shared.lock().failed = Some(e.to_string());
                    return;
                }
                // Drained: wait for the next readiness.
                Err(_would_block) => break,
            }
        }
    }
}

async fn list_ruleset(host: &NetNs) -> Result<String, TraceError> {
    let inv = Invocation::new("nft", ["-a", "list", "ruleset"]);
    sandbox::run_in(host.as_fd(), &inv)
        .await
        .map(|o| o.stdout)
        .map_err(|source| TraceError::List { ns: host.name().to_string(), source })
}

/// Whether an nft rule rejects: a `reject` statement, or iptables' REJECT target as
/// nft shows it when it cannot translate it. Quoted strings (comments) do not count.
fn rejects(rule: &str) -> bool {
    let mut unquoted = String::new();
    let mut quoted = false;
    for c in rule.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted {
            unquoted.push(c);
        }
    }
    let words: Vec<&str> = unquoted.split_whitespace().collect();
    words.contains(&"reject") || (words.contains(&"target") && rule.contains("REJECT"))
}

// ---------------------------------------------------------------------------------------
// `nft -a list ruleset`

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Listing {
    chains: Vec<ListedChain>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ListedChain {
    family: String,
    table: String,
    name: String,
    /// `type filter hook forward priority filter; policy drop;` of a base chain.
    hook: Option<String>,
    policy: Option<String>,
    rules: Vec<ListedRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ListedRule {
    handle: u64,
    /// The rule as listed, without `# handle N`, counter values and extra spaces.
    text: String,
}

impl Listing {
    /// The chain and 1-based position of the rule with `handle` (unique in its table).
    fn rule(&self, family: &str, table: &str, handle: u64) -> Option<(&ListedChain, usize, &ListedRule)> {
        self.chains
            .iter()
            .filter(|c| c.family == family && c.table == table)
            .find_map(|c| c.rules.iter().position(|r| r.handle == handle).map(|i| (c, i + 1, &c.rules[i])))
    }
}

/// The code of a listing line and its `#` note, split outside quoted strings.
fn split_note(line: &str) -> (&str, Option<&str>) {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return (&line[..i], Some(&line[i + 1..])),
            _ => {}
        }
    }
    (line, None)
}

fn braces(code: &str) -> (usize, usize) {
    let mut quoted = false;
    let (mut open, mut close) = (0, 0);
    for c in code.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => open += 1,
            '}' if !quoted => close += 1,
            _ => {}
        }
    }
    (open, close)
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// `... counter packets 3 bytes 180 drop` -> `... counter drop`, white space collapsed.
fn clean_rule(code: &str) -> String {
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        out.push(words[i]);
        if words[i] == "counter"
            && words.get(i + 1) == Some(&"packets")
            && words.get(i + 3) == Some(&"bytes")
            && words.get(i + 2).is_some_and(|w| w.parse::<u64>().is_ok())
            && words.get(i + 4).is_some_and(|w| w.parse::<u64>().is_ok())
        {
            i += 5;
        } else {
            i += 1;
        }
    }
    out.join(" ")
}

/// Read the chains and their rules' handles from `nft -a list ruleset`. nft prints one
/// rule per line, each ending in `# handle N`; sets, maps and other blocks are skipped.
fn parse_listing(text: &str) -> Listing {
    let mut listing = Listing::default();
    let mut depth = 0usize;
    let mut table: Option<(String, String)> = None;
    let mut chain: Option<usize> = None;
    for line in text.lines() {
        let (code, note) = split_note(line);
        let words: Vec<&str> = code.split_whitespace().collect();
        let (open, close) = braces(code);
        match depth {
            0 if words.first() == Some(&"table") => {
                table = match words.len() {
                    // `table ip filter {`
                    n if n >= 4 => Some((words[1].to_string(), unquote(words[2]))),
                    // `table filter {`: nft's default family
                    3 => Some(("ip".to_string(), unquote(words[1]))),
                    _ => None,
                };
            }
            1 if words.first() == Some(&"chain") && words.len() >= 2 => {
                if let Some((family, name)) = &table {
                    listing.chains.push(ListedChain {
                        family: family.clone(),
                        table: name.clone(),
                        name: unquote(words[1]),
                        hook: None,
                        policy: None,
                        rules: Vec::new(),
                    });
                    chain = Some(listing.chains.len() - 1);
                }
            }
            2 if chain.is_some() => {
                let c = &mut listing.chains[chain.unwrap_or_default()];
                if words.first() == Some(&"type") && words.contains(&"hook") {
                    let after = |key: &str| {
                        words
                            .iter()
                            .position(|w| *w == key)
                            .and_then(|i| words.get(i + 1))
                            .map(|w| w.trim_end_matches(';').to_string())
                    };
                    c.hook = after("hook");
                    c.policy = after("policy");
                } else if let Some(handle) =
                    note.and_then(|n| n.trim().strip_prefix("handle ")).and_then(|h| h.trim().parse().ok())
                {
                    if open == close {
                        c.rules.push(ListedRule { handle, text: clean_rule(code) });
                    }
                }
            }
            _ => {}
        }
        depth = (depth + open).saturating_sub(close);
        if depth < 2 {
            chain = None;
        }
        if depth < 1 {
            table = None;
        }
    }
    listing
}

// ---------------------------------------------------------------------------------------
// Naming the rule

/// What [`describe`] needs to name rules: the rule set listed with handles, and for
/// iptables-nft and iptables-legacy the `iptables-save` dump of the same rule set.
#[derive(Debug, Clone, Default)]
pub struct Dumps {
    listing: Listing,
    iptables: Option<Dump>,
}

impl Dumps {
    /// From the text of `nft -a list ruleset` and, for iptables-nft, the back end's
    /// parsed dump (`iptables-nft-save -c`, as [`backend::dump`] returns it). Both must
    /// be of the rule set the events came from: handles change when rules are reloaded.
    pub fn new(nft_listing: &str, iptables: Option<Dump>) -> Dumps {
        Dumps { listing: parse_listing(nft_listing), iptables }
    }

    /// Read both from the lab host: `nft -a list ruleset`, and under iptables-nft and
    /// iptables-legacy the back end's dump.
    pub async fn read(host: &NetNs, backend: Backend) -> Result<Dumps, TraceError> {
        let listing = list_ruleset(host).await?;
        let iptables = match backend {
            Backend::IptablesNft | Backend::IptablesLegacy => {
                Some(backend::dump(backend::for_backend(backend).as_ref(), host).await?.0)
            }
            Backend::Nft => None,
        };
        Ok(Dumps::new(&listing, iptables))
    }
}

/// A rule located in the user's rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// The nft family; for a rule in iptables syntax always `ip`.
    pub family: String,
    pub table: String,
    pub chain: String,
    /// 1-based within its chain.
    pub position: usize,
    /// iptables-nft: the `iptables-save` line (`-A CHAIN ...`). nft: the rule as `nft
    /// list ruleset` prints it, without its handle and counter values.
    pub text: String,
    /// The text is in iptables syntax.
    pub iptables: bool,
}

/// The rule of a [`EventKind::Rule`] event in the user's syntax, if the dumps have it.
pub fn locate(event: &TraceEvent, dumps: &Dumps) -> Option<RuleRef> {
    if let (Some(position), None) = (event.position, event.rule_handle) {
        return locate_xt(event, position, dumps);
    }
    let handle = event.rule_handle?;
    let (chain, position, rule) = dumps.listing.rule(&event.family, &event.table, handle)?;
    if let Some(line) = iptables_line(dumps, chain, position) {
        return Some(RuleRef {
            family: chain.family.clone(),
            table: chain.table.clone(),
            chain: chain.name.clone(),
            position,
            text: line,
            iptables: true,
        });
    }
    Some(RuleRef {
        family: chain.family.clone(),
        table: chain.table.clone(),
        chain: chain.name.clone(),
        position,
        text: rule.text.clone(),
        iptables: false,
    })
}

/// An x_tables rule by its position in its chain.
fn locate_xt(event: &TraceEvent, position: usize, dumps: &Dumps) -> Option<RuleRef> {
    let rule = dumps
        .iptables
        .as_ref()?
        .rules
        .iter()
        .find(|r| r.table == event.table && r.chain == event.chain && r.position == position)?;
    Some(RuleRef {
        family: "ip".into(),
        table: rule.table.clone(),
        chain: rule.chain.clone(),
        position,
        text: if rule.text.is_empty() {
            format!("-A {}", rule.chain)
        } else {
            format!("-A {} {}", rule.chain, rule.text)
        },
        iptables: true,
    })
}

/// The iptables-save line at `position` of `chain`, when the iptables dump has the
/// same chain with as many rules as the listing (else the two are not of one rule set).
fn iptables_line(dumps: &Dumps, chain: &ListedChain, position: usize) -> Option<String> {
    let dump = dumps.iptables.as_ref()?;
    if chain.family != "ip" {
        return None;
    }
    let rules: Vec<_> = dump.rules.iter().filter(|r| r.table == chain.table && r.chain == chain.name).collect();
    if rules.len() != chain.rules.len() {
        return None;
    }
    let rule = rules.iter().find(|r| r.position == position)?;
    Some(if rule.text.is_empty() { format!("-A {}", rule.chain) } else { format!("-A {} {}", rule.chain, rule.text) })
}

/// Whether names in this event's table read as iptables: an iptables-nft table.
fn in_iptables(event: &TraceEvent, dumps: &Dumps) -> bool {
    event.family == "ip" && dumps.iptables.as_ref().is_some_and(|d| d.chains.iter().any(|c| c.table == event.table))
}

/// One line naming what the event did, in the user's syntax, e.g.
/// ``filter LAB-FWD rule 1 `-A LAB-FWD -p tcp -m tcp --dport 81 -j DROP`: DROP`` or
/// ``inet lab forward rule 2 `tcp dport 81 counter drop`: drop``, or
/// `policy DROP of filter FORWARD`.
pub fn describe(event: &TraceEvent, dumps: &Dumps) -> String {
    let ipt = in_iptables(event, dumps);
    let place = if ipt {
        format!("{} {}", event.table, event.chain)
    } else {
        format!("{} {} {}", event.family, event.table, event.chain)
    };
    let verdict = |v: &Option<RuleVerdict>| match v {
        Some(v) if ipt => v.iptables_name(),
        Some(v) => v.nft_name(),
        None => "no verdict".into(),
    };
    if event.is_ours() {
        let hook = match event.chain.as_str() {
            "pre" => "prerouting",
            "out" => "output",
            other => other,
        };
        let iface = |name: &Option<String>, index: Option<u32>| name.clone().or(index.map(|i| format!("#{i}")));
        let mut line = format!("{} at {hook}", event.packet);
        if let Some(i) = iface(&event.iif_name, event.iif) {
            line.push_str(&format!(", in {i}"));
        }
        if let Some(o) = iface(&event.oif_name, event.oif) {
            line.push_str(&format!(", out {o}"));
        }
        return line;
    }
    match event.kind {
        EventKind::Policy => {
            let policy = verdict(&event.verdict);
            format!("policy {policy} of {place}")
        }
        EventKind::Return if event.rule_handle.is_none() => {
            format!("end of {place}: back to the calling chain")
        }
        // Newer kernels report the end of a chain's rules as a rule event without a
        // handle, before the policy or the return.
        EventKind::Rule
            if event.rule_handle.is_none()
                && event.position.is_none()
                && event.verdict == Some(RuleVerdict::Continue) =>
        {
            format!("end of the rules of {place}")
        }
        _ => {
            let mut line = match (locate(event, dumps), event.rule_handle) {
                (Some(r), _) => format!("{place} rule {} `{}`", r.position, r.text),
                (None, Some(h)) => format!("{place} rule with handle {h} (not in the rule set as listed)"),
                (None, None) if event.position.is_some() => {
                    format!("{place} rule {} (not in the rule set as saved)", event.position.unwrap_or_default())
                }
                (None, None) => place,
            };
            line.push_str(": ");
            line.push_str(&verdict(&event.verdict));
            if event.rejects {
                line.push_str(" (rejected: the sender was answered)");
            }
            line
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::counters::parse_iptables_save;

    fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(value);
        while a.len() % 4 != 0 {
            a.push(0);
        }
        a
    }

    fn message(family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = [vec![family, 0, 0, 0]].into_iter().chain(attrs.iter().cloned()).flatten().collect();
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&NFT_TRACE_MESSAGE.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend(body);
        m
    }

    fn cstr(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// An IPv4 header and a TCP header from 10.1.0.2:sport to 10.2.0.2:dport.
    fn tcp_headers(sport: u16, dport: u16, flags: u8) -> (Vec<u8>, Vec<u8>) {
        let ip = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2];
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&[0; 8]);
        tcp.extend_from_slice(&[0xa0, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        (ip, tcp)
    }

    fn shared(tags: &[u16], rejects: &[(&str, &str, u64)]) -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            tags: tags.iter().copied().collect(),
            rejects: rejects.iter().map(|(f, t, h)| (f.to_string(), t.to_string(), *h)).collect(),
            xtables: XtRules::default(),
            interfaces: HashMap::from([(3, "a0".to_string())]),
        }
    }

    fn verdict(code: i32, chain: Option<&str>) -> Vec<u8> {
        let mut v = attr(NFTA_VERDICT_CODE, &(code as u32).to_be_bytes());
        if let Some(c) = chain {
            v.extend(attr(NFTA_VERDICT_CHAIN, &cstr(c)));
        }
        attr(NFTA_TRACE_VERDICT | 0x8000, &v)
    }

    #[test]
    fn decodes_a_trace_message() {
        let (ip, tcp) = tcp_headers(20001, 81, TCP_SYN);
        let msg = message(
            2,
            &[
                attr(15, &2u32.to_be_bytes()),
                attr(NFTA_TRACE_TYPE, &3u32.to_be_bytes()),
                attr(NFTA_TRACE_ID, &0xdead_beefu32.to_be_bytes()),
                attr(NFTA_TRACE_CHAIN, &cstr("LAB-FWD")),
                attr(NFTA_TRACE_TABLE, &cstr("filter")),
                attr(NFTA_TRACE_RULE_HANDLE | 0x4000, &7u64.to_be_bytes()),
                verdict(0, None),
                attr(NFTA_TRACE_IIF, &3u32.to_be_bytes()),
                attr(NFTA_TRACE_NETWORK_HEADER, &ip),
                attr(NFTA_TRACE_TRANSPORT_HEADER, &tcp),
            ],
        );
        let (ty, payload, _) = messages(&msg).next().unwrap();
        assert_eq!(ty, NFT_TRACE_MESSAGE);
        let raw = decode_trace(payload).unwrap();
        assert_eq!(
            (raw.family, raw.id, raw.kind, raw.table.as_str(), raw.chain.as_str(), raw.rule_handle),
            (2, 0xdead_beef, 3, "filter", "LAB-FWD", Some(7))
        );
        assert_eq!(raw.verdict, Some((0, None)));
        let p = Packet::parse(raw.network.as_deref().unwrap(), raw.transport.as_deref().unwrap()).unwrap();
        assert_eq!(p.to_string(), "tcp 10.1.0.2:20001 -> 10.2.0.2:81");
        assert!(p.opens_exchange());
    }

    #[test]
    fn ties_events_by_headers_and_trace_id() {
        let s = shared(&[20000, 20001], &[("ip", "filter", 9)]);
        let (ip, syn) = tcp_headers(20001, 81, TCP_SYN);
        let first = message(
            2,
            &[
                attr(NFTA_TRACE_TYPE, &3u32.to_be_bytes()),
                attr(NFTA_TRACE_ID, &5u32.to_be_bytes()),
                attr(NFTA_TRACE_TABLE, &cstr("filter")),
                attr(NFTA_TRACE_CHAIN, &cstr("FORWARD")),
                attr(NFTA_TRACE_RULE_HANDLE, &4u64.to_be_bytes()),
                verdict(-3, Some("LAB-FWD")),
                attr(NFTA_TRACE_IIF, &3u32.to_be_bytes()),
                attr(NFTA_TRACE_NETWORK_HEADER, &ip),
                attr(NFTA_TRACE_TRANSPORT_HEADER, &syn),
            ],
        );
        // The rest of the traversal carries no headers.
        let dropped = message(
            2,
            &[
                attr(NFTA_TRACE_TYPE, &3u32.to_be_bytes()),
                attr(NFTA_TRACE_ID, &5u32.to_be_bytes()),
                attr(NFTA_TRACE_TABLE, &cstr("filter")),
                attr(NFTA_TRACE_CHAIN, &cstr("LAB-FWD")),
                attr(NFTA_TRACE_RULE_HANDLE, &8u64.to_be_bytes()),
                verdict(0, None),
            ],
        );
        let now = Instant::now();
        let datagram: Vec<u8> = [first, dropped].concat();
        assert!(s.ingest(&datagram, now));
        let state = s.lock();
        let events = &state.events[&20001];
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].verdict, Some(RuleVerdict::Jump("LAB-FWD".into())));
        assert_eq!(events[0].iif_name.as_deref(), Some("a0"));
        assert_eq!((events[1].tag, events[1].direction), (20001, Direction::Request));
        assert_eq!(events[1].packet.dport, Some(81));
        assert_eq!(state.drops[&20001].rule_handle, Some(8));
        drop(state);

        // A reject is a drop verdict, but not a final one; a reply ties by its
        // destination port.
        let (ip, synack) = tcp_headers(81, 20000, TCP_SYN | 0x10);
        let reject = message(
            2,
            &[
                attr(NFTA_TRACE_TYPE, &3u32.to_be_bytes()),
                attr(NFTA_TRACE_ID, &6u32.to_be_bytes()),
                attr(NFTA_TRACE_TABLE, &cstr("filter")),
                attr(NFTA_TRACE_CHAIN, &cstr("FORWARD")),
                attr(NFTA_TRACE_RULE_HANDLE, &9u64.to_be_bytes()),
                verdict(0, None),
                attr(NFTA_TRACE_NETWORK_HEADER, &ip),
                attr(NFTA_TRACE_TRANSPORT_HEADER, &synack),
            ],
        );
        assert!(s.ingest(&reject, now));
        let state = s.lock();
        let e = &state.events[&20000][0];
        assert!(e.rejects && e.direction == Direction::Reply);
        assert!(!state.drops.contains_key(&20000));
        drop(state);

        // Not a probe's packet, and what follows it under the same id.
        let (ip, other) = tcp_headers(40000, 80, TCP_SYN);
        let stray = message(
            2,
            &[
                attr(NFTA_TRACE_TYPE, &1u32.to_be_bytes()),
                attr(NFTA_TRACE_ID, &7u32.to_be_bytes()),
                attr(NFTA_TRACE_POLICY, &0u32.to_be_bytes()),
                attr(NFTA_TRACE_NETWORK_HEADER, &ip),
                attr(NFTA_TRACE_TRANSPORT_HEADER, &other),
            ],
        );
        assert!(!s.ingest(&stray, now));
        assert_eq!(s.lock().untied, 1);
    }

    #[test]
    fn policy_events_carry_the_policy_as_verdict() {
        let s = shared(&[20002], &[]);
        let ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2];
        let echo = [8u8, 0, 0, 0, 0x4e, 0x22, 0, 1];
        let msg = message(
            2,
            &[
                attr(NFTA_TRACE_TYPE, &1u32.to_be_bytes()),
                attr(NFTA_TRACE_ID, &9u32.to_be_bytes()),
                attr(NFTA_TRACE_TABLE, &cstr("filter")),
                attr(NFTA_TRACE_CHAIN, &cstr("FORWARD")),
                attr(NFTA_TRACE_POLICY, &0u32.to_be_bytes()),
                attr(NFTA_TRACE_NETWORK_HEADER, &ip),
                attr(NFTA_TRACE_TRANSPORT_HEADER, &echo),
            ],
        );
        assert!(s.ingest(&msg, Instant::now()));
        let state = s.lock();
        let e = &state.drops[&20002];
        assert_eq!(
            (e.kind, e.verdict.clone(), e.direction),
            (EventKind::Policy, Some(RuleVerdict::Drop), Direction::Request)
        );
    }

    const LISTING: &str = r#"table ip filter { # handle 1
	chain INPUT { # handle 1
		type filter hook input priority filter; policy accept;
	}

	chain FORWARD { # handle 2
		type filter hook forward priority filter; policy drop;
		counter packets 3 bytes 180 jump LAB-FWD # handle 5
		tcp dport 81 counter packets 0 bytes 0 reject with tcp reset # handle 6
		tcp dport 82  counter packets 1 bytes 60 drop # handle 7
	}

	chain LAB-FWD { # handle 4
		oifname "docker0" counter packets 0 bytes 0 drop # handle 8
		counter packets 0 bytes 0 return # handle 9
	}
}
table inet lab { # handle 3
	set ports { # handle 2
		type inet_service
		elements = { 80, 81 }
	}

	chain forward { # handle 1
		type filter hook forward priority filter; policy accept;
		tcp dport @ports counter packets 2 bytes 120 accept comment "the # ports" # handle 3
		tcp dport 81 counter packets 0 bytes 0 drop comment "reject this" # handle 4
	}
}
"#;

    const SAVE: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        :LAB-FWD - [0:0]\n[3:180] -A FORWARD -j LAB-FWD\n\
        [0:0] -A FORWARD -p tcp -m tcp --dport 81 -j REJECT --reject-with tcp-reset\n\
        [1:60] -A FORWARD -p tcp -m tcp --dport 82 -m comment --comment \"drop it\" -j DROP\n\
        [0:0] -A LAB-FWD -o docker0 -j DROP\n[0:0] -A LAB-FWD -j RETURN\nCOMMIT\n";

    #[test]
    fn reads_handles_from_the_listing() {
        let l = parse_listing(LISTING);
        let names: Vec<(&str, &str, &str, usize)> =
            l.chains.iter().map(|c| (c.family.as_str(), c.table.as_str(), c.name.as_str(), c.rules.len())).collect();
        assert_eq!(
            names,
            [
                ("ip", "filter", "INPUT", 0),
                ("ip", "filter", "FORWARD", 3),
                ("ip", "filter", "LAB-FWD", 2),
                ("inet", "lab", "forward", 2)
            ]
        );
        let (chain, pos, rule) = l.rule("ip", "filter", 7).unwrap();
        assert_eq!((chain.name.as_str(), pos, rule.text.as_str()), ("FORWARD", 3, "tcp dport 82 counter drop"));
        assert_eq!(chain.hook.as_deref(), Some("forward"));
        assert_eq!(chain.policy.as_deref(), Some("drop"));
        let (_, pos, rule) = l.rule("inet", "lab", 3).unwrap();
        assert_eq!((pos, rule.text.as_str()), (1, r#"tcp dport @ports counter accept comment "the # ports""#));
        assert!(l.rule("inet", "lab", 2).is_none(), "a set is not a rule");

        let rejecting: Vec<u64> =
            l.chains.iter().flat_map(|c| &c.rules).filter(|r| rejects(&r.text)).map(|r| r.handle).collect();
        assert_eq!(rejecting, [6]);
    }

    fn event(
        family: &str,
        table: &str,
        chain: &str,
        handle: Option<u64>,
        kind: EventKind,
        v: RuleVerdict,
    ) -> TraceEvent {
        let (ip, tcp) = tcp_headers(20001, 81, TCP_SYN);
        TraceEvent {
            id: 1,
            family: family.into(),
            table: table.into(),
            chain: chain.into(),
            rule_handle: handle,
            position: None,
            kind,
            verdict: Some(v),
            iif: None,
            iif_name: None,
            oif: None,
            oif_name: None,
            mark: None,
            packet: Packet::parse(&ip, &tcp).unwrap(),
            tag: 20001,
            direction: Direction::Request,
            rejects: false,
            seen: Instant::now(),
        }
    }

    #[test]
    fn describes_rules_in_the_users_syntax() {
        let ipt = Dumps::new(LISTING, Some(parse_iptables_save(SAVE).unwrap()));
        let e = event("ip", "filter", "FORWARD", Some(7), EventKind::Rule, RuleVerdict::Drop);
        assert_eq!(
            describe(&e, &ipt),
            r#"filter FORWARD rule 3 `-A FORWARD -p tcp -m tcp --dport 82 -m comment --comment "drop it" -j DROP`: DROP"#
        );
        let e = event("ip", "filter", "FORWARD", Some(5), EventKind::Rule, RuleVerdict::Jump("LAB-FWD".into()));
        assert_eq!(describe(&e, &ipt), "filter FORWARD rule 1 `-A FORWARD -j LAB-FWD`: -j LAB-FWD");
        let e = event("ip", "filter", "FORWARD", None, EventKind::Policy, RuleVerdict::Drop);
        assert_eq!(describe(&e, &ipt), "policy DROP of filter FORWARD");
        let e = event("ip", "filter", "LAB-FWD", None, EventKind::Return, RuleVerdict::Continue);
        assert_eq!(describe(&e, &ipt), "end of filter LAB-FWD: back to the calling chain");
        // The nft table next to it reads as nft.
        let e = event("inet", "lab", "forward", Some(4), EventKind::Rule, RuleVerdict::Drop);
        assert_eq!(
            describe(&e, &ipt),
            r#"inet lab forward rule 2 `tcp dport 81 counter drop comment "reject this"`: drop"#
        );
        // A handle the listing does not have.
        let e = event("ip", "filter", "FORWARD", Some(70), EventKind::Rule, RuleVerdict::Drop);
        assert_eq!(describe(&e, &ipt), "filter FORWARD rule with handle 70 (not in the rule set as listed): DROP");
        // A dump that disagrees with the listing falls back to nft text.
        let stale = parse_iptables_save("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j ACCEPT\nCOMMIT\n").unwrap();
        let e = event("ip", "filter", "FORWARD", Some(7), EventKind::Rule, RuleVerdict::Drop);
        let r = locate(&e, &Dumps::new(LISTING, Some(stale))).unwrap();
        assert_eq!((r.position, r.text.as_str(), r.iptables), (3, "tcp dport 82 counter drop", false));

        let nft = Dumps::new(LISTING, None);
        let e = event("ip", "filter", "FORWARD", None, EventKind::Policy, RuleVerdict::Drop);
        assert_eq!(describe(&e, &nft), "policy drop of ip filter FORWARD");
    }

    #[test]
    fn deciding_event() {
        let ours = event("ip", TABLE, "pre", Some(2), EventKind::Rule, RuleVerdict::Continue);
        let jump = event("ip", "filter", "FORWARD", Some(5), EventKind::Rule, RuleVerdict::Jump("X".into()));
        let drop = event("ip", "filter", "X", Some(8), EventKind::Rule, RuleVerdict::Drop);
        let accept = event("ip", "filter", "FORWARD", Some(6), EventKind::Rule, RuleVerdict::Accept);
        let policy = event("ip", "nat", "POSTROUTING", None, EventKind::Policy, RuleVerdict::Accept);
        assert_eq!(deciding(&[ours.clone(), jump.clone(), drop.clone()]), Some(&drop));
        assert_eq!(deciding(&[ours.clone(), accept.clone(), policy.clone()]), Some(&accept));
        assert_eq!(deciding(&[ours.clone(), policy.clone()]), Some(&policy));
        assert_eq!(deciding(std::slice::from_ref(&ours)), None);
        // The rule that let the SYN through, not the one that accepts what follows it.
        let mut established = event("ip", "filter", "FORWARD", Some(3), EventKind::Rule, RuleVerdict::Accept);
        established.packet.tcp_flags = Some(0x10);
        assert_eq!(deciding(&[ours, accept.clone(), policy, established]), Some(&accept));
    }

    #[test]
    fn table_script_matches_the_tags() {
        let s = table_script(&[20001, 20000, 20001]);
        assert!(s.starts_with("table ip netconform_trace\ndelete table ip netconform_trace\n"));
        assert!(s.contains("th sport { 20000, 20001 } meta nftrace set 1"));
        assert!(s.contains("icmp id { 20000, 20001 }"));
        assert!(s.contains("type filter hook output priority raw - 10; policy accept;"));
        assert!(!table_script(&[]).contains("nftrace"));
    }

    /// An NFLOG packet message as nfnetlink_log sends a TRACE line: the prefix, the
    /// input interface and the packet from its IP header on.
    fn nflog_message(prefix: &str, iif: u32, packet: &[u8]) -> Vec<u8> {
        let attrs = [
            attr(NFULA_PREFIX, &cstr(prefix)),
            attr(NFULA_IFINDEX_INDEV, &iif.to_be_bytes()),
            attr(NFULA_PAYLOAD, packet),
        ];
        let mut m = message(libc::AF_INET as u8, &attrs);
        m[4..6].copy_from_slice(&NFLOG_PACKET_MESSAGE.to_ne_bytes());
        m
    }

    const XT_SAVE: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        :LAB-FWD - [0:0]\n-A FORWARD -j LAB-FWD\n\
        -A LAB-FWD -p tcp -m tcp --dport 81 -m comment --comment \"no -j ACCEPT here\" -j DROP\n\
        -A LAB-FWD -p tcp -m tcp --dport 82 -j REJECT --reject-with tcp-reset\n\
        -A LAB-FWD -j LOG\nCOMMIT\n";

    #[test]
    fn reads_trace_prefixes() {
        let p = |s: &str| parse_trace_prefix(s);
        assert_eq!(p("TRACE: filter:FORWARD:rule:3 "), Some(("filter".into(), "FORWARD".into(), "rule".into(), 3)));
        assert_eq!(p("TRACE: nat:DOCKER:return:7 \0"), Some(("nat".into(), "DOCKER".into(), "return".into(), 7)));
        assert_eq!(p("TRACE: raw:a:b:policy:1 "), Some(("raw".into(), "a:b".into(), "policy".into(), 1)));
        assert_eq!(p("TRACE: filter:FORWARD:jump:1 "), None);
        assert_eq!(p("TRACE: filter:FORWARD:rule:x "), None);
        assert_eq!(p("a user's NFLOG prefix "), None);
    }

    #[test]
    fn verdicts_come_from_the_rules_targets() {
        let xt = XtRules::from_dump(&parse_iptables_save(XT_SAVE).unwrap());
        let rule = |chain: &str, n: usize| xt.rules.get(&("filter".to_string(), chain.to_string(), n)).cloned();
        assert_eq!(rule("FORWARD", 1), Some((RuleVerdict::Jump("LAB-FWD".into()), false)));
        // The comment's words are no target.
        assert_eq!(rule("LAB-FWD", 1), Some((RuleVerdict::Drop, false)));
        assert_eq!(rule("LAB-FWD", 2), Some((RuleVerdict::Drop, true)));
        assert_eq!(rule("LAB-FWD", 3), Some((RuleVerdict::Continue, false)));
        assert_eq!(xt.policies.get(&("filter".to_string(), "FORWARD".to_string())), Some(&RuleVerdict::Drop));
        assert_eq!(xt_verdict("-s 10.0.0.0/8 -j DNAT --to-destination 1.2.3.4", |_| false).0, RuleVerdict::Accept);
        assert_eq!(xt_verdict("-g OTHER", |_| true).0, RuleVerdict::Goto("OTHER".into()));
        assert_eq!(xt_verdict("-p tcp", |_| false).0, RuleVerdict::Continue);
    }

    #[test]
    fn ties_trace_lines_and_names_their_rules() {
        let mut shared = shared(&[20001], &[]);
        shared.xtables = XtRules::from_dump(&parse_iptables_save(XT_SAVE).unwrap());
        let (ip, tcp) = tcp_headers(20001, 81, TCP_SYN);
        let packet: Vec<u8> = ip.iter().chain(&tcp).copied().collect();
        let lines = ["TRACE: filter:FORWARD:rule:1 ", "TRACE: filter:LAB-FWD:rule:1 "];
        let datagram: Vec<u8> = lines.iter().flat_map(|l| nflog_message(l, 3, &packet)).collect();
        assert!(shared.ingest(&datagram, Instant::now()));
        // Not a probe's packet, and not a TRACE line.
        let (ip, tcp) = tcp_headers(40000, 81, TCP_SYN);
        let other: Vec<u8> = ip.iter().chain(&tcp).copied().collect();
        assert!(!shared.ingest(&nflog_message("TRACE: filter:FORWARD:rule:1 ", 3, &other), Instant::now()));
        assert!(!shared.ingest(&nflog_message("mine ", 3, &packet), Instant::now()));

        let state = shared.lock();
        let events = &state.events[&20001];
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].verdict, Some(RuleVerdict::Jump("LAB-FWD".into())));
        assert_eq!(events[0].iif_name.as_deref(), Some("a0"));
        assert!(events[1].is_final_drop());
        assert_eq!(state.drops[&20001].position, Some(1));
        assert_eq!(state.untied, 1);

        let dumps = Dumps::new("", Some(parse_iptables_save(XT_SAVE).unwrap()));
        assert_eq!(
            describe(&events[1], &dumps),
            "filter LAB-FWD rule 1 `-A LAB-FWD -p tcp -m tcp --dport 81 -m comment --comment \"no -j ACCEPT here\" -j DROP`: DROP"
        );
        let mut end = events[1].clone();
        (end.kind, end.position, end.verdict) = (EventKind::Policy, Some(2), Some(RuleVerdict::Drop));
        end.chain = "FORWARD".into();
        assert_eq!(describe(&end, &dumps), "policy DROP of filter FORWARD");
        let mut gone = events[1].clone();
        gone.position = Some(9);
        assert_eq!(describe(&gone, &dumps), "filter LAB-FWD rule 9 (not in the rule set as saved): DROP");
    }

    #[test]
    fn nflog_requests_are_well_formed() {
        let m = nflog_config(2, 2, 0, &[nla(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])]);
        assert_eq!(m.len(), NLMSG_HDRLEN + NFGENMSG_LEN + 8);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), NFLOG_CONFIG_MESSAGE);
        let (seqs, types): (Vec<u32>, Vec<u16>) =
            messages(&[m.clone(), m].concat()).map(|(ty, _, seq)| (seq, ty)).unzip();
        assert_eq!(seqs, [2, 2]);
        assert_eq!(types, [NFLOG_CONFIG_MESSAGE; 2]);
    }
}
