//! A trace session in one lab host: the netlink socket opened inside it, the task that
//! reads it, the table that turns tracing on, and closing it all again.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::codec::*;
use super::describe::parse_listing;
use super::event::*;
use super::verdicts::{rejects, XtRules};
use super::{ProbeTag, TraceError, TABLE};
use crate::backend::{self, nft};
use crate::lab::netns::{read_sysctl, write_sysctl, NetNs};
use crate::scenario::Backend;
/// What the reading task found so far.
#[derive(Default)]
pub(super) struct State {
    pub(super) events: HashMap<ProbeTag, Vec<TraceEvent>>,
    /// The first final drop of each probe.
    pub(super) drops: HashMap<ProbeTag, TraceEvent>,
    /// The packet each trace id last reported headers for, tied to a probe or not:
    /// events without headers belong to it.
    pub(super) packets: HashMap<u32, Option<(Packet, ProbeTag, Direction)>>,
    /// Events of packets that are no probe's (another rule set's nftrace, say).
    pub(super) untied: usize,
    /// The socket overflowed at least once: some events are missing.
    pub(super) lost: bool,
    /// Why the reading task stopped, if it did.
    pub(super) failed: Option<String>,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) notify: Notify,
    pub(super) tags: HashSet<ProbeTag>,
    /// (family, table, handle) of the rules that reject.
    pub(super) rejects: HashSet<(String, String, u64)>,
    /// Under iptables-legacy, what the rules at each position do.
    pub(super) xtables: XtRules,
    pub(super) interfaces: HashMap<u32, String>,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take in one datagram; true if it added events.
    pub(super) fn ingest(&self, datagram: &[u8], seen: Instant) -> bool {
        let mut added = false;
        let mut state = self.lock();
        for (ty, payload, _) in messages(datagram) {
            let event = match ty {
                NFT_TRACE_MESSAGE => decode_trace(payload).and_then(|raw| self.tie(&mut state, raw, seen)),
                NFLOG_PACKET_MESSAGE => decode_nflog(payload).and_then(|raw| self.tie_xt(&mut state, raw, seen)),
                _ => continue,
            };
            if let Some(event) = event {
                // Of our own chain only the rule that turned tracing on tells something
                // (where the packet came in); its end and policy are noise.
                if event.is_ours() && event.rule_handle.is_none() {
                    continue;
                }
                if event.is_final_drop() {
                    state.drops.entry(event.tag).or_insert_with(|| event.clone());
                }
                state.events.entry(event.tag).or_default().push(event);
                added = true;
            }
        }
        added
    }

    /// An x_tables TRACE line as an event; every line carries the packet's headers.
    pub(super) fn tie_xt(&self, state: &mut State, raw: XtTrace, seen: Instant) -> Option<TraceEvent> {
        let v6 = raw.payload.first()? >> 4 == 6;
        let tied = Packet::from_datagram(&raw.payload).and_then(|p| p.tie(&self.tags).map(|(tag, dir)| (p, tag, dir)));
        let Some((packet, tag, direction)) = tied else {
            state.untied += 1;
            return None;
        };
        let family = v6.then(|| "ip6".to_string());
        let (kind, verdict, rejects) = match raw.kind.as_str() {
            "policy" => (
                EventKind::Policy,
                self.xtables.policies.get(&(family.clone(), raw.table.clone(), raw.chain.clone())).cloned(),
                false,
            ),
            "return" => (EventKind::Return, Some(RuleVerdict::Return), false),
            _ => match self.xtables.rules.get(&(family, raw.table.clone(), raw.chain.clone(), raw.position)) {
                Some((verdict, rejects)) => (EventKind::Rule, Some(verdict.clone()), *rejects),
                None => (EventKind::Rule, None, false),
            },
        };
        let mut event = self.blank(packet, tag, direction, seen);
        let family = if v6 { "ip6" } else { "ip" };
        (event.family, event.table, event.chain) = (family.into(), raw.table, raw.chain);
        (event.position, event.kind, event.verdict, event.rejects) = (Some(raw.position), kind, verdict, rejects);
        (event.iif, event.oif, event.mark) = (raw.iif, raw.oif, raw.mark);
        Some(self.named(event))
    }

    /// An event of `packet` with nothing known of where it was yet.
    pub(super) fn blank(&self, packet: Packet, tag: ProbeTag, direction: Direction, seen: Instant) -> TraceEvent {
        TraceEvent {
            id: 0,
            family: String::new(),
            table: String::new(),
            chain: String::new(),
            rule_handle: None,
            position: None,
            kind: EventKind::Other(0),
            verdict: None,
            iif: None,
            iif_name: None,
            oif: None,
            oif_name: None,
            mark: None,
            packet,
            tag,
            direction,
            rejects: false,
            seen,
        }
    }

    /// `event` with the names of its interfaces.
    pub(super) fn named(&self, mut event: TraceEvent) -> TraceEvent {
        event.iif_name = event.iif.and_then(|i| self.interfaces.get(&i).cloned());
        event.oif_name = event.oif.and_then(|i| self.interfaces.get(&i).cloned());
        event
    }

    pub(super) fn tie(&self, state: &mut State, raw: RawTrace, seen: Instant) -> Option<TraceEvent> {
        let tied = match (&raw.network, &raw.transport) {
            (Some(n), t) => {
                let tied = Packet::parse(n, t.as_deref().unwrap_or(&[]))
                    .and_then(|p| p.tie(&self.tags).map(|(tag, dir)| (p, tag, dir)));
                // Ids are hashes of the packet buffer; a long session must not keep
                // every id it ever saw.
                if state.packets.len() > 1 << 16 {
                    state.packets.clear();
                }
                state.packets.insert(raw.id, tied);
                tied
            }
            (None, _) => state.packets.get(&raw.id).copied().flatten(),
        };
        let Some((packet, tag, direction)) = tied else {
            state.untied += 1;
            return None;
        };
        let family = family_name(raw.family);
        let kind = match raw.kind {
            1 => EventKind::Policy,
            2 => EventKind::Return,
            3 => EventKind::Rule,
            k => EventKind::Other(k),
        };
        let verdict = match kind {
            EventKind::Policy => raw.policy.map(|p| RuleVerdict::from_code(p as i32, None)),
            _ => raw.verdict.map(|(code, chain)| RuleVerdict::from_code(code, chain)),
        };
        let rejects = raw.rule_handle.is_some_and(|h| self.rejects.contains(&(family.clone(), raw.table.clone(), h)));
        let event = TraceEvent {
            id: raw.id,
            family,
            table: raw.table,
            chain: raw.chain,
            rule_handle: raw.rule_handle,
            kind,
            verdict,
            iif: raw.iif,
            oif: raw.oif,
            mark: raw.mark,
            rejects,
            ..self.blank(packet, tag, direction, seen)
        };
        Some(self.named(event))
    }
}

