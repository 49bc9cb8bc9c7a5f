//! The lab as data: every namespace, interface index, veth pair, bridge, address,
//! route and sysctl a scenario asks for, worked out from the [`Scenario`] alone. No
//! kernel call is made here, so the topology is tested without root; [`super::Lab`]
//! applies a plan through a small netlink trait (`lab/netlink.rs`).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::scenario::{Attach, NodeId, Scenario};

/// Every interface the lab makes gets an index of its choosing, so that none has to
/// be looked up. The indexes start well above the few devices a kernel may put into
/// every new namespace by itself (lo, and the fallback devices of tunnel modules such
/// as tunl0, sit0 or gre0).
pub const FIRST_IFINDEX: u32 = 1000;

/// The index of `lo` in every namespace.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// What to build, in the order it is built: the host's namespace and bridges first,
/// then each node with its veths, then the bridges opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPlan {
    pub host: HostPlan,
    /// Every node but the host, in node order ([`NodeId`] 1 first).
    pub nodes: Vec<NodePlan>,
    /// IPv6 stays on in every namespace.
    pub ipv6: bool,
    /// The host forwards between its interfaces.
    pub forwarding: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    pub name: String,
    pub bridges: Vec<BridgePlan>,
    /// The scenario's own sysctls for the host, written once the links exist.
    pub sysctls: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePlan {
    pub name: String,
    pub index: u32,
    pub address: Option<Ipv4Net>,
    pub address6: Vec<Ipv6Net>,
    /// Whether any veth joins it: only such a bridge waits to transmit.
    pub has_ports: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub id: NodeId,
    pub name: String,
    /// `lo` is brought up.
    pub loopback: bool,
    pub veths: Vec<VethPlan>,
    /// Default routes, via these gateways, in file order.
    pub gateways: Vec<Ipv4Addr>,
    /// IPv6 default routes, the same way.
    pub gateways6: Vec<Ipv6Addr>,
    /// The scenario's own sysctls, written once the links exist (after the
    /// baseline, so they win).
    pub sysctls: Vec<(String, String)>,
}

/// One veth pair: one end in the host, its peer born in the node's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPlan {
    pub host_side: String,
    pub host_index: u32,
    /// The node's end.
    pub name: String,
    pub index: u32,
    /// The node's address on its end.
    pub address: Ipv4Net,
    pub address6: Vec<Ipv6Net>,
    /// The index of the bridge the host end joins.
    pub controller: Option<u32>,
    /// An uplink's address, on the host end.
    pub host_address: Option<Ipv4Net>,
    pub host_address6: Vec<Ipv6Net>,
}

impl LabPlan {
    pub fn new(scn: &Scenario) -> LabPlan {
        let has_ports =
            |b: usize| scn.nodes.iter().skip(1).flat_map(|n| &n.interfaces).any(|i| i.attach == Attach::Bridge(b));
        let bridges = scn
            .host
            .bridges
            .iter()
            .enumerate()
            .map(|(b, bridge)| BridgePlan {
                name: bridge.name.clone(),
                index: bridge_ifindex(b),
                address: bridge.address,
                address6: bridge.address6.clone(),
                has_ports: has_ports(b),
            })
            .collect();
        let host = HostPlan { name: scn.host().name.clone(), bridges, sysctls: scn.host().sysctls.clone() };
        // The host ends take the indexes after the bridges, in node order, then
        // interface order.
        let mut next_host_index = FIRST_IFINDEX + scn.host.bridges.len() as u32;
        let nodes = scn
            .nodes
            .iter()
            .enumerate()
            .skip(1)
            .map(|(id, node)| {
                let veths = node
                    .interfaces
                    .iter()
                    .enumerate()
                    .map(|(position, iface)| {
                        let host_index = next_host_index;
                        next_host_index += 1;
                        VethPlan {
                            host_side: iface.host_side.clone(),
                            host_index,
                            name: iface.name.clone(),
                            index: FIRST_IFINDEX + position as u32,
                            address: iface.address,
                            address6: iface.address6.clone(),
                            controller: match iface.attach {
                                Attach::Bridge(b) => Some(bridge_ifindex(b)),
                                Attach::Uplink(_) => None,
                            },
                            host_address: match iface.attach {
                                Attach::Uplink(u) => Some(scn.host.uplinks[u].address),
                                Attach::Bridge(_) => None,
                            },
                            host_address6: match iface.attach {
                                Attach::Uplink(u) => scn.host.uplinks[u].address6.clone(),
                                Attach::Bridge(_) => Vec::new(),
                            },
                        }
                    })
                    .collect();
                NodePlan {
                    id: NodeId(id),
                    name: node.name.clone(),
                    loopback: node.loopback,
                    veths,
                    gateways: node.interfaces.iter().filter_map(|i| i.gateway).collect(),
                    gateways6: node.interfaces.iter().filter_map(|i| i.gateway6).collect(),
                    sysctls: node.sysctls.clone(),
                }
            })
            .collect();
        LabPlan { host, nodes, ipv6: scn.ipv6, forwarding: scn.host.forwarding }
    }

