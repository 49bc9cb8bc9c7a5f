//! Probes: who sends what to where, what must come of it, and for a contract scenario
//! how one producer is expected to differ.

use std::collections::HashMap;
use std::net::IpAddr;

use super::topology::LabIndex;
use super::Checker;
use crate::scenario::contract::ProducerCtx;
use crate::scenario::file::ProbeFile;
use crate::scenario::model::*;
use crate::scenario::yaml::{item, join};

pub(crate) fn probes(
    c: &mut Checker,
    scenario: &Scenario,
    lab: &LabIndex,
    list: &[ProbeFile],
    ctx: Option<&ProducerCtx>,
) -> Vec<Probe> {
    let mut out = Vec::new();
    // Probe name → where it was declared.
    let mut names_seen: HashMap<String, String> = HashMap::new();
    for (i, p) in list.iter().enumerate() {
        let at = At { scenario, lab, key: item("probes", i) };
        let (p, difference) = differs(c, &at.key, p, ctx);
        out.extend(probe(c, &at, &p, difference, &mut names_seen));
    }
    out
}

/// Where a probe is checked: its key, and the lab its names refer to.
struct At<'a> {
    scenario: &'a Scenario,
    lab: &'a LabIndex,
    key: String,
}

impl At<'_> {
    /// The key of one of the probe's fields.
    fn field(&self, field: &str) -> String {
        join(&self.key, field)
    }

    /// The node named `text` in the probe's `field`.
    fn node(&self, c: &mut Checker, field: &str, text: &str) -> Option<NodeId> {
        let id = self.lab.ids.get(text).copied();
        if id.is_none() {
            c.value(
                &self.field(field),
                format!("no node named `{text}`; nodes: {}", self.lab.node_list(self.scenario)),
            );
        }
        id
    }
}

/// One probe, checked field by field; None when any field is wrong.
fn probe(
    c: &mut Checker,
    at: &At,
    p: &ProbeFile,
    difference: Option<String>,
    names_seen: &mut HashMap<String, String>,
) -> Option<Probe> {
    let from = match &p.from {
        None => {
            c.missing(&at.field("from"), "the name of the node that sends the probe");
            None
        }
        Some(f) => at.node(c, "from", f),
    };
    let family = family(c, at, p);
    let to = match &p.to {
        None => {
            c.missing(&at.field("to"), "a node name or an IP address");
            None
        }
        Some(t) => family.and_then(|f| resolve_to(c, at.scenario, at.lab, &at.field("to"), t, f)),
    };
    if let (Some(from), Some(IpAddr::V6(a))) = (from, to) {
        if !a.is_loopback() && at.scenario.addresses6_of(from).is_empty() && !at.lab.incomplete.contains(&from) {
            c.value(
                &at.field("to"),
                format!(
                    "`{}` has no IPv6 address, so it cannot send to {a}: the two ends have no family in common",
                    at.scenario.node(from).name
                ),
            );
        }
    }
    let proto = proto(c, at, p);
    let expect = expect(c, at, p);
    let served_by = served_by(c, at, p, expect, proto);
    let source_seen = source_seen(c, at, p, expect, proto);
    let timeout = match &p.timeout {
        None => Some(at.scenario.timeout),
        Some(t) => c.duration(&at.field("timeout"), t),
    };
    let name = probe_name(c, at, p, proto, to, names_seen);
    Some(Probe {
        name: name?,
        location: c.location(&at.key),
        from: from?,
        to: to?,
        to_text: p.to.clone().unwrap_or_default(),
        proto: proto?,
        expect: expect?,
        served_by,
        source_seen,
        timeout: timeout?,
        difference,
    })
}

/// `family`: which of a node's addresses the probe is sent to. Outer None: a bad value.
fn family(c: &mut Checker, at: &At, p: &ProbeFile) -> Option<Option<Family>> {
    match p.family.as_deref() {
        None => Some(None),
        Some("ipv4") => Some(Some(Family::Ipv4)),
        Some("ipv6") => Some(Some(Family::Ipv6)),
        Some(other) => {
            c.value(&at.field("family"), format!("expected ipv4 or ipv6, found `{other}`"));
            None
        }
    }
}

