use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use super::codec::*;
use super::describe::*;
use super::event::*;
use super::session::*;
use super::verdicts::*;
use super::*;
use crate::backend::iptables::save::parse_iptables_save;

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

fn event(family: &str, table: &str, chain: &str, handle: Option<u64>, kind: EventKind, v: RuleVerdict) -> TraceEvent {
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
    let ours = event("inet", TABLE, "pre", Some(2), EventKind::Rule, RuleVerdict::Continue);
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
    assert!(s.starts_with("table inet netconform_trace\ndelete table inet netconform_trace\n"));
    assert!(s.contains("th sport { 20000, 20001 } meta nftrace set 1"));
    assert!(s.contains("icmp id { 20000, 20001 }"));
    assert!(s.contains("icmpv6 id { 20000, 20001 }"));
    assert!(s.contains("type filter hook output priority raw - 10; policy accept;"));
    assert!(!table_script(&[]).contains("nftrace"));
}

/// An NFLOG packet message as nfnetlink_log sends a TRACE line: the prefix, the
/// input interface and the packet from its IP header on.
fn nflog_message(prefix: &str, iif: u32, packet: &[u8]) -> Vec<u8> {
    let attrs =
        [attr(NFULA_PREFIX, &cstr(prefix)), attr(NFULA_IFINDEX_INDEV, &iif.to_be_bytes()), attr(NFULA_PAYLOAD, packet)];
    let family = if packet.first().is_some_and(|b| b >> 4 == 6) { libc::AF_INET6 } else { libc::AF_INET };
    let mut m = message(family as u8, &attrs);
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
    let rule = |chain: &str, n: usize| xt.rules.get(&(None, "filter".to_string(), chain.to_string(), n)).cloned();
    assert_eq!(rule("FORWARD", 1), Some((RuleVerdict::Jump("LAB-FWD".into()), false)));
    // The comment's words are no target.
    assert_eq!(rule("LAB-FWD", 1), Some((RuleVerdict::Drop, false)));
    assert_eq!(rule("LAB-FWD", 2), Some((RuleVerdict::Drop, true)));
    assert_eq!(rule("LAB-FWD", 3), Some((RuleVerdict::Continue, false)));
    assert_eq!(xt.policies.get(&(None, "filter".to_string(), "FORWARD".to_string())), Some(&RuleVerdict::Drop));
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
    let (seqs, types): (Vec<u32>, Vec<u16>) = messages(&[m.clone(), m].concat()).map(|(ty, _, seq)| (seq, ty)).unzip();
    assert_eq!(seqs, [2, 2]);
    assert_eq!(types, [NFLOG_CONFIG_MESSAGE; 2]);
}

/// An IPv6 header (no extension headers) from fd00::2 to fd00:1::2.
fn ipv6_header(next: u8, payload_len: u16) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&payload_len.to_be_bytes());
    ip.extend_from_slice(&[next, 64]);
    ip.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    ip.extend_from_slice(&"fd00:1::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    ip
}

#[test]
fn ipv6_packets_are_read_and_tied_to_their_probes() {
    let (_, tcp) = tcp_headers(20001, 81, TCP_SYN);
    let syn = Packet::parse(&ipv6_header(6, 20), &tcp).expect("an IPv6 TCP header");
    assert_eq!(syn.src, "fd00::2".parse::<std::net::IpAddr>().unwrap());
    assert_eq!((syn.protocol, syn.sport, syn.dport), (6, Some(20001), Some(81)));
    assert!(syn.opens_exchange());
    let tags: std::collections::HashSet<u16> = [20001].into_iter().collect();
    assert_eq!(syn.tie(&tags), Some((20001, Direction::Request)));
    let echo = Packet::parse(&ipv6_header(58, 8), &[128, 0, 0, 0, 0x4e, 0x21, 0, 1]).expect("an ICMPv6 echo");
    assert_eq!(echo.tie(&tags), Some((20001, Direction::Request)));
    assert!(echo.opens_exchange());
    let reply = Packet::parse(&ipv6_header(58, 8), &[129, 0, 0, 0, 0x4e, 0x21, 0, 1]).expect("an ICMPv6 reply");
    assert_eq!(reply.tie(&tags), Some((20001, Direction::Reply)));
    assert_eq!(reply.to_string(), "icmpv6 fd00::2 -> fd00:1::2 type 129 id 20001");
    // A neighbour solicitation is no probe's.
    assert_eq!(Packet::parse(&ipv6_header(58, 8), &[135, 0, 0, 0, 0, 0, 0, 0]).and_then(|p| p.tie(&tags)), None);
}

#[test]
fn ipv6_trace_lines_are_named_from_the_ip6tables_dump() {
    let mut dump = parse_iptables_save(XT_SAVE).unwrap();
    let six = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
               -A FORWARD -p tcp -m tcp --dport 81 -j ACCEPT\nCOMMIT\n";
    dump.merge_family("ip6", parse_iptables_save(six).unwrap());
    let mut shared = shared(&[20001], &[]);
    shared.xtables = XtRules::from_dump(&dump);
    let (_, tcp) = tcp_headers(20001, 81, TCP_SYN);
    let packet: Vec<u8> = ipv6_header(6, 20).into_iter().chain(tcp).collect();
    assert!(shared.ingest(&nflog_message("TRACE: filter:FORWARD:rule:1 ", 3, &packet), Instant::now()));
    let state = shared.lock();
    let event = &state.events[&20001][0];
    // IPv6's FORWARD rule 1 accepts; IPv4's jumps to LAB-FWD.
    assert_eq!((event.family.as_str(), event.verdict.clone()), ("ip6", Some(RuleVerdict::Accept)));
    let dumps = Dumps::new("", Some(dump.clone()));
    assert_eq!(
        describe(event, &dumps),
        "ip6 filter FORWARD rule 1 `-A FORWARD -p tcp -m tcp --dport 81 -j ACCEPT`: ACCEPT"
    );
}
