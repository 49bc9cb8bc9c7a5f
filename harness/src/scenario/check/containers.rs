//! Container networks and the containers on them: the nodes a live producer wires
//! itself, added to the lab after the nodes the scenario wires.

use std::net::Ipv6Addr;

use ipnet::{Ipv4Net, Ipv6Net};

use super::topology::LabIndex;
use super::Checker;
use crate::scenario::diagnostic::names;
use crate::scenario::file::{ContainerFile, NetworkFile, ScenarioFile};
use crate::scenario::model::*;
use crate::scenario::yaml::{item, join};

/// Container networks and the containers on them, added to the lab after its nodes.
pub(crate) fn containers(c: &mut Checker, scenario: &mut Scenario, lab: &mut LabIndex, file: &ScenarioFile) {
    for (name, n) in file.networks.iter().flatten() {
        let default = NetworkFile::default();
        if let Some(network) = network(c, scenario, name, n.as_ref().unwrap_or(&default)) {
            scenario.networks.push(network);
        }
    }
    for (name, f) in file.containers.iter().flatten() {
        let default = ContainerFile::default();
        container(c, scenario, lab, name, f.as_ref().unwrap_or(&default));
    }
}

/// One network under `networks`.
fn network(c: &mut Checker, scenario: &Scenario, name: &str, n: &NetworkFile) -> Option<Network> {
    let key = join("networks", name);
    let bridge = match &n.bridge {
        None => {
            c.missing(&join(&key, "bridge"), "the name of the bridge the producer creates");
            return None;
        }
        Some(b) => b.clone(),
    };
    c.ifname(&join(&key, "bridge"), &bridge, false);
    if scenario.host.bridges.iter().any(|b| b.name == bridge) || scenario.host.uplinks.iter().any(|u| u.name == bridge)
    {
        c.value(&join(&key, "bridge"), format!("the host already has an interface named `{bridge}`"));
    }
    let subnet = match &n.subnet {
        None => {
            c.missing(&join(&key, "subnet"), "the network's subnet, e.g. 172.17.0.0/16");
            return None;
        }
        Some(s) => match s.parse::<Ipv4Net>() {
            Ok(net) => net.trunc(),
            Err(_) => {
                c.value(&join(&key, "subnet"), format!("expected a subnet such as 172.17.0.0/16, found `{s}`"));
                return None;
            }
        },
    };
    let gateway = match &n.gateway {
        None => subnet.hosts().next().unwrap_or(subnet.addr()),
        Some(g) => c.address(&join(&key, "gateway"), g)?,
    };
    if !subnet.contains(&gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
        c.value(&join(&key, "gateway"), format!("expected a host address of {subnet}, found {gateway}"));
    } else if let Some(owner) = scenario.owner_of(gateway) {
        c.value(&join(&key, "gateway"), format!("address {gateway} already belongs to {}", scenario.node(owner).name));
    }
    let (subnet6, gateway6) = network6(c, scenario, &key, n);
    Some(Network {
        name: name.to_string(),
        bridge,
        subnet,
        gateway,
        subnet6,
        gateway6,
        internal: n.internal.unwrap_or(false),
    })
}

/// A network's IPv6 subnet and gateway (by default the subnet's first address after
/// its own), for a dual-stack network.
fn network6(c: &mut Checker, scenario: &Scenario, key: &str, n: &NetworkFile) -> (Option<Ipv6Net>, Option<Ipv6Addr>) {
    let subnet = match &n.subnet6 {
        None => {
            if n.gateway6.is_some() {
                c.key(&join(key, "gateway6"), "expected `gateway6` only beside `subnet6`");
            }
            return (None, None);
        }
        Some(s) => match s.parse::<Ipv6Net>() {
            Ok(net) => net.trunc(),
            Err(_) => {
                c.value(&join(key, "subnet6"), format!("expected an IPv6 subnet such as fd00:d0c::/64, found `{s}`"));
                return (None, None);
            }
        },
    };
    let gateway = match &n.gateway6 {
        None => Ipv6Addr::from(u128::from(subnet.network()).wrapping_add(1)),
        Some(g) => match c.address6(&join(key, "gateway6"), g) {
            Some(g) => g,
            None => return (Some(subnet), None),
        },
    };
    if !subnet.contains(&gateway) || gateway == subnet.network() {
        c.value(&join(key, "gateway6"), format!("expected a host address of {subnet}, found {gateway}"));
    } else if let Some(owner) = scenario.owner_of_ip(gateway.into()) {
        c.value(&join(key, "gateway6"), format!("address {gateway} already belongs to {}", scenario.node(owner).name));
    }
    (Some(subnet), Some(gateway))
}