/// Tracing the probes' packets in one lab host: a netlink socket subscribed to the
/// trace group in that namespace, a task reading it, and the table [`TABLE`] that
/// turns tracing on. Dropping the session stops the task and closes the socket; the
/// table stays until [`TraceSession::close`] or the end of the lab.
pub struct TraceSession {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    host: NetNs,
    /// Under iptables-legacy, each logger sysctl the session set (IPv4's, and with
    /// IPv6 IPv6's) with the value the lab host had before, put back on close.
    logger: Vec<(&'static str, String)>,
}

impl fmt::Debug for TraceSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceSession").field("host", &self.host.name()).finish_non_exhaustive()
    }
}

impl Drop for TraceSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TraceSession {
    /// Start tracing the packets of the probes with `tags` (all of a scenario's) in the
    /// lab host `host`, whose rule set is loaded with `backend`. Call it once the rule
    /// set is loaded: a rule file that flushes the whole rule set (`flush ruleset`)
    /// removes our table with everything else, and under iptables-legacy the verdicts
    /// are read from the rule set as it is now.
    ///
    /// The socket is created on a thread inside `host` and subscribed before the table
    /// is loaded, so no event of a traced packet is missed. Needs `nft` on PATH, which
    /// it runs twice: `nft -f -` to load the table, `nft -a list ruleset` to learn which
    /// rules reject. Under iptables-legacy it binds `nfnetlink_log` as the lab host's
    /// IPv4 logger and NFLOG group 0 to the socket, and reads `iptables-legacy-save`;
    /// with `ipv6` also as the IPv6 logger, reading `ip6tables-legacy-save` beside it.
    pub async fn start(
        host: &NetNs,
        tags: &[ProbeTag],
        backend: Backend,
        ipv6: bool,
    ) -> Result<TraceSession, TraceError> {
        let ns = host.name().to_string();
        let xtables = backend.traces_by_log();
        let sock_err = |source| TraceError::Socket { ns: ns.clone(), source };
        let logger_err = |source| TraceError::Logger { ns: ns.clone(), source };
        let (sock, interfaces) =
            host.run(|| open_socket().map(|s| (s, interface_names()))).and_then(|r| r).map_err(sock_err)?;
        let logger = if xtables {
            let sysctls: &[&'static str] =
                if ipv6 { &[IPV4_LOGGER_SYSCTL, IPV6_LOGGER_SYSCTL] } else { &[IPV4_LOGGER_SYSCTL] };
            host.run(|| -> io::Result<Vec<(&'static str, String)>> {
                let mut previous = Vec::new();
                for &key in sysctls {
                    previous.push((key, read_sysctl(key)?));
                    write_sysctl(key, NFNETLINK_LOG)?;
                }
                bind_nflog(&sock)?;
                Ok(previous)
            })
            .and_then(|r| r)
            .map_err(logger_err)?
        } else {
            Vec::new()
        };
        // SAFETY: the socket is owned by the AsyncFd and closed only when it drops.
        let sock = unsafe { AsyncFd::register(sock) }.map_err(|e| sock_err(io::Error::from(e)))?;
        let host = host.try_clone().map_err(sock_err)?;

        nft::apply(&host, &table_script(tags)).await.map_err(|source| TraceError::Table { ns: ns.clone(), source })?;
        let (rejects, xtables) = if xtables {
            let dump = backend::dump(backend::for_backend(backend).as_ref(), &host, ipv6).await?.0;
            (HashSet::new(), XtRules::from_dump(&dump))
        } else {
            let listing = super::describe::list_ruleset(&host).await?;
            let rejects = parse_listing(&listing)
                .chains
                .into_iter()
                .flat_map(|c| {
                    let (family, table) = (c.family, c.table);
                    c.rules
                        .into_iter()
                        .filter(|r| rejects(&r.text))
                        .map(move |r| (family.clone(), table.clone(), r.handle))
                })
                .collect();
            (rejects, XtRules::default())
        };

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            tags: tags.iter().copied().collect(),
            rejects,
            xtables,
            interfaces,
        });
        let task = tokio::spawn(read_events(sock, shared.clone()));
        Ok(TraceSession { shared, task, host, logger })
    }

    /// The events of the probe with `tag` so far, in the order the kernel sent them.
    pub fn events(&self, tag: ProbeTag) -> Vec<TraceEvent> {
        self.shared.lock().events.get(&tag).cloned().unwrap_or_default()
    }

    /// The event that decided the probe's fate so far (see [`deciding`]).
    pub fn deciding(&self, tag: ProbeTag) -> Option<TraceEvent> {
        deciding(&self.events(tag)).cloned()
    }

    /// Resolves with the event as soon as the probe's opening packet (a SYN or SYN-ACK,
    /// a UDP datagram, an echo request or reply) meets a drop verdict of the user's
    /// rules; never, if it does not. A reject does not resolve it: the probe gets its
    /// answer (a reset, an ICMP error) by itself.
    ///
    /// A drop of the reply ([`Direction::Reply`]) means the request did arrive.
    pub async fn dropped(&self, tag: ProbeTag) -> TraceEvent {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so an event that comes in between wakes us.
            notified.as_mut().enable();
            if let Some(event) = self.shared.lock().drops.get(&tag) {
                return event.clone();
            }
            notified.await;
        }
    }

    /// Forget what was seen of the probe with `tag`, before sending it again.
    pub fn forget(&self, tag: ProbeTag) {
        let mut state = self.shared.lock();
        state.events.remove(&tag);
        state.drops.remove(&tag);
    }

    /// Whether the kernel had to discard events because we read too slowly: the
    /// events of some probes may be incomplete.
    pub fn lost_events(&self) -> bool {
        self.shared.lock().lost
    }

    /// Events of traced packets that belong to no probe.
    pub fn untied_events(&self) -> usize {
        self.shared.lock().untied
    }

    /// Why the reading task stopped, if it did; no event comes after that.
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// Stop tracing and remove our table, so that a dump taken afterwards shows only
    /// the user's rule set.
    pub async fn close(self) -> Result<(), TraceError> {
        let ns = self.host.name().to_string();
        nft::delete_table(&self.host, "inet", TABLE)
            .await
            .map_err(|source| TraceError::Table { ns: ns.clone(), source })?;
        for (key, previous) in &self.logger {
            self.host
                .run(|| write_sysctl(key, previous))
                .and_then(|r| r)
                .map_err(|source| TraceError::Logger { ns: ns.clone(), source })?;
        }
        Ok(())
    }
}

