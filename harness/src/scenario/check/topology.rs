//! The lab: the host with its bridges and uplinks, the nodes with their interfaces, and
//! the container networks a live producer wires. Names resolve to indices, addresses
//! must fit their subnets and be unique, and each veth gets its host-side name here.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};

use super::fields::MAX_IFNAME;
use super::Checker;
use crate::scenario::diagnostic::names;
use crate::scenario::file::{Addresses, HostFile, InterfaceFile, NodeFile};
use crate::scenario::load::DEFAULT_TIMEOUT;
use crate::scenario::model::*;
use crate::scenario::yaml::{self, item, join};

/// What the checks of nodes learnt, for the checks of probes.
pub(crate) struct LabIndex {
    pub(crate) ids: HashMap<String, NodeId>,
    /// Nodes with an address that did not parse: resolving their names says nothing.
    pub(crate) incomplete: HashSet<NodeId>,
    /// Addresses written in the lab but rejected (`10.0.0.0/24`, `10.0.0.5` without a
    /// prefix): a probe to one of them gets no second complaint.
    pub(crate) rejected: HashSet<IpAddr>,
}

impl LabIndex {
    pub(crate) fn node_list(&self, scenario: &Scenario) -> String {
        let mut seen = HashSet::new();
        names(scenario.nodes.iter().map(|n| n.name.as_str()).filter(|n| seen.insert(*n)))
    }
}

/// The address part of a rejected interface address, if it has one.
pub(crate) fn written_address(text: &str) -> Option<IpAddr> {
    text.split('/').next()?.trim().parse().ok()
}

/// The addresses written under one key, split by family, each with its own key
/// (`address`, or `address[1]` in a list).
#[derive(Default)]
struct Written {
    v4: Vec<(Ipv4Net, String)>,
    v6: Vec<(Ipv6Net, String)>,
    /// Some address was rejected.
    bad: bool,
}

/// Where a list of addresses must hold an IPv4 one, and says so.
const IPV4_NEEDED: &str = "an IPv4 address with a prefix length such as 192.168.0.2/20 (an IPv6 address \
                           goes beside it, in a list: [192.168.0.2/20, fd00::2/64])";

/// The host, its bridges and uplinks, and the nodes: everything but rules, probes and
/// counters.
pub(crate) fn build_lab(
    c: &mut Checker,
    host: HostFile,
    node_files: indexmap::IndexMap<String, Option<NodeFile>>,
) -> (Scenario, LabIndex) {
    let host_name = host.name.clone().unwrap_or_else(|| "host".to_string());
    if host.name.is_some() {
        c.node_name("host.name", &host_name, false);
    }
    let mut draft = Draft::default();
    draft.bridges(c, &host);
    draft.uplinks(c, &host);
    draft.check_host_subnets(c);

    let mut nodes = vec![Node {
        name: host_name.clone(),
        interfaces: Vec::new(),
        sysctls: c.sysctls("host.sysctls", host.sysctls.as_ref()),
        loopback: true,
        services: c.services("host.services", host.services.as_ref()),
        container: None,
    }];
    draft.ids.insert(host_name.clone(), NodeId::HOST);
    draft.uplink_users = vec![Vec::new(); draft.uplinks.len()];
    for (i, (nname, nfile)) in node_files.iter().enumerate() {
        let id = NodeId(i + 1);
        let key = join("nodes", nname);
        c.node_name(&key, nname, true);
        if nname == &host_name {
            c.key(&key, format!("`{nname}` is the host's name (`host.name`); node names must differ from it"));
        } else {
            draft.ids.insert(nname.clone(), id);
        }
        let default = NodeFile::default();
        nodes.push(draft.node(c, id, &key, nname, nfile.as_ref().unwrap_or(&default)));
    }
    draft.connect_uplinks(c);
    draft.name_host_sides(&mut nodes);
    draft.check_unique_addresses(c);

    let scenario = Scenario {
        path: PathBuf::new(),
        name: String::new(),
        description: None,
        skip: None,
        ipv6: false,
        timeout: DEFAULT_TIMEOUT,
        sequential: false,
        host: HostSetup {
            forwarding: host.forwarding.unwrap_or(false),
            bridges: draft.bridges,
            uplinks: draft.uplinks,
        },
        nodes,
        rules: RuleSet { backends: Vec::new(), files: Vec::new(), ipsets: Vec::new(), live: None },
        probes: Vec::new(),
        counters: Vec::new(),
        networks: Vec::new(),
        producer: None,
        contract: None,
        not_applicable: None,
    };
    let lab = LabIndex { ids: draft.ids, incomplete: draft.incomplete, rejected: draft.rejected };
    (scenario, lab)
}