/// `proto` and `port`: icmp without a port, tcp or udp with one; a port alone means tcp.
fn proto(c: &mut Checker, at: &At, p: &ProbeFile) -> Option<Proto> {
    let port = p.port.and_then(|n| c.port(&at.field("port"), n));
    let proto_name = p.proto.as_deref().unwrap_or(if p.port.is_some() { "tcp" } else { "icmp" });
    match proto_name {
        "icmp" => {
            if p.port.is_some() {
                c.key(
                    &at.field("port"),
                    "expected no `port` for an icmp probe; remove it, or set `proto` to tcp or udp",
                );
            }
            Some(Proto::Icmp)
        }
        "tcp" | "udp" => {
            if p.port.is_none() {
                c.missing(&at.field("port"), &format!("a port from 1 to 65535 for a {proto_name} probe"));
            }
            port.map(|n| if proto_name == "tcp" { Proto::Tcp(n) } else { Proto::Udp(n) })
        }
        other => {
            c.value(&at.field("proto"), format!("expected icmp, tcp or udp, found `{other}`"));
            None
        }
    }
}

fn expect(c: &mut Checker, at: &At, p: &ProbeFile) -> Option<Expect> {
    match p.expect.as_deref() {
        None => {
            c.missing(&at.field("expect"), "reached, refused or dropped");
            None
        }
        Some("reached") => Some(Expect::Reached),
        Some("refused") => Some(Expect::Refused),
        Some("dropped") => Some(Expect::Dropped),
        Some(other) => {
            c.value(&at.field("expect"), format!("expected reached, refused or dropped, found `{other}`"));
            None
        }
    }
}

/// Whether `field` may be given: served_by and source_seen describe the answering
/// service, so only a tcp or udp probe that expects `reached` takes them.
fn answers(c: &mut Checker, at: &At, field: &str, expect: Option<Expect>, proto: Option<Proto>) -> bool {
    let reason = match (expect, proto) {
        (Some(e), _) if e != Expect::Reached => Some(format!("this probe expects `{e}`")),
        (_, Some(Proto::Icmp)) => Some("this is an icmp probe".to_string()),
        _ => None,
    };
    if let Some(reason) = reason {
        c.key(
            &at.field(field),
            format!(
                "expected `{field}` only on a tcp or udp probe that expects `reached`; \
                 {reason}"
            ),
        );
        return false;
    }
    true
}

/// `served_by`: a node with a service of the probe's protocol.
fn served_by(c: &mut Checker, at: &At, p: &ProbeFile, expect: Option<Expect>, proto: Option<Proto>) -> Option<NodeId> {
    let s = p.served_by.as_ref()?;
    let applies = answers(c, at, "served_by", expect, proto);
    let id = at.node(c, "served_by", s);
    if let (true, Some(id), Some(proto)) = (applies, id, proto) {
        let services = &at.scenario.node(id).services;
        let (name, ports) = match proto {
            Proto::Udp(_) => ("udp", &services.udp),
            _ => ("tcp", &services.tcp),
        };
        if ports.is_empty() {
            c.value(
                &at.field("served_by"),
                format!(
                    "expected a node with a {name} service, but `{s}` declares none; \
                     add its port under `services: {name}:`"
                ),
            );
        }
    }
    id
}

/// `source_seen`: a node, any of whose addresses will do, or one address.
fn source_seen(
    c: &mut Checker,
    at: &At,
    p: &ProbeFile,
    expect: Option<Expect>,
    proto: Option<Proto>,
) -> Option<SourceSeen> {
    let s = p.source_seen.as_ref()?;
    answers(c, at, "source_seen", expect, proto);
    if let Some(&id) = at.lab.ids.get(s) {
        Some(SourceSeen::Node(id))
    } else if let Ok(a) = s.parse::<IpAddr>() {
        Some(SourceSeen::Address(a))
    } else {
        c.value(
            &at.field("source_seen"),
            format!("expected a node name (one of {}) or an IP address, found `{s}`", at.lab.node_list(at.scenario)),
        );
        None
    }
}