/// The nft script of our table: replaces any earlier one in one transaction. The
/// chains run before raw (-300), conntrack (-200) and DNAT (-100), so they see every
/// packet as it arrived; output catches what the host itself sends (a probe from the
/// host, a reset a reject rule sends back).
pub(super) fn table_script(tags: &[ProbeTag]) -> String {
    let mut rules = String::new();
    if !tags.is_empty() {
        let mut sorted: Vec<ProbeTag> = tags.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let set = sorted.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
        for field in ["sport", "dport"] {
            rules.push_str(&format!("\t\tmeta l4proto {{ tcp, udp }} th {field} {{ {set} }} meta nftrace set 1\n"));
        }
        rules.push_str(&format!(
            "\t\ticmp type {{ echo-request, echo-reply }} icmp id {{ {set} }} meta nftrace set 1\n"
        ));
        rules.push_str(&format!(
            "\t\ticmpv6 type {{ echo-request, echo-reply }} icmpv6 id {{ {set} }} meta nftrace set 1\n"
        ));
    }
    // inet: the chains see both families.
    let mut script = format!("table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    for (chain, hook) in [("pre", "prerouting"), ("out", "output")] {
        script.push_str(&format!(
            "\tchain {chain} {{\n\t\ttype filter hook {hook} priority raw - 10; policy accept;\n{rules}\t}}\n"
        ));
    }
    script.push_str("}\n");
    script
}

