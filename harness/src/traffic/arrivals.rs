//! Arrivals: which node a probe's request reached, even when no answer came back.
//!
//! A packet socket in each node (not the host, whose own rules decide after a packet
//! arrives) records the IPv4 packets that arrive for one of the node's addresses. A
//! probe's packets carry its tag (the source port, or the echo identifier; see
//! [`crate::traffic::probe::tag`]), so a probe that expects `dropped` but whose request did
//! arrive can be told apart: the filter let it through and only the answer was lost.

use std::collections::HashSet;
use std::io;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use nix::{setsockopt_impl, sockopt_impl};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use crate::lab::Lab;
use crate::scenario::{NodeId, Scenario};

const ETH_P_IP: u16 = 0x0800;
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
        for id in (1..scn.nodes.len()).map(NodeId) {
            let sock = lab.ns(id).run(packet_socket)??;
            // SAFETY: the Socket owns its descriptor and moves into the AsyncFd, so the
            // descriptor stays open, and the same, until the AsyncFd drops.
            let sock = unsafe { AsyncFd::register(sock) }.map_err(io::Error::from)?;
            let addrs = scn.addresses_of(id);
            arrivals.tasks.push(tokio::spawn(record(sock, id, addrs, arrivals.seen.clone())));
        }
        Ok(arrivals)
    }

    /// The node, other than `sender`, where a packet of `proto` (6 TCP, 17 UDP, 1 ICMP)
    /// with this tag arrived.
    pub fn reached(&self, sender: NodeId, proto: u8, tag: u16) -> Option<NodeId> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().find(|(node, p, t)| *node != sender && *p == proto && *t == tag).map(|(node, _, _)| *node)
    }
}

fn packet_socket() -> io::Result<Socket> {
    let s = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(i32::from(ETH_P_IP.to_be()))))?;
    nix::sys::socket::setsockopt(&s, IgnoreOutgoing, &true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

async fn record(sock: AsyncFd<Socket>, node: NodeId, addrs: Vec<Ipv4Addr>, seen: Seen) {
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

/// (protocol, tag) of an IPv4 packet for one of `addrs`: the source port of TCP and
/// UDP, the identifier of an ICMP echo request.
fn parse(p: &[u8], addrs: &[Ipv4Addr]) -> Option<(u8, u16)> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    if !addrs.contains(&dst) || p.len() < ihl + 8 {
        return None;
    }
    let l4 = &p[ihl..];
    match p[9] {
        6 | 17 => Some((p[9], u16::from_be_bytes([l4[0], l4[1]]))),
        1 if l4[0] == 8 => Some((1, u16::from_be_bytes([l4[4], l4[5]]))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(proto: u8, dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 9];
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn tags_of_tcp_udp_and_echo_requests() {
        let addrs = [Ipv4Addr::new(10, 0, 0, 2)];
        let ports = [0x4e, 0x20, 0, 80, 0, 0, 0, 0];
        assert_eq!(parse(&packet(6, [10, 0, 0, 2], &ports), &addrs), Some((6, 20000)));
        assert_eq!(parse(&packet(17, [10, 0, 0, 2], &ports), &addrs), Some((17, 20000)));
        let echo = [8, 0, 0, 0, 0x4e, 0x21, 0, 1];
        assert_eq!(parse(&packet(1, [10, 0, 0, 2], &echo), &addrs), Some((1, 20001)));
    }

    #[test]
    fn ignores_other_packets() {
        let addrs = [Ipv4Addr::new(10, 0, 0, 2)];
        let ports = [0x4e, 0x20, 0, 80, 0, 0, 0, 0];
        // For another address.
        assert_eq!(parse(&packet(6, [10, 0, 0, 3], &ports), &addrs), None);
        // An echo reply, not a request.
        assert_eq!(parse(&packet(1, [10, 0, 0, 2], &[0, 0, 0, 0, 0x4e, 0x20, 0, 1]), &addrs), None);
        // Truncated.
        assert_eq!(parse(&[0x45, 0, 0], &addrs), None);
    }
}
