//! Probes: one ICMP echo, TCP connect or UDP request from a node, sent in-process.
//!
//! The socket is created on a thread inside the sender's namespace and then driven
//! by tokio, so a probe costs a thread spawn and a few system calls, no process.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncReadExt;

use crate::lab::netns::NetNs;
use crate::scenario::{Probe, Proto};
use crate::traffic::service::{parse_answer, request};

/// What happened to a probe, independent of what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// An answer came back.
    Reached,
    /// A TCP reset or an ICMP error came back.
    Refused,
    /// Nothing came back in time, or a rule in the sender dropped it on the way out.
    Dropped,
    /// The probe could not be sent at all (no route in the sender, for example).
    Failed,
}

impl OutcomeKind {
    pub fn name(self) -> &'static str {
        match self {
            OutcomeKind::Reached => "reached",
            OutcomeKind::Refused => "refused",
            OutcomeKind::Dropped => "dropped",
            OutcomeKind::Failed => "failed",
        }
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an outcome rests on, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// An answer: the service's line, an echo reply, or a connection.
    Answer,
    /// A TCP reset or an ICMP error.
    Refusal,
    /// The back end's trace: a drop verdict on the probe's packets.
    Trace,
    /// The sender's own kernel refused to send it (a rule in the sender, no route).
    Sender,
    /// Nothing came back before the probe's deadline, or a connection was made but
    /// the service's answer never came: the weakest evidence.
    Silence,
}

impl Evidence {
    pub fn name(self) -> &'static str {
        match self {
            Evidence::Answer => "answer",
            Evidence::Refusal => "refusal",
            Evidence::Trace => "trace",
            Evidence::Sender => "sender",
            Evidence::Silence => "silence",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// What the outcome rests on.
    pub evidence: Evidence,
    /// The probe was sent a second time because the first met only silence (only
    /// ever for a probe that expects an answer).
    pub retried: bool,
    /// What exactly came back, in words: "TCP reset", "ICMP host unreachable", ...
    pub detail: String,
    /// The node whose service answered, by the name in its answer.
    pub answered_by: Option<String>,
    /// The source address the answering service saw.
    pub source_seen: Option<SocketAddr>,
    /// The node whose service received the request (UDP), even if no answer came
    /// back: tells "dropped on the way there" from "dropped on the way back".
    pub delivered_to: Option<String>,
    pub elapsed: Duration,
}

impl Outcome {
    /// An outcome decided by something other than the probe's own socket (a traced
    /// verdict), after `elapsed`.
    pub fn decided(kind: OutcomeKind, detail: impl Into<String>, elapsed: Duration) -> Outcome {
        Outcome { elapsed, evidence: Evidence::Trace, ..Outcome::new(kind, detail) }
    }

    /// An outcome of `kind` with the evidence such an outcome usually rests on.
    pub fn new(kind: OutcomeKind, detail: impl Into<String>) -> Outcome {
        let evidence = match kind {
            OutcomeKind::Reached => Evidence::Answer,
            OutcomeKind::Refused => Evidence::Refusal,
            OutcomeKind::Dropped => Evidence::Silence,
            OutcomeKind::Failed => Evidence::Sender,
        };
        Outcome {
            kind,
            evidence,
            retried: false,
            detail: detail.into(),
            answered_by: None,
            source_seen: None,
            delivered_to: None,
            elapsed: Duration::ZERO,
        }
    }

    /// What an error on a probe's socket to `to` says. ICMPv6 errors come back as
    /// other numbers than ICMP ones: "administratively prohibited" is EACCES there,
    /// which for IPv4 only a rule in the sender gives.
    fn from_error(e: &io::Error, timeout: Duration, to: SocketAddr) -> Outcome {
        let v6 = to.is_ipv6();
        match e.raw_os_error() {
            Some(libc::ECONNREFUSED) if v6 => {
                Outcome::new(OutcomeKind::Refused, "connection refused (TCP reset or ICMPv6 port unreachable)")
            }
            Some(libc::ECONNREFUSED) => {
                Outcome::new(OutcomeKind::Refused, "connection refused (TCP reset or ICMP port unreachable)")
            }
            Some(libc::EHOSTUNREACH) if v6 => Outcome::new(OutcomeKind::Refused, "ICMPv6 address unreachable"),
            Some(libc::EHOSTUNREACH) => Outcome::new(OutcomeKind::Refused, "ICMP host unreachable or prohibited"),
            Some(libc::ENETUNREACH) if v6 => Outcome::new(OutcomeKind::Refused, "ICMPv6 no route to destination"),
            Some(libc::ENETUNREACH) => Outcome::new(OutcomeKind::Refused, "ICMP network unreachable"),
            Some(libc::EACCES) if v6 => Outcome::new(
                OutcomeKind::Refused,
                "ICMPv6 administratively prohibited (or a policy failure, or a reject route)",
            ),
            Some(libc::ENOPROTOOPT) => Outcome::new(OutcomeKind::Refused, "ICMP protocol unreachable"),
            Some(libc::EPROTO) if v6 => Outcome::new(OutcomeKind::Refused, "ICMPv6 parameter problem"),
            Some(libc::EPERM) | Some(libc::EACCES) => Outcome {
                evidence: Evidence::Sender,
                ..Outcome::new(OutcomeKind::Dropped, "dropped by a rule in the sender before it left (EPERM)")
            },
            Some(libc::ETIMEDOUT) => Outcome::new(OutcomeKind::Dropped, format!("no answer within {timeout:?}")),
            _ => Outcome::new(OutcomeKind::Failed, format!("error: {e}")),
        }
    }

