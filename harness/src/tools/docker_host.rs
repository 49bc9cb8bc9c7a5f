//! `netconform init --docker`: a ready-to-edit scenario from a running Docker host.
//! The Docker CLI (which honours DOCKER_HOST) tells the bridge networks, the running
//! containers and their published ports; `iptables-save` gives the rules Docker (and
//! whatever else runs there) wrote; `ip` gives the host's uplink. Everything is only
//! read. The scenario rebuilds that host in a lab: Docker's bridges with their gateway
//! addresses, the uplink with `lan`, a machine on the host's network, one node per
//! container with its addresses and default route, services on the published
//! container ports, and starter probes: each published port from `lan`, each pair of
//! networks for isolation, each network's way out. The rules go to a file beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;

use ipnet::Ipv4Net;
use serde::Deserialize;

/// Where to read the host from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The Docker CLI.
    pub docker: String,
    /// The program that prints the rules (`iptables-save`, `iptables-legacy-save`).
    pub iptables_save: String,
    /// Read rules, routes and addresses inside this network namespace (a path such
    /// as /proc/PID/ns/net) instead of this machine's own.
    pub netns: Option<PathBuf>,
}

/// A Docker bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerNetwork {
    pub name: String,
    pub id: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub internal: bool,
}

/// A container's place on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Index into [`Capture::networks`].
    pub network: usize,
    pub address: Ipv4Net,
    /// The gateway Docker gives the container on this network, if any.
    pub gateway: Option<Ipv4Addr>,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binding {
    pub container_port: u16,
    pub udp: bool,
    /// None for every address (0.0.0.0).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerContainer {
    pub name: String,
    /// In network name order, which is the order Docker picks a default gateway in.
    pub endpoints: Vec<Endpoint>,
    pub bindings: Vec<Binding>,
}

/// The host's interface towards its network, and its router there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    pub address: Ipv4Net,
    pub router: Option<Ipv4Addr>,
}

/// What was read from the host.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    pub docker_version: String,
    pub networks: Vec<DockerNetwork>,
    pub containers: Vec<DockerContainer>,
    /// Networks and containers left out, with why.
    pub skipped: Vec<String>,
    /// `iptables-save` output.
    pub rules: String,
    pub uplink: Option<Uplink>,
    pub forwarding: bool,
    /// When it was read, RFC 3339.
    pub when: String,
}

