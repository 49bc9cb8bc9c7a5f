//! The lab: one network namespace per node (the host is node 0), bridges in the host,
//! veth pairs from the host to every node interface, addresses, default routes and
//! sysctls. Everything goes over rtnetlink and /proc/sys inside the namespaces; nothing
//! is created in, or read from, the root namespace.
//!
//! Dropping a [`Lab`] closes its descriptors and netlink sockets; the kernel then
//! removes the namespaces and every interface in them.

mod netlink;
pub mod netns;
pub mod plan;
pub mod sandbox;

use std::os::fd::RawFd;

use crate::lab::netlink::{Connection, Netlink, RtNetlink};
use crate::lab::netns::NetNs;
use crate::lab::plan::{HostPlan, LabPlan, NodePlan, LOOPBACK_IFINDEX};
use crate::scenario::{NodeId, Scenario};

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
            let connection = ns
                .run(move || RtNetlink::connect(&rt))
                .and_then(|r| r)
                .map_err(fail(format!("opening netlink in {}", ns.name())))?;
            let nl = RtNetlink::start(connection);
            let carrying = nl.carrying(ns.name()).await?;
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
        let plan = LabPlan::new(scn);
        let rt = tokio::runtime::Handle::current();
        let connect = move || RtNetlink::connect(&rt);
        let settings =
            BuildSettings { ipv6: plan.ipv6, forwarding: plan.forwarding, bridges: !plan.host.bridges.is_empty() };
        let differ = Differ::default();
        let mut host_made = NetNs::create_streamed(vec![plan.host.name.clone()], {
            let (connect, differ) = (connect.clone(), differ.clone());
            move |_| {
                let prepared = settings.prepare_host();
                differ.answer(prepared.as_ref().map(Vec::clone).map_err(|e| e.to_string()));
                prepared?;
                Ok(((), connect()?))
            }
        });
        let names: Vec<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
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
        let (_, (), host_ns, host_nl) = arrived(host_made.recv().await, NodeId::HOST.0, &plan)?;
        let host = host_ns.try_clone().map_err(fail("holding the host namespace"))?;
        let (links, done) = futures::future::join(build_links(&plan, host_ns, host_nl, made), meanwhile(host)).await;
        let lab = Lab { namespaces: links? };
        lab.apply_sysctls(&plan)?;
        Ok((lab, done))
    }

    /// The scenario's own `sysctls`, once the links exist, in file order (after the
    /// baseline, so they win).
    fn apply_sysctls(&self, plan: &LabPlan) -> Result<(), LabError> {
        for (id, name, sysctls) in plan.sysctls() {
            let items: Vec<(&str, &str)> = sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            if !items.is_empty() {
                self.namespaces[id].write_sysctls(items).map_err(fail(format!("writing sysctls in {name}")))?;
            }
        }
        Ok(())
    }
}

/// A namespace handed over by [`NetNs::create_streamed`], with what its thread
/// prepared, and its netlink socket driven from here on. `first` is the node id of
/// the first name given.
fn arrived<X>(
    made: Option<crate::lab::netns::Arrival<(X, Connection)>>,
    first: usize,
    plan: &LabPlan,
) -> Result<(usize, X, NetNs, RtNetlink), LabError> {
    let (position, made) = made.ok_or_else(|| LabError {
        what: "creating the namespaces".into(),
        source: "the threads making them ended early".into(),
    })?;
    let id = first + position;
    let (ns, (prepared, connection)) =
        made.map_err(fail(format!("creating and preparing the namespace for {}", plan.name(id))))?;
    Ok((id, prepared, ns, RtNetlink::start(connection)))
}

