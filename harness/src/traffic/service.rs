//! Services: TCP and UDP listeners inside lab nodes, run in-process by tokio.
//!
//! Every service answers with one line, `netconform NODE ADDRESS:PORT`: the node that
//! answered and the source address it saw. A probe reads it to tell who served it
//! (DNAT) and what source the server saw (masquerade).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::lab::netns::NetNs;
use crate::lab::Lab;
use crate::scenario::{NodeId, Scenario};

#[derive(Debug, thiserror::Error)]
#[error("starting {proto} service on port {port} in {node}: {source}")]
pub struct ServiceError {
    pub node: String,
    pub proto: &'static str,
    pub port: u16,
    pub source: io::Error,
}

/// The answer line a service sends.
pub fn answer(node: &str, peer: SocketAddr) -> String {
    format!("netconform {node} {peer}\n")
}

/// Reads an answer line back: (node, source seen).
pub fn parse_answer(text: &str) -> Option<(String, SocketAddr)> {
    let mut words = text.trim().split(' ');
    (words.next()? == "netconform").then_some(())?;
    let node = words.next()?.to_string();
    let seen = words.next()?.parse().ok()?;
    words.next().is_none().then_some((node, seen))
}

/// The request a UDP probe sends; the token lets a service tell which probe reached
/// it, whatever NAT did to the addresses on the way.
pub fn request(token: u64) -> String {
    format!("netconform probe {token}\n")
}

fn parse_request(text: &str) -> Option<u64> {
    text.trim().strip_prefix("netconform probe ")?.parse().ok()
}

/// Which node's service received each probe token.
type Received = Arc<Mutex<HashMap<u64, String>>>;

/// Running services; dropping this stops them and closes their sockets.
#[derive(Debug, Default)]
pub struct Services {
    tasks: Vec<JoinHandle<()>>,
    received: Received,
}

impl Drop for Services {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Services {
    pub fn start(lab: &Lab, scn: &Scenario) -> Result<Services, ServiceError> {
        let mut services = Services::default();
        // With IPv6 on, every TCP service listens on both families.
        let families: &[bool] = if scn.ipv6 { &[false, true] } else { &[false] };
        for (id, node) in scn.nodes.iter().enumerate() {
            let ns = lab.ns(NodeId(id));
            let name = node.name.clone();
            for (&port, &v6) in node.services.tcp.iter().flat_map(|p| families.iter().map(move |f| (p, f))) {
                let err = |source| ServiceError { node: name.clone(), proto: "tcp", port, source };
                let listener = ns.run(|| tcp_listener(port, v6)).and_then(|r| r).map_err(err)?;
                let listener = tokio::net::TcpListener::from_std(listener).map_err(err)?;
                services.tasks.push(tokio::spawn(serve_tcp(listener, name.clone())));
            }
            for fwd in &node.services.forward {
                let err = |source| ServiceError { node: name.clone(), proto: "tcp forward", port: fwd.port, source };
                let listener = ns.run(|| tcp_listener(fwd.port, false)).and_then(|r| r).map_err(err)?;
                let listener = tokio::net::TcpListener::from_std(listener).map_err(err)?;
                let ns = ns.try_clone().map_err(err)?;
                services.tasks.push(tokio::spawn(serve_forward(listener, ns, fwd.to)));
            }
            // One socket per local address, so that every answer leaves from the
            // address the request came to, as a connected client requires.
            let mut addrs: Vec<IpAddr> = scn.addresses_of(NodeId(id)).into_iter().map(IpAddr::V4).collect();
            addrs.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            if scn.ipv6 {
                addrs.extend(scn.addresses6_of(NodeId(id)).into_iter().map(IpAddr::V6));
                addrs.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
            }
            for &port in &node.services.udp {
                let err = |source| ServiceError { node: name.clone(), proto: "udp", port, source };
                for &addr in &addrs {
                    let sock = ns.run(|| udp_socket(addr, port)).and_then(|r| r).map_err(err)?;
                    let sock = tokio::net::UdpSocket::from_std(sock).map_err(err)?;
                    let received = services.received.clone();
                    services.tasks.push(tokio::spawn(serve_udp(sock, name.clone(), received)));
                }
            }
        }
        Ok(services)
    }

    /// The node whose service received the request with this token, if any did,
    /// whether or not its answer got back.
    pub fn received(&self, token: u64) -> Option<String> {
        self.received.lock().unwrap_or_else(|e| e.into_inner()).get(&token).cloned()
    }
}

/// A listener on every address of one family: IPv4, or IPv6 only (`v6`).
fn tcp_listener(port: u16, v6: bool) -> io::Result<std::net::TcpListener> {
    let any = if v6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
    let s = Socket::new(Domain::for_address(SocketAddr::new(any, port)), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if v6 {
        s.set_only_v6(true)?;
    }
    s.bind(&SocketAddr::new(any, port).into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn udp_socket(addr: IpAddr, port: u16) -> io::Result<std::net::UdpSocket> {
    let to = SocketAddr::new(addr, port);
    let s = Socket::new(Domain::for_address(to), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&to.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

async fn serve_tcp(listener: tokio::net::TcpListener, node: String) {
    // Connections end with this task: aborting it drops the set and aborts them.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut conn, peer)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let line = answer(&node, peer);
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            // The client may already be gone; nothing to report then.
            let _ = conn.write_all(line.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

/// A userland proxy, as docker-proxy: each accepted connection is carried over a new
/// connection from this node to `to`, so the target sees this node as the source.
async fn serve_forward(listener: tokio::net::TcpListener, ns: NetNs, to: SocketAddrV4) {
    // Connections end with this task: aborting it drops the set and aborts them.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let Ok(Ok(upstream)) = ns.run(|| connecting_socket(to)) else { continue };
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let Ok(mut upstream) = tokio::net::TcpStream::from_std(upstream) else { return };
            let connected = tokio::time::timeout(FORWARD_CONNECT_TIMEOUT, upstream.writable()).await;
            if connected.is_ok() && matches!(upstream.take_error(), Ok(None)) {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

/// How long a forwarder waits for its onward connection.
const FORWARD_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A non-blocking TCP socket already connecting to `to`.
pub(crate) fn connecting_socket(to: SocketAddrV4) -> io::Result<std::net::TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    match s.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(s.into())
}

async fn serve_udp(sock: tokio::net::UdpSocket, node: String, received: Received) {
    let mut buf = [0u8; 2048];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else { continue };
        if let Some(token) = parse_request(&String::from_utf8_lossy(&buf[..n])) {
            received.lock().unwrap_or_else(|e| e.into_inner()).insert(token, node.clone());
        }
        let _ = sock.send_to(answer(&node, peer).as_bytes(), peer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_round_trips() {
        let peer: SocketAddr = "192.0.2.2:40000".parse().unwrap();
        let (node, seen) = parse_answer(&answer("c1", peer)).unwrap();
        assert_eq!(node, "c1");
        assert_eq!(seen, peer);
        let peer: SocketAddr = "[fd00::2]:40000".parse().unwrap();
        assert_eq!(parse_answer(&answer("c1", peer)).map(|(_, seen)| seen), Some(peer));
    }

    #[test]
    fn request_round_trips() {
        assert_eq!(parse_request(&request(42)), Some(42));
        assert_eq!(parse_request("netconform probe x"), None);
    }

    #[test]
    fn rejects_other_text() {
        assert_eq!(parse_answer("hello"), None);
        assert_eq!(parse_answer("netconform c1"), None);
        assert_eq!(parse_answer("netconform c1 1.2.3.4:5 extra"), None);
    }
}
