//! Arrivals: which node a probe's request reached, even when no answer came back.
//!
//! A packet socket in each node (not the host, whose own rules decide after a packet
//! arrives) records the IPv4 packets that arrive for one of the node's addresses, and
//! with IPv6 on a second one the IPv6 packets. A
//! probe's packets carry its tag (the source port, or the echo identifier; see
//! [`crate::traffic::probe::tag`]), so a probe that expects `dropped` but whose request did
//! arrive can be told apart: the filter let it through and only the answer was lost.

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use nix::{setsockopt_impl, sockopt_impl};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use crate::backend::trace::Packet;
use crate::lab::Lab;
use crate::scenario::{NodeId, Scenario};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// From linux/if_packet.h; not in the libc crate for every target.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

sockopt_impl!(
    /// Leaves out of a packet socket the packets its own namespace sends.
    IgnoreOutgoing,
    SetOnly,
    libc::SOL_PACKET,
    PACKET_IGNORE_OUTGOING,
    bool
);

/// (node, IP protocol number, tag)
type Seen = Arc<Mutex<HashSet<(NodeId, u8, u16)>>>;

/// Recording arrivals; dropping this stops it and closes the sockets.
#[derive(Debug, Default)]
pub struct Arrivals {
    tasks: Vec<JoinHandle<()>>,
    seen: Seen,
}

impl Drop for Arrivals {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Arrivals {
    pub fn start(lab: &Lab, scn: &Scenario) -> io::Result<Arrivals> {
        let mut arrivals = Arrivals::default();
        let families: &[u16] = if scn.ipv6 { &[ETH_P_IP, ETH_P_IPV6] } else { &[ETH_P_IP] };
        for id in (1..scn.nodes.len()).map(NodeId) {
            for &ethertype in families {
                let sock = lab.ns(id).run(|| packet_socket(ethertype))??;
                // SAFETY: the Socket owns its descriptor and moves into the AsyncFd, so
                // the descriptor stays open, and the same, until the AsyncFd drops.
                let sock = unsafe { AsyncFd::register(sock) }.map_err(io::Error::from)?;
                let addrs = scn.ip_addresses_of(id);
                arrivals.tasks.push(tokio::spawn(record(sock, id, addrs, arrivals.seen.clone())));
            }
        }
        Ok(arrivals)
    }

    /// The node, other than `sender`, where a packet of `proto` (6 TCP, 17 UDP, 1 ICMP,
    /// 58 ICMPv6) with this tag arrived.
    pub fn reached(&self, sender: NodeId, proto: u8, tag: u16) -> Option<NodeId> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().find(|(node, p, t)| *node != sender && *p == proto && *t == tag).map(|(node, _, _)| *node)
    }
}

fn packet_socket(ethertype: u16) -> io::Result<Socket> {
    let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(i32::from(ethertype.to_be()))))?;
    nix::sys::socket::setsockopt(&s, IgnoreOutgoing, &true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

async fn record(sock: AsyncFd<Socket>, node: NodeId, addrs: Vec<IpAddr>, seen: Seen) {
    use std::io::Read;
    let mut buf = [0u8; 128];
    loop {
        let Ok(mut guard) = sock.readable().await else { return };
        match guard.try_io(|s| s.get_ref().read(&mut buf)) {
            Ok(Ok(n)) => {
                if let Some((proto, tag)) = parse(&buf[..n], &addrs) {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).insert((node, proto, tag));
                }
            }
            Ok(Err(_)) | Err(_) => continue,
        }
    }
}

/// (protocol, tag) of a probe's request for one of `addrs` (see [`Packet::request_tag`]).
fn parse(p: &[u8], addrs: &[IpAddr]) -> Option<(u8, u16)> {
    let packet = Packet::from_datagram(p).filter(|packet| addrs.contains(&packet.dst))?;
    Some((packet.protocol, packet.request_tag()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn packet(proto: u8, dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 9];
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    fn packet6(proto: u8, dst: Ipv6Addr, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
        p.extend_from_slice(&"fd00::9".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn tags_of_ipv6_tcp_udp_and_echo_requests() {
        let me: Ipv6Addr = "fd00::2".parse().unwrap();
        let addrs = [IpAddr::V6(me)];
        let ports = [0x4e, 0x20, 0, 80, 0, 0, 0, 0];
        assert_eq!(parse(&packet6(6, me, &ports), &addrs), Some((6, 20000)));
        assert_eq!(parse(&packet6(17, me, &ports), &addrs), Some((17, 20000)));
        assert_eq!(parse(&packet6(58, me, &[128, 0, 0, 0, 0x4e, 0x21, 0, 1]), &addrs), Some((58, 20001)));
        // An echo reply, another address, a truncated header.
        assert_eq!(parse(&packet6(58, me, &[129, 0, 0, 0, 0x4e, 0x21, 0, 1]), &addrs), None);
        assert_eq!(parse(&packet6(6, "fd00::3".parse().unwrap(), &ports), &addrs), None);
        assert_eq!(parse(&packet6(6, me, &ports)[..30], &addrs), None);
    }

    #[test]
    fn tags_of_tcp_udp_and_echo_requests() {
        let addrs = [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))];
        let ports = [0x4e, 0x20, 0, 80, 0, 0, 0, 0];
        assert_eq!(parse(&packet(6, [10, 0, 0, 2], &ports), &addrs), Some((6, 20000)));
        assert_eq!(parse(&packet(17, [10, 0, 0, 2], &ports), &addrs), Some((17, 20000)));
        let echo = [8, 0, 0, 0, 0x4e, 0x21, 0, 1];
        assert_eq!(parse(&packet(1, [10, 0, 0, 2], &echo), &addrs), Some((1, 20001)));
    }

    #[test]
    fn ignores_other_packets() {
        let addrs = [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))];
        let ports = [0x4e, 0x20, 0, 80, 0, 0, 0, 0];
        // For another address.
        assert_eq!(parse(&packet(6, [10, 0, 0, 3], &ports), &addrs), None);
        // An echo reply, not a request.
        assert_eq!(parse(&packet(1, [10, 0, 0, 2], &[0, 0, 0, 0, 0x4e, 0x20, 0, 1]), &addrs), None);
        // Truncated.
        assert_eq!(parse(&[0x45, 0, 0], &addrs), None);
    }
}