/// Everything with a link: the host's bridges, then each node as its namespace
/// arrives (its veths, addresses, routes), then the bridges opened. Returns every
/// namespace, in node order.
async fn build_links(
    plan: &LabPlan,
    host_ns: NetNs,
    host: RtNetlink,
    mut made: crate::lab::netns::Made<((), Connection)>,
) -> Result<Vec<NetNs>, LabError> {
    use futures::StreamExt;
    make_bridges(&plan.host, plan.ipv6, &host).await?;

    let mut slots: Vec<Option<NetNs>> = (0..=plan.nodes.len()).map(|_| None).collect();
    slots[NodeId::HOST.0] = Some(host_ns);
    let mut running = futures::stream::FuturesUnordered::new();
    let mut awaited = plan.nodes.len();
    let host = &host;
    while awaited > 0 || !running.is_empty() {
        tokio::select! {
            m = made.recv(), if awaited > 0 => {
                let (id, (), ns, nl) = arrived(m, 1, plan)?;
                awaited -= 1;
                running.push(async move {
                    wire_node(&plan.nodes[id - 1], plan.ipv6, ns.raw_fd(), &nl, host, &plan.host.name).await?;
                    Ok::<_, LabError>((id, ns))
                });
            }
            Some(wired) = running.next() => {
                let (id, ns) = wired?;
                slots[id] = Some(ns);
            }
        }
    }
    open_bridges(plan, host).await?;
    Ok(slots.into_iter().map(|ns| ns.expect("every node was wired")).collect())
}

/// The host's lo up, and its bridges, each with its address and ARP settings; down
/// until their ports are up (see [`open_bridges`]).
async fn make_bridges(host_plan: &HostPlan, ipv6: bool, host: &impl Netlink) -> Result<(), LabError> {
    host.set_up(LOOPBACK_IFINDEX, "lo in host").await?;
    for bridge in &host_plan.bridges {
        host.add_bridge(bridge).await?;
        if let Some(addr) = bridge.address {
            host.add_address(bridge.index, addr.into(), &bridge.name).await?;
        }
        for &addr in &bridge.address6 {
            host.add_address(bridge.index, addr.into(), &bridge.name).await?;
        }
        host.set_retrans_time(bridge.index, ipv6, &bridge.name).await?;
    }
    Ok(())
}

/// The bridges up, once every node is wired, and the host's wait for its links.
///
/// A bridge opened with a port already up has carrier at once, and the kernel
/// activates its transmit queue right away; opened empty, it waits for the kernel's
/// link-watch work, which may take up to a second, dropping what the host sends
/// through it meanwhile.
async fn open_bridges(plan: &LabPlan, host: &impl Netlink) -> Result<(), LabError> {
    for bridge in &plan.host.bridges {
        host.set_up(bridge.index, &bridge.name).await?;
    }
    host.wait_ready(&plan.host_ready(), &plan.host.name).await
}