// ---- Docker's JSON, as much of it as is read ----

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkJson {
    name: String,
    id: String,
    driver: String,
    #[serde(default)]
    internal: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamJson>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamJson {
    config: Option<Vec<IpamConfigJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamConfigJson {
    subnet: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerJson {
    name: String,
    host_config: Option<HostConfigJson>,
    network_settings: Option<NetworkSettingsJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfigJson {
    network_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkSettingsJson {
    ports: Option<BTreeMap<String, Option<Vec<BindingJson>>>>,
    networks: Option<BTreeMap<String, EndpointJson>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BindingJson {
    host_ip: Option<String>,
    host_port: Option<String>,
}

#[derive(Deserialize)]
struct EndpointJson {
    #[serde(rename = "NetworkID")]
    network_id: Option<String>,
    #[serde(rename = "IPAddress")]
    ip_address: Option<String>,
    #[serde(rename = "IPPrefixLen")]
    ip_prefix_len: Option<u8>,
    #[serde(rename = "Gateway")]
    gateway: Option<String>,
}

/// Bridge networks from `docker network inspect` output; other drivers are listed in
/// `skipped`.
pub fn parse_networks(json: &str, skipped: &mut Vec<String>) -> Result<Vec<DockerNetwork>, String> {
    let list: Vec<NetworkJson> =
        serde_json::from_str(json).map_err(|e| format!("reading `docker network inspect` output: {e}"))?;
    let mut out = Vec::new();
    for n in list {
        if n.driver != "bridge" {
            if !["host", "null"].contains(&n.driver.as_str()) {
                skipped.push(format!("network {} (driver {}): only bridge networks are rebuilt", n.name, n.driver));
            }
            continue;
        }
        let configs = n.ipam.and_then(|i| i.config).unwrap_or_default();
        let v4 = configs.iter().find_map(|c| {
            let subnet: Ipv4Net = c.subnet.as_deref()?.parse().ok()?;
            let gateway = match c.gateway.as_deref() {
                Some(g) => g.parse().ok()?,
                None => subnet.hosts().next()?,
            };
            Some((subnet.trunc(), gateway))
        });
        let Some((subnet, gateway)) = v4 else {
            skipped.push(format!("network {}: no IPv4 subnet", n.name));
            continue;
        };
        let options = n.options.unwrap_or_default();
        let bridge = options
            .get("com.docker.network.bridge.name")
            .cloned()
            .unwrap_or_else(|| format!("br-{}", n.id.chars().take(12).collect::<String>()));
        out.push(DockerNetwork { name: n.name, id: n.id, bridge, subnet, gateway, internal: n.internal });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Containers from `docker inspect` output, on `networks`.
pub fn parse_containers(
    json: &str,
    networks: &[DockerNetwork],
    skipped: &mut Vec<String>,
) -> Result<Vec<DockerContainer>, String> {
    let list: Vec<ContainerJson> =
        serde_json::from_str(json).map_err(|e| format!("reading `docker inspect` output: {e}"))?;
    let mut out = Vec::new();
    for c in list {
        let name = c.name.trim_start_matches('/').to_string();
        let mode = c.host_config.and_then(|h| h.network_mode).unwrap_or_default();
        if mode == "host" || mode == "none" || mode.starts_with("container:") {
            skipped.push(format!("container {name}: network mode {mode}, no network of its own to rebuild"));
            continue;
        }
        let settings = c.network_settings.unwrap_or(NetworkSettingsJson { ports: None, networks: None });
        let mut endpoints = Vec::new();
        for (net_name, ep) in settings.networks.unwrap_or_default() {
            let network = networks
                .iter()
                .position(|n| Some(&n.id) == ep.network_id.as_ref())
                .or_else(|| networks.iter().position(|n| n.name == net_name));
            let address = ep.ip_address.as_deref().filter(|a| !a.is_empty()).and_then(|a| a.parse::<Ipv4Addr>().ok());
            match (network, address) {
                (Some(network), Some(addr)) => {
                    let prefix = ep.ip_prefix_len.unwrap_or(networks[network].subnet.prefix_len());
                    let address = Ipv4Net::new(addr, prefix).map_err(|e| format!("container {name}: {e}"))?;
                    let gateway = ep.gateway.as_deref().and_then(|g| g.parse().ok());
                    endpoints.push(Endpoint { network, address, gateway });
                }
                _ => skipped.push(format!("container {name}: its place on network {net_name} is not rebuilt")),
            }
        }
        if endpoints.is_empty() {
            skipped.push(format!("container {name}: on no bridge network"));
            continue;
        }
        endpoints.sort_by(|a, b| networks[a.network].name.cmp(&networks[b.network].name));
        let mut bindings = BTreeSet::new();
        for (port, list) in settings.ports.unwrap_or_default() {
            let Some((number, proto)) = port.split_once('/') else { continue };
            let (Ok(container_port), udp) = (number.parse::<u16>(), proto == "udp") else { continue };
            if proto != "tcp" && proto != "udp" {
                continue;
            }
            for b in list.unwrap_or_default() {
                let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) else { continue };
                let host_ip = match b.host_ip.as_deref().unwrap_or("") {
                    "" | "0.0.0.0" => None,
                    ip => match ip.parse::<IpAddr>() {
                        Ok(IpAddr::V4(v4)) => Some(v4),
                        // The IPv6 twin of a binding; the lab is IPv4.
                        _ => continue,
                    },
                };
                bindings.insert(Binding { container_port, udp, host_ip, host_port });
            }
        }
        out.push(DockerContainer { name, endpoints, bindings: bindings.into_iter().collect() });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The uplink from `ip -o -4 route show default` and `ip -o -4 addr show`: the
/// default route's interface, else the first other interface with a global address
/// that is not Docker's.
pub fn parse_uplink(routes: &str, addrs: &str, docker_bridges: &[&str]) -> Option<Uplink> {
    let mut via = None;
    let mut dev = None;
    for line in routes.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"default") {
            continue;
        }
        for pair in words.windows(2) {
            match pair[0] {
                "via" => via = via.or_else(|| pair[1].parse::<Ipv4Addr>().ok()),
                "dev" => dev = dev.or(Some(pair[1].to_string())),
                _ => {}
            }
        }
        break;
    }
    let mut candidates = Vec::new();
    for line in addrs.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(inet)) = (words.get(1), words.iter().position(|w| *w == "inet")) else { continue };
        let name = name.trim_end_matches(':').split('@').next().unwrap_or_default().to_string();
        let Some(address) = words.get(inet + 1).and_then(|a| a.parse::<Ipv4Net>().ok()) else { continue };
        let global = words.windows(2).any(|w| w[0] == "scope" && w[1] == "global");
        if !global || name == "lo" || name.starts_with("veth") || docker_bridges.contains(&name.as_str()) {
            continue;
        }
        candidates.push((name, address));
    }
    let chosen =
        dev.as_ref().and_then(|d| candidates.iter().find(|(n, _)| n == d)).or_else(|| candidates.first()).cloned()?;
    let router = via.filter(|v| chosen.1.contains(v) && *v != chosen.1.addr());
    Some(Uplink { name: chosen.0, address: chosen.1, router })
}

/// Which back end wrote `rules`, from iptables-save's header.
pub fn backend_of(rules: &str) -> &'static str {
    let header = rules.lines().find(|l| l.starts_with("# Generated by")).unwrap_or("");
    if header.contains("nf_tables") {
        "iptables-nft"
    } else {
        "iptables-legacy"
    }
}

/// `rules` ready to load in a lab: chain counters zeroed (the host's traffic is not
/// the lab's), the rest as read.
pub fn rules_file(rules: &str) -> String {
    let mut out = String::new();
    for line in rules.lines() {
        if line.starts_with(':') {
            if let Some(open) = line.rfind(" [") {
                out.push_str(&line[..open]);
                out.push_str(" [0:0]\n");
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Reads the host through `source`.
pub fn capture(source: &Source) -> Result<Capture, String> {
    let docker = |args: &[&str]| run(&source.docker, args, None);
    let docker_version = docker(&["version", "--format", "{{.Server.Version}}"])?.trim().to_string();
    let mut skipped = Vec::new();
    let ids = docker(&["network", "ls", "--quiet", "--no-trunc"])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let networks = if ids.is_empty() {
        Vec::new()
    } else {
        let mut args = vec!["network", "inspect"];
        args.extend(&ids);
        parse_networks(&docker(&args)?, &mut skipped)?
    };
    let ids = docker(&["ps", "--quiet", "--no-trunc"])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let containers = if ids.is_empty() {
        Vec::new()
    } else {
        let mut args = vec!["inspect", "--type", "container"];
        args.extend(&ids);
        parse_containers(&docker(&args)?, &networks, &mut skipped)?
    };
    let netns = source.netns.as_ref();
    let rules = run(&source.iptables_save, &[], netns)?;
    let routes = run("ip", &["-o", "-4", "route", "show", "default"], netns)?;
    let addrs = run("ip", &["-o", "-4", "addr", "show"], netns)?;
    let bridges: Vec<&str> = networks.iter().map(|n| n.bridge.as_str()).collect();
    let uplink = parse_uplink(&routes, &addrs, &bridges);
    let forwarding = run("cat", &["/proc/sys/net/ipv4/ip_forward"], netns)?.trim() == "1";
    let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    Ok(Capture { docker_version, networks, containers, skipped, rules, uplink, forwarding, when })
}

/// What `program args` prints; run inside `netns` with nsenter when given.
fn run(program: &str, args: &[&str], netns: Option<&PathBuf>) -> Result<String, String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("--").arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args);
    let shown = format!("{program} {}", args.join(" "));
    let out = cmd.output().map_err(|e| format!("running {}: {e}", shown.trim()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            shown.trim(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{}: output is not UTF-8", shown.trim()))
}

/// The scenario's pieces, as written.
#[derive(Debug, Clone)]
pub struct Written {
    pub scenario: String,
    pub probes: usize,
}

/// Words YAML reads as something other than a string.
const YAML_WORDS: [&str; 12] = ["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", "nan", "inf"];

/// `s` as a YAML scalar: plain when it is a name that reads as itself, else quoted.
fn scalar(s: &str) -> String {
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && !YAML_WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A name for a container's node: its own when the scenario format takes it.
fn node_name(container: &str, taken: &BTreeSet<String>) -> String {
    let reads_as_address = container.parse::<Ipv4Addr>().is_ok();
    let mut name = if reads_as_address { format!("c-{container}") } else { container.to_string() };
    while taken.contains(&name) {
        name.push('_');
    }
    name
}

/// The lab that stands in for a captured host: the names and addresses every part of
/// the scenario refers to.
struct Layout<'c> {
    capture: &'c Capture,
    uplink: Uplink,
    host_addr: Ipv4Addr,
    /// The machine on the host's network: the router when its address is free.
    lan_addr: Ipv4Addr,
    host_name: &'static str,
    lan: String,
    /// One node name per container, in capture order.
    names: Vec<String>,
}

impl<'c> Layout<'c> {
    fn new(capture: &'c Capture) -> Layout<'c> {
        const FALLBACK: (&str, &str) = ("eno1", "192.0.2.1/24");
        let uplink = capture.uplink.clone().unwrap_or_else(|| Uplink {
            name: FALLBACK.0.into(),
            address: FALLBACK.1.parse().expect("a valid address"),
            router: None,
        });
        let host_addr = uplink.address.addr();
        let taken_addresses: BTreeSet<Ipv4Addr> = capture
            .containers
            .iter()
            .flat_map(|c| c.endpoints.iter().map(|e| e.address.addr()))
            .chain(capture.networks.iter().map(|n| n.gateway))
            .chain([host_addr])
            .collect();
        let lan_addr = uplink
            .router
            .filter(|r| !taken_addresses.contains(r))
            .or_else(|| uplink.address.hosts().find(|h| !taken_addresses.contains(h)))
            .unwrap_or(host_addr);

        // Node names: the host, lan, then one per container.
        let mut taken: BTreeSet<String> = BTreeSet::new();
        let host_name = if capture.containers.iter().any(|c| c.name == "host") { "docker-host" } else { "host" };
        taken.insert(host_name.to_string());
        let lan = node_name("lan", &taken);
        taken.insert(lan.clone());
        let names: Vec<String> = capture
            .containers
            .iter()
            .map(|c| {
                let n = node_name(&c.name, &taken);
                taken.insert(n.clone());
                n
            })
            .collect();
        Layout { capture, uplink, host_addr, lan_addr, host_name, lan, names }
    }

    /// Docker's default route: the first network by name that has a gateway, internal
    /// networks last.
    fn gateway_of(&self, c: &DockerContainer) -> Option<usize> {
        let with_gw = |internal: bool| {
            c.endpoints
                .iter()
                .position(|e| e.gateway.is_some() && self.capture.networks[e.network].internal == internal)
        };
        with_gw(false).or_else(|| with_gw(true))
    }

    /// The network a container's traffic to other networks leaves through.
    fn leaves_by(&self, c: &DockerContainer) -> Option<usize> {
        self.gateway_of(c).map(|g| c.endpoints[g].network)
    }
}

/// The starter checks, as YAML list items, with comments on what could not be probed.
#[derive(Default)]
struct Starters {
    probes: Vec<String>,
    counters: Vec<String>,
    comments: Vec<String>,
}

/// The scenario for `capture`, loading its rules from `rules_path` (relative to the
/// scenario).
pub fn render(capture: &Capture, rules_path: &str) -> Written {
    let layout = Layout::new(capture);
    let mut y = String::new();
    write_description(&layout, &mut y);
    write_host(&layout, &mut y);
    write_nodes(&layout, &mut y);
    y.push_str(&format!("\nrules:\n  backends: [{}]\n  files: [{}]\n", backend_of(&capture.rules), scalar(rules_path)));

    let mut starters = Starters::default();
    published_probes(&layout, &mut starters);
    isolation_probes(&layout, &mut starters);
    way_out_probes(&layout, &mut starters);
    write_starters(&starters, &mut y);
    Written { scenario: y, probes: starters.probes.len() }
}

/// The header comment, the description and what was left out.
fn write_description(layout: &Layout, y: &mut String) {
    let capture = layout.capture;
    let published: usize = capture.containers.iter().map(|c| c.bindings.len()).sum();
    y.push_str(
        "# Written by `netconform init --docker`. Check it with `netconform check`, run it with\n\
         # `netconform run`; neither touches the Docker host.\ndescription: >\n",
    );
    y.push_str(&wrap(&format!(
        "The Docker host as `netconform init --docker` read it at {} (Docker {}, {} bridge \
         networks, {} running containers, {} published ports; rules from {}). The lab stands \
         in for it: Docker's bridges with their gateway addresses, one node per container, and \
         {}, a machine on the host's network behind {}. Add what your policy promises, such \
         as \"only 203.0.113.0/24 reaches 8080\", as probes.",
        capture.when,
        if capture.docker_version.is_empty() { "unknown" } else { &capture.docker_version },
        capture.networks.len(),
        capture.containers.len(),
        published,
        if backend_of(&capture.rules) == "iptables-nft" {
            "iptables-save (nf_tables)"
        } else {
            "iptables-save (legacy)"
        },
        layout.lan,
        layout.uplink.name,
    )));
    for s in &capture.skipped {
        y.push_str(&format!("# Left out: {s}\n"));
    }
}

/// `host:`: forwarding, one bridge per Docker network, the uplink.
fn write_host(layout: &Layout, y: &mut String) {
    let capture = layout.capture;
    y.push_str("\nhost:\n");
    if layout.host_name != "host" {
        y.push_str(&format!("  name: {}\n", layout.host_name));
    }
    y.push_str(&format!("  forwarding: {}\n", capture.forwarding));
    if !capture.networks.is_empty() {
        y.push_str("  bridges:\n");
        for n in &capture.networks {
            let internal = if n.internal { ", internal" } else { "" };
            y.push_str(&format!(
                "    {}: {{ address: {}/{} }}  # network {}{internal}\n",
                scalar(&n.bridge),
                n.gateway,
                n.subnet.prefix_len(),
                n.name
            ));
        }
    }
    y.push_str("  uplinks:\n");
    let note = if capture.uplink.is_none() { "  # no uplink found on the host: a stand-in" } else { "" };
    y.push_str(&format!("    {}: {{ address: {} }}{note}\n", scalar(&layout.uplink.name), layout.uplink.address));
    y.push_str("  # docker-proxy serves published ports on the host's own addresses (127.0.0.1 too);\n");
    y.push_str("  # a `forward` service stands in for it: services: { forward: [{ port: 8080, to: IP:80 }] }\n");
}

/// `nodes:`: the LAN machine, then each container with its interfaces and the
/// services on its published ports.
fn write_nodes(layout: &Layout, y: &mut String) {
    let (lan, uplink) = (&layout.lan, &layout.uplink);
    y.push_str("\nnodes:\n");
    y.push_str(&format!("  {lan}:\n    interfaces:\n"));
    y.push_str(&format!(
        "      - {{ uplink: {}, address: {}/{}, gateway: {} }}\n",
        scalar(&uplink.name),
        layout.lan_addr,
        uplink.address.prefix_len(),
        layout.host_addr
    ));
    y.push_str("    services: { tcp: [80], udp: [53] }\n");
    for (c, name) in layout.capture.containers.iter().zip(&layout.names) {
        y.push_str(&format!("  {}:\n    interfaces:\n", scalar(name)));
        let gw = layout.gateway_of(c);
        for (i, e) in c.endpoints.iter().enumerate() {
            let bridge = &layout.capture.networks[e.network].bridge;
            let gateway = match (gw == Some(i), e.gateway) {
                (true, Some(g)) => format!(", gateway: {g}"),
                _ => String::new(),
            };
            y.push_str(&format!("      - {{ bridge: {}, address: {}{gateway} }}\n", scalar(bridge), e.address));
        }
        let ports = |udp: bool| -> Vec<String> {
            let set: BTreeSet<u16> = c.bindings.iter().filter(|b| b.udp == udp).map(|b| b.container_port).collect();
            set.iter().map(u16::to_string).collect()
        };
        let (tcp, udp) = (ports(false), ports(true));
        let mut services = Vec::new();
        if !tcp.is_empty() {
            services.push(format!("tcp: [{}]", tcp.join(", ")));
        }
        if !udp.is_empty() {
            services.push(format!("udp: [{}]", udp.join(", ")));
        }
        if !services.is_empty() {
            y.push_str(&format!("    services: {{ {} }}\n", services.join(", ")));
        }
    }
}

/// Published ports, from the LAN, with the DNAT rule each one should count on.
fn published_probes(layout: &Layout, out: &mut Starters) {
    let (capture, lan, host_addr) = (layout.capture, &layout.lan, layout.host_addr);
    for (c, name) in capture.containers.iter().zip(&layout.names) {
        let mut seen = BTreeSet::new();
        for b in &c.bindings {
            let proto = if b.udp { "udp" } else { "tcp" };
            let to = match b.host_ip {
                None => host_addr,
                Some(ip) if ip == host_addr => ip,
                Some(ip) => {
                    out.comments.push(format!(
                        "# {ip}:{}/{proto} -> {}:{} is published on an address the lab's uplink does not have",
                        b.host_port, c.name, b.container_port
                    ));
                    continue;
                }
            };
            if !seen.insert((b.udp, b.host_port)) {
                continue;
            }
            out.probes.push(format!(
                "  - name: \"{lan} reaches {}:{}/{proto} through the host's port {}\"\n    \
                 from: {lan}\n    to: {to}\n    proto: {proto}\n    port: {}\n    expect: reached\n    \
                 served_by: {}\n    source_seen: {lan}\n",
                c.name,
                b.container_port,
                b.host_port,
                b.host_port,
                scalar(name)
            ));
            if let Some(rule) = dnat_rule(&capture.rules, b, c) {
                out.counters.push(format!(
                    "  - table: nat\n    chain: DOCKER\n    rule: '{}'\n    packets: 1\n",
                    rule.replace('\'', "''")
                ));
            }
        }
    }
}

/// Isolation: from a container whose traffic leaves through one network (and that
/// is not on the other) to a container's address on the other.
fn isolation_probes(layout: &Layout, out: &mut Starters) {
    let capture = layout.capture;
    let pick = |from_net: usize, to_net: usize| {
        let from = capture
            .containers
            .iter()
            .position(|c| layout.leaves_by(c) == Some(from_net) && !c.endpoints.iter().any(|e| e.network == to_net))?;
        let (to, ep) = capture.containers.iter().enumerate().find_map(|(i, c)| {
            let ep = c.endpoints.iter().find(|e| e.network == to_net)?;
            (i != from).then_some((i, ep))
        })?;
        Some((from, from_net, to, to_net, ep.address.addr()))
    };
    for (a, na) in capture.networks.iter().enumerate() {
        for (b, nb) in capture.networks.iter().enumerate().skip(a + 1) {
            match pick(a, b).or_else(|| pick(b, a)) {
                Some((from, from_net, to, to_net, addr)) => out.probes.push(format!(
                    "  - name: \"{} ({}) cannot reach {} ({})\"\n    from: {}\n    to: {addr}\n    \
                     proto: icmp\n    expect: dropped\n",
                    capture.containers[from].name,
                    capture.networks[from_net].name,
                    capture.containers[to].name,
                    capture.networks[to_net].name,
                    scalar(&layout.names[from]),
                )),
                None => out.comments.push(format!(
                    "# networks {} and {}: no container on one and not the other to probe isolation with",
                    na.name, nb.name
                )),
            }
        }
    }
}

/// The way out, per network: masqueraded to the host's address, none from an
/// internal network.
fn way_out_probes(layout: &Layout, out: &mut Starters) {
    let (capture, lan, host_addr) = (layout.capture, &layout.lan, layout.host_addr);
    for (i, n) in capture.networks.iter().enumerate() {
        let found = capture.containers.iter().position(|c| layout.leaves_by(c) == Some(i));
        let Some(from) = found else { continue };
        let who = scalar(&layout.names[from]);
        if n.internal {
            out.probes.push(format!(
                "  - name: \"{} on the internal network {} has no way out\"\n    from: {who}\n    \
                 to: {lan}\n    port: 80\n    expect: dropped\n",
                capture.containers[from].name, n.name
            ));
        } else {
            out.probes.push(format!(
                "  - name: \"{} ({}) reaches {lan}, masqueraded\"\n    from: {who}\n    to: {lan}\n    \
                 port: 80\n    expect: reached\n    served_by: {lan}\n    source_seen: {host_addr}\n",
                capture.containers[from].name, n.name
            ));
        }
    }
}

/// `probes:` and `counters:`, after the comments on what was not probed.
fn write_starters(starters: &Starters, y: &mut String) {
    y.push_str("\n# Starter probes: each published port from the LAN, each pair of networks, the way out.\n");
    y.push_str("# A probe that fails tells where the host differs from Docker's defaults.\n");
    for c in &starters.comments {
        y.push_str(c);
        y.push('\n');
    }
    if starters.probes.is_empty() {
        y.push_str("probes: []\n");
    } else {
        y.push_str("probes:\n");
        for p in &starters.probes {
            y.push_str(p);
        }
    }
    if !starters.counters.is_empty() {
        y.push_str("\ncounters:\n");
        for c in &starters.counters {
            y.push_str(c);
        }
    }
}

/// `text` as lines of at most 86 characters, each indented by two spaces.
fn wrap(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 84 {
            out.push_str(&format!("  {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// The nat DOCKER rule that DNATs `b` to `c`, as iptables-save printed it.
fn dnat_rule(rules: &str, b: &Binding, c: &DockerContainer) -> Option<String> {
    let proto = if b.udp { "udp" } else { "tcp" };
    let targets: Vec<String> =
        c.endpoints.iter().map(|e| format!("--to-destination {}:{}", e.address.addr(), b.container_port)).collect();
    let mut table = "";
    let mut found = Vec::new();
    for line in rules.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t;
            continue;
        }
        let Some(rule) = line.strip_prefix("-A DOCKER ") else { continue };
        let words: Vec<&str> = rule.split_whitespace().collect();
        let has = |pair: [&str; 2]| words.windows(2).any(|w| w == pair);
        if table == "nat"
            && has(["-p", proto])
            && has(["--dport", &b.host_port.to_string()])
            && targets.iter().any(|t| rule.ends_with(t.as_str()) || rule.contains(&format!("{t} ")))
        {
            found.push(rule.trim().to_string());
        }
    }
    (found.len() == 1).then(|| found.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docker network inspect` of a Docker 20.10 host: the default bridge (docker0,
    /// from --bip), a user network with its own bridge name, an internal one, and the
    /// host and none networks.
    const NETWORKS: &str = r#"[
      {"Name":"back","Id":"5d22db976d0deda01c7190b7dc619dbc63b0454c40a3662023e6f813be455ef3","Driver":"bridge",
       "EnableIPv6":false,"IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.98.0.0/24","Gateway":"10.98.0.1"}]},
       "Internal":true,"Options":{},"Labels":{}},
      {"Name":"bridge","Id":"94138b5a6adcb8103d816a516ff70bd54dad3f4e7860556d843b47e22ca03413","Driver":"bridge",
       "IPAM":{"Driver":"default","Options":null,"Config":[{"Subnet":"172.18.0.0/16","Gateway":"172.18.0.1"}]},
       "Internal":false,"Options":{"com.docker.network.bridge.default_bridge":"true",
       "com.docker.network.bridge.name":"docker0"}},
      {"Name":"front","Id":"a1c2397f75b65afff17ac03cc81e94d4f35e083a2cbf1a08802efe568f5720a6","Driver":"bridge",
       "IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.99.0.0/24","Gateway":"10.99.0.1"}]},
       "Internal":false,"Options":{"com.docker.network.bridge.name":"br-front"}},
      {"Name":"host","Id":"a3dc","Driver":"host","IPAM":{"Driver":"default","Options":null,"Config":[]},"Internal":false,"Options":{}},
      {"Name":"none","Id":"4c37","Driver":"null","IPAM":{"Driver":"default","Options":null,"Config":[]},"Internal":false,"Options":{}},
      {"Name":"ov","Id":"77","Driver":"overlay","IPAM":{"Config":[{"Subnet":"10.0.9.0/24"}]},"Internal":false,"Options":{}}
    ]"#;

    /// `docker inspect` of three running containers: web on front and back with
    /// published ports (one on loopback only, each with its IPv6 twin), db on the
    /// internal network only, c0 on the default bridge; and one with the host's
    /// network.
    const CONTAINERS: &str = r#"[
      {"Name":"/c0","HostConfig":{"NetworkMode":"default"},"NetworkSettings":{"Ports":{},
       "Networks":{"bridge":{"IPAddress":"172.18.0.2","IPPrefixLen":16,"Gateway":"172.18.0.1",
       "NetworkID":"94138b5a6adcb8103d816a516ff70bd54dad3f4e7860556d843b47e22ca03413"}}}},
      {"Name":"/db","HostConfig":{"NetworkMode":"back"},"NetworkSettings":{"Ports":{"5432/tcp":null},
       "Networks":{"back":{"IPAddress":"10.98.0.2","IPPrefixLen":24,"Gateway":"10.98.0.1",
       "NetworkID":"5d22db976d0deda01c7190b7dc619dbc63b0454c40a3662023e6f813be455ef3"}}}},
      {"Name":"/web","HostConfig":{"NetworkMode":"front"},"NetworkSettings":{"Ports":{
        "53/udp":[{"HostIp":"0.0.0.0","HostPort":"5353"},{"HostIp":"::","HostPort":"5353"}],
        "80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8080"}],
        "9000/tcp":[{"HostIp":"127.0.0.1","HostPort":"9000"}]},
       "Networks":{
        "front":{"IPAddress":"10.99.0.2","IPPrefixLen":24,"Gateway":"10.99.0.1",
         "NetworkID":"a1c2397f75b65afff17ac03cc81e94d4f35e083a2cbf1a08802efe568f5720a6"},
        "back":{"IPAddress":"10.98.0.3","IPPrefixLen":24,"Gateway":"10.98.0.1",
         "NetworkID":"5d22db976d0deda01c7190b7dc619dbc63b0454c40a3662023e6f813be455ef3"}}}},
      {"Name":"/agent","HostConfig":{"NetworkMode":"host"},"NetworkSettings":{"Ports":{},"Networks":{"host":{}}}}
    ]"#;

    const RULES: &str = "# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 14:35:11 2026\n\
        *filter\n:INPUT ACCEPT [12:3456]\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n\
        -A FORWARD -o br-front -j DOCKER\nCOMMIT\n*nat\n:PREROUTING ACCEPT [1:2]\n:DOCKER - [0:0]\n\
        -A DOCKER -d 127.0.0.1/32 ! -i br-front -p tcp -m tcp --dport 9000 -j DNAT --to-destination 10.99.0.2:9000\n\
        -A DOCKER ! -i br-front -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80\n\
        -A DOCKER ! -i br-front -p udp -m udp --dport 5353 -j DNAT --to-destination 10.99.0.2:53\nCOMMIT\n";

    fn capture() -> Capture {
        let mut skipped = Vec::new();
        let networks = parse_networks(NETWORKS, &mut skipped).unwrap();
        let containers = parse_containers(CONTAINERS, &networks, &mut skipped).unwrap();
        Capture {
            docker_version: "20.10.24".into(),
            networks,
            containers,
            skipped,
            rules: RULES.into(),
            uplink: Some(Uplink {
                name: "eth0".into(),
                address: "192.168.1.10/24".parse().unwrap(),
                router: Some("192.168.1.1".parse().unwrap()),
            }),
            forwarding: true,
            when: "2026-11-26T14:35:11Z".into(),
        }
    }

    #[test]
    fn networks_are_bridges_with_their_names_and_gateways() {
        let mut skipped = Vec::new();
        let n = parse_networks(NETWORKS, &mut skipped).unwrap();
        let names: Vec<(&str, &str, bool)> =
            n.iter().map(|n| (n.name.as_str(), n.bridge.as_str(), n.internal)).collect();
        assert_eq!(
            names,
            [("back", "br-5d22db976d0d", true), ("bridge", "docker0", false), ("front", "br-front", false)]
        );
        assert_eq!(n[1].subnet.to_string(), "172.18.0.0/16");
        assert_eq!(n[1].gateway, Ipv4Addr::new(172, 18, 0, 1));
        assert_eq!(skipped, ["network ov (driver overlay): only bridge networks are rebuilt"]);
    }

    #[test]
    fn containers_keep_their_addresses_and_ipv4_bindings() {
        let c = capture();
        let names: Vec<&str> = c.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["c0", "db", "web"]);
        let web = &c.containers[2];
        let nets: Vec<&str> = web.endpoints.iter().map(|e| c.networks[e.network].name.as_str()).collect();
        assert_eq!(nets, ["back", "front"]);
        assert_eq!(web.endpoints[1].address.to_string(), "10.99.0.2/24");
        assert_eq!(
            web.bindings,
            [
                Binding { container_port: 53, udp: true, host_ip: None, host_port: 5353 },
                Binding { container_port: 80, udp: false, host_ip: None, host_port: 8080 },
                Binding { container_port: 9000, udp: false, host_ip: Some(Ipv4Addr::LOCALHOST), host_port: 9000 },
            ]
        );
        assert!(c.containers[1].bindings.is_empty(), "an exposed port without a binding is not published");
        assert!(c.skipped.iter().any(|s| s.starts_with("container agent: network mode host")), "{:?}", c.skipped);
    }

    #[test]
    fn uplink_is_the_default_routes_interface() {
        let routes = "default via 192.168.1.1 dev eth0 proto dhcp src 192.168.1.10 metric 100\n";
        let addrs = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
            2: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\\  valid_lft forever\n\
            3: eth0    inet 192.168.1.10/24 brd 192.168.1.255 scope global dynamic eth0\\  valid_lft 86000sec\n";
        let up = parse_uplink(routes, addrs, &["docker0"]).unwrap();
        assert_eq!(
            up,
            Uplink {
                name: "eth0".into(),
                address: "192.168.1.10/24".parse().unwrap(),
                router: Some(Ipv4Addr::new(192, 168, 1, 1))
            }
        );
        // No default route: the first interface that is not Docker's.
        let up = parse_uplink("", addrs, &["docker0"]).unwrap();
        assert_eq!((up.name.as_str(), up.router), ("eth0", None));
        assert_eq!(parse_uplink("", "1: lo    inet 127.0.0.1/8 scope host lo\n", &[]), None);
    }

    #[test]
    fn rules_keep_their_text_without_the_hosts_counters() {
        let text = rules_file(RULES);
        assert!(text.contains(":INPUT ACCEPT [0:0]\n"), "{text}");
        assert!(text.contains(":PREROUTING ACCEPT [0:0]\n"));
        assert!(text.contains("--dport 8080 -j DNAT --to-destination 10.99.0.2:80\n"));
        assert_eq!(backend_of(RULES), "iptables-nft");
        assert_eq!(backend_of("# Generated by iptables-save v1.8.9 (legacy) on ...\n"), "iptables-legacy");
    }

    #[test]
    fn scenario_has_topology_probes_and_counters() {
        let w = render(&capture(), "rules/docker-host.rules");
        let y = &w.scenario;
        for needle in [
            "    docker0: { address: 172.18.0.1/16 }  # network bridge\n",
            "    br-5d22db976d0d: { address: 10.98.0.1/24 }  # network back, internal\n",
            "    eth0: { address: 192.168.1.10/24 }\n",
            "      - { uplink: eth0, address: 192.168.1.1/24, gateway: 192.168.1.10 }\n",
            "  web:\n    interfaces:\n      - { bridge: br-5d22db976d0d, address: 10.98.0.3/24 }\n      \
             - { bridge: br-front, address: 10.99.0.2/24, gateway: 10.99.0.1 }\n    \
             services: { tcp: [80, 9000], udp: [53] }\n",
            "  db:\n    interfaces:\n      - { bridge: br-5d22db976d0d, address: 10.98.0.2/24, gateway: 10.98.0.1 }\n",
            "  backends: [iptables-nft]\n  files: [rules/docker-host.rules]\n",
            "    to: 192.168.1.10\n    proto: tcp\n    port: 8080\n    expect: reached\n    served_by: web\n",
            "    to: 192.168.1.10\n    proto: udp\n    port: 5353\n",
            "# 127.0.0.1:9000/tcp -> web:9000",
            "  - name: \"c0 (bridge) cannot reach web (front)\"\n    from: c0\n    to: 10.99.0.2\n",
            "  - name: \"db (back) cannot reach c0 (bridge)\"\n    from: db\n    to: 172.18.0.2\n",
            "  - name: \"db (back) cannot reach web (front)\"\n    from: db\n    to: 10.99.0.2\n",
            "  - name: \"c0 (bridge) reaches lan, masqueraded\"\n",
            "  - name: \"db on the internal network back has no way out\"\n    from: db\n    to: lan\n    \
             port: 80\n    expect: dropped\n",
            "    source_seen: 192.168.1.10\n",
            "    rule: '! -i br-front -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.2:80'\n",
            "# Left out: container agent: network mode host",
        ] {
            assert!(y.contains(needle), "missing {needle:?} in:\n{y}");
        }
        assert!(!y.contains("9000/tcp through"), "a loopback-only port is not probed from the LAN:\n{y}");
        assert_eq!(w.probes, 2 + 3 + 3, "{y}");
    }

    #[test]
    fn written_scenario_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("rules/docker-host.rules"), rules_file(RULES)).unwrap();
        let w = render(&capture(), "rules/docker-host.rules");
        let path = dir.path().join("docker-host.yaml");
        std::fs::write(&path, &w.scenario).unwrap();
        let scn = crate::scenario::load(&path, "docker-host.yaml").unwrap_or_else(|e| panic!("{e}\n{}", w.scenario));
        assert_eq!(scn.probes.len(), w.probes);
        assert_eq!(scn.nodes.len(), 5, "host, lan, c0, db, web");
        assert_eq!(scn.counters.len(), 2);
    }

    #[test]
    fn awkward_names_are_quoted_or_renamed() {
        assert_eq!(scalar("web"), "web");
        assert_eq!(scalar("null"), "\"null\"");
        assert_eq!(scalar("1web"), "\"1web\"");
        let mut taken = BTreeSet::new();
        taken.insert("lan".to_string());
        assert_eq!(node_name("lan", &taken), "lan_");
        assert_eq!(node_name("10.0.0.1", &taken), "c-10.0.0.1");
    }

    #[test]
    fn without_an_uplink_a_stand_in_is_written() {
        let mut c = capture();
        c.uplink = None;
        let y = render(&c, "r.rules").scenario;
        assert!(y.contains("    eno1: { address: 192.0.2.1/24 }  # no uplink found"), "{y}");
        assert!(y.contains("      - { uplink: eno1, address: 192.0.2.2/24, gateway: 192.0.2.1 }"), "{y}");
    }
}
