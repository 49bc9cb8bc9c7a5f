//! The lab: one network namespace per node (the host is node 0), bridges in the host,
//! veth pairs from the host to every node interface, addresses, default routes and
//! sysctls. Everything goes over rtnetlink and /proc/sys inside the namespaces; nothing
//! is created in, or read from, the root namespace.
//!
//! Dropping a [`Lab`] closes its descriptors and netlink sockets; the kernel then
//! removes the namespaces and every interface in them.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::task::JoinHandle;

use crate::netns::NetNs;
use crate::scenario::{Attach, NodeId, Scenario};

#[derive(Debug, thiserror::Error)]
#[error("building the lab: {what}: {source}")]
pub struct LabError {
    pub what: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

fn fail<E: std::error::Error + Send + Sync + 'static>(what: impl Into<String>) -> impl FnOnce(E) -> LabError {
    let what = what.into();
    move |e| LabError { what, source: Box::new(e) }
}

/// The index a node's interface gets in its namespace: after lo (1), in order.
fn node_ifindex(node: &crate::scenario::Node, iface: &crate::scenario::Interface) -> u32 {
    let position = node.interfaces.iter().position(|i| std::ptr::eq(i, iface)).unwrap_or(0);
    2 + position as u32
}

/// How long an interface may take to come up before the lab counts as broken.
const LINK_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A netlink route socket opened inside one namespace. It stays bound to that
/// namespace wherever the task that drives it runs.
struct Netlink {
    handle: Handle,
    task: JoinHandle<()>,
}

impl Netlink {
    async fn index_of(&self, name: &str, ns: &str) -> Result<u32, LabError> {
        let link = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .map_err(fail(format!("looking up {name} in {ns}")))?;
        link.map(|l| l.header.index)
            .ok_or_else(|| LabError { what: format!("looking up {name} in {ns}"), source: "no such interface".into() })
    }

