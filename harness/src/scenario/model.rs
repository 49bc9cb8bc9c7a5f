//! The validated scenario: every name resolved to an index, every address parsed and
//! checked. The lab, the probes and the judge read only this; the YAML shape lives in
//! `file.rs` and never leaks past `load`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

/// Where a value sits in its scenario file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// Index into [`Scenario::nodes`]. The host is always [`NodeId::HOST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

impl NodeId {
    pub const HOST: NodeId = NodeId(0);
}

#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file this scenario came from, as given (absolute or relative to the cwd).
    pub path: PathBuf,
    /// Display name: the path under the suite root when known, else the file name.
    pub name: String,
    pub description: Option<String>,
    /// `skip: reason`: the scenario is reported as ignored with this reason.
    pub skip: Option<String>,
    /// IPv6 stays disabled in every lab namespace unless this is true: `ipv6: true`,
    /// or any IPv6 address in the lab.
    pub ipv6: bool,
    /// Default time a probe waits for an answer before calling it dropped.
    pub timeout: Duration,
    /// Send the probes one at a time, in file order, instead of all at once.
    pub sequential: bool,
    /// The host's own setup. The host is also `nodes[0]`.
    pub host: HostSetup,
    /// `nodes[0]` is the host; the rest are in file order.
    pub nodes: Vec<Node>,
    pub rules: RuleSet,
    pub probes: Vec<Probe>,
    pub counters: Vec<CounterExpectation>,
    /// Container networks a live producer creates.
    pub networks: Vec<Network>,
    /// For a contract scenario: the producer whose rules this copy runs.
    pub producer: Option<Producer>,
    /// For a contract scenario: the contract and the statements it checks.
    pub contract: Option<Contract>,
    /// `not_applicable: {producer: reason}`: the statement does not apply to this
    /// producer; the scenario is reported as such and not run.
    pub not_applicable: Option<String>,
}

/// A rule set with the lab it assumes, named in a producers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    pub name: String,
    pub title: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// The contract's name, e.g. `docker-bridge`.
    pub name: String,
    /// The statements of the contract this scenario checks, e.g. `9`, `25`.
    pub statements: Vec<String>,
    pub title: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct HostSetup {
    /// net.ipv4.ip_forward in the host namespace.
    pub forwarding: bool,
    pub bridges: Vec<Bridge>,
    pub uplinks: Vec<Uplink>,
}

#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    /// None for a bridge without an address on the host (Docker's "isolated" mode).
    pub address: Option<Ipv4Net>,
    /// Its IPv6 addresses on the host, in file order.
    pub address6: Vec<Ipv6Net>,
}

/// A veth between the host and one external node.
#[derive(Debug, Clone)]
pub struct Uplink {
    /// Interface name on the host side.
    pub name: String,
    pub address: Ipv4Net,
    pub address6: Vec<Ipv6Net>,
    /// The node whose interface is the other end.
    pub peer: NodeId,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// Empty for the host: its addresses are on its bridges and uplinks.
    pub interfaces: Vec<Interface>,
    /// Extra sysctls, in file order, written under /proc/sys in the node's namespace.
    /// Keys use dots (`net.ipv4.conf.all.route_localnet`).
    pub sysctls: Vec<(String, String)>,
    /// Whether lo comes up. Without it 127.0.0.0/8 is not local to the node, and
    /// packets to it follow the node's routes (the scenario key `loopback: false`).
    pub loopback: bool,
    pub services: Services,
    /// Set for a container: a live producer gives it its interface.
    pub container: Option<Container>,
}

#[derive(Debug, Clone)]
pub struct Interface {
    /// Name inside the node (default `eth0`, `eth1`, ...).
    pub name: String,
    /// Name of the veth end left in the host namespace. For an uplink this is the
    /// uplink's name; for a bridge port it is generated, unique in the host and at
    /// most 15 bytes.
    pub host_side: String,
    pub attach: Attach,
    pub address: Ipv4Net,
    /// Its IPv6 addresses, in file order.
    pub address6: Vec<Ipv6Net>,
    /// Default route of the node, via this interface.
    pub gateway: Option<Ipv4Addr>,
    /// The node's IPv6 default route, via this interface.
    pub gateway6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Index into [`HostSetup::bridges`].
    Bridge(usize),
    /// Index into [`HostSetup::uplinks`].
    Uplink(usize),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    pub tcp: Vec<u16>,
    pub udp: Vec<u16>,
    /// TCP forwarders, as docker-proxy is: listen on a port, connect onwards.
    pub forward: Vec<Forward>,
}