/// One node: its veths, created in the host with the peer born in the node's
/// namespace `peer_ns`, then its side of them: addresses, links up, default routes.
/// Done once every interface can transmit.
async fn wire_node(
    node: &NodePlan,
    ipv6: bool,
    peer_ns: RawFd,
    nl: &impl Netlink,
    host: &impl Netlink,
    host_name: &str,
) -> Result<(), LabError> {
    let veths = node.veths.iter().map(|veth| async move {
        host.add_veth(veth, peer_ns, host_name, &node.name).await?;
        if let Some(addr) = veth.host_address {
            host.add_address(veth.host_index, addr.into(), &veth.host_side).await?;
            for &addr in &veth.host_address6 {
                host.add_address(veth.host_index, addr.into(), &veth.host_side).await?;
            }
            host.set_retrans_time(veth.host_index, ipv6, &veth.host_side).await?;
        }
        Ok::<(), LabError>(())
    });
    futures::future::try_join_all(veths).await?;

    let lo = format!("lo in {}", node.name);
    let addresses = node.veths.iter().map(|veth| {
        let what = format!("{} in {}", veth.name, node.name);
        async move {
            let addresses = async {
                nl.add_address(veth.index, veth.address.into(), &what).await?;
                for &addr in &veth.address6 {
                    nl.add_address(veth.index, addr.into(), &what).await?;
                }
                Ok(())
            };
            futures::future::try_join3(
                addresses,
                nl.set_up(veth.index, &what),
                nl.set_retrans_time(veth.index, ipv6, &what),
            )
            .await
        }
    });
    let lo_up = async {
        match node.loopback {
            true => nl.set_up(LOOPBACK_IFINDEX, &lo).await,
            false => Ok(()),
        }
    };
    futures::future::try_join(lo_up, futures::future::try_join_all(addresses)).await?;
    for &gateway in &node.gateways {
        nl.add_default_route(gateway, &node.name).await?;
    }
    for &gateway in &node.gateways6 {
        nl.add_default_route6(gateway, &node.name).await?;
    }
    // Waiting costs nothing but a dump or two: the wait is for the kernel's word.
    nl.wait_ready(&node.ready(), &node.name).await
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
    if ipv6 {
        for scope in ["all", "default"] {
            for (key, value) in BASELINE_CONF6 {
                settings.push((format!("net.ipv6.conf.{scope}.{key}"), value.to_string()));
            }
        }
    }
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
        if self.ipv6 && self.forwarding {
            write_sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        if self.bridges {
            // Bridged packets pass iptables, as on a host with br_netfilter loaded
            // (Docker loads it); a scenario may turn it off.
            write_sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
            if self.ipv6 {
                write_sysctl("net.bridge.bridge-nf-call-ip6tables", "1")?;
            }
        }
        Ok(differ)
    }
}

