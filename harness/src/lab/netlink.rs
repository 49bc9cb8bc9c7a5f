//! Netlink as the lab build uses it: a few operations behind the [`Netlink`] trait,
//! with [`RtNetlink`], the rtnetlink implementation over a route socket opened inside
//! one namespace. Topology code is written against the trait, so its unit tests
//! record the calls with a fake instead of needing root.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::task::JoinHandle;

use super::plan::{BridgePlan, VethPlan};
use super::{fail, LabError};

/// What the lab build asks of one namespace's netlink. Every error names what failed.
#[allow(async_fn_in_trait)]
pub(crate) trait Netlink {
    /// A bridge with its chosen index, down.
    async fn add_bridge(&self, bridge: &BridgePlan) -> Result<(), LabError>;
    /// A veth pair made here, its peer born in the namespace `peer_ns`, so no
    /// interface ever exists in a namespace it does not belong to. `host` and `node`
    /// name the two namespaces in messages.
    async fn add_veth(&self, veth: &VethPlan, peer_ns: RawFd, host: &str, node: &str) -> Result<(), LabError>;
    /// An address; an IPv6 one without duplicate address detection (`nodad`), so it
    /// is usable at once.
    async fn add_address(&self, index: u32, net: IpNet, what: &str) -> Result<(), LabError>;
    async fn set_up(&self, index: u32, what: &str) -> Result<(), LabError>;
    /// The ARP settings of the lab's interfaces, and with `ipv6` the same for
    /// neighbour discovery (see [`RETRANS_TIME_MS`] and [`NEIGH_PROBES`]).
    async fn set_retrans_time(&self, index: u32, ipv6: bool, what: &str) -> Result<(), LabError>;
    async fn add_default_route(&self, gateway: Ipv4Addr, node: &str) -> Result<(), LabError>;
    async fn add_default_route6(&self, gateway: Ipv6Addr, node: &str) -> Result<(), LabError>;
    /// Waits until every interface named can transmit.
    async fn wait_ready(&self, names: &[&str], ns: &str) -> Result<(), LabError>;
}

/// A new namespace's netlink sockets, before anything drives them.
pub(crate) type Connection =
    (rtnetlink::proto::Connection<netlink_packet_route::RouteNetlinkMessage>, Handle, netlink_sys::TokioSocket);

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
pub(crate) struct RtNetlink {
    handle: Handle,
    task: JoinHandle<()>,
    /// A second socket in the namespace that joins the link group only while
    /// [`Netlink::wait_ready`] waits, so that the wait ends when the kernel says a
    /// link changed, not after a guessed interval.
    events: netlink_sys::TokioSocket,
}

impl RtNetlink {
    /// Opens both sockets in the calling thread's namespace and registers them with
    /// `rt`'s reactor; call it on a thread inside the namespace.
    pub(crate) fn connect(rt: &tokio::runtime::Handle) -> std::io::Result<Connection> {
        use netlink_sys::AsyncSocket;
        let _guard = rt.enter();
        let (connection, handle, _) = rtnetlink::new_connection()?;
        let events = netlink_sys::TokioSocket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
        Ok((connection, handle, events))
    }

    /// Drives a connection made by [`RtNetlink::connect`] from here on.
    pub(crate) fn start((connection, handle, events): Connection) -> RtNetlink {
        RtNetlink { handle, task: tokio::spawn(connection), events }
    }

    /// The retransmit time and probe counts of one neighbour table (`arp_cache` or
    /// `ndisc_cache`) on interface `index`.
    async fn set_neighbour_table(&self, index: u32, table: &str, what: &str) -> Result<(), LabError> {
        use futures::StreamExt;
        use netlink_packet_route::neighbour_table::{
            NeighbourTableAttribute, NeighbourTableMessage, NeighbourTableParameter,
        };
        use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
        let what = || format!("setting the {table} retransmit time of {what}");
        let mut msg = NeighbourTableMessage::default();
        msg.header.family = match table {
            "ndisc_cache" => netlink_packet_route::AddressFamily::Inet6,
            _ => netlink_packet_route::AddressFamily::Inet,
        };
        msg.attributes = vec![
            NeighbourTableAttribute::Name(table.into()),
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

    /// The names of the links that are up with a carrier.
    pub(crate) async fn carrying(&self, ns: &str) -> Result<Vec<String>, LabError> {
        use netlink_packet_route::link::LinkFlags;
        let mut carrying = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(fail(format!("listing links in {ns}")))? {
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
        Ok(carrying)
    }
}

impl Netlink for RtNetlink {
    async fn add_bridge(&self, bridge: &BridgePlan) -> Result<(), LabError> {
        self.handle
            .link()
            // Up only once its ports are: see `open_bridges`.
            .add(LinkBridge::new(&bridge.name).index(bridge.index).build())
            .execute()
            .await
            .map_err(fail(format!("creating bridge {}", bridge.name)))
    }

    async fn add_veth(&self, veth: &VethPlan, peer_ns: RawFd, host: &str, node: &str) -> Result<(), LabError> {
        // Both ends with indexes of our choosing, so neither needs a lookup. One
        // queue each way: a veth gets one per CPU otherwise, each with its own sysfs
        // entries, which on a large machine costs more than the rest of the link.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(veth.name.clone())
            .index(veth.index)
            .setns_by_fd(peer_ns)
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1))
            .build();
        let mut msg = LinkVeth::new(&veth.host_side, &veth.name)
            .index(veth.host_index)
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1))
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .up();
        if let Some(bridge) = veth.controller {
            msg = msg.controller(bridge);
        }
        self.handle
            .link()
            .add(msg.build())
            .execute()
            .await
            .map_err(fail(format!("creating veth {} in {host} with peer {} in {node}", veth.host_side, veth.name)))
    }

    async fn add_default_route(&self, gateway: Ipv4Addr, node: &str) -> Result<(), LabError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).build();
        self.handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(fail(format!("adding default route via {gateway} in {node}")))
    }

    async fn add_default_route6(&self, gateway: Ipv6Addr, node: &str) -> Result<(), LabError> {
        let route = RouteMessageBuilder::<Ipv6Addr>::new().gateway(gateway).build();
        self.handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(fail(format!("adding IPv6 default route via {gateway} in {node}")))
    }

    async fn add_address(&self, index: u32, net: IpNet, what: &str) -> Result<(), LabError> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags};
        let mut request = self.handle.address().add(index, net.addr(), net.prefix_len());
        if net.addr().is_ipv6() {
            request.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request.execute().await.map_err(fail(format!("adding {net} to {what}")))
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
    /// request (or neighbour solicitation) go unanswered (a link still settling on a busy machine), the kernel
    /// asks again after [`RETRANS_TIME_MS`] instead of a second, within a probe's
    /// wait, and goes on asking [`NEIGH_PROBES`] times before it gives up. Per interface, over netlink: a new namespace has no defaults of its own
    /// for the neighbour table (its interfaces copy the machine's).
    async fn set_retrans_time(&self, index: u32, ipv6: bool, what: &str) -> Result<(), LabError> {
        self.set_neighbour_table(index, "arp_cache", what).await?;
        if ipv6 {
            self.set_neighbour_table(index, "ndisc_cache", what).await?;
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

impl Drop for RtNetlink {
    fn drop(&mut self) {
        // The socket keeps its namespace alive until the task that owns it ends.
        self.task.abort();
    }
}