/// A userland TCP proxy: accepts on `port` and connects to `to` from the same node,
/// so the target sees the forwarding node's address as the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub port: u16,
    pub to: std::net::SocketAddrV4,
}

#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Back ends the scenario runs under, in file order; at least one.
    pub backends: Vec<Backend>,
    /// Applied in order: the first replaces what is there, later ones add to it.
    pub files: Vec<RuleFile>,
    /// `ipset restore` files loaded before the rules (sets the rules match on).
    pub ipsets: Vec<PathBuf>,
    /// A real program that writes the rules itself, instead of `files`.
    pub live: Option<Live>,
}

/// A program run inside the lab host to produce the rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// Longest time any one step of the program may take.
    pub timeout: Duration,
    /// The program, with the settings only it takes.
    pub program: Program,
}

/// A live program and its own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    Command {
        /// The program and its arguments; a first word with a '/' is resolved against
        /// the scenario's folder.
        run: Vec<String>,
        /// Files and folders of the machine the command reads; where one cannot be
        /// read (a rootless run), the scenario is ignored with the path.
        reads: Vec<String>,
    },
    Netavark {
        /// The firewall driver (iptables, nftables, firewalld).
        driver: Option<String>,
    },
    Cni,
    Dockerd {
        /// daemon.json settings (`icc`, `userland-proxy`, ...), in file order.
        daemon: Vec<(String, serde_json::Value)>,
        /// ufw command lines, run before dockerd starts.
        commands: Vec<String>,
    },
    Ufw {
        /// Configuration commands, each one command line.
        commands: Vec<String>,
        /// `IPV6=` in /etc/default/ufw: yes or no; unless given, yes in a lab with IPv6.
        ipv6: Option<bool>,
    },
    Firewalld {
        /// Configuration commands, each one command line.
        commands: Vec<String>,
    },
}

impl Program {
    pub fn kind(&self) -> LiveProgram {
        match self {
            Program::Command { .. } => LiveProgram::Command,
            Program::Netavark { .. } => LiveProgram::Netavark,
            Program::Cni => LiveProgram::Cni,
            Program::Dockerd { .. } => LiveProgram::Dockerd,
            Program::Ufw { .. } => LiveProgram::Ufw,
            Program::Firewalld { .. } => LiveProgram::Firewalld,
        }
    }
}

/// Each program's settings, read where any program may be running; a setting the
/// program does not take reads as empty.
impl Live {
    pub fn kind(&self) -> LiveProgram {
        self.program.kind()
    }

    /// `command`: the program and its arguments.
    pub fn run(&self) -> &[String] {
        match &self.program {
            Program::Command { run, .. } => run,
            _ => &[],
        }
    }

    /// `command`: what the command reads of the machine.
    pub fn reads(&self) -> &[String] {
        match &self.program {
            Program::Command { reads, .. } => reads,
            _ => &[],
        }
    }

    /// `netavark`: the firewall driver, when one is named.
    pub fn driver(&self) -> Option<&str> {
        match &self.program {
            Program::Netavark { driver } => driver.as_deref(),
            _ => None,
        }
    }

    /// `dockerd`: daemon.json settings.
    pub fn daemon(&self) -> &[(String, serde_json::Value)] {
        match &self.program {
            Program::Dockerd { daemon, .. } => daemon,
            _ => &[],
        }
    }