    /// What the host waits for before the lab is ready: every veth end, and every
    /// bridge that has a port, sorted.
    pub fn host_ready(&self) -> Vec<&str> {
        let mut names: Vec<&str> =
            self.nodes.iter().flat_map(|n| n.veths.iter().map(|v| v.host_side.as_str())).collect();
        names.extend(self.host.bridges.iter().filter(|b| b.has_ports).map(|b| b.name.as_str()));
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The name of node `id`, the host included.
    pub fn name(&self, id: usize) -> &str {
        match id {
            0 => &self.host.name,
            _ => &self.nodes[id - 1].name,
        }
    }

    /// Each namespace's own sysctls, with its node id, the host first.
    pub fn sysctls(&self) -> impl Iterator<Item = (usize, &str, &[(String, String)])> {
        std::iter::once((NodeId::HOST.0, self.host.name.as_str(), self.host.sysctls.as_slice()))
            .chain(self.nodes.iter().map(|n| (n.id.0, n.name.as_str(), n.sysctls.as_slice())))
    }
}

impl NodePlan {
    /// What the node waits for: each of its veth ends.
    pub fn ready(&self) -> Vec<&str> {
        self.veths.iter().map(|v| v.name.as_str()).collect()
    }
}

/// The index of bridge `b` in the host namespace.
fn bridge_ifindex(b: usize) -> u32 {
    FIRST_IFINDEX + b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_BRIDGES: &str = "host:\n  bridges: { br0: { address: 10.0.0.1/24 }, br1: { address: 10.0.1.1/24 } }\n\
         nodes:\n  a:\n    interfaces: [{ bridge: br0, address: 10.0.0.2/24 }, { bridge: br1, address: 10.0.1.2/24 }]\n  \
         b:\n    interfaces: [{ bridge: br0, address: 10.0.0.3/24 }]\n\
         rules: { backends: [nft], live: { program: command, run: [\"true\"] } }\n";

    #[test]
    fn chosen_indexes_never_collide_in_the_host() {
        let plan = LabPlan::new(&crate::scenario::load_text(TWO_BRIDGES));
        let mut seen: Vec<u32> = plan.host.bridges.iter().map(|b| b.index).collect();
        seen.extend(plan.nodes.iter().flat_map(|n| n.veths.iter().map(|v| v.host_index)));
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{seen:?}");
        assert!(seen.iter().all(|&i| i >= FIRST_IFINDEX));
    }

    #[test]
    fn node_ends_are_numbered_in_order_in_their_own_namespace() {
        let plan = LabPlan::new(&crate::scenario::load_text(TWO_BRIDGES));
        let a: Vec<(&str, u32)> = plan.nodes[0].veths.iter().map(|v| (v.name.as_str(), v.index)).collect();
        assert_eq!(a, [("eth0", FIRST_IFINDEX), ("eth1", FIRST_IFINDEX + 1)]);
        assert_eq!(plan.nodes[1].veths[0].index, FIRST_IFINDEX);
        // Host ends after the bridges, node after node.
        let host: Vec<u32> = plan.nodes.iter().flat_map(|n| n.veths.iter().map(|v| v.host_index)).collect();
        assert_eq!(host, [FIRST_IFINDEX + 2, FIRST_IFINDEX + 3, FIRST_IFINDEX + 4]);
    }

    #[test]
    fn bridge_ports_join_their_bridge_by_index() {
        let plan = LabPlan::new(&crate::scenario::load_text(TWO_BRIDGES));
        let br1 = plan.host.bridges.iter().find(|b| b.name == "br1").unwrap();
        assert_eq!(plan.nodes[0].veths[1].controller, Some(br1.index));
        assert_eq!(plan.nodes[0].veths[1].host_address, None);
        assert_eq!(plan.nodes[0].veths[1].address, "10.0.1.2/24".parse().unwrap());
        assert!(plan.host.bridges.iter().all(|b| b.has_ports));
    }

    #[test]
    fn an_uplink_carries_the_hosts_address_and_the_nodes_route() {
        let plan = LabPlan::new(&crate::scenario::load_text(
            "host:\n  uplinks: { eno1: { address: 192.0.2.1/24 } }\n  bridges: { idle: { address: 10.9.0.1/24 } }\n\
             nodes:\n  lan:\n    interfaces: [{ uplink: eno1, address: 192.0.2.2/24, gateway: 192.0.2.1 }]\n\
             rules: { backends: [nft], live: { program: command, run: [\"true\"] } }\n",
        ));
        let lan = &plan.nodes[0];
        assert_eq!(lan.veths[0].host_side, "eno1");
        assert_eq!(lan.veths[0].controller, None);
        assert_eq!(lan.veths[0].host_address, Some("192.0.2.1/24".parse().unwrap()));
        assert_eq!(lan.gateways, ["192.0.2.1".parse::<Ipv4Addr>().unwrap()]);
        // A bridge without ports has no carrier: nothing waits for it.
        assert_eq!(plan.host_ready(), ["eno1"]);
    }

    #[test]
    fn the_host_waits_for_every_end_and_every_bridge_with_ports() {
        let plan = LabPlan::new(&crate::scenario::load_text(TWO_BRIDGES));
        let ready = plan.host_ready();
        assert!(ready.contains(&"br0") && ready.contains(&"br1"), "{ready:?}");
        for v in plan.nodes.iter().flat_map(|n| &n.veths) {
            assert!(ready.contains(&v.host_side.as_str()), "{ready:?}");
        }
        let mut sorted = ready.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ready, sorted);
        assert_eq!(plan.nodes[0].ready(), ["eth0", "eth1"]);
    }

    #[test]
    fn names_and_sysctls_are_in_node_order_host_first() {
        let plan = LabPlan::new(&crate::scenario::load_text(TWO_BRIDGES));
        assert_eq!([plan.name(0), plan.name(1), plan.name(2)], ["host", "a", "b"]);
        let ids: Vec<usize> = plan.sysctls().map(|(id, _, _)| id).collect();
        assert_eq!(ids, [0, 1, 2]);
    }
}
