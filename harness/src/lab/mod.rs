//! The lab: one network namespace per node (the host is node 0), bridges in the host,
//! veth pairs from the host to every node interface, addresses, default routes and
//! sysctls. Everything goes over rtnetlink and /proc/sys inside the namespaces; nothing
//! is created in, or read from, the root namespace.
//!
//! Dropping a [`Lab`] closes its descriptors and netlink sockets; the kernel then
//! removes the namespaces and every interface in them.

pub mod netns;
pub mod sandbox;

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::task::JoinHandle;

use crate::lab::netns::NetNs;
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

/// Every interface the lab makes gets an index of its choosing, so that none has to
/// be looked up. The indexes start well above the few devices a kernel may put into
/// every new namespace by itself (lo, and the fallback devices of tunnel modules such
/// as tunl0, sit0 or gre0).
const FIRST_IFINDEX: u32 = 1000;

/// The index of a node's interface in the node's namespace: in order.
fn node_ifindex(node: &crate::scenario::Node, iface: &crate::scenario::Interface) -> u32 {
    let position = node.interfaces.iter().position(|i| std::ptr::eq(i, iface)).unwrap_or(0);
    FIRST_IFINDEX + position as u32
}

/// The index of bridge `b` in the host namespace.
fn bridge_ifindex(b: usize) -> u32 {
    FIRST_IFINDEX + b as u32
}

/// The index of the host's end of a node interface's veth: after the bridges, in
/// node order, then interface order.
fn host_side_ifindex(scn: &Scenario, id: usize, iface: &crate::scenario::Interface) -> u32 {
    let before: usize = scn.nodes[1..id].iter().map(|n| n.interfaces.len()).sum();
    let position = scn.nodes[id].interfaces.iter().position(|i| std::ptr::eq(i, iface)).unwrap_or(0);
    FIRST_IFINDEX + (scn.host.bridges.len() + before + position) as u32
}

/// How soon an unanswered ARP request is repeated on every lab interface.
const RETRANS_TIME_MS: u64 = 100;

/// How many requests a lab interface sends for one neighbour before it gives up on
/// it, in each phase (broadcast while resolving, unicast and broadcast while
/// re-checking a stale entry). With the kernel's 3 and the lab's short retransmit
/// time, an entry failed after about 300 ms: a machine under heavy load that ran the
/// answering namespace's softirq that late turned a reachable node into "ICMP host
/// unreachable". At 50 × 100 ms the kernel keeps asking for 5 s, longer than any
/// probe waits for an answer (even sent twice), so only a probe's own evidence, or
/// its own deadline, ends it; a node that is not there still yields no answer.
const NEIGH_PROBES: u32 = 50;

/// How long an interface may take to come up before the lab counts as broken.
const LINK_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A netlink route socket opened inside one namespace. It stays bound to that
/// namespace wherever the task that drives it runs.
struct Netlink {
    handle: Handle,
    task: JoinHandle<()>,
    /// A second socket in the namespace that joins the link group only while
    /// [`Netlink::wait_ready`] waits, so that the wait ends when the kernel says a
    /// link changed, not after a guessed interval.
    events: netlink_sys::TokioSocket,
}