/// A NETLINK_NETFILTER socket in the calling thread's namespace, subscribed to the
/// trace group, non-blocking.
pub(super) fn open_socket() -> io::Result<netlink_sys::Socket> {
    let mut sock = netlink_sys::Socket::new(NETLINK_NETFILTER)?;
    sock.bind(&netlink_sys::SocketAddr::new(0, 0))?;
    sock.add_membership(NFNLGRP_NFTRACE)?;
    sock.set_non_blocking(true)?;
    // A scenario's probes go out at once and every packet makes a dozen events; the
    // default buffer would overflow. FORCE passes over rmem_max, as root may.
    use nix::sys::socket::{setsockopt, sockopt};
    const SIZE: usize = 8 << 20;
    if setsockopt(&sock, sockopt::RcvBufForce, &SIZE).is_err() {
        // Without CAP_NET_ADMIN the kernel caps the size at rmem_max; a smaller buffer
        // still works for small scenarios, and an overflow is reported by the session.
        let _ = setsockopt(&sock, sockopt::RcvBuf, &SIZE);
    }
    Ok(sock)
}

/// Interface index -> name in the calling thread's namespace.
pub(super) fn interface_names() -> HashMap<u32, String> {
    nix::net::if_::if_nameindex()
        .map(|list| list.iter().map(|i| (i.index(), i.name().to_string_lossy().into_owned())).collect())
        .unwrap_or_default()
}

pub(super) async fn read_events(sock: AsyncFd<netlink_sys::Socket>, shared: Arc<Shared>) {
    // Trace messages are well under 1 KiB; one datagram holds one message.
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let mut guard = match sock.readable().await {
            Ok(g) => g,
            Err(e) => {
                shared.lock().failed = Some(e.to_string());
                return;
            }
        };
        loop {
            let got = guard.try_io(|s| s.get_ref().recv(&mut &mut buf[..], 0));
            match got {
                Ok(Ok(n)) => {
                    if shared.ingest(&buf[..n.min(buf.len())], Instant::now()) {
                        shared.notify.notify_waiters();
                    }
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => shared.lock().lost = true,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => {
                    shared.lock().failed = Some(e.to_string());
                    return;
                }
                // Drained: wait for the next readiness.
                Err(_would_block) => break,
            }
        }
    }
}

/// Bind `sock` to NFLOG group 0 in the calling thread's namespace, copying the first
/// [`NFLOG_COPY_RANGE`] bytes of each packet and sending each line at once. Each
/// request is acknowledged synchronously; an error in the acknowledgement (EBUSY:
/// another socket holds the group) fails the bind.
pub(super) fn bind_nflog(sock: &netlink_sys::Socket) -> io::Result<()> {
    let mut mode = NFLOG_COPY_RANGE.to_be_bytes().to_vec();
    mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
    let inet = libc::AF_INET as u8;
    let requests = [
        // A no-op since Linux 3.17; needed before it.
        nflog_config(1, inet, 0, &[nla(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_PF_BIND])]),
        nflog_config(2, inet, NFLOG_DEFAULT_GROUP, &[nla(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])]),
        nflog_config(
            3,
            inet,
            NFLOG_DEFAULT_GROUP,
            &[nla(NFULA_CFG_MODE, &mode), nla(NFULA_CFG_QTHRESH, &1u32.to_be_bytes())],
        ),
    ];
    let mut buf = vec![0u8; 1 << 16];
    for (i, request) in requests.iter().enumerate() {
        let seq = i as u32 + 1;
        sock.send(request, 0)?;
        // The answer is queued before send returns; trace events of other packets may
        // come first.
        'answer: loop {
            let n = sock.recv(&mut &mut buf[..], libc::MSG_DONTWAIT)?;
            let datagram = &buf[..n.min(buf.len())];
            for (ty, payload, got_seq) in messages(datagram) {
                if ty == NLMSG_ERROR && got_seq == seq {
                    let code = payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if code < 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    break 'answer;
                }
            }
        }
    }
    Ok(())
}