/// What the checks of the host and its nodes gather as they go, for the checks that
/// need the whole lab.
#[derive(Default)]
struct Draft {
    bridges: Vec<Bridge>,
    uplinks: Vec<Uplink>,
    /// Each uplink's subnet; None where the address is missing or wrong.
    uplink_nets: Vec<Option<Ipv4Net>>,
    /// Every address of the lab with where it was written, in file order.
    addresses: Vec<(IpAddr, String)>,
    /// The host's IPv6 subnets, with what carries each and where it was written.
    host_nets6: Vec<(Ipv6Net, String, String)>,
    rejected: HashSet<IpAddr>,
    ids: HashMap<String, NodeId>,
    incomplete: HashSet<NodeId>,
    /// For each uplink, the interfaces that use it.
    uplink_users: Vec<Vec<(NodeId, String)>>,
}

impl Draft {
    /// `host.bridges`.
    fn bridges(&mut self, c: &mut Checker, host: &HostFile) {
        for (bname, b) in host.bridges.iter().flatten() {
            let key = join("host.bridges", bname);
            c.ifname(&key, bname, true);
            let akey = join(&key, "address");
            let w = match b.as_ref().and_then(|b| b.address.as_ref()) {
                None => Written::default(),
                Some(a) => self.written(c, &akey, a),
            };
            if let Some((_, second)) = w.v4.get(1) {
                c.value(second, "expected one IPv4 address on a bridge, found a second");
            }
            let what = format!("bridge `{bname}`");
            self.host_nets6.extend(w.v6.iter().map(|(n, k)| (*n, what.clone(), k.clone())));
            self.bridges.push(Bridge {
                name: bname.clone(),
                address: w.v4.first().map(|(n, _)| *n),
                address6: w.v6.iter().map(|(n, _)| *n).collect(),
            });
        }
    }