impl Netlink {
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
    /// late. A packet sent before that is lost. The link dump names each device's
    /// queue discipline (IFLA_QDISC), so one dump answers for all of them; between
    /// dumps the wait is for the kernel's next link message, which follows every
    /// such change. The socket joins the group before the first dump, so no change
    /// falls between a dump and the wait.
    async fn wait_ready(&self, names: &[&str], ns: &str) -> Result<(), LabError> {
        use netlink_sys::{AsyncSocket, AsyncSocketExt};
        let deadline = tokio::time::Instant::now() + LINK_UP_TIMEOUT;
        self.events
            .socket_ref()
            .add_membership(libc::RTNLGRP_LINK)
            .map_err(fail(format!("listening for link changes in {ns}")))?;
        loop {
            let mut ready = std::collections::HashSet::new();
            let mut links = self.handle.link().get().execute();
            while let Some(link) = links.try_next().await.map_err(fail(format!("listing links in {ns}")))? {
                let name = link.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.as_str()),
                    _ => None,
                });
                let qdisc = link.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Qdisc(q) => Some(q.as_str()),
                    _ => None,
                });
                if let (Some(name), Some(qdisc)) = (name, qdisc) {
                    if qdisc != "noop" {
                        ready.insert(name.to_string());
                    }
                }
            }
            let waiting: Vec<&str> = names.iter().copied().filter(|n| !ready.contains(*n)).collect();
            if waiting.is_empty() {
                // Out of the group again: nothing more is queued for nobody to read.
                let _ = self.events.socket_ref().drop_membership(libc::RTNLGRP_LINK);
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now > deadline {
                return Err(LabError {
                    what: format!("waiting for {} in {ns} to come up", waiting.join(", ")),
                    source: format!("still not transmitting after {LINK_UP_TIMEOUT:?}").into(),
                });
            }
            // Any message, or an error such as a full queue (ENOBUFS), means
            // something changed: dump again. A message missed for any other reason
            // costs at most the cap.
            let cap = now + std::time::Duration::from_millis(50);
            if let Ok(Err(_)) = tokio::time::timeout_at(cap.min(deadline), self.events.recv_from_full()).await {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }

    /// Probes to one next hop share its neighbour entry: should the first ARP
    /// request go unanswered (a link still settling on a busy machine), the kernel
    /// asks again after [`RETRANS_TIME_MS`] instead of a second, within a probe's
    /// wait, and goes on asking [`NEIGH_PROBES`] times before it gives up. Per interface, over netlink: a new namespace has no defaults of its own
    /// for the neighbour table (its interfaces copy the machine's).
    async fn set_retrans_time(&self, index: u32, what: &str) -> Result<(), LabError> {
        use futures::StreamExt;
        use netlink_packet_route::neighbour_table::{
            NeighbourTableAttribute, NeighbourTableMessage, NeighbourTableParameter,
        };
        use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
        let what = || format!("setting the ARP retransmit time of {what}");
        let mut msg = NeighbourTableMessage::default();
        msg.header.family = netlink_packet_route::AddressFamily::Inet;
        msg.attributes = vec![
            NeighbourTableAttribute::Name("arp_cache".into()),
            NeighbourTableAttribute::Parms(vec![
                NeighbourTableParameter::Ifindex(index),
                NeighbourTableParameter::RetransTime(RETRANS_TIME_MS),
                NeighbourTableParameter::McastProbes(NEIGH_PROBES),
                NeighbourTableParameter::UcastProbes(NEIGH_PROBES),
                NeighbourTableParameter::McastReprobes(NEIGH_PROBES),
            ]),
        ];
        let mut req = NetlinkMessage::from(netlink_packet_route::RouteNetlinkMessage::SetNeighbourTable(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut answers = self.handle.clone().request(req).map_err(fail(what()))?;
        while let Some(answer) = answers.next().await {
            if let NetlinkPayload::Error(e) = answer.payload {
                return Err(fail(what())(rtnetlink::Error::NetlinkError(e)));
            }
        }
        Ok(())
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

    /// Waits until every link that is up with a carrier, in every namespace of the
    /// lab, can transmit. A live producer makes links of its own (a container's veth,
    /// a bridge of its own) and returns once it asked for them; on a busy machine
    /// the kernel gives them their transmit queue later, and a probe sent before then
    /// is lost without a trace. The same wait as the lab's own links get.
    pub async fn settle(&self) -> Result<(), LabError> {
        let rt = tokio::runtime::Handle::current();
        for ns in &self.namespaces {
            let rt = rt.clone();
            let (connection, handle, events) = ns
                .run(move || {
                    use netlink_sys::AsyncSocket;
                    let _guard = rt.enter();
                    let (connection, handle, _) = rtnetlink::new_connection()?;
                    let events = netlink_sys::TokioSocket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
                    Ok::<_, std::io::Error>((connection, handle, events))
                })
                .and_then(|r| r)
                .map_err(fail(format!("opening netlink in {}", ns.name())))?;
            let nl = Netlink { handle, task: tokio::spawn(connection), events };
            let mut carrying = Vec::new();
            let mut links = nl.handle.link().get().execute();
            while let Some(link) = links.try_next().await.map_err(fail(format!("listing links in {}", ns.name())))? {
                use netlink_packet_route::link::LinkFlags;
                let flags = link.header.flags;
                if flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp) {
                    if let Some(name) = link.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    }) {
                        carrying.push(name);
                    }
                }
            }
            let names: Vec<&str> = carrying.iter().map(String::as_str).collect();
            nl.wait_ready(&names, ns.name()).await?;
        }
        Ok(())
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
    ///
    /// The build is a pipeline: a node is wired up as soon as its namespace exists,
    /// while the namespaces after it are still being made, so the kernel's work
    /// that can run beside the rtnl lock (namespace setup, sysfs, /proc/sys) does.
    pub async fn build_with<T, F: std::future::Future<Output = T>>(
        scn: &Scenario,
        meanwhile: impl FnOnce(NetNs) -> F,
    ) -> Result<(Lab, T), LabError> {
        // The host and the nodes' namespaces are made at once. The host's thread
        // learns which baseline settings differ from a new namespace's; each node's
        // thread waits for that answer once its namespace exists, and writes only
        // those. The bridges must exist before any veth can join one, so the nodes
        // are wired up once the host is ready.
        // Each namespace gets its sysctls and its netlink sockets on the thread that
        // made it; a socket is registered with the reactor there, and stays bound to
        // the namespace wherever it is used.
        let rt = tokio::runtime::Handle::current();
        let connect = move || {
            use netlink_sys::AsyncSocket;
            let _guard = rt.enter();
            let (connection, handle, _) = rtnetlink::new_connection()?;
            let events = netlink_sys::TokioSocket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
            Ok::<_, std::io::Error>((connection, handle, events))
        };
        let settings =
            BuildSettings { ipv6: scn.ipv6, forwarding: scn.host.forwarding, bridges: !scn.host.bridges.is_empty() };
        let differ = Differ::default();
        let mut host_made = NetNs::create_streamed(vec![scn.host().name.clone()], {
            let (connect, differ) = (connect.clone(), differ.clone());
            move |_| {
                let prepared = settings.prepare_host();
                differ.answer(prepared.as_ref().map(Vec::clone).map_err(|e| e.to_string()));
                prepared?;
                Ok(((), connect()?))
            }
        });
        let names: Vec<String> = scn.nodes.iter().skip(1).map(|n| n.name.clone()).collect();
        let made = NetNs::create_streamed(names, {
            let differ = differ.clone();
            move |_| {
                differ.wait()?.iter().try_for_each(|(k, v)| crate::lab::netns::write_sysctl(k, v))?;
                Ok(((), connect()?))
            }
        });
        // Should the host's thread never answer (its namespace could not be made,
        // or this build is dropped before it is), the nodes' threads learn it when
        // this guard goes, rather than wait for ever.
        let _unblock = Unblock(differ);
        let (_, (), host_ns, host_nl) = arrived(host_made.recv().await, NodeId::HOST.0, scn)?;
        let host = host_ns.try_clone().map_err(fail("holding the host namespace"))?;
        let (links, done) = futures::future::join(build_links(scn, host_ns, host_nl, made), meanwhile(host)).await;
        let lab = Lab { namespaces: links? };
        lab.apply_sysctls(scn)?;
        Ok((lab, done))
    }

    /// The scenario's own `sysctls`, once the links exist, in file order (after the
    /// baseline, so they win).
    fn apply_sysctls(&self, scn: &Scenario) -> Result<(), LabError> {
        for (id, node) in scn.nodes.iter().enumerate() {
            let items: Vec<(&str, &str)> = node.sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if !items.is_empty() {
                self.namespaces[id].write_sysctls(items).map_err(fail(format!("writing sysctls in {}", node.name)))?;
            }
        }
        Ok(())
    }
}

/// A new namespace's netlink sockets, before anything drives them.
type Connection =
    (rtnetlink::proto::Connection<netlink_packet_route::RouteNetlinkMessage>, Handle, netlink_sys::TokioSocket);

/// A namespace handed over by [`NetNs::create_streamed`], with what its thread
/// prepared, and its netlink socket driven from here on. `first` is the node id of
/// the first name given.
fn arrived<X>(
    made: Option<crate::lab::netns::Arrival<(X, Connection)>>,
    first: usize,
    scn: &Scenario,
) -> Result<(usize, X, NetNs, Netlink), LabError> {
    let (position, made) = made.ok_or_else(|| LabError {
        what: "creating the namespaces".into(),
        source: "the threads making them ended early".into(),
    })?;
    let id = first + position;
    let (ns, (prepared, (connection, handle, events))) =
        made.map_err(fail(format!("creating and preparing the namespace for {}", scn.nodes[id].name)))?;
    Ok((id, prepared, ns, Netlink { handle, task: tokio::spawn(connection), events }))
}

/// Everything with a link: the host's bridges, then each node as its namespace
/// arrives (its veths, addresses, routes), then the bridges opened. Returns every
/// namespace, in node order.
async fn build_links(
    scn: &Scenario,
    host_ns: NetNs,
    host: Netlink,
    mut made: crate::lab::netns::Made<((), Connection)>,
) -> Result<Vec<NetNs>, LabError> {
    use futures::StreamExt;
    let host_name = &scn.host().name;
    host.set_up(1, "lo in host").await?;

    let mut bridge_index = Vec::with_capacity(scn.host.bridges.len());
    for (b, bridge) in scn.host.bridges.iter().enumerate() {
        let index = bridge_ifindex(b);
        host.handle
            .link()
            // Up only once its ports are: see below.
            .add(LinkBridge::new(&bridge.name).index(index).build())
            .execute()
            .await
            .map_err(fail(format!("creating bridge {}", bridge.name)))?;
        if let Some(addr) = bridge.address {
            host.add_address(index, addr, &bridge.name).await?;
        }
        host.set_retrans_time(index, &bridge.name).await?;
        bridge_index.push(index);
    }

    let mut slots: Vec<Option<NetNs>> = (0..scn.nodes.len()).map(|_| None).collect();
    slots[NodeId::HOST.0] = Some(host_ns);
    let mut running = futures::stream::FuturesUnordered::new();
    let mut awaited = scn.nodes.len() - 1;
    while awaited > 0 || !running.is_empty() {
        tokio::select! {
            m = made.recv(), if awaited > 0 => {
                let (id, (), ns, nl) = arrived(m, 1, scn)?;
                awaited -= 1;
                running.push(wire_node(scn, id, ns, nl, &host, &bridge_index));
            }
            Some(wired) = running.next() => {
                let (id, ns) = wired?;
                slots[id] = Some(ns);
            }
        }
    }

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
    Ok(slots.into_iter().map(|ns| ns.expect("every node was wired")).collect())
}

/// One node: its veths, created in the host with the peer born in the node's
/// namespace (so no interface ever exists in a namespace it does not belong to),
/// then its side of them: addresses, links up, default routes. Done once every
/// interface can transmit.
async fn wire_node(
    scn: &Scenario,
    id: usize,
    ns: NetNs,
    nl: Netlink,
    host: &Netlink,
    bridge_index: &[u32],
) -> Result<(usize, NetNs), LabError> {
    let node = &scn.nodes[id];
    let host_name = &scn.host().name;
    let veths = node.interfaces.iter().map(|iface| {
        let ns = &ns;
        async move {
            // Both ends with indexes of our choosing, so neither needs a lookup.
            // One queue each way: a veth gets one per CPU otherwise, each with its
            // own sysfs entries, which on a large machine costs more than the rest
            // of the link.
            let peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(iface.name.clone())
                .index(node_ifindex(node, iface))
                .setns_by_fd(ns.raw_fd())
                .append_extra_attribute(LinkAttribute::NumTxQueues(1))
                .append_extra_attribute(LinkAttribute::NumRxQueues(1))
                .build();
            let host_index = host_side_ifindex(scn, id, iface);
            let mut msg = LinkVeth::new(&iface.host_side, &iface.name)
                .index(host_index)
                .append_extra_attribute(LinkAttribute::NumTxQueues(1))
                .append_extra_attribute(LinkAttribute::NumRxQueues(1))
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
                host.add_address(host_index, scn.host.uplinks[u].address, &iface.host_side).await?;
                host.set_retrans_time(host_index, &iface.host_side).await?;
            }
            Ok::<(), LabError>(())
        }
    });
    futures::future::try_join_all(veths).await?;

    let lo = format!("lo in {}", node.name);
    let addresses = node.interfaces.iter().map(|iface| {
        let what = format!("{} in {}", iface.name, node.name);
        let nl = &nl;
        async move {
            let index = node_ifindex(node, iface);
            futures::future::try_join3(
                nl.add_address(index, iface.address, &what),
                nl.set_up(index, &what),
                nl.set_retrans_time(index, &what),
            )
            .await
        }
    });
    let lo_up = async {
        match node.loopback {
            true => nl.set_up(1, &lo).await,
            false => Ok(()),
        }
    };
    futures::future::try_join(lo_up, futures::future::try_join_all(addresses)).await?;
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
    // Waiting costs nothing but a dump or two: the wait is for the kernel's word.
    let names: Vec<&str> = node.interfaces.iter().map(|i| i.name.as_str()).collect();
    nl.wait_ready(&names, &node.name).await?;
    Ok((id, ns))
}