    async fn add_address(&self, index: u32, net: Ipv4Net, what: &str) -> Result<(), LabError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(net.addr()), net.prefix_len())
            .execute()
            .await
            .map_err(fail(format!("adding {net} to {what}")))
    }

    /// Waits until every interface named can transmit: the kernel gives a device its
    /// transmit queue (instead of the "noop" one that drops everything) once it is up
    /// with a carrier, for a veth in its link-watch work, which a busy machine runs
    /// late. A packet sent before that is lost.
    async fn wait_ready(&self, names: &[&str], ns: &str) -> Result<(), LabError> {
        use netlink_packet_route::link::LinkAttribute;
        use netlink_packet_route::tc::TcAttribute;
        let deadline = tokio::time::Instant::now() + LINK_UP_TIMEOUT;
        loop {
            let mut index_of = std::collections::HashMap::new();
            let mut links = self.handle.link().get().execute();
            while let Some(link) = links.try_next().await.map_err(fail(format!("listing links in {ns}")))? {
                for a in &link.attributes {
                    if let LinkAttribute::IfName(n) = a {
                        index_of.insert(n.clone(), link.header.index as i32);
                    }
                }
            }
            let mut noop = std::collections::HashSet::new();
            let mut qdiscs = self.handle.qdisc().get().execute();
            while let Some(q) = qdiscs.try_next().await.map_err(fail(format!("listing qdiscs in {ns}")))? {
                if q.attributes.iter().any(|a| matches!(a, TcAttribute::Kind(k) if k == "noop")) {
                    noop.insert(q.header.index);
                }
            }
            let waiting: Vec<&str> =
                names.iter().copied().filter(|n| index_of.get(*n).is_none_or(|i| noop.contains(i))).collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LabError {
                    what: format!("waiting for {} in {ns} to come up", waiting.join(", ")),
                    source: format!("still not transmitting after {LINK_UP_TIMEOUT:?}").into(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    async fn set_up(&self, index: u32, what: &str) -> Result<(), LabError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(fail(format!("bringing {what} up")))
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        // The socket keeps its namespace alive until the task that owns it ends.
        self.task.abort();
    }
}

#[derive(Debug)]
pub struct Lab {
    /// Indexed by [`NodeId`]; the host is first.
    namespaces: Vec<NetNs>,
}

impl Lab {
    pub fn ns(&self, id: NodeId) -> &NetNs {
        &self.namespaces[id.0]
    }

    pub fn host(&self) -> &NetNs {
        self.ns(NodeId::HOST)
    }

    /// Make `ns` the namespace of node `id`, in place of the one the lab made: a
    /// container engine that creates its containers' namespaces itself hands them over
    /// here, so services and probes run where the container really lives.
    pub fn set_ns(&mut self, id: NodeId, ns: NetNs) {
        self.namespaces[id.0] = ns;
    }

    /// Build the scenario's topology. On error everything built so far is dropped,
    /// and with it removed.
    pub async fn build(scn: &Scenario) -> Result<Lab, LabError> {
        Ok(Lab::build_with(scn, |_| async {}).await?.0)
    }

    /// [`Lab::build`], running `meanwhile` with a handle on the host namespace as soon
    /// as it exists, while the links are made (loading rule files, which need no
    /// interface).
    pub async fn build_with<T, F: std::future::Future<Output = T>>(
        scn: &Scenario,
        meanwhile: impl FnOnce(NetNs) -> F,
    ) -> Result<(Lab, T), LabError> {
        let names: Vec<&str> = scn.nodes.iter().map(|n| n.name.as_str()).collect();
        let settings = baseline(scn.ipv6);
        let rt = tokio::runtime::Handle::current();
        // Each namespace gets its sysctls and its netlink socket on the thread that
        // made it; the socket is registered with the reactor there, and stays bound to
        // the namespace wherever it is used.
        let made = NetNs::create_many(&names, || {
            settings.iter().try_for_each(|(k, v)| crate::netns::write_sysctl(k, v))?;
            let _guard = rt.enter();
            let (connection, handle, _) = rtnetlink::new_connection()?;
            Ok((connection, handle))
        });
        let mut namespaces = Vec::with_capacity(made.len());
        let mut netlinks = Vec::with_capacity(made.len());
        for (made, name) in made.into_iter().zip(&names) {
            let (ns, (connection, handle)) =
                made.map_err(fail(format!("creating and preparing the namespace for {name}")))?;
            namespaces.push(ns);
            netlinks.push(Netlink { handle, task: tokio::spawn(connection) });
        }
        let lab = Lab { namespaces };
        let host = lab.host().try_clone().map_err(fail("holding the host namespace"))?;
        let (links, done) = futures::future::join(lab.build_links(scn, &netlinks), meanwhile(host)).await;
        links?;
        drop(netlinks);
        lab.apply_sysctls(scn)?;
        Ok((lab, done))
    }

    async fn build_links(&self, scn: &Scenario, netlinks: &[Netlink]) -> Result<(), LabError> {
        let host = &netlinks[NodeId::HOST.0];
        let host_name = &scn.host().name;
        host.set_up(1, "lo in host").await?;

        let mut bridge_index = Vec::with_capacity(scn.host.bridges.len());
        for bridge in &scn.host.bridges {
            host.handle
                .link()
                // Up only once its ports are: see below.
                .add(LinkBridge::new(&bridge.name).build())
                .execute()
                .await
                .map_err(fail(format!("creating bridge {}", bridge.name)))?;
            let index = host.index_of(&bridge.name, host_name).await?;
            if let Some(addr) = bridge.address {
                host.add_address(index, addr, &bridge.name).await?;
            }
            bridge_index.push(index);
        }

        // Every veth is created in the host with its peer born in the node's namespace,
        // so no interface ever exists in a namespace it does not belong to.
        // The requests go out together on the one socket: the kernel works through
        // them while we wait for all the answers, instead of one round trip each.
        let veths = scn.nodes.iter().enumerate().skip(1).flat_map(|(id, node)| {
            let ns = &self.namespaces[id];
            let host = &host;
            let bridge_index = &bridge_index;
            node.interfaces.iter().map(move |iface| async move {
                // With an index of our choosing (a new namespace has only lo, index 1),
                // so the node's side needs no lookup.
                let peer = LinkMessageBuilder::<LinkUnspec>::new()
                    .name(iface.name.clone())
                    .index(node_ifindex(node, iface))
                    .setns_by_fd(ns.raw_fd())
                    .build();
                let mut msg = LinkVeth::new(&iface.host_side, &iface.name)
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                    .up();
                if let Attach::Bridge(b) = iface.attach {
                    msg = msg.controller(bridge_index[b]);
                }
                host.handle.link().add(msg.build()).execute().await.map_err(fail(format!(
                    "creating veth {} in {} with peer {} in {}",
                    iface.host_side, host_name, iface.name, node.name
                )))?;
                if let Attach::Uplink(u) = iface.attach {
                    let index = host.index_of(&iface.host_side, host_name).await?;
                    host.add_address(index, scn.host.uplinks[u].address, &iface.host_side).await?;
                }
                Ok::<(), LabError>(())
            })
        });
        futures::future::try_join_all(veths).await?;

        let nodes = scn.nodes.iter().enumerate().skip(1).map(|(id, node)| async move {
            let nl = &netlinks[id];
            let lo = format!("lo in {}", node.name);
            let addresses = node.interfaces.iter().map(|iface| {
                let what = format!("{} in {}", iface.name, node.name);
                let nl = &nl;
                async move {
                    let index = node_ifindex(node, iface);
                    futures::future::try_join(nl.add_address(index, iface.address, &what), nl.set_up(index, &what))
                        .await
                }
            });
            futures::future::try_join(nl.set_up(1, &lo), futures::future::try_join_all(addresses)).await?;
            for iface in node.interfaces.iter().filter(|i| i.gateway.is_some()) {
                let gw = iface.gateway.expect("filtered");
                let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
                nl.handle
                    .route()
                    .add(route)
                    .execute()
                    .await
                    .map_err(fail(format!("adding default route via {gw} in {}", node.name)))?;
            }
            let names: Vec<&str> = node.interfaces.iter().map(|i| i.name.as_str()).collect();
            nl.wait_ready(&names, &node.name).await?;
            Ok::<(), LabError>(())
        });
        futures::future::try_join_all(nodes).await?;
        // A bridge opened with a port already up has carrier at once, and the kernel
        // activates its transmit queue right away; opened empty, it waits for the
        // kernel's link-watch work, which may take up to a second, dropping what the
        // host sends through it meanwhile.
        for (bridge, &index) in scn.host.bridges.iter().zip(&bridge_index) {
            host.set_up(index, &bridge.name).await?;
        }
        // The host side: every veth end, and every bridge that has a port.
        let mut names: Vec<&str> = Vec::new();
        for node in scn.nodes.iter().skip(1) {
            for iface in &node.interfaces {
                names.push(&iface.host_side);
                if let Attach::Bridge(b) = iface.attach {
                    names.push(&scn.host.bridges[b].name);
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        host.wait_ready(&names, host_name).await?;
        Ok(())
    }

    fn apply_sysctls(&self, scn: &Scenario) -> Result<(), LabError> {
        let forwarding = if scn.host.forwarding { "1" } else { "0" };
        for (id, node) in scn.nodes.iter().enumerate() {
            // Probes to one next hop share its neighbour entry: should the first ARP
            // request go unanswered (a link still settling on a busy machine), the
            // kernel asks again after 100 ms instead of a second, within a probe's
            // wait. Per interface: a new namespace has no `neigh.default`.
            let ifnames: Vec<&str> = if id == NodeId::HOST.0 {
                let bridges = scn.host.bridges.iter().map(|b| b.name.as_str());
                bridges.chain(scn.host.uplinks.iter().map(|u| u.name.as_str())).collect()
            } else {
                node.interfaces.iter().map(|i| i.name.as_str()).collect()
            };
            // A dotted name cannot be written as a dotted key; such an interface keeps
            // the kernel's interval.
            let neigh: Vec<String> = ifnames
                .iter()
                .filter(|i| !i.contains('.'))
                .map(|i| format!("net.ipv4.neigh.{i}.retrans_time_ms"))
                .collect();
            let mut items: Vec<(&str, &str)> = neigh.iter().map(|k| (k.as_str(), "100")).collect();
            if id == NodeId::HOST.0 {
                items.push(("net.ipv4.ip_forward", forwarding));
                if !scn.host.bridges.is_empty() {
                    // Bridged packets pass iptables, as on a host with br_netfilter
                    // loaded (Docker loads it); a scenario may turn it off.
                    items.push(("net.bridge.bridge-nf-call-iptables", "1"));
                }
            }
            items.extend(node.sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            self.namespaces[id].write_sysctls(items).map_err(fail(format!("writing sysctls in {}", node.name)))?;
        }
        Ok(())
    }
}

/// Settings every lab namespace gets before any interface exists in it. A new
/// namespace copies the IPv4 settings of the machine's own, so the ones that decide
/// where packets go are set back to the kernel's defaults: a lab behaves the same on
/// every machine.
fn baseline(ipv6: bool) -> Vec<(String, String)> {
    let v6 = if ipv6 { "0" } else { "1" };
    let mut settings: Vec<(String, String)> = [
        // Without IPv6, no router solicitation or DAD packet moves a counter.
        ("net.ipv6.conf.all.disable_ipv6", v6),
        ("net.ipv6.conf.default.disable_ipv6", v6),
        // Probes run at once; a rate limit would turn some "refused" into "dropped".
        ("net.ipv4.icmp_ratemask", "0"),
        ("net.ipv4.icmp_ratelimit", "0"),
        ("net.ipv4.ip_forward", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Lets probes (our own group) use ICMP datagram sockets instead of raw ones; in a
    // user namespace only mapped groups may be named.
    let gid = nix::unistd::getegid();
    settings.push(("net.ipv4.ping_group_range".into(), format!("{gid} {gid}")));
    for scope in ["all", "default"] {
        for (key, value) in BASELINE_CONF {
            settings.push((format!("net.ipv4.conf.{scope}.{key}"), value.to_string()));
        }
    }
    settings
}

/// Per-interface IPv4 settings at the kernel's defaults.
const BASELINE_CONF: [(&str, &str); 7] = [
    ("rp_filter", "0"),
    ("route_localnet", "0"),
    ("accept_local", "0"),
    ("proxy_arp", "0"),
    ("arp_ignore", "0"),
    ("arp_announce", "0"),
    ("accept_redirects", "1"),
];