/// The probe's name, given or made from `from`, `to` and the protocol; unique in the
/// scenario.
fn probe_name(
    c: &mut Checker,
    at: &At,
    p: &ProbeFile,
    proto: Option<Proto>,
    to: Option<IpAddr>,
    names_seen: &mut HashMap<String, String>,
) -> Option<String> {
    let name = match &p.name {
        Some(n) if n.trim().is_empty() => {
            c.value(&at.field("name"), "expected a probe name, found an empty string");
            None
        }
        Some(n) => Some(n.clone()),
        None => match (&p.from, &p.to, proto) {
            // A destination that did not resolve still gets a name, for the check of
            // names that follows.
            (Some(f), Some(t), Some(proto)) => {
                let resolved = to.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                Some(format!("{f} -> {}", destination_label(t, resolved, proto)))
            }
            _ => None,
        },
    };
    if let Some(n) = &name {
        match names_seen.get(n) {
            Some(first) => c.value(
                if p.name.is_some() { at.field("name") } else { at.key.clone() }.as_str(),
                format!(
                    "probe name `{n}` is already used by {first}; give one of them a \
                     distinct `name`"
                ),
            ),
            None => {
                names_seen.insert(n.clone(), at.key.clone());
            }
        }
    }
    name
}

/// The probe as the producer in `ctx` is expected to see it, and why it differs from
/// the contract, if it does.
pub(crate) fn differs(
    c: &mut Checker,
    key: &str,
    p: &ProbeFile,
    ctx: Option<&ProducerCtx>,
) -> (ProbeFile, Option<String>) {
    let mut probe = p.clone();
    let Some(map) = &p.differs else { return (probe, None) };
    let Some(ctx) = ctx else {
        c.key(&join(key, "differs"), "expected `differs` only in a scenario with `producers`");
        return (probe, None);
    };
    let mut difference = None;
    for (producer, d) in map {
        let dkey = join(&join(key, "differs"), producer);
        ctx.check_name(c, &dkey, producer);
        let why = match d.why.as_deref().map(str::trim) {
            None | Some("") => {
                c.missing(&join(&dkey, "why"), "the reason this producer differs from the contract here");
                None
            }
            Some(w) => Some(w.to_string()),
        };
        if d.expect.is_none() && d.served_by.is_none() && d.source_seen.is_none() {
            c.value(&dkey, "expected at least one of `expect`, `served_by` or `source_seen` to differ");
        }
        if producer == &ctx.producer.name {
            if let Some(e) = &d.expect {
                probe.expect = Some(e.clone());
                if e != "reached" {
                    // What answers is moot when nothing should.
                    probe.served_by = None;
                    probe.source_seen = None;
                }
            }
            if d.served_by.is_some() {
                probe.served_by = d.served_by.clone();
            }
            if d.source_seen.is_some() {
                probe.source_seen = d.source_seen.clone();
            }
            difference = why;
        }
    }
    (probe, difference)
}

/// A probe's destination: a node's first address of the family asked for (or of its
/// only family), or an address of the lab or of loopback.
pub(crate) fn resolve_to(
    c: &mut Checker,
    scenario: &Scenario,
    lab: &LabIndex,
    key: &str,
    text: &str,
    family: Option<Family>,
) -> Option<IpAddr> {
    if let Some(&id) = lab.ids.get(text) {
        return node_address(c, scenario, lab, key, text, id, family);
    }
    let a = match text.parse::<IpAddr>() {
        Ok(a) => a,
        Err(_) => {
            c.value(
                key,
                format!("expected a node name (one of {}) or an IP address, found `{text}`", lab.node_list(scenario)),
            );
            return None;
        }
    };
    if let Some(f) = family.filter(|f| *f != Family::of(a)) {
        c.value(key, format!("expected an {f} address for `family: {f}`, found {a}"));
        return None;
    }
    match a {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            c.value(
                key,
                format!(
                    "{a} is link-local: it needs an interface to be sent from; expected a global or \
                     unique-local address of the lab"
                ),
            );
            None
        }
        a if a.is_loopback() || scenario.owner_of_ip(a).is_some() => Some(a),
        a => {
            if !lab.rejected.contains(&a) {
                c.value(
                    key,
                    format!(
                        "{a} is no address of this lab: traffic must stay inside the lab, so \
                         expected the address of a bridge, uplink or node interface, or a \
                         loopback address"
                    ),
                );
            }
            None
        }
    }
}