    /// `ufw`, `firewalld`, `dockerd`: configuration command lines.
    pub fn commands(&self) -> &[String] {
        match &self.program {
            Program::Dockerd { commands, .. } | Program::Ufw { commands, .. } | Program::Firewalld { commands } => {
                commands
            }
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveProgram {
    Command,
    Netavark,
    Cni,
    Dockerd,
    Ufw,
    Firewalld,
}

impl LiveProgram {
    pub const ALL: [LiveProgram; 6] = [
        LiveProgram::Command,
        LiveProgram::Netavark,
        LiveProgram::Cni,
        LiveProgram::Dockerd,
        LiveProgram::Ufw,
        LiveProgram::Firewalld,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LiveProgram::Command => "command",
            LiveProgram::Netavark => "netavark",
            LiveProgram::Cni => "cni",
            LiveProgram::Dockerd => "dockerd",
            LiveProgram::Ufw => "ufw",
            LiveProgram::Firewalld => "firewalld",
        }
    }

    /// Whether the program wires containers into their networks itself.
    pub fn wires_containers(self) -> bool {
        matches!(self, LiveProgram::Command | LiveProgram::Netavark | LiveProgram::Cni | LiveProgram::Dockerd)
    }
}

/// A container network, as a container engine understands one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    /// The bridge the producer creates in the host.
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// The host's address on the bridge.
    pub gateway: Ipv4Addr,
    /// The network's IPv6 subnet and the host's address in it, for a dual-stack network.
    pub subnet6: Option<Ipv6Net>,
    pub gateway6: Option<Ipv6Addr>,
    /// No way out and no way in (Docker's --internal).
    pub internal: bool,
}

/// A node that a live producer wires into a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Index into [`Scenario::networks`].
    pub network: usize,
    pub address: Ipv4Addr,
    /// On a dual-stack network.
    pub address6: Option<Ipv6Addr>,
    pub publish: Vec<Publish>,
}

/// A published port: `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub udp: bool,
}

