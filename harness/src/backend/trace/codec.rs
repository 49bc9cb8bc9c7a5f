//! Decoding the kernel's trace messages: nf_tables `NFT_MSG_TRACE` events and the
//! NFLOG packet messages that carry x_tables TRACE lines, and the NFLOG configuration
//! requests that bind a socket to the logger.

pub(super) const NETLINK_NETFILTER: isize = 12;
/// `enum nfnetlink_groups`: NFNLGRP_NFTRACE.
pub(super) const NFNLGRP_NFTRACE: u32 = 9;
/// (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE
pub(super) const NFT_TRACE_MESSAGE: u16 = (10 << 8) | 17;
pub(super) const NLMSG_HDRLEN: usize = 16;
pub(super) const NFGENMSG_LEN: usize = 4;
/// Attribute types carry NLA_F_NESTED and NLA_F_NET_BYTEORDER in their top bits.
pub(super) const NLA_TYPE_MASK: u16 = 0x3fff;

// enum nft_trace_attributes
pub(super) const NFTA_TRACE_TABLE: u16 = 1;
pub(super) const NFTA_TRACE_CHAIN: u16 = 2;
pub(super) const NFTA_TRACE_RULE_HANDLE: u16 = 3;
pub(super) const NFTA_TRACE_TYPE: u16 = 4;
pub(super) const NFTA_TRACE_VERDICT: u16 = 5;
pub(super) const NFTA_TRACE_ID: u16 = 6;
pub(super) const NFTA_TRACE_NETWORK_HEADER: u16 = 8;
pub(super) const NFTA_TRACE_TRANSPORT_HEADER: u16 = 9;
pub(super) const NFTA_TRACE_IIF: u16 = 10;
pub(super) const NFTA_TRACE_OIF: u16 = 12;
pub(super) const NFTA_TRACE_MARK: u16 = 14;
pub(super) const NFTA_TRACE_POLICY: u16 = 16;
// enum nft_verdict_attributes
pub(super) const NFTA_VERDICT_CODE: u16 = 1;
pub(super) const NFTA_VERDICT_CHAIN: u16 = 2;

pub(super) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The messages of one netlink datagram: (type, payload after the header, sequence
/// number).
pub(super) fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8], u32)> {
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
pub(super) fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
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

pub(super) fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

pub(super) fn be64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

pub(super) fn nla_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

pub(super) fn family_name(nfproto: u8) -> String {
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
pub(super) struct RawTrace {
    pub(super) family: u8,
    pub(super) id: u32,
    pub(super) kind: u32,
    pub(super) table: String,
    pub(super) chain: String,
    pub(super) rule_handle: Option<u64>,
    pub(super) verdict: Option<(i32, Option<String>)>,
    pub(super) policy: Option<u32>,
    pub(super) iif: Option<u32>,
    pub(super) oif: Option<u32>,
    pub(super) mark: Option<u32>,
    pub(super) network: Option<Vec<u8>>,
    pub(super) transport: Option<Vec<u8>>,
}

/// Decode the payload of an NFT_MSG_TRACE message (nfgenmsg, then attributes).
pub(super) fn decode_trace(payload: &[u8]) -> Option<RawTrace> {
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
pub(super) const NFLOG_PACKET_MESSAGE: u16 = 4 << 8;
/// (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
pub(super) const NFLOG_CONFIG_MESSAGE: u16 = (4 << 8) | 1;
pub(super) const NLMSG_ERROR: u16 = 2;
// enum nfulnl_attr_type
pub(super) const NFULA_MARK: u16 = 2;
pub(super) const NFULA_IFINDEX_INDEV: u16 = 4;
pub(super) const NFULA_IFINDEX_OUTDEV: u16 = 5;
pub(super) const NFULA_PAYLOAD: u16 = 9;
pub(super) const NFULA_PREFIX: u16 = 10;
// enum nfulnl_attr_config
pub(super) const NFULA_CFG_CMD: u16 = 1;
pub(super) const NFULA_CFG_MODE: u16 = 2;
pub(super) const NFULA_CFG_QTHRESH: u16 = 5;
// enum nfulnl_msg_config_cmds
pub(super) const NFULNL_CFG_CMD_BIND: u8 = 1;
pub(super) const NFULNL_CFG_CMD_PF_BIND: u8 = 3;
pub(super) const NFULNL_COPY_PACKET: u8 = 2;
/// The group the kernel logs to when the caller names none, as `nf_log_trace` does.
pub(super) const NFLOG_DEFAULT_GROUP: u16 = 0;
/// Enough of each packet for the largest IPv4 and TCP headers.
pub(super) const NFLOG_COPY_RANGE: u32 = 160;
/// The IPv4 logger's sysctl: which logger `nf_log_trace` uses for IPv4.
pub const IPV4_LOGGER_SYSCTL: &str = "net.netfilter.nf_log.2";
/// The IPv6 logger's sysctl.
pub const IPV6_LOGGER_SYSCTL: &str = "net.netfilter.nf_log.10";
/// The logger that sends log lines over netlink.
pub const NFNETLINK_LOG: &str = "nfnetlink_log";

/// One TRACE line of x_tables, decoded but not yet tied to a probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct XtTrace {
    pub(super) table: String,
    pub(super) chain: String,
    /// `rule`, `return` or `policy`.
    pub(super) kind: String,
    pub(super) position: usize,
    pub(super) iif: Option<u32>,
    pub(super) oif: Option<u32>,
    pub(super) mark: Option<u32>,
    /// The packet from its IP header on.
    pub(super) payload: Vec<u8>,
}

/// `TRACE: filter:FORWARD:rule:3 ` -> (`filter`, `FORWARD`, `rule`, 3). The table
/// comes first and the type and number last, so a chain name with a colon survives.
pub(super) fn parse_trace_prefix(prefix: &str) -> Option<(String, String, String, usize)> {
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
pub(super) fn decode_nflog(payload: &[u8]) -> Option<XtTrace> {
    if payload.len() < NFGENMSG_LEN || ![libc::AF_INET as u8, libc::AF_INET6 as u8].contains(&payload[0]) {
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

/// One netlink attribute, padded.
pub(super) fn nla(ty: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity(align4(len));
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(len), 0);
    out
}

/// An NFLOG configuration request for `group` (nfgenmsg with `family`, then `attrs`).
pub(super) fn nflog_config(seq: u32, family: u8, group: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
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