/// The address a probe sends to when it names node `id`.
fn node_address(
    c: &mut Checker,
    scenario: &Scenario,
    lab: &LabIndex,
    key: &str,
    text: &str,
    id: NodeId,
    family: Option<Family>,
) -> Option<IpAddr> {
    let v4 = scenario.addresses_of(id).first().copied().map(IpAddr::V4);
    let v6 = scenario.addresses6_of(id).first().copied().map(IpAddr::V6);
    // A node whose addresses did not all check out gets no second complaint.
    let quiet = lab.incomplete.contains(&id);
    let chosen = match (family, v4, v6) {
        (Some(Family::Ipv4), v4, _) => v4,
        (Some(Family::Ipv6), _, v6) => v6,
        (None, Some(_), Some(_)) if quiet => return None,
        (None, Some(_), Some(_)) => {
            c.value(
                key,
                format!(
                    "node `{text}` has addresses of both families; say which this probe goes to with \
                     `family: ipv4` or `family: ipv6`"
                ),
            );
            return None;
        }
        (None, v4, v6) => v4.or(v6),
    };
    if chosen.is_none() && !quiet {
        let what = family.map(|f| format!("no {f} address")).unwrap_or_else(|| "no address".to_string());
        c.value(
            key,
            format!(
                "node `{text}` has {what} to send to (the host's addresses are those of its \
                 uplinks and bridges); give an address instead"
            ),
        );
    }
    chosen
}

#[cfg(test)]
mod tests {
    use crate::scenario::testing::*;
    use rstest::rstest;