#[derive(Debug, Clone)]
pub struct RuleFile {
    /// Resolved against the scenario file's folder.
    pub path: PathBuf,
    pub format: RuleFormat,
    /// The text to load instead of the file's own, when variables were put in.
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleFormat {
    /// iptables-save / iptables-restore text.
    Iptables,
    /// ip6tables-save / ip6tables-restore text: the same syntax, for IPv6.
    Ip6tables,
    /// An `nft -f` script.
    Nft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    IptablesNft,
    IptablesLegacy,
    Nft,
}

#[derive(Debug, Clone)]
pub struct Probe {
    /// Given in the file, or generated: `lan -> 192.0.2.1:8080/tcp`.
    pub name: String,
    pub location: Location,
    pub from: NodeId,
    /// The destination address, resolved from a node name if one was given.
    pub to: IpAddr,
    /// What the file said (`c2` or `192.0.2.1`), for messages.
    pub to_text: String,
    pub proto: Proto,
    pub expect: Expect,
    /// Only for `reached`: the node whose service must answer.
    pub served_by: Option<NodeId>,
    /// Only for `reached`: the source address the answering service must see.
    pub source_seen: Option<SourceSeen>,
    pub timeout: Duration,
    /// Set when this producer is expected to differ from the contract here: why.
    /// The expectation fields above are then the producer's own.
    pub difference: Option<String>,
}

/// How a probe's destination reads in its generated name and in the connectivity
/// table: `c2:80/tcp`, `c2 icmp`, `[fd00::3]:80/tcp`. `to_text` is what the file
/// said, `to` the address it resolved to; a node reached over IPv6 says so, so that
/// probes to one node over both families read apart.
pub fn destination_label(to_text: &str, to: IpAddr, proto: Proto) -> String {
    let literal = to_text.parse::<IpAddr>().is_ok();
    let over = if to.is_ipv6() && !literal { " over ipv6" } else { "" };
    match proto {
        Proto::Icmp => format!("{to_text} icmp{over}"),
        // An IPv6 address before a port is bracketed, as in a URL.
        other if to.is_ipv6() && literal => format!("[{to_text}]:{other}"),
        other => format!("{to_text}:{other}{over}"),
    }
}

/// An address family, as a probe names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(a: IpAddr) -> Family {
        match a {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Icmp,
    Tcp(u16),
    Udp(u16),
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proto::Icmp => f.write_str("icmp"),
            Proto::Tcp(p) => write!(f, "{p}/tcp"),
            Proto::Udp(p) => write!(f, "{p}/udp"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An answer came back.
    Reached,
    /// A TCP reset or an ICMP unreachable came back.
    Refused,
    /// Nothing came back within the timeout.
    Dropped,
}

impl Expect {
    pub fn name(self) -> &'static str {
        match self {
            Expect::Reached => "reached",
            Expect::Refused => "refused",
            Expect::Dropped => "dropped",
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSeen {
    /// Any address of this node.
    Node(NodeId),
    Address(IpAddr),
}

#[derive(Debug, Clone)]
pub struct CounterExpectation {
    pub location: Location,
    /// nft family (`ip`, `inet`, ...); None for iptables tables.
    pub family: Option<String>,
    pub table: String,
    pub chain: String,
    pub rule: RuleSelector,
    pub packets: Count,
    pub bytes: Option<Count>,
}

impl Scenario {
    /// The contract statements this scenario checks, or none.
    pub fn statements(&self) -> &[String] {
        self.contract.as_ref().map(|c| c.statements.as_slice()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSelector {
    /// The rule as the dump prints it after `-A CHAIN ` (iptables) or inside the chain
    /// without its counter (nft). Compared with runs of white space collapsed.
    Text(String),
    /// 1-based position in the chain.
    Position(usize),
    /// The rule's comment (`-m comment --comment X`, or nft `comment "X"`).
    Comment(String),
}

impl std::fmt::Display for RuleSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleSelector::Text(t) => write!(f, "rule `{t}`"),
            RuleSelector::Position(p) => write!(f, "rule #{p}"),
            RuleSelector::Comment(c) => write!(f, "rule with comment {c:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exactly(u64),
    AtLeast(u64),
}

impl Count {
    pub fn accepts(self, value: u64) -> bool {
        match self {
            Count::Exactly(n) => value == n,
            Count::AtLeast(n) => value >= n,
        }
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Count::Exactly(n) => write!(f, "exactly {n}"),
            Count::AtLeast(n) => write!(f, "at least {n}"),
        }
    }
}

impl Scenario {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn host(&self) -> &Node {
        &self.nodes[NodeId::HOST.0]
    }

    /// Every IPv4 address the node owns, in declaration order. For the host: uplinks,
    /// then bridges, then the gateways of container networks.
    pub fn addresses_of(&self, id: NodeId) -> Vec<Ipv4Addr> {
        if id == NodeId::HOST {
            let up = self.host.uplinks.iter().map(|u| u.address.addr());
            let br = self.host.bridges.iter().filter_map(|b| b.address.map(|a| a.addr()));
            let gw = self.networks.iter().map(|n| n.gateway);
            up.chain(br).chain(gw).collect()
        } else if let Some(c) = &self.node(id).container {
            vec![c.address]
        } else {
            self.node(id).interfaces.iter().map(|i| i.address.addr()).collect()
        }
    }

    /// Every IPv6 address the node owns, in the same order.
    pub fn addresses6_of(&self, id: NodeId) -> Vec<Ipv6Addr> {
        if id == NodeId::HOST {
            let up = self.host.uplinks.iter().flat_map(|u| &u.address6);
            let br = self.host.bridges.iter().flat_map(|b| &b.address6);
            let gw = self.networks.iter().filter_map(|n| n.gateway6);
            up.chain(br).map(|a| a.addr()).chain(gw).collect()
        } else if let Some(c) = &self.node(id).container {
            c.address6.into_iter().collect()
        } else {
            self.node(id).interfaces.iter().flat_map(|i| &i.address6).map(|a| a.addr()).collect()
        }
    }

    /// Every address of the node, both families, IPv4 first.
    pub fn ip_addresses_of(&self, id: NodeId) -> Vec<IpAddr> {
        let v4 = self.addresses_of(id).into_iter().map(IpAddr::V4);
        v4.chain(self.addresses6_of(id).into_iter().map(IpAddr::V6)).collect()
    }

    /// The node that owns `addr`, if any.
    pub fn owner_of(&self, addr: Ipv4Addr) -> Option<NodeId> {
        (0..self.nodes.len()).map(NodeId).find(|&id| self.addresses_of(id).contains(&addr))
    }

    /// The node that owns `addr`, of either family, if any.
    pub fn owner_of_ip(&self, addr: IpAddr) -> Option<NodeId> {
        match addr {
            IpAddr::V4(a) => self.owner_of(a),
            IpAddr::V6(a) => (0..self.nodes.len()).map(NodeId).find(|&id| self.addresses6_of(id).contains(&a)),
        }
    }
}