/// Per-interface IPv6 settings of a lab with IPv6: an address is usable at once (no
/// duplicate address detection, whose wait would race the probes), and no router
/// solicitation or advertisement moves a counter or a route.
const BASELINE_CONF6: [(&str, &str); 4] =
    [("accept_dad", "0"), ("accept_ra", "0"), ("router_solicitations", "0"), ("forwarding", "0")];

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

    /// Netlink that only notes each call, as `namespace: call`, in one list shared
    /// by every namespace; a call whose note contains `refuse` fails.
    #[derive(Clone)]
    struct Recorder {
        ns: &'static str,
        calls: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
        refuse: Option<&'static str>,
    }

    impl Recorder {
        fn new(ns: &'static str) -> Recorder {
            Recorder { ns, calls: Default::default(), refuse: None }
        }

        fn beside(&self, ns: &'static str) -> Recorder {
            Recorder { ns, ..self.clone() }
        }

        fn note(&self, call: String) -> Result<(), LabError> {
            if self.refuse.is_some_and(|r| call.contains(r)) {
                return Err(LabError { what: call, source: "refused".into() });
            }
            self.calls.lock().unwrap().push(format!("{}: {call}", self.ns));
            Ok(())
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Netlink for Recorder {
        async fn add_bridge(&self, bridge: &plan::BridgePlan) -> Result<(), LabError> {
            self.note(format!("bridge {} #{}", bridge.name, bridge.index))
        }
        async fn add_veth(&self, v: &plan::VethPlan, peer_ns: RawFd, host: &str, node: &str) -> Result<(), LabError> {
            let controller = v.controller.map(|c| format!(" on #{c}")).unwrap_or_default();
            self.note(format!(
                "veth {} #{} in {host}{controller}, peer {} #{} in {node} (fd {peer_ns})",
                v.host_side, v.host_index, v.name, v.index
            ))
        }
        async fn add_address(&self, index: u32, net: ipnet::IpNet, _: &str) -> Result<(), LabError> {
            self.note(format!("address {net} on #{index}"))
        }
        async fn set_up(&self, index: u32, _: &str) -> Result<(), LabError> {
            self.note(format!("up #{index}"))
        }
        async fn set_retrans_time(&self, index: u32, ipv6: bool, _: &str) -> Result<(), LabError> {
            self.note(format!("{} #{index}", if ipv6 { "arp+nd" } else { "arp" }))
        }
        async fn add_default_route(&self, gateway: std::net::Ipv4Addr, _: &str) -> Result<(), LabError> {
            self.note(format!("route via {gateway}"))
        }
        async fn add_default_route6(&self, gateway: std::net::Ipv6Addr, _: &str) -> Result<(), LabError> {
            self.note(format!("route via {gateway}"))
        }
        async fn wait_ready(&self, names: &[&str], _: &str) -> Result<(), LabError> {
            self.note(format!("wait {}", names.join(" ")))
        }
    }

    const LAB: &str =
        "host:\n  bridges: { br0: { address: 10.0.0.1/24 } }\n  uplinks: { eno1: { address: 192.0.2.1/24 } }\n\
         nodes:\n  a:\n    interfaces: [{ bridge: br0, address: 10.0.0.2/24, gateway: 10.0.0.1 }]\n  \
         lan:\n    interfaces: [{ uplink: eno1, address: 192.0.2.2/24 }]\n\
         rules: { backends: [nft], live: { program: command, run: [\"true\"] } }\n";

    #[test]
    fn the_host_gets_its_bridges_down_then_opens_them_once_wired() {
        let plan = LabPlan::new(&crate::scenario::load_text(LAB));
        let host = Recorder::new("host");
        futures::executor::block_on(async {
            make_bridges(&plan.host, false, &host).await.unwrap();
            open_bridges(&plan, &host).await.unwrap();
        });
        assert_eq!(
            host.calls(),
            [
                "host: up #1",
                "host: bridge br0 #1000",
                "host: address 10.0.0.1/24 on #1000",
                "host: arp #1000",
                "host: up #1000",
                "host: wait a-eth0 br0 eno1",
            ]
            .map(String::from),
        );
    }

    #[test]
    fn a_node_gets_its_veths_from_the_host_then_addresses_routes_and_a_wait() {
        let plan = LabPlan::new(&crate::scenario::load_text(LAB));
        let host = Recorder::new("host");
        let node = host.beside("a");
        futures::executor::block_on(wire_node(&plan.nodes[0], false, 7, &node, &host, "host")).unwrap();
        let calls = host.calls();
        assert_eq!(
            calls[0],
            format!(
                "host: veth {} #1001 in host on #1000, peer eth0 #1000 in a (fd 7)",
                plan.nodes[0].veths[0].host_side
            )
        );
        assert_eq!(
            calls[1..],
            [
                "a: up #1",
                "a: address 10.0.0.2/24 on #1000",
                "a: up #1000",
                "a: arp #1000",
                "a: route via 10.0.0.1",
                "a: wait eth0"
            ]
            .map(String::from),
        );
    }

    #[test]
    fn an_uplink_end_gets_the_hosts_address_and_arp_settings() {
        let plan = LabPlan::new(&crate::scenario::load_text(LAB));
        let host = Recorder::new("host");
        let node = host.beside("lan");
        futures::executor::block_on(wire_node(&plan.nodes[1], false, 8, &node, &host, "host")).unwrap();
        let calls = host.calls();
        assert_eq!(calls[0], "host: veth eno1 #1002 in host, peer eth0 #1000 in lan (fd 8)");
        assert_eq!(calls[1..3], ["host: address 192.0.2.1/24 on #1002", "host: arp #1002"].map(String::from));
        assert!(!calls.iter().any(|c| c.contains("route")), "{calls:?}");
    }

    #[test]
    fn a_failed_call_stops_the_node_before_its_routes() {
        let plan = LabPlan::new(&crate::scenario::load_text(LAB));
        let host = Recorder::new("host");
        let node = Recorder { refuse: Some("address"), ..host.beside("a") };
        let err = futures::executor::block_on(wire_node(&plan.nodes[0], false, 7, &node, &host, "host")).unwrap_err();
        assert_eq!(err.what, "address 10.0.0.2/24 on #1000");
        assert!(!host.calls().iter().any(|c| c.contains("route") || c.contains("wait")), "{:?}", host.calls());
    }

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
}