    #[rstest]
    // Probes.
    #[case::timeout_bad(
        "timeout: 300ms",
        "timeout: fast",
        "timeout",
        "timeout: |fast",
        "expected a duration such as \"200ms\" or \"1s\", found `fast`"
    )]
    #[case::timeout_zero("timeout: 300ms", "timeout: 0s", "timeout", "timeout: |0s", "greater than 0 and at most 60s")]
    #[case::timeout_long("timeout: 1s", "timeout: 2m", "probes[1].timeout", "timeout: |2m", "at most 60s")]
    #[case::from_unknown(
        "  - from: c1\n    to: c2",
        "  - from: c7\n    to: c2",
        "probes[0].from",
        "from: |c7",
        "no node named `c7`; nodes: host, c1, c2, ext"
    )]
    #[case::from_missing(
        "  - from: c1\n    to: c2\n",
        "  - to: c2\n",
        "probes[0].from",
        "  - |to: c2",
        "missing required key `from`"
    )]
    #[case::to_unknown(
        "    to: c2\n",
        "    to: c2x\n",
        "probes[0].to",
        "to: |c2x",
        "expected a node name (one of host, c1, c2, ext) or an IP address, found `c2x`"
    )]
    #[case::to_outside(
        "    to: c2\n",
        "    to: 8.8.8.8\n",
        "probes[0].to",
        "to: |8.8.8.8",
        "8.8.8.8 is no address of this lab"
    )]
    #[case::proto_unknown(
        "    proto: udp\n",
        "    proto: sctp\n",
        "probes[3].proto",
        "proto: |sctp",
        "expected icmp, tcp or udp, found `sctp`"
    )]
    #[case::port_for_icmp(
        "    to: 127.0.0.1\n",
        "    to: 127.0.0.1\n    port: 22\n    proto: icmp\n",
        "probes[2].port",
        "    |port: 22",
        "no `port` for an icmp probe"
    )]
    #[case::port_missing(
        "    proto: udp\n    port: 53\n",
        "    proto: udp\n",
        "probes[3].port",
        "  - |from: host",
        "missing required key `port`"
    )]
    #[case::probe_port_zero(
        "    port: 80\n",
        "    port: 0\n",
        "probes[0].port",
        "port: |0",
        "expected a port from 1 to 65535, found 0"
    )]
    #[case::expect_missing(
        "    port: 80\n    expect: dropped\n",
        "    port: 80\n",
        "probes[0].expect",
        "  - |from: c1\n    to: c2",
        "missing required key `expect`"
    )]
    #[case::expect_unknown(
        "expect: dropped",
        "expect: blocked",
        "probes[0].expect",
        "expect: |blocked",
        "expected reached, refused or dropped, found `blocked`"
    )]
    #[case::served_by_dropped(
        "    expect: dropped\n",
        "    expect: dropped\n    served_by: c2\n",
        "probes[0].served_by",
        "    |served_by: c2",
        "this probe expects `dropped`"
    )]
    #[case::served_by_icmp(
        "    expect: refused\n",
        "    expect: reached\n    served_by: c1\n",
        "probes[2].served_by",
        "    |served_by: c1\n  - from: host",
        "this is an icmp probe"
    )]
    #[case::served_by_no_service(
        "    served_by: c1\n    source_seen: ext",
        "    served_by: c2\n    source_seen: ext",
        "probes[1].served_by",
        "served_by: |c2",
        "`c2` declares none"
    )]
    #[case::served_by_no_udp_service(
        "    served_by: c1\n    source_seen: 192",
        "    served_by: ext\n    source_seen: 192",
        "probes[3].served_by",
        "served_by: |ext",
        "with a udp service, but `ext` declares none"
    )]
    #[case::served_by_unknown(
        "    served_by: c1\n    source_seen: ext",
        "    served_by: c9\n    source_seen: ext",
        "probes[1].served_by",
        "served_by: |c9",
        "no node named `c9`"
    )]
    #[case::source_seen_refused(
        "    expect: refused\n",
        "    expect: refused\n    source_seen: c1\n",
        "probes[2].source_seen",
        "    |source_seen: c1",
        "expects `refused`"
    )]
    #[case::source_seen_bad(
        "source_seen: ext",
        "source_seen: extern",
        "probes[1].source_seen",
        "source_seen: |extern",
        "expected a node name (one of host, c1, c2, ext) or an IP address, found `extern`"
    )]
    #[case::probe_name_twice(
        "  - name: external web\n",
        "  - name: c1 -> c2:80/tcp\n",
        "probes[1].name",
        "name: |c1 -> c2",
        "probe name `c1 -> c2:80/tcp` is already used by probes[0]"
    )]
    #[case::probe_name_empty("  - name: external web\n", "  - name: \"\"\n", "probes[1].name", "name: |\"\"", "empty")]
    fn invalid(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str, #[case] says: &str) {
        let text = edit(from, to);
        assert_one(&text, key, needle, says);
    }

    #[rstest]
    #[case::both_families_and_no_family(
        "{ from: a, to: lan, family: ipv6,",
        "{ from: a, to: lan,",
        "probes[0].to",
        "to: |lan,",
        "node `lan` has addresses of both families; say which this probe goes to with `family: ipv4` or `family: ipv6`"
    )]
    #[case::no_address_of_that_family(
        "{ from: a, to: v4, expect",
        "{ from: a, to: v4, family: ipv6, expect",
        "probes[2].to",
        "to: |v4, family",
        "node `v4` has no ipv6 address to send to"
    )]
    #[case::family_unknown(
        "family: ipv6,",
        "family: inet6,",
        "probes[0].family",
        "family: |inet6,",
        "expected ipv4 or ipv6, found `inet6`"
    )]
    #[case::family_against_the_address(
        "{ from: a, to: \"2001:db8::2\", proto",
        "{ from: a, to: \"192.0.2.2\", family: ipv6, proto",
        "probes[1].to",
        "to: |\"192.0.2.2\"",
        "expected an ipv6 address for `family: ipv6`, found 192.0.2.2"
    )]
    #[case::link_local(
        "to: \"2001:db8::2\"",
        "to: \"fe80::1\"",
        "probes[1].to",
        "to: |\"fe80::1\"",
        "fe80::1 is link-local: it needs an interface to be sent from"
    )]
    #[case::outside_the_lab(
        "to: \"2001:db8::2\"",
        "to: \"2001:db8::99\"",
        "probes[1].to",
        "to: |\"2001:db8::99\"",
        "2001:db8::99 is no address of this lab"
    )]
    #[case::no_common_family(
        "{ from: a, to: v4, expect",
        "{ from: v4, to: \"fd00::2\", expect",
        "probes[2].to",
        "to: |\"fd00::2\"",
        "`v4` has no IPv6 address, so it cannot send to fd00::2: the two ends have no family in common"
    )]
    #[case::files6_under_nft(
        "  backends: [iptables-nft]\n  files: [rules/base.rules]\n  files6: [rules/base.rules]\n",
        "  backends: [nft]\n  files: [rules/base.nft]\n  files6: [rules/base.rules]\n",
        "rules.files6",
        "  |files6:",
        "expected no `files6` under the nft back end"
    )]
    fn invalid_dual_stack(
        #[case] from: &str,
        #[case] to: &str,
        #[case] key: &str,
        #[case] needle: &str,
        #[case] says: &str,
    ) {
        assert_one(&edit6(from, to), key, needle, says);
    }
}