/// Settings every lab namespace gets before any interface exists in it. A new
/// namespace copies the IPv4 settings of the machine's own, so the ones that decide
/// where packets go are set back to the kernel's defaults: a lab behaves the same on
/// every machine.
pub fn baseline(ipv6: bool) -> Vec<(String, String)> {
    let v6 = if ipv6 { "0" } else { "1" };
    let mut settings: Vec<(String, String)> = [
        // Without IPv6, no router solicitation or DAD packet moves a counter. Every
        // interface made from here on copies `default`; `all` would also reach lo,
        // at the price of the kernel's rtnl lock, which the host pays alone (see
        // [`BuildSettings`]).
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

/// The baseline as a build writes it. Every namespace the kernel makes starts from
/// the same values (the kernel's defaults, or the machine's IPv4 settings as they
/// are), so the host, made first, reads them all and writes those that differ; the
/// nodes then write only those, a few instead of twenty (each write is a walk
/// through /proc/sys, and the nodes are many).
struct BuildSettings {
    ipv6: bool,
    forwarding: bool,
    bridges: bool,
}

/// The baseline settings the nodes must write, as the host's thread finds them; or
/// why it could not.
type Answer = Result<Vec<(String, String)>, String>;

/// Where the host's thread leaves its [`Answer`] and the nodes' threads wait for it.
/// The first answer stands.
#[derive(Clone, Default)]
struct Differ(std::sync::Arc<(std::sync::Mutex<Option<Answer>>, std::sync::Condvar)>);

impl Differ {
    fn answer(&self, answer: Answer) {
        let (slot, ready) = &*self.0;
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(answer);
            ready.notify_all();
        }
    }

    fn wait(&self) -> std::io::Result<Vec<(String, String)>> {
        let (slot, ready) = &*self.0;
        let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        let slot = ready.wait_while(slot, |a| a.is_none()).unwrap_or_else(|p| p.into_inner());
        match slot.as_ref().expect("waited for") {
            Ok(differ) => Ok(differ.clone()),
            Err(e) => Err(std::io::Error::other(format!("preparing the host first: {e}"))),
        }
    }
}

/// Answers a [`Differ`] with an error when dropped, unless it was answered before.
struct Unblock(Differ);

impl Drop for Unblock {
    fn drop(&mut self) {
        self.0.answer(Err("the host namespace could not be made".into()));
    }
}

impl BuildSettings {
    /// In the host's new namespace: the baseline, its forwarding switch, and IPv6
    /// off on lo too. Returns what every node must write.
    fn prepare_host(&self) -> std::io::Result<Vec<(String, String)>> {
        use crate::lab::netns::{read_sysctl, write_sysctl};
        let mut differ = Vec::new();
        for (key, value) in baseline(self.ipv6) {
            let now = read_sysctl(&key)?;
            if now.split_whitespace().ne(value.split_whitespace()) {
                write_sysctl(&key, &value)?;
                differ.push((key, value));
            }
        }
        if !self.ipv6 {
            write_sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        }
        write_sysctl("net.ipv4.ip_forward", if self.forwarding { "1" } else { "0" })?;
        if self.bridges {
            // Bridged packets pass iptables, as on a host with br_netfilter loaded
            // (Docker loads it); a scenario may turn it off.
            write_sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
        }
        Ok(differ)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's thread waiting for the host's answer.
    fn waiter(differ: &Differ) -> std::thread::JoinHandle<Result<Vec<(String, String)>, String>> {
        let differ = differ.clone();
        std::thread::spawn(move || differ.wait().map_err(|e| e.to_string()))
    }

    #[test]
    fn nodes_waiting_for_the_host_get_its_first_answer() {
        let differ = Differ::default();
        let waiter = waiter(&differ);
        differ.answer(Ok(vec![("net.ipv4.icmp_ratelimit".into(), "0".into())]));
        differ.answer(Err("too late".into()));
        let got = waiter.join().expect("no panic");
        assert_eq!(got, Ok(vec![("net.ipv4.icmp_ratelimit".to_string(), "0".to_string())]));
    }

    #[test]
    fn a_dropped_build_unblocks_the_nodes() {
        let differ = Differ::default();
        let waiter = waiter(&differ);
        drop(Unblock(differ));
        let got = waiter.join().expect("no panic");
        assert_eq!(got, Err("preparing the host first: the host namespace could not be made".to_string()));
    }

    #[test]
    fn chosen_indexes_never_collide_in_the_host() {
        let scn = crate::scenario::load_text(
            "host:\n  bridges: { br0: { address: 10.0.0.1/24 }, br1: { address: 10.0.1.1/24 } }\n\
             nodes:\n  a:\n    interfaces: [{ bridge: br0, address: 10.0.0.2/24 }, { bridge: br1, address: 10.0.1.2/24 }]\n  \
             b:\n    interfaces: [{ bridge: br0, address: 10.0.0.3/24 }]\n\
             rules: { backends: [nft], live: { program: command, run: [\"true\"] } }\n",
        );
        let mut seen: Vec<u32> = (0..scn.host.bridges.len()).map(bridge_ifindex).collect();
        for (id, node) in scn.nodes.iter().enumerate().skip(1) {
            seen.extend(node.interfaces.iter().map(|i| host_side_ifindex(&scn, id, i)));
        }
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{seen:?}");
        assert!(seen.iter().all(|&i| i >= FIRST_IFINDEX));
    }
}