    fn timed_out(timeout: Duration) -> Outcome {
        Outcome::new(OutcomeKind::Dropped, format!("no answer within {}", humantime::format_duration(timeout)))
    }

    fn answered(text: &str) -> Outcome {
        match parse_answer(text) {
            Some((node, seen)) => Outcome {
                detail: format!("answered by {node}, which saw {seen}"),
                answered_by: Some(node),
                source_seen: Some(seen),
                ..Outcome::new(OutcomeKind::Reached, "")
            },
            None => Outcome::new(OutcomeKind::Reached, format!("answered, but not by a netconform service: {text:?}")),
        }
    }
}

/// The source port (TCP, UDP) or echo identifier (ICMP) of the probe with this
/// index: it tags the probe's packets, so that [`crate::traffic::arrivals`] can tell where they
/// arrived. Below the kernel's ephemeral range, so never taken by anything else.
pub fn tag(index: usize) -> u16 {
    TAG_BASE + index as u16
}

const TAG_BASE: u16 = 20000;

/// Send probe number `index`, `probe`, from the namespace `from`. A UDP request also
/// carries `index` as a token, so the service that receives it can say so (see
/// [`crate::traffic::service::request`]).
pub async fn send(from: &NetNs, probe: &Probe, index: usize) -> Outcome {
    let start = Instant::now();
    let tag = tag(index);
    let mut outcome = match probe.proto {
        Proto::Tcp(port) => tcp(from, tag, SocketAddr::new(probe.to, port), probe.timeout).await,
        Proto::Udp(port) => udp(from, tag, SocketAddr::new(probe.to, port), probe.timeout, index as u64).await,
        Proto::Icmp => icmp(from, tag, SocketAddr::new(probe.to, 0), probe.timeout).await,
    };
    outcome.elapsed = start.elapsed();
    outcome
}

/// A socket made inside `ns`, bound to the probe's `tag` port, non-blocking and
/// already connecting to `to`. Errors here come before any packet left: they mean the
/// probe could not be sent.
fn open(ns: &NetNs, ty: Type, proto: Protocol, tag: u16, to: SocketAddr) -> Result<Socket, Box<Outcome>> {
    let made = ns.run(|| -> io::Result<Socket> {
        // A probe sent again connects from its tag's port to the same address as the
        // first attempt did; while the kernel still holds the first connection (it
        // went through with TCP's own retransmission just as the attempt gave up), the
        // connect is refused with EADDRNOTAVAIL. That is no outcome: ask again, for as
        // long as a probe may wait.
        let start = std::time::Instant::now();
        loop {
            match connect_from(ty, proto, tag, to) {
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && start.elapsed() < ANSWER_WAIT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    });
    match made {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) if e.raw_os_error() == Some(libc::EPERM) => {
            Err(Box::new(Outcome::from_error(&e, Duration::ZERO, to)))
        }
        Ok(Err(e)) => {
            Err(Box::new(Outcome::new(OutcomeKind::Failed, format!("could not send from {}: {e}", ns.name()))))
        }
        Err(e) => Err(Box::new(Outcome::new(OutcomeKind::Failed, format!("could not enter {}: {e}", ns.name())))),
    }
}

/// How long a probe's socket may wait for its tag's port to be free again.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// A socket bound to the tag's port, non-blocking, already connecting to `to`; on the
/// calling thread's namespace.
fn connect_from(ty: Type, proto: Protocol, tag: u16, to: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(to), ty, Some(proto))?;
    s.set_nonblocking(true)?;
    if ty == Type::DGRAM {
        // Report every ICMP error on the socket, not only the "hard" ones.
        set_recv_err(&s, to.is_ipv6())?;
    } else {
        // A probe sent again binds its tag again, which the first attempt's
        // socket may not have let go of yet.
        s.set_reuse_address(true)?;
    }
    let any = if to.is_ipv6() { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
    s.bind(&SocketAddr::new(any, tag).into())?;
    match s.connect(&to.into()) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
        Err(e) => Err(e),
    }
}

fn set_recv_err(s: &Socket, v6: bool) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    match v6 {
        true => setsockopt(s, sockopt::Ipv6RecvErr, &true)?,
        false => setsockopt(s, sockopt::Ipv4RecvErr, &true)?,
    }
    Ok(())
}