    /// `host.uplinks`; each one's peer is set once the nodes are known.
    fn uplinks(&mut self, c: &mut Checker, host: &HostFile) {
        for (uname, u) in host.uplinks.iter().flatten() {
            let key = join("host.uplinks", uname);
            c.ifname(&key, uname, true);
            if self.bridges.iter().any(|b| &b.name == uname) {
                c.key(
                    &key,
                    format!(
                        "the host already has a bridge named `{uname}`; bridge and uplink names \
                         must be unique on the host"
                    ),
                );
            }
            let akey = join(&key, "address");
            let w = match u.as_ref().and_then(|u| u.address.as_ref()) {
                None => {
                    c.missing(&akey, "an IPv4 address with a prefix length such as 192.0.2.1/24");
                    Written { bad: true, ..Written::default() }
                }
                Some(a) => self.written(c, &akey, a),
            };
            let address = self.one_ipv4(c, &akey, &w, "an uplink");
            self.uplink_nets.push(address);
            let what = format!("uplink `{uname}`");
            self.host_nets6.extend(w.v6.iter().map(|(n, k)| (*n, what.clone(), k.clone())));
            self.uplinks.push(Uplink {
                name: uname.clone(),
                address: address.unwrap_or(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 32).unwrap()),
                address6: w.v6.iter().map(|(n, _)| *n).collect(),
                peer: NodeId::HOST,
            });
        }
    }

    /// The host routes a subnet through one interface: two with the same one contradict.
    fn check_host_subnets(&self, c: &mut Checker) {
        let host_nets = self
            .bridges
            .iter()
            .filter_map(|b| {
                b.address.map(|a| (a, format!("bridge `{}`", b.name), join(&join("host.bridges", &b.name), "address")))
            })
            .chain(self.uplinks.iter().zip(&self.uplink_nets).filter_map(|(u, n)| {
                n.map(|a| (a, format!("uplink `{}`", u.name), join(&join("host.uplinks", &u.name), "address")))
            }))
            .collect::<Vec<_>>();
        let host_nets = host_nets.into_iter().map(|(n, what, key)| (ipnet::IpNet::V4(n), what, key));
        let host_nets6 = self.host_nets6.iter().map(|(n, what, key)| (ipnet::IpNet::V6(*n), what.clone(), key.clone()));
        let mut subnets: Vec<(ipnet::IpNet, String)> = Vec::new();
        for (net, what, key) in host_nets.chain(host_nets6) {
            match subnets.iter().find(|(n, _)| *n == net.trunc()) {
                Some((_, first)) => c.value(
                    &key,
                    format!(
                        "{what} has the subnet {}, as {first} does; the host would route it through only one of them",
                        net.trunc()
                    ),
                ),
                None => subnets.push((net.trunc(), what)),
            }
        }
    }

    /// The addresses at `akey`, each checked and recorded for the uniqueness check.
    fn written(&mut self, c: &mut Checker, akey: &str, addresses: &Addresses) -> Written {
        let mut w = Written::default();
        let items = addresses.items();
        if items.is_empty() {
            c.value(akey, "expected at least one address, found an empty list");
            w.bad = true;
        }
        for (i, text) in items {
            let key = i.map_or_else(|| akey.to_string(), |i| item(akey, i));
            let parsed = if text.contains(':') {
                c.cidr6(&key, text).map(|n| w.v6.push((n, key.clone())))
            } else {
                c.cidr(&key, text).map(|n| w.v4.push((n, key.clone())))
            };
            if parsed.is_none() {
                w.bad = true;
                self.rejected.extend(written_address(text));
            }
        }
        for (n, k) in &w.v4 {
            self.addresses.push((IpAddr::V4(n.addr()), k.clone()));
        }
        for (n, k) in &w.v6 {
            self.addresses.push((IpAddr::V6(n.addr()), k.clone()));
        }
        w
    }

    /// The one IPv4 address of an uplink or interface among what was written.
    fn one_ipv4(&self, c: &mut Checker, akey: &str, w: &Written, what: &str) -> Option<Ipv4Net> {
        if let Some((_, second)) = w.v4.get(1) {
            c.value(second, format!("expected one IPv4 address on {what}, found a second"));
        }
        if w.v4.is_empty() && !w.bad {
            c.value(akey, format!("expected {IPV4_NEEDED}, found IPv6 addresses only"));
        }
        w.v4.first().map(|(n, _)| *n)
    }

    /// One node under `nodes`, at `key`.
    fn node(&mut self, c: &mut Checker, id: NodeId, key: &str, name: &str, file: &NodeFile) -> Node {
        let ikey = join(key, "interfaces");
        let list = c.list(&ikey, &file.interfaces, "a non-empty list of interfaces");
        let mut interfaces: Vec<Interface> = Vec::new();
        // Interface name → where it was declared.
        let mut ifnames: HashMap<String, String> = HashMap::new();
        let mut gateway_at = GatewayAt::default();
        for (j, f) in list.iter().enumerate() {
            let fkey = item(&ikey, j);
            let attach = self.attachment(c, id, &fkey, f);
            let ifname = interface_name(c, &fkey, j, f, &mut ifnames);
            let (address, address6) = self.interface_address(c, id, &fkey, f, attach);
            let (gateway, gateway6) = interface_gateway(c, &fkey, f, address, &address6, &mut gateway_at);
            interfaces.push(Interface {
                name: ifname,
                host_side: String::new(),
                // Placeholders only reach a scenario that is not returned.
                attach: attach.unwrap_or(Attach::Bridge(usize::MAX)),
                address: address.unwrap_or(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 32).unwrap()),
                address6,
                gateway,
                gateway6,
            });
        }
        let loopback = file.loopback.unwrap_or(true);
        let mut sysctls = Vec::new();
        if !loopback {
            // Lets the node send to 127.0.0.0/8 through its interfaces, and take
            // answers from there, as a neighbour on the host's segment can.
            sysctls.push(("net.ipv4.conf.all.route_localnet".to_string(), "1".to_string()));
        }
        sysctls.extend(c.sysctls(&join(key, "sysctls"), file.sysctls.as_ref()));
        Node {
            name: name.to_string(),
            interfaces,
            sysctls,
            loopback,
            services: c.services(&join(key, "services"), file.services.as_ref()),
            container: None,
        }
    }

    /// Where an interface connects: `bridge: NAME` or `uplink: NAME`.
    fn attachment(&mut self, c: &mut Checker, id: NodeId, fkey: &str, f: &InterfaceFile) -> Option<Attach> {
        match (&f.bridge, &f.uplink) {
            (Some(_), Some(_)) => {
                c.key(
                    &join(fkey, "uplink"),
                    "expected either `bridge` or `uplink`, found both: an interface connects \
                     to one of them",
                );
                None
            }
            (None, None) => {
                c.value(
                    fkey,
                    "expected `bridge: NAME` or `uplink: NAME` to say where the interface \
                     connects, found neither",
                );
                None
            }
            (Some(b), None) => match self.bridges.iter().position(|x| &x.name == b) {
                Some(k) => Some(Attach::Bridge(k)),
                None => {
                    c.value(
                        &join(fkey, "bridge"),
                        format!(
                            "no bridge named `{b}` under host.bridges; bridges: {}",
                            names(self.bridges.iter().map(|x| x.name.as_str()))
                        ),
                    );
                    None
                }
            },
            (None, Some(u)) => match self.uplinks.iter().position(|x| &x.name == u) {
                Some(k) => {
                    self.uplink_users[k].push((id, join(fkey, "uplink")));
                    Some(Attach::Uplink(k))
                }
                None => {
                    c.value(
                        &join(fkey, "uplink"),
                        format!(
                            "no uplink named `{u}` under host.uplinks; uplinks: {}",
                            names(self.uplinks.iter().map(|x| x.name.as_str()))
                        ),
                    );
                    None
                }
            },
        }
    }

    /// An interface's addresses, which must sit in the subnets of what it connects to:
    /// its one IPv4 address, and its IPv6 ones.
    fn interface_address(
        &mut self,
        c: &mut Checker,
        id: NodeId,
        fkey: &str,
        f: &InterfaceFile,
        attach: Option<Attach>,
    ) -> (Option<Ipv4Net>, Vec<Ipv6Net>) {
        let akey = join(fkey, "address");
        let w = match &f.address {
            None => {
                c.missing(&akey, "an IPv4 address with a prefix length such as 192.168.0.2/20");
                Written { bad: true, ..Written::default() }
            }
            Some(a) => self.written(c, &akey, a),
        };
        let address = self.one_ipv4(c, &akey, &w, "an interface");
        if w.bad || address.is_none() {
            self.incomplete.insert(id);
        }
        let (subnet, subnets6) = match attach {
            Some(Attach::Bridge(k)) => {
                let b = &self.bridges[k];
                let what = format!("bridge `{}`", b.name);
                (b.address.map(|n| (n, what.clone())), (b.address6.clone(), what))
            }
            Some(Attach::Uplink(k)) => {
                let u = &self.uplinks[k];
                let what = format!("uplink `{}`", u.name);
                (self.uplink_nets[k].map(|n| (n, what.clone())), (u.address6.clone(), what))
            }
            None => (None, (Vec::new(), String::new())),
        };
        if let (Some((net, what)), Some(a)) = (subnet, address) {
            if !net.contains(&a.addr()) {
                let at = &w.v4[0].1;
                c.value(at, format!("expected an address in {what}'s subnet {}, found {}", net.trunc(), a.addr()));
            }
        }
        let (nets6, what) = subnets6;
        for (a, at) in &w.v6 {
            let link_local = a.addr().is_unicast_link_local();
            if !nets6.is_empty() && !link_local && !nets6.iter().any(|n| n.contains(&a.addr())) {
                let shown: Vec<String> = nets6.iter().map(|n| n.trunc().to_string()).collect();
                let subnets = if shown.len() == 1 { "subnet" } else { "subnets" };
                c.value(
                    at,
                    format!("expected an address in {what}'s IPv6 {subnets} {}, found {}", shown.join(", "), a.addr()),
                );
            }
        }
        (address, w.v6.iter().map(|(n, _)| *n).collect())
    }

    /// Each uplink has exactly one node at its other end.
    fn connect_uplinks(&mut self, c: &mut Checker) {
        for (k, users) in self.uplink_users.iter().enumerate() {
            let uname = self.uplinks[k].name.clone();
            match users.as_slice() {
                [] => c.key(
                    &join("host.uplinks", &uname),
                    format!(
                        "expected one node interface with `uplink: {uname}` at the other end of \
                         this uplink, found none"
                    ),
                ),
                [(peer, _), rest @ ..] => {
                    self.uplinks[k].peer = *peer;
                    for (_, at) in rest {
                        c.value(
                            at,
                            format!(
                                "uplink `{uname}` is already used by {}; an uplink connects the \
                                 host to exactly one node interface",
                                yaml::parent(&users[0].1).unwrap_or_default()
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Host-side names of the veths: an uplink's own name, or one generated for a
    /// bridge port.
    fn name_host_sides(&self, nodes: &mut [Node]) {
        let mut taken: HashSet<String> =
            self.bridges.iter().map(|b| b.name.clone()).chain(self.uplinks.iter().map(|u| u.name.clone())).collect();
        for node in nodes.iter_mut().skip(1) {
            for iface in &mut node.interfaces {
                iface.host_side = match iface.attach {
                    Attach::Uplink(k) => self.uplinks[k].name.clone(),
                    Attach::Bridge(_) => {
                        let wanted = format!("{}-{}", node.name, iface.name);
                        let name = if wanted.len() <= MAX_IFNAME && !taken.contains(&wanted) {
                            wanted
                        } else {
                            (0..).map(|k| format!("veth{k}")).find(|n| !taken.contains(n)).expect("some vethN is free")
                        };
                        taken.insert(name.clone());
                        name
                    }
                };
            }
        }
    }

    /// No address twice in the lab.
    fn check_unique_addresses(&self, c: &mut Checker) {
        let mut seen: HashMap<IpAddr, &str> = HashMap::new();
        for (addr, key) in &self.addresses {
            match seen.get(addr) {
                Some(first) => c.value(
                    key,
                    format!("address {addr} is already used by {first}; each address in the lab is unique"),
                ),
                None => {
                    seen.insert(*addr, key);
                }
            }
        }
    }
}

/// An interface's name in its node (`eth0`, `eth1`, ... unless given), unique there.
fn interface_name(
    c: &mut Checker,
    fkey: &str,
    j: usize,
    f: &InterfaceFile,
    ifnames: &mut HashMap<String, String>,
) -> String {
    let ifname = f.name.clone().unwrap_or_else(|| format!("eth{j}"));
    let nkey = join(fkey, "name");
    if f.name.is_some() {
        c.ifname(&nkey, &ifname, false);
    }
    match ifnames.get(&ifname) {
        Some(first) if f.name.is_some() => {
            c.value(&nkey, format!("interface name `{ifname}` is already used by {first}"))
        }
        Some(first) => c.value(
            fkey,
            format!(
                "this interface's default name `{ifname}` is already used by {first}; \
                 give it a `name`"
            ),
        ),
        None => {
            ifnames.insert(ifname.clone(), fkey.to_string());
        }
    }
    ifname
}

/// Where a node's default routes were set, one per family.
#[derive(Default)]
struct GatewayAt {
    v4: Option<String>,
    v6: Option<String>,
}

/// An interface's gateways, one per family: a router in its subnet, and one default
/// route per node and family.
fn interface_gateway(
    c: &mut Checker,
    fkey: &str,
    f: &InterfaceFile,
    address: Option<Ipv4Net>,
    address6: &[Ipv6Net],
    gateway_at: &mut GatewayAt,
) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let gkey = join(fkey, "gateway");
    let (mut gateway, mut gateway6) = (None, None);
    for (i, text) in f.gateway.iter().flat_map(Addresses::items) {
        let key = i.map_or_else(|| gkey.clone(), |i| item(&gkey, i));
        let (family, at) = if text.contains(':') {
            let Some(g) = c.address6(&key, text) else { continue };
            if gateway6.replace(g).is_some() {
                c.value(&key, "expected one IPv6 gateway, found a second");
            }
            check_gateway6(c, &key, g, address6);
            ("IPv6 ", &mut gateway_at.v6)
        } else {
            let Some(g) = c.address(&key, text) else { continue };
            if gateway.replace(g).is_some() {
                c.value(&key, "expected one IPv4 gateway, found a second");
            }
            if let Some(a) = address {
                if g == a.addr() {
                    c.value(&key, format!("expected the address of a router, found the interface's own address {g}"));
                } else if !a.contains(&g) {
                    c.value(&key, format!("expected a gateway in the interface's subnet {}, found {g}", a.trunc()));
                }
            }
            ("", &mut gateway_at.v4)
        };
        match at {
            Some(first) if first != fkey => {
                c.key(&key, format!("a node has one {family}default route, and {first} already sets a gateway"))
            }
            _ => *at = Some(fkey.to_string()),
        }
    }
    (gateway, gateway6)
}

/// An IPv6 gateway: a router on the interface's link, in one of its subnets or
/// link-local.
fn check_gateway6(c: &mut Checker, key: &str, g: Ipv6Addr, address6: &[Ipv6Net]) {
    if address6.is_empty() {
        c.value(key, format!("expected an IPv6 address on this interface for the IPv6 gateway {g}, found none"));
    } else if address6.iter().any(|a| a.addr() == g) {
        c.value(key, format!("expected the address of a router, found the interface's own address {g}"));
    } else if !g.is_unicast_link_local() && !address6.iter().any(|a| a.contains(&g)) {
        let shown: Vec<String> = address6.iter().map(|n| n.trunc().to_string()).collect();
        c.value(
            key,
            format!(
                "expected a gateway in the interface's IPv6 subnets {} or a link-local one, found {g}",
                shown.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::testing::*;
    use rstest::rstest;

    #[test]
    fn a_node_without_loopback_routes_127_through_its_interfaces() {
        let s = load_str(&edit("  ext:\n    interfaces:", "  ext:\n    loopback: false\n    interfaces:"))
            .unwrap_or_else(|e| panic!("{e}"));
        let ext = s.nodes.iter().find(|n| n.name == "ext").expect("ext");
        assert!(!ext.loopback);
        // route_localnet first, so the node's own sysctls can still change it.
        assert_eq!(
            ext.sysctls,
            vec![
                ("net.ipv4.conf.all.route_localnet".to_string(), "1".to_string()),
                ("net.ipv4.tcp_syncookies".to_string(), "1".to_string())
            ]
        );
        assert!(s.nodes.iter().filter(|n| n.name != "ext").all(|n| n.loopback));
    }

    #[test]
    fn host_side_names_fall_back_to_vethn() {
        let text = "\
host:
  name: gw
  bridges:
    br0: { address: 10.0.0.1/24 }
    a-eth0: {}
    veth0: {}
nodes:
  a:
    interfaces: [{ bridge: br0, address: 10.0.0.2/24 }]
  averylongname:
    interfaces: [{ bridge: br0, address: 10.0.0.3/24 }, { bridge: br0, address: 10.0.0.4/24 }]
  b-c:
    interfaces: [{ bridge: br0, name: d, address: 10.0.0.5/24 }]
  b:
    interfaces: [{ bridge: br0, name: c-d, address: 10.0.0.6/24 }]
rules:
  backends: [iptables-legacy]
  files: [rules/base.rules]
probes:
  - { from: gw, to: a, expect: reached }
";
        let s = load_str(text).unwrap_or_else(|e| panic!("{e}"));
        let sides: Vec<&str> = s.nodes.iter().flat_map(|n| n.interfaces.iter().map(|i| i.host_side.as_str())).collect();
        assert_eq!(sides, ["veth1", "veth2", "veth3", "b-c-d", "veth4"]);
        assert_eq!(s.host().name, "gw");
        assert_eq!(s.probes[0].from, NodeId::HOST);
        // Deterministic.
        let again = load_str(text).unwrap();
        let sides_again: Vec<String> =
            again.nodes.iter().flat_map(|n| n.interfaces.iter().map(|i| i.host_side.clone())).collect();
        assert_eq!(sides, sides_again);
    }

    #[rstest]
    // Names.
    #[case::node_named_like_host(
        "nodes:\n",
        "nodes:\n  host:\n    interfaces: [{ bridge: br0, address: 172.20.0.9/16 }]\n",
        "nodes.host",
        "nodes:\n  |host:",
        "is the host's name"
    )]
    #[case::node_name_address(
        "nodes:\n",
        "nodes:\n  10.1.1.1:\n    interfaces: [{ bridge: br0, address: 172.20.0.9/16 }]\n",
        "nodes.10.1.1.1",
        "|10.1.1.1:",
        "reads as an IPv4 address"
    )]
    #[case::node_name_slash(
        "nodes:\n",
        "nodes:\n  a/b:\n    interfaces: [{ bridge: br0, address: 172.20.0.9/16 }]\n",
        "nodes.a/b",
        "|a/b:",
        "no '/'"
    )]
    #[case::ifname_too_long(
        "name: inner",
        "name: averyveryverylongname",
        "nodes.c2.interfaces[1].name",
        "name: |averyvery",
        "at most 15 bytes; `averyveryverylongname` is 21 bytes"
    )]
    #[case::ifname_slash(
        "name: inner",
        "name: in/ner",
        "nodes.c2.interfaces[1].name",
        "name: |in/ner",
        "no '/', ':' or white space"
    )]
    #[case::ifname_colon(
        "name: inner",
        "name: \"in:ner\"",
        "nodes.c2.interfaces[1].name",
        "name: |\"in:ner",
        "no '/', ':' or white space"
    )]
    #[case::ifname_dot(
        "name: inner",
        "name: \"..\"",
        "nodes.c2.interfaces[1].name",
        "name: |\"..\"",
        "not a valid interface name"
    )]
    #[case::ifname_empty("name: inner", "name: \"\"", "nodes.c2.interfaces[1].name", "name: |\"\"", "empty")]
    #[case::ifname_lo("name: inner", "name: lo", "nodes.c2.interfaces[1].name", "name: |lo", "loopback")]
    #[case::ifname_twice(
        "name: inner",
        "name: eth0",
        "nodes.c2.interfaces[1].name",
        "name: |eth0",
        "already used by nodes.c2.interfaces[0]"
    )]
    #[case::default_ifname_taken(
        "        address: 172.20.0.3/16\n        gateway: 172.20.0.1\n      - bridge: iso\n        name: inner\n",
        "        name: eth1\n        address: 172.20.0.3/16\n        gateway: 172.20.0.1\n      - bridge: iso\n",
        "nodes.c2.interfaces[1]",
        "      - |bridge: iso",
        "default name `eth1` is already used by nodes.c2.interfaces[0]"
    )]
    #[case::bridge_name_long(
        "    iso:\n",
        "    iso:\n    bridge-number-one: {}\n",
        "host.bridges.bridge-number-one",
        "|bridge-number-one",
        "at most 15 bytes; `bridge-number-one` is 17 bytes"
    )]
    #[case::bridge_name_space(
        "    iso:\n",
        "    iso:\n    \"br 1\": {}\n",
        "host.bridges.br 1",
        "|\"br 1\"",
        "white space"
    )]
    #[case::bridge_lo("    iso:\n", "    iso:\n    lo:\n", "host.bridges.lo", "    |lo:", "loopback")]
    #[case::uplink_same_as_bridge(
        "    iso:\n",
        "    iso:\n    up0:\n",
        "host.uplinks.up0",
        "uplinks:\n    |up0:",
        "already has a bridge named `up0`"
    )]
    // Attachments.
    #[case::unknown_bridge(
        "      - bridge: br0\n        address: 172.20.0.2/16",
        "      - bridge: br9\n        address: 172.20.0.2/16",
        "nodes.c1.interfaces[0].bridge",
        "bridge: |br9",
        "no bridge named `br9` under host.bridges; bridges: br0, iso"
    )]
    #[case::uplink_unused(
        "  services:\n    tcp: [22]",
        "    up1: { address: 198.51.100.1/24 }\n  services:\n    tcp: [22]",
        "host.uplinks.up1",
        "|up1:",
        "found none"
    )]
    #[case::uplink_twice(
        "nodes:\n",
        "nodes:\n  ext2:\n    interfaces: [{ uplink: up0, address: 192.0.2.3/24 }]\n",
        "nodes.ext.interfaces[0].uplink",
        "uplink: |up0\n",
        "already used by nodes.ext2.interfaces[0]"
    )]
    #[case::neither(
        "      - bridge: br0\n        address: 172.20.0.2/16",
        "      - address: 172.20.0.2/16",
        "nodes.c1.interfaces[0]",
        "      - |address: 172.20.0.2/16",
        "found neither"
    )]
    #[case::no_interfaces(
        "nodes:\n",
        "nodes:\n  c9:\n    services: { tcp: [1] }\n",
        "nodes.c9.interfaces",
        "    |services: { tcp: [1] }",
        "missing required key `interfaces`"
    )]
    #[case::null_node(
        "nodes:\n",
        "nodes:\n  c9:\n",
        "nodes.c9.interfaces",
        "  |c9:",
        "missing required key `interfaces`"
    )]
    #[case::empty_interfaces(
        "nodes:\n",
        "nodes:\n  c9: { interfaces: [] }\n",
        "nodes.c9.interfaces",
        "interfaces: |[]",
        "found an empty list"
    )]
    // Addresses.
    #[case::network_address(
        "address: 172.20.0.2/16",
        "address: 172.20.0.0/16",
        "nodes.c1.interfaces[0].address",
        "address: |172.20.0.0/16",
        "the network address of 172.20.0.0/16"
    )]
    #[case::broadcast_address(
        "address: 10.9.0.3/24",
        "address: 10.9.0.255/24",
        "nodes.c2.interfaces[1].address",
        "address: |10.9.0.255/24",
        "the broadcast address of 10.9.0.0/24"
    )]
    #[case::bridge_network_address(
        "address: 172.20.0.1/16",
        "address: 172.20.0.0/16",
        "host.bridges.br0.address",
        "address: |172.20.0.0/16",
        "network address"
    )]
    #[case::no_prefix(
        "address: 10.9.0.3/24",
        "address: 10.9.0.3",
        "nodes.c2.interfaces[1].address",
        "address: |10.9.0.3",
        "without a prefix length"
    )]
    #[case::not_an_address(
        "address: 10.9.0.3/24",
        "address: fd00::3/64",
        "nodes.c2.interfaces[1].address",
        "address: |fd00::3/64",
        "expected an IPv4 address with a prefix length"
    )]
    #[case::prefix_too_long(
        "address: 10.9.0.3/24",
        "address: 10.9.0.3/33",
        "nodes.c2.interfaces[1].address",
        "address: |10.9.0.3/33",
        "found `10.9.0.3/33`"
    )]
    #[case::outside_bridge(
        "address: 172.20.0.2/16",
        "address: 172.21.0.2/12",
        "nodes.c1.interfaces[0].address",
        "address: |172.21.0.2/12",
        "expected an address in bridge `br0`'s subnet 172.20.0.0/16, found 172.21.0.2"
    )]
    #[case::outside_uplink(
        "address: 192.0.2.2/24\n        gateway: 192.0.2.1",
        "address: 198.51.100.2/24",
        "nodes.ext.interfaces[0].address",
        "address: |198.51.100.2/24",
        "uplink `up0`'s subnet 192.0.2.0/24"
    )]
    #[case::address_twice(
        "address: 172.20.0.3/16",
        "address: 172.20.0.2/16",
        "nodes.c2.interfaces[0].address",
        "address: |172.20.0.2/16\n        gateway: 172.20.0.1\n      - bridge: iso",
        "address 172.20.0.2 is already used by nodes.c1.interfaces[0].address"
    )]
    #[case::address_of_bridge(
        "address: 10.9.0.3/24",
        "address: 172.20.0.1/24",
        "nodes.c2.interfaces[1].address",
        "address: |172.20.0.1/24",
        "already used by host.bridges.br0.address"
    )]
    #[case::address_missing(
        "        name: inner\n        address: 10.9.0.3/24\n",
        "        name: inner\n",
        "nodes.c2.interfaces[1].address",
        "      - |bridge: iso",
        "missing required key `address`"
    )]
    #[case::gateway_outside(
        "gateway: 172.20.0.1",
        "gateway: 10.0.0.1",
        "nodes.c1.interfaces[0].gateway",
        "gateway: |10.0.0.1",
        "in the interface's subnet 172.20.0.0/16, found 10.0.0.1"
    )]
    #[case::gateway_own(
        "gateway: 172.20.0.1",
        "gateway: 172.20.0.2",
        "nodes.c1.interfaces[0].gateway",
        "gateway: |172.20.0.2",
        "own address"
    )]
    #[case::gateway_not_address(
        "gateway: 172.20.0.1",
        "gateway: 172.20.0.1/16",
        "nodes.c1.interfaces[0].gateway",
        "gateway: |172.20.0.1/16",
        "expected an IPv4 address"
    )]
    #[case::two_gateways(
        "address: 10.9.0.3/24\n",
        "address: 10.9.0.3/24\n        gateway: 10.9.0.1\n",
        "nodes.c2.interfaces[1].gateway",
        "        |gateway: 10.9.0.1",
        "nodes.c2.interfaces[0] already sets a gateway"
    )]
    fn invalid(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str, #[case] says: &str) {
        let text = edit(from, to);
        assert_one(&text, key, needle, says);
    }

    #[test]
    fn dual_stack_addresses_gateways_and_files_load() {
        let s = load_str(DUAL).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.ipv6, "IPv6 addresses turn IPv6 on");
        assert_eq!(s.host.bridges[0].address6, ["fd00::1/64".parse::<ipnet::Ipv6Net>().unwrap()]);
        assert!(s.host.bridges[1].address6.is_empty());
        assert_eq!(s.host.uplinks[0].address6.len(), 1);
        let a = &s.nodes[1].interfaces[0];
        assert_eq!(a.address, "10.0.0.2/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(a.address6.len(), 2);
        assert_eq!((a.gateway, a.gateway6), (Some(Ipv4Addr::new(10, 0, 0, 1)), Some("fd00::1".parse().unwrap())));
        assert_eq!(s.nodes[3].interfaces[0].gateway6, Some("fe80::1".parse().unwrap()));
        let formats: Vec<RuleFormat> = s.rules.files.iter().map(|f| f.format).collect();
        assert_eq!(formats, [RuleFormat::Iptables, RuleFormat::Ip6tables]);
        assert_eq!(s.probes[0].to, "2001:db8::2".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(s.probes[0].name, "a -> lan:80/tcp over ipv6");
        assert_eq!(s.probes[1].name, "a -> 2001:db8::2 icmp");
        assert_eq!(s.probes[2].to, std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)));
        assert_eq!(s.counters[0].family.as_deref(), Some("ip6"));
    }

    #[rstest]
    #[case::outside_the_bridge_prefix(
        "\"fd00::22/64\"",
        "\"fd00:9::22/64\"",
        "nodes.a.interfaces[0].address[2]",
        "|\"fd00:9::22/64\"",
        "expected an address in bridge `br0`'s IPv6 subnet fd00::/64, found fd00:9::22"
    )]
    #[case::without_prefix(
        "\"fd00::22/64\"",
        "\"fd00::22\"",
        "nodes.a.interfaces[0].address[2]",
        "|\"fd00::22\"",
        "found `fd00::22` without a prefix length"
    )]
    #[case::multicast(
        "\"fd00::22/64\"",
        "\"ff02::1/64\"",
        "nodes.a.interfaces[0].address[2]",
        "|\"ff02::1/64\"",
        "a multicast address"
    )]
    #[case::a_second_ipv4(
        "\"fd00::22/64\"",
        "10.0.0.9/24",
        "nodes.a.interfaces[0].address[2]",
        "|10.0.0.9/24",
        "expected one IPv4 address on an interface, found a second"
    )]
    #[case::empty_list(
        "address: 10.0.1.2/24",
        "address: []",
        "nodes.v4.interfaces[0].address",
        "address: |[]",
        "found an empty list"
    )]
    #[case::gateway6_outside(
        "\"fd00::1\"] }",
        "\"fd00:5::1\"] }",
        "nodes.a.interfaces[0].gateway[1]",
        "|\"fd00:5::1\"] }",
        "expected a gateway in the interface's IPv6 subnets fd00::/64, fd00::/64 or a link-local one"
    )]
    #[case::gateway6_without_ipv6(
        "address: 10.0.1.2/24 }",
        "address: 10.0.1.2/24, gateway: \"fd00::1\" }",
        "nodes.v4.interfaces[0].gateway",
        "gateway: |\"fd00::1\" }",
        "expected an IPv6 address on this interface for the IPv6 gateway fd00::1, found none"
    )]
    #[case::two_ipv6_gateways(
        "gateway: [10.0.0.1, \"fd00::1\"]",
        "gateway: [\"fd00::1\", \"fd00::9\"]",
        "nodes.a.interfaces[0].gateway[1]",
        "|\"fd00::9\"]",
        "expected one IPv6 gateway, found a second"
    )]
    #[case::ipv6_false("host:\n", "ipv6: false\nhost:\n", "ipv6", "ipv6: |false", "the lab has IPv6 addresses")]
    #[case::duplicate_ipv6(
        "\"fd00::22/64\"",
        "\"fd00::2/64\"",
        "nodes.a.interfaces[0].address[2]",
        "\"fd00::2/64\", |\"fd00::2/64\"",
        "address fd00::2 is already used by nodes.a.interfaces[0].address[1]"
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
