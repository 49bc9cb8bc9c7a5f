//! The steps of a probe's packet through the rule set, as the trace reports them, and
//! the step that decided its fate.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::{ProbeTag, TABLE};
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
    pub(super) fn from_code(code: i32, chain: Option<String>) -> RuleVerdict {
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
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number: 1 ICMP, 6 TCP, 17 UDP, 58 ICMPv6.
    pub protocol: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp_flags: Option<u8>,
    pub icmp_type: Option<u8>,
    pub icmp_id: Option<u16>,
}

pub(super) const TCP_SYN: u8 = 0x02;

impl Packet {
    /// A whole datagram from its IP header on, as a packet socket or NFLOG gives it:
    /// the header's own length (IPv4's IHL; IPv6's fixed 40 bytes, as the probes send
    /// no extension headers) tells where the transport header starts.
    pub fn from_datagram(p: &[u8]) -> Option<Packet> {
        let header_len = match p.first()? >> 4 {
            6 => 40,
            _ => usize::from(p[0] & 0x0f) * 4,
        };
        Packet::parse(p, p.get(header_len..)?)
    }

    /// The tag of a probe's request: the source port of TCP and UDP, the identifier of
    /// an ICMP or ICMPv6 echo request; None for anything else.
    pub fn request_tag(&self) -> Option<u16> {
        match (self.protocol, self.icmp_type) {
            (6 | 17, _) => self.sport,
            (1, Some(8)) | (58, Some(128)) => self.icmp_id,
            _ => None,
        }
    }

    /// Headers from NFTA_TRACE_NETWORK_HEADER and NFTA_TRACE_TRANSPORT_HEADER, of
    /// either family. An IPv6 header is taken without extension headers: the probes
    /// send none.
    pub(super) fn parse(network: &[u8], transport: &[u8]) -> Option<Packet> {
        let (src, dst, protocol) = match network.first()? >> 4 {
            4 if network.len() >= 20 => (
                IpAddr::V4(Ipv4Addr::new(network[12], network[13], network[14], network[15])),
                IpAddr::V4(Ipv4Addr::new(network[16], network[17], network[18], network[19])),
                network[9],
            ),
            6 if network.len() >= 40 => {
                let src: [u8; 16] = network[8..24].try_into().ok()?;
                let dst: [u8; 16] = network[24..40].try_into().ok()?;
                (IpAddr::V6(Ipv6Addr::from(src)), IpAddr::V6(Ipv6Addr::from(dst)), network[6])
            }
            _ => return None,
        };
        let mut p =
            Packet { src, dst, protocol, sport: None, dport: None, tcp_flags: None, icmp_type: None, icmp_id: None };
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
            58 => {
                p.icmp_type = transport.first().copied();
                if matches!(p.icmp_type, Some(128 | 129)) {
                    p.icmp_id = be16(4);
                }
            }
            _ => {}
        }
        Some(p)
    }

    /// The probe this packet belongs to, if any, and which way it goes.
    pub(super) fn tie(&self, tags: &HashSet<ProbeTag>) -> Option<(ProbeTag, Direction)> {
        match self.protocol {
            6 | 17 => {
                if let Some(t) = self.sport.filter(|t| tags.contains(t)) {
                    Some((t, Direction::Request))
                } else {
                    self.dport.filter(|t| tags.contains(t)).map(|t| (t, Direction::Reply))
                }
            }
            1 | 58 => {
                let id = self.icmp_id.filter(|t| tags.contains(t))?;
                match self.icmp_type {
                    Some(8 | 128) => Some((id, Direction::Request)),
                    Some(0 | 129) => Some((id, Direction::Reply)),
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
            58 => matches!(self.icmp_type, Some(128 | 129)),
            _ => false,
        }
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.protocol, self.sport, self.dport) {
            (6, Some(s), Some(d)) => write!(f, "tcp {}:{s} -> {}:{d}", self.src, self.dst),
            (17, Some(s), Some(d)) => write!(f, "udp {}:{s} -> {}:{d}", self.src, self.dst),
            (1 | 58, _, _) => write!(
                f,
                "{} {} -> {} type {} id {}",
                if self.protocol == 58 { "icmpv6" } else { "icmp" },
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
        self.family == "inet" && self.table == TABLE && self.position.is_none()
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