async fn tcp(ns: &NetNs, tag: u16, to: SocketAddr, timeout: Duration) -> Outcome {
    let sock = match open(ns, Type::STREAM, Protocol::TCP, tag, to) {
        Ok(s) => s,
        Err(outcome) => return *outcome,
    };
    let mut stream = match tokio::net::TcpStream::from_std(std::net::TcpStream::from(sock)) {
        Ok(s) => s,
        Err(e) => return Outcome::new(OutcomeKind::Failed, format!("registering the socket: {e}")),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    if tokio::time::timeout_at(deadline, stream.writable()).await.is_err() {
        // Abort rather than close: the kernel's own SYN retransmission may have got
        // through as the deadline passed (a busy machine runs this task late), and a
        // connection closed gracefully would hold the tag's port from the probe sent
        // again (EADDRNOTAVAIL).
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        return Outcome::timed_out(timeout);
    }
    match stream.take_error() {
        Ok(None) => {}
        Ok(Some(e)) | Err(e) => return Outcome::from_error(&e, timeout, to),
    }
    let mut text = String::new();
    match tokio::time::timeout_at(deadline, stream.read_to_string(&mut text)).await {
        Ok(Ok(_)) => Outcome::answered(&text),
        Ok(Err(e)) => Outcome::new(OutcomeKind::Reached, format!("connected, then {e}")),
        Err(_) => {
            // Reset rather than close: the probe may be sent again from the same port,
            // which a connection in TIME_WAIT would hold.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            Outcome {
                evidence: Evidence::Silence,
                ..Outcome::new(OutcomeKind::Reached, "connected, but no answer line in time")
            }
        }
    }
}

/// A datagram socket handed to tokio.
fn register_datagram(sock: Socket) -> Result<tokio::net::UdpSocket, Box<Outcome>> {
    tokio::net::UdpSocket::from_std(sock.into())
        .map_err(|e| Box::new(Outcome::new(OutcomeKind::Failed, format!("registering the socket: {e}"))))
}

async fn udp(ns: &NetNs, tag: u16, to: SocketAddr, timeout: Duration, token: u64) -> Outcome {
    let sock = match open(ns, Type::DGRAM, Protocol::UDP, tag, to).and_then(register_datagram) {
        Ok(s) => s,
        Err(outcome) => return *outcome,
    };
    if let Err(e) = sock.send(request(token).as_bytes()).await {
        return Outcome::from_error(&e, timeout, to);
    }
    let mut buf = [0u8; 2048];
    match tokio::time::timeout(timeout, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Outcome::answered(&String::from_utf8_lossy(&buf[..n])),
        Ok(Err(e)) => Outcome::from_error(&e, timeout, to),
        Err(_) => Outcome::timed_out(timeout),
    }
}

async fn icmp(ns: &NetNs, tag: u16, to: SocketAddr, timeout: Duration) -> Outcome {
    // On a ping socket the bound port is the echo identifier.
    let (protocol, request_type, reply_type) =
        if to.is_ipv6() { (Protocol::ICMPV6, 128u8, 129u8) } else { (Protocol::ICMPV4, 8u8, 0u8) };
    let sock = match open(ns, Type::DGRAM, protocol, tag, to).and_then(register_datagram) {
        Ok(s) => s,
        Err(outcome) => return *outcome,
    };
    // Echo request; the kernel fills in the identifier and the checksum.
    let request = [request_type, 0, 0, 0, 0, 0, 0, 1, b'n', b'c'];
    if let Err(e) = sock.send(&request).await {
        return Outcome::from_error(&e, timeout, to);
    }
    let mut buf = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Ok(Ok(n)) if n >= 8 && buf[0] == reply_type => {
                return Outcome::new(OutcomeKind::Reached, format!("echo reply from {}", to.ip()))
            }
            // Anything else on a ping socket is not our reply; keep waiting.
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Outcome::from_error(&e, timeout, to),
            Err(_) => return Outcome::timed_out(timeout),
        }
    }
}