/// One container under `containers`, added as a node once it has a network and an
/// address.
fn container(c: &mut Checker, scenario: &mut Scenario, lab: &mut LabIndex, name: &str, f: &ContainerFile) {
    let key = join("containers", name);
    c.node_name(&key, name, true);
    if lab.ids.contains_key(name) {
        c.key(&key, format!("`{name}` is already the name of a node; names are unique in the lab"));
        return;
    }
    let network = match &f.network {
        None => {
            c.missing(&join(&key, "network"), "the name of the network the container joins");
            None
        }
        Some(n) => {
            let found = scenario.networks.iter().position(|x| &x.name == n);
            if found.is_none() {
                let known = names(scenario.networks.iter().map(|x| x.name.as_str()));
                c.value(&join(&key, "network"), format!("no network named `{n}`; networks: {known}"));
            }
            found
        }
    };
    let address = match &f.address {
        None => {
            c.missing(&join(&key, "address"), "the container's IPv4 address, e.g. 172.17.0.2");
            None
        }
        Some(a) => c.address(&join(&key, "address"), a),
    };
    if let (Some(net), Some(addr)) = (network, address) {
        let subnet = scenario.networks[net].subnet;
        if !subnet.contains(&addr) || addr == subnet.network() || addr == subnet.broadcast() {
            c.value(&join(&key, "address"), format!("expected a host address of {subnet}, found {addr}"));
        } else if let Some(owner) = scenario.owner_of(addr) {
            c.value(&join(&key, "address"), format!("address {addr} already belongs to {}", scenario.node(owner).name));
        }
    }
    let address6 = container_address6(c, scenario, &key, network, f);
    let mut publish = Vec::new();
    for (i, p) in f.publish.iter().flatten().enumerate() {
        match parse_publish(p) {
            Some(p) => publish.push(p),
            None => c.value(
                &item(&join(&key, "publish"), i),
                format!("expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] such as 8080:80, found `{p}`"),
            ),
        }
    }
    let node = Node {
        name: name.to_string(),
        interfaces: Vec::new(),
        sysctls: c.sysctls(&join(&key, "sysctls"), f.sysctls.as_ref()),
        loopback: true,
        services: c.services(&join(&key, "services"), f.services.as_ref()),
        container: None,
    };
    if let (Some(network), Some(address)) = (network, address) {
        lab.ids.insert(name.to_string(), NodeId(scenario.nodes.len()));
        scenario.nodes.push(Node { container: Some(Container { network, address, address6, publish }), ..node });
    }
}

/// A container's IPv6 address, in its network's IPv6 subnet.
fn container_address6(
    c: &mut Checker,
    scenario: &Scenario,
    key: &str,
    network: Option<usize>,
    f: &ContainerFile,
) -> Option<Ipv6Addr> {
    let text = f.address6.as_ref()?;
    let akey = join(key, "address6");
    let addr = c.address6(&akey, text)?;
    let subnet = network.map(|n| (scenario.networks[n].name.clone(), scenario.networks[n].subnet6));
    match subnet {
        Some((name, None)) => {
            c.key(
                &akey,
                format!("expected `address6` only on a network with `subnet6`, and network `{name}` has none"),
            );
            None
        }
        Some((_, Some(net))) if !net.contains(&addr) || addr == net.network() => {
            c.value(&akey, format!("expected a host address of {net}, found {addr}"));
            None
        }
        _ => match scenario.owner_of_ip(addr.into()) {
            Some(owner) => {
                c.value(&akey, format!("address {addr} already belongs to {}", scenario.node(owner).name));
                None
            }
            None => Some(addr),
        },
    }
}

pub(crate) fn parse_publish(text: &str) -> Option<Publish> {
    let (ports, udp) = match text.rsplit_once('/') {
        Some((p, "tcp")) => (p, false),
        Some((p, "udp")) => (p, true),
        Some(_) => return None,
        None => (text, false),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host, container) = match parts.as_slice() {
        [h, c] => (None, h, c),
        [ip, h, c] => (Some(ip.parse().ok()?), h, c),
        _ => return None,
    };
    let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    Some(Publish { host_ip, host_port: port(host)?, container_port: port(container)?, udp })
}
