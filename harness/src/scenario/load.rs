//! Loading and validation.
//!
//! A file is read in three passes: serde_yaml's generic loader (syntax errors and
//! duplicate keys), yaml-rust2 for positions (`position.rs`), then serde into the
//! shapes of `file.rs` (types and unknown keys). What parses is then converted into the
//! model, checking everything and collecting every problem found.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;

use super::file::{
    CountText, CounterFile, DurationText, HostFile, Integer, NodeFile, ProbeFile, ScenarioFile,
    ServicesFile, SysctlValue,
};
use super::model::*;
use super::position::{self, item, join, Positions};

/// One problem in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub location: Option<Location>,
    /// Dotted key path, e.g. `probes[2].to` or `nodes.c1.interfaces[0].address`.
    pub key: Option<String>,
    /// What was expected and what was found.
    pub message: String,
}

impl Diagnostic {
    pub fn new(path: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            path: path.to_path_buf(),
            location: None,
            key: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.location {
            write!(f, ":{}:{}", l.line, l.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found in one or more files; Display prints one Diagnostic per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for InputError {
    fn from(d: Diagnostic) -> InputError {
        InputError {
            diagnostics: vec![d],
        }
    }
}

impl From<Vec<Diagnostic>> for InputError {
    fn from(diagnostics: Vec<Diagnostic>) -> InputError {
        InputError { diagnostics }
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// IFNAMSIZ minus the terminating NUL.
const MAX_IFNAME: usize = 15;
const IPTABLES_TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];
const NFT_FAMILIES: [&str; 6] = ["ip", "ip6", "inet", "arp", "bridge", "netdev"];
/// The family nft assumes when a table is named without one.
const NFT_DEFAULT_FAMILY: &str = "ip";

/// Load and validate one scenario file; `name` becomes [`Scenario::name`]. Reads the
/// file and checks that its rule files exist; creates nothing.
pub fn load(path: &Path, name: &str) -> Result<Scenario, InputError> {
    let text = fs::read_to_string(path)
        .map_err(|e| Diagnostic::new(path, format!("cannot read the scenario file: {e}")))?;
    load_text(path, name, &text)
}

/// [`load`] with the text already read; rule files are still looked up next to `path`.
fn load_text(path: &Path, name: &str, text: &str) -> Result<Scenario, InputError> {
    let (file, positions) = parse(path, text)?;
    let mut c = Checker {
        path,
        pos: &positions,
        diagnostics: Vec::new(),
    };
    if !positions.contains("") {
        c.push(
            None,
            "",
            "the file holds no YAML document; a scenario needs at least `host` and `rules`",
        );
        return Err(c.diagnostics.into());
    }
    let scenario = convert(&mut c, path, name, file);
    if c.diagnostics.is_empty() {
        Ok(scenario)
    } else {
        let mut diagnostics = c.diagnostics;
        diagnostics.sort_by_key(|d| d.location.map(|l| (l.line, l.column)));
        Err(diagnostics.into())
    }
}

/// Expand files and folders into (path, display name) pairs sorted by name.
///
/// Folders are searched recursively for `*.yaml` and `*.yml`, skipping folders named
/// `rules`. For a folder argument F the name is the path relative to F when F is named
/// `scenarios`, else relative to F's parent. For a file argument it is the path
/// relative to the nearest ancestor named `scenarios`, else the file name. A path that
/// does not exist is an error; finding nothing is not.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, InputError> {
    let mut diagnostics = Vec::new();
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    for arg in paths {
        let meta = match fs::metadata(arg) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                diagnostics.push(Diagnostic::new(arg, "no such file or folder"));
                continue;
            }
            Err(e) => {
                diagnostics.push(Diagnostic::new(arg, format!("cannot read: {e}")));
                continue;
            }
        };
        let real = fs::canonicalize(arg).unwrap_or_else(|_| arg.clone());
        if meta.is_dir() {
            let prefix = match real.file_name() {
                Some(n) if n != "scenarios" => PathBuf::from(n),
                _ => PathBuf::new(),
            };
            walk(arg, Path::new(""), &prefix, &mut found, &mut diagnostics);
        } else {
            let name = real
                .ancestors()
                .skip(1)
                .find(|a| a.file_name().is_some_and(|n| n == "scenarios"))
                .and_then(|root| real.strip_prefix(root).ok())
                .map(Path::to_path_buf)
                .or_else(|| real.file_name().map(PathBuf::from))
                .unwrap_or_else(|| arg.clone());
            found.push((arg.clone(), name.to_string_lossy().into_owned()));
        }
    }
    if !diagnostics.is_empty() {
        return Err(diagnostics.into());
    }
    // The same file given twice (a folder and a file in it) is run once.
    let mut seen = HashSet::new();
    found.retain(|(p, _)| seen.insert(fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    found.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    Ok(found)
}

fn walk(
    root: &Path,
    rel: &Path,
    prefix: &Path,
    found: &mut Vec<(PathBuf, String)>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let dir = root.join(rel);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            diagnostics.push(Diagnostic::new(
                &dir,
                format!("cannot read the folder: {e}"),
            ));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                diagnostics.push(Diagnostic::new(
                    &dir,
                    format!("cannot read the folder: {e}"),
                ));
                continue;
            }
        };
        let rel = rel.join(entry.file_name());
        let path = root.join(&rel);
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            if entry.file_name() != "rules" {
                walk(root, &rel, prefix, found, diagnostics);
            }
            continue;
        }
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            let name = prefix.join(&rel).to_string_lossy().into_owned();
            found.push((path, name));
        }
    }
}

/// The three parsing passes; any failure here ends the file's checks.
fn parse(path: &Path, text: &str) -> Result<(ScenarioFile, Positions), InputError> {
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        let positions = Positions::parse(text).unwrap_or_default();
        if !positions.duplicates().is_empty() {
            return Err(duplicates(path, &positions).into());
        }
        return Err(serde_error(path, &positions, e).into());
    }
    let positions = Positions::parse(text).map_err(|e| Diagnostic {
        path: path.to_path_buf(),
        location: Some(e.location),
        key: None,
        message: e.message,
    })?;
    if !positions.duplicates().is_empty() {
        return Err(duplicates(path, &positions).into());
    }
    let file = serde_yaml::from_str(text).map_err(|e| serde_error(path, &positions, e))?;
    Ok((file, positions))
}

fn duplicates(path: &Path, positions: &Positions) -> Vec<Diagnostic> {
    positions
        .duplicates()
        .iter()
        .map(|d| Diagnostic {
            path: path.to_path_buf(),
            location: Some(d.second),
            key: Some(d.path.clone()),
            message: format!(
                "duplicate key `{}`: it already appears at line {} column {}",
                d.key, d.first.line, d.first.column
            ),
        })
        .collect()
}

/// Turn a serde_yaml error into a Diagnostic: its position, the key path it names, and
/// the rest of its message.
fn serde_error(path: &Path, positions: &Positions, e: serde_yaml::Error) -> Diagnostic {
    let location = e.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    });
    let mut message = e.to_string();
    if let Some(l) = location {
        let suffix = format!(" at line {} column {}", l.line, l.column);
        if let Some(i) = message.find(&suffix) {
            message.replace_range(i..i + suffix.len(), "");
        }
    }
    if message.starts_with("deserializing from YAML containing more than one document") {
        message = "expected one YAML document, found more than one".to_string();
    }
    let mut key = None;
    if let Some(i) = message
        .match_indices(": ")
        .map(|(i, _)| i)
        .find(|&i| positions.contains(&message[..i]))
    {
        key = Some(message[..i].to_string());
        message = message[i + 2..].to_string();
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            key = Some(join(key.as_deref().unwrap_or(""), &rest[..end]));
            message = format!("unknown key `{rest}");
        }
    }
    Diagnostic {
        path: path.to_path_buf(),
        location,
        key,
        message,
    }
}

/// Collects diagnostics, placing each with the position index.
struct Checker<'a> {
    path: &'a Path,
    pos: &'a Positions,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn push(&mut self, location: Option<Location>, key: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            path: self.path.to_path_buf(),
            location,
            key: (!key.is_empty()).then(|| key.to_string()),
            message: message.into(),
        });
    }

    /// A problem with the value at `key`; for a missing key, placed at the mapping
    /// that should hold it.
    fn value(&mut self, key: &str, message: impl Into<String>) {
        self.push(self.pos.value(key), key, message);
    }

    /// A problem with the key itself (a name that is wrong, or a key that must go).
    fn key(&mut self, key: &str, message: impl Into<String>) {
        self.push(self.pos.key(key), key, message);
    }

    /// A required value is absent (or written but empty).
    fn missing(&mut self, key: &str, expected: &str) {
        if self.pos.contains(key) {
            self.value(key, format!("expected {expected}, found an empty value"));
        } else {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            self.value(
                key,
                format!("missing required key `{leaf}`: expected {expected}"),
            );
        }
    }

    /// A required, non-empty list.
    fn list<'l, T>(&mut self, key: &str, list: &'l Option<Vec<T>>, expected: &str) -> &'l [T] {
        match list {
            None => {
                self.missing(key, expected);
                &[]
            }
            Some(v) if v.is_empty() => {
                self.value(key, format!("expected {expected}, found an empty list"));
                &[]
            }
            Some(v) => v,
        }
    }

    fn duration(&mut self, key: &str, text: &DurationText) -> Option<Duration> {
        let text = text.0.trim();
        match humantime::parse_duration(text) {
            Err(e) => {
                self.value(
                    key,
                    format!(
                        "expected a duration such as \"200ms\" or \"1s\", found `{text}` ({e})"
                    ),
                );
                None
            }
            Ok(d) if d.is_zero() || d > MAX_TIMEOUT => {
                self.value(
                    key,
                    format!("expected a duration greater than 0 and at most 60s, found `{text}`"),
                );
                None
            }
            Ok(d) => Some(d),
        }
    }

    /// An interface address: IPv4 with a prefix length, not the network or broadcast
    /// address of its subnet.
    fn cidr(&mut self, key: &str, text: &str) -> Option<Ipv4Net> {
        let expected = "an IPv4 address with a prefix length such as 192.168.0.2/20";
        let net = match text.parse::<Ipv4Net>() {
            Ok(net) => net,
            Err(_) if text.parse::<Ipv4Addr>().is_ok() => {
                self.value(
                    key,
                    format!("expected {expected}, found `{text}` without a prefix length"),
                );
                return None;
            }
            Err(_) => {
                self.value(key, format!("expected {expected}, found `{text}`"));
                return None;
            }
        };
        if net.prefix_len() < 31 {
            let what = if net.addr() == net.network() {
                Some("network")
            } else if net.addr() == net.broadcast() {
                Some("broadcast")
            } else {
                None
            };
            if let Some(what) = what {
                self.value(
                    key,
                    format!(
                        "expected a host address, found `{text}`, the {what} address of {}",
                        net.trunc()
                    ),
                );
                return None;
            }
        }
        Some(net)
    }

    fn address(&mut self, key: &str, text: &str) -> Option<Ipv4Addr> {
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.value(
                    key,
                    format!("expected an IPv4 address such as 192.168.0.1, found `{text}`"),
                );
                None
            }
        }
    }

    /// A Linux interface name. `at_key`: the name is a mapping key rather than a value.
    fn ifname(&mut self, key: &str, name: &str, at_key: bool) {
        let problem = if name.is_empty() {
            Some("expected an interface name, found an empty string".to_string())
        } else if name.len() > MAX_IFNAME {
            Some(format!(
                "interface names are at most {MAX_IFNAME} bytes; `{name}` is {} bytes",
                name.len()
            ))
        } else if name == "." || name == ".." {
            Some(format!("`{name}` is not a valid interface name"))
        } else if name.contains(['/', ':']) || name.contains(char::is_whitespace) {
            Some(format!(
                "an interface name has no '/', ':' or white space; found `{name}`"
            ))
        } else if name == "lo" {
            Some(
                "`lo` is the loopback interface that every namespace has; pick another name"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(p) = problem {
            if at_key {
                self.key(key, p);
            } else {
                self.value(key, p);
            }
        }
    }

    /// A node name (the host's or a mapping key under `nodes`).
    fn node_name(&mut self, key: &str, name: &str, at_key: bool) {
        let problem = if name.is_empty() {
            Some("expected a node name, found an empty string".to_string())
        } else if name == "." || name == ".." {
            Some(format!("`{name}` is not a valid node name"))
        } else if name.contains(['/', ':']) || name.contains(char::is_whitespace) {
            Some(format!(
                "a node name has no '/', ':' or white space; found `{name}`"
            ))
        } else if name.parse::<Ipv4Addr>().is_ok() {
            Some(format!(
                "`{name}` reads as an IPv4 address, and probes take node names and addresses \
                 in the same places; pick a name that is not an address"
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            if at_key {
                self.key(key, p);
            } else {
                self.value(key, p);
            }
        }
    }

    fn sysctls(
        &mut self,
        key: &str,
        map: Option<&indexmap::IndexMap<String, SysctlValue>>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in map.into_iter().flatten() {
            let k = join(key, name);
            let well_formed = name.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
            });
            if !well_formed {
                self.key(
                    &k,
                    format!(
                        "expected a sysctl key of lowercase letters, digits, '_' and '-' joined \
                         by dots, such as net.ipv4.conf.all.rp_filter; found `{name}`"
                    ),
                );
            } else if !name.starts_with("net.") {
                self.key(
                    &k,
                    format!(
                        "expected a net.* sysctl: only those belong to a network namespace, \
                         and `{name}` would change the whole machine"
                    ),
                );
            } else {
                out.push((name.clone(), value.0.clone()));
            }
        }
        out
    }

    fn services(&mut self, key: &str, services: Option<&ServicesFile>) -> Services {
        let mut out = Services::default();
        if let Some(s) = services {
            out.tcp = self.ports(&join(key, "tcp"), s.tcp.as_deref().unwrap_or_default());
            out.udp = self.ports(&join(key, "udp"), s.udp.as_deref().unwrap_or_default());
        }
        out
    }

    fn ports(&mut self, key: &str, ports: &[Integer]) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::new();
        for (i, &n) in ports.iter().enumerate() {
            let k = item(key, i);
            if let Some(port) = self.port(&k, n) {
                if out.contains(&port) {
                    self.value(&k, format!("port {port} is listed twice"));
                } else {
                    out.push(port);
                }
            }
        }
        out
    }

    fn port(&mut self, key: &str, n: Integer) -> Option<u16> {
        match u16::try_from(n.0) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.value(
                    key,
                    format!("expected a port from 1 to 65535, found {}", n.0),
                );
                None
            }
        }
    }

    fn count(&mut self, key: &str, count: &CountText) -> Option<Count> {
        let forms = "a non-negative integer (exactly that many) or a string such as \">= 10\" \
                     (at least that many)";
        match count {
            CountText::Integer(n) => match u64::try_from(*n) {
                Ok(n) => Some(Count::Exactly(n)),
                Err(_) => {
                    self.value(key, format!("expected {forms}, found {n}"));
                    None
                }
            },
            CountText::Text(t) => {
                let n = t
                    .trim()
                    .strip_prefix(">=")
                    .map(str::trim_start)
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u64>().ok());
                match n {
                    Some(n) => Some(Count::AtLeast(n)),
                    None => {
                        self.value(key, format!("expected {forms}, found \"{t}\""));
                        None
                    }
                }
            }
        }
    }

    /// The location of the value at `key`, for the model.
    fn location(&self, key: &str) -> Location {
        self.pos.value(key).unwrap_or_default()
    }
}

/// `a, b, c`, or `none` when empty.
fn names<'n>(names: impl IntoIterator<Item = &'n str>) -> String {
    let list: Vec<&str> = names.into_iter().collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

/// What the checks of nodes learnt, for the checks of probes.
struct Lab {
    ids: HashMap<String, NodeId>,
    /// Nodes with an address that did not parse: resolving their names says nothing.
    incomplete: HashSet<NodeId>,
    /// Some address in the lab did not parse.
    any_incomplete: bool,
}

impl Lab {
    fn node_list(&self, scenario: &Scenario) -> String {
        names(scenario.nodes.iter().map(|n| n.name.as_str()))
    }
}

fn convert(c: &mut Checker, path: &Path, name: &str, file: ScenarioFile) -> Scenario {
    if file.skip.as_deref().is_some_and(|s| s.trim().is_empty()) {
        c.value(
            "skip",
            "expected the reason for skipping, found an empty string",
        );
    }
    let timeout = file
        .timeout
        .as_ref()
        .and_then(|t| c.duration("timeout", t))
        .unwrap_or(DEFAULT_TIMEOUT);

    let host_file = file.host.unwrap_or_else(|| {
        c.missing("host", "a mapping of host settings");
        HostFile::default()
    });
    let (mut scenario, lab) = build_lab(c, host_file, file.nodes.unwrap_or_default());
    scenario.path = path.to_path_buf();
    scenario.name = name.to_string();
    scenario.description = file.description;
    scenario.skip = file.skip;
    scenario.ipv6 = file.ipv6.unwrap_or(false);
    scenario.timeout = timeout;

    let (rules, format) = rules(c, path, file.rules.as_ref());
    scenario.rules = rules;
    scenario.probes = probes(
        c,
        &scenario,
        &lab,
        file.probes.as_deref().unwrap_or_default(),
    );
    scenario.counters = counters(c, format, file.counters.as_deref().unwrap_or_default());
    scenario
}

/// The host, its bridges and uplinks, and the nodes: everything but rules, probes and
/// counters.
fn build_lab(
    c: &mut Checker,
    host: HostFile,
    node_files: indexmap::IndexMap<String, Option<NodeFile>>,
) -> (Scenario, Lab) {
    let host_name = host.name.clone().unwrap_or_else(|| "host".to_string());
    if host.name.is_some() {
        c.node_name("host.name", &host_name, false);
    }

    // Every address of the lab with where it was written, in file order.
    let mut addresses: Vec<(Ipv4Addr, String)> = Vec::new();
    let mut any_incomplete = false;

    let mut bridges = Vec::new();
    for (bname, b) in host.bridges.iter().flatten() {
        let key = join("host.bridges", bname);
        c.ifname(&key, bname, true);
        let address = match b.as_ref().and_then(|b| b.address.as_deref()) {
            None => None,
            Some(text) => {
                let akey = join(&key, "address");
                let a = c.cidr(&akey, text);
                match a {
                    Some(a) => addresses.push((a.addr(), akey)),
                    None => any_incomplete = true,
                }
                a
            }
        };
        bridges.push(Bridge {
            name: bname.clone(),
            address,
        });
    }

    let mut uplinks = Vec::new();
    // None where the address is missing or wrong.
    let mut uplink_nets: Vec<Option<Ipv4Net>> = Vec::new();
    for (uname, u) in host.uplinks.iter().flatten() {
        let key = join("host.uplinks", uname);
        c.ifname(&key, uname, true);
        if bridges.iter().any(|b| &b.name == uname) {
            c.key(
                &key,
                format!(
                    "the host already has a bridge named `{uname}`; bridge and uplink names \
                     must be unique on the host"
                ),
            );
        }
        let akey = join(&key, "address");
        let address = match u.as_ref().and_then(|u| u.address.as_deref()) {
            None => {
                c.missing(
                    &akey,
                    "an IPv4 address with a prefix length such as 192.0.2.1/24",
                );
                None
            }
            Some(text) => c.cidr(&akey, text),
        };
        match address {
            Some(a) => addresses.push((a.addr(), akey)),
            None => any_incomplete = true,
        }
        uplink_nets.push(address);
        uplinks.push(Uplink {
            name: uname.clone(),
            address: address.unwrap_or(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 32).unwrap()),
            peer: NodeId::HOST,
        });
    }

    let mut nodes = vec![Node {
        name: host_name.clone(),
        interfaces: Vec::new(),
        sysctls: c.sysctls("host.sysctls", host.sysctls.as_ref()),
        services: c.services("host.services", host.services.as_ref()),
    }];
    let mut ids = HashMap::from([(host_name.clone(), NodeId::HOST)]);
    let mut incomplete = HashSet::new();
    // For each uplink, the interfaces that use it.
    let mut uplink_users: Vec<Vec<(NodeId, String)>> = vec![Vec::new(); uplinks.len()];

    for (i, (nname, nfile)) in node_files.iter().enumerate() {
        let id = NodeId(i + 1);
        let key = join("nodes", nname);
        c.node_name(&key, nname, true);
        if nname == &host_name {
            c.key(
                &key,
                format!(
                    "`{nname}` is the host's name (`host.name`); node names must differ from it"
                ),
            );
        } else {
            ids.insert(nname.clone(), id);
        }
        let default = NodeFile::default();
        let nfile = nfile.as_ref().unwrap_or(&default);
        let ikey = join(&key, "interfaces");
        let list = c.list(&ikey, &nfile.interfaces, "a non-empty list of interfaces");
        let mut interfaces: Vec<Interface> = Vec::new();
        // Interface name → where it was declared.
        let mut ifnames: HashMap<String, String> = HashMap::new();
        let mut gateway_at: Option<String> = None;
        for (j, f) in list.iter().enumerate() {
            let fkey = item(&ikey, j);
            let attach = match (&f.bridge, &f.uplink) {
                (Some(_), Some(_)) => {
                    c.key(
                        &join(&fkey, "uplink"),
                        "expected either `bridge` or `uplink`, found both: an interface connects \
                         to one of them",
                    );
                    None
                }
                (None, None) => {
                    c.value(
                        &fkey,
                        "expected `bridge: NAME` or `uplink: NAME` to say where the interface \
                         connects, found neither",
                    );
                    None
                }
                (Some(b), None) => match bridges.iter().position(|x| &x.name == b) {
                    Some(k) => Some(Attach::Bridge(k)),
                    None => {
                        c.value(
                            &join(&fkey, "bridge"),
                            format!(
                                "no bridge named `{b}` under host.bridges; bridges: {}",
                                names(bridges.iter().map(|x| x.name.as_str()))
                            ),
                        );
                        None
                    }
                },
                (None, Some(u)) => match uplinks.iter().position(|x| &x.name == u) {
                    Some(k) => {
                        uplink_users[k].push((id, join(&fkey, "uplink")));
                        Some(Attach::Uplink(k))
                    }
                    None => {
                        c.value(
                            &join(&fkey, "uplink"),
                            format!(
                                "no uplink named `{u}` under host.uplinks; uplinks: {}",
                                names(uplinks.iter().map(|x| x.name.as_str()))
                            ),
                        );
                        None
                    }
                },
            };

            let ifname = f.name.clone().unwrap_or_else(|| format!("eth{j}"));
            let nkey = join(&fkey, "name");
            if f.name.is_some() {
                c.ifname(&nkey, &ifname, false);
            }
            match ifnames.get(&ifname) {
                Some(first) if f.name.is_some() => c.value(
                    &nkey,
                    format!("interface name `{ifname}` is already used by {first}"),
                ),
                Some(first) => c.value(
                    &fkey,
                    format!(
                        "this interface's default name `{ifname}` is already used by {first}; \
                         give it a `name`"
                    ),
                ),
                None => {
                    ifnames.insert(ifname.clone(), fkey.clone());
                }
            }

            let akey = join(&fkey, "address");
            let address = match &f.address {
                None => {
                    c.missing(
                        &akey,
                        "an IPv4 address with a prefix length such as 192.168.0.2/20",
                    );
                    None
                }
                Some(text) => c.cidr(&akey, text),
            };
            if let Some(a) = address {
                let subnet = match attach {
                    Some(Attach::Bridge(k)) => bridges[k]
                        .address
                        .map(|n| (n, format!("bridge `{}`", bridges[k].name))),
                    Some(Attach::Uplink(k)) => {
                        uplink_nets[k].map(|n| (n, format!("uplink `{}`", uplinks[k].name)))
                    }
                    None => None,
                };
                if let Some((net, what)) = subnet {
                    if !net.contains(&a.addr()) {
                        c.value(
                            &akey,
                            format!(
                                "expected an address in {what}'s subnet {}, found {}",
                                net.trunc(),
                                a.addr()
                            ),
                        );
                    }
                }
                addresses.push((a.addr(), akey.clone()));
            } else {
                incomplete.insert(id);
                any_incomplete = true;
            }

            let gkey = join(&fkey, "gateway");
            let gateway = f.gateway.as_deref().and_then(|g| c.address(&gkey, g));
            if let (Some(g), Some(a)) = (gateway, address) {
                if g == a.addr() {
                    c.value(
                        &gkey,
                        format!("expected the address of a router, found the interface's own address {g}"),
                    );
                } else if !a.contains(&g) {
                    c.value(
                        &gkey,
                        format!(
                            "expected a gateway in the interface's subnet {}, found {g}",
                            a.trunc()
                        ),
                    );
                }
            }
            if f.gateway.is_some() {
                match &gateway_at {
                    Some(first) => c.key(
                        &gkey,
                        format!("a node has one default route, and {first} already sets a gateway"),
                    ),
                    None => gateway_at = Some(fkey.clone()),
                }
            }

            interfaces.push(Interface {
                name: ifname,
                host_side: String::new(),
                // Placeholders only reach a scenario that is not returned.
                attach: attach.unwrap_or(Attach::Bridge(usize::MAX)),
                address: address.unwrap_or(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 32).unwrap()),
                gateway,
            });
        }
        nodes.push(Node {
            name: nname.clone(),
            interfaces,
            sysctls: c.sysctls(&join(&key, "sysctls"), nfile.sysctls.as_ref()),
            services: c.services(&join(&key, "services"), nfile.services.as_ref()),
        });
    }

    // Each uplink has exactly one node at its other end.
    for (k, users) in uplink_users.iter().enumerate() {
        let uname = uplinks[k].name.clone();
        match users.as_slice() {
            [] => c.key(
                &join("host.uplinks", &uname),
                format!(
                    "expected one node interface with `uplink: {uname}` at the other end of \
                     this uplink, found none"
                ),
            ),
            [(peer, _), rest @ ..] => {
                uplinks[k].peer = *peer;
                for (_, at) in rest {
                    c.value(
                        at,
                        format!(
                            "uplink `{uname}` is already used by {}; an uplink connects the \
                             host to exactly one node interface",
                            position::parent(&users[0].1).unwrap_or_default()
                        ),
                    );
                }
            }
        }
    }

    // Host-side names of the veths: an uplink's own name, or one generated for a
    // bridge port.
    let mut taken: HashSet<String> = bridges
        .iter()
        .map(|b| b.name.clone())
        .chain(uplinks.iter().map(|u| u.name.clone()))
        .collect();
    for node in nodes.iter_mut().skip(1) {
        for iface in &mut node.interfaces {
            iface.host_side = match iface.attach {
                Attach::Uplink(k) => uplinks[k].name.clone(),
                Attach::Bridge(_) => {
                    let wanted = format!("{}-{}", node.name, iface.name);
                    let name = if wanted.len() <= MAX_IFNAME && !taken.contains(&wanted) {
                        wanted
                    } else {
                        (0..)
                            .map(|k| format!("veth{k}"))
                            .find(|n| !taken.contains(n))
                            .expect("some vethN is free")
                    };
                    taken.insert(name.clone());
                    name
                }
            };
        }
    }

    // No address twice in the lab.
    let mut seen: HashMap<Ipv4Addr, &str> = HashMap::new();
    for (addr, key) in &addresses {
        match seen.get(addr) {
            Some(first) => c.value(
                key,
                format!(
                    "address {addr} is already used by {first}; each address in the lab is unique"
                ),
            ),
            None => {
                seen.insert(*addr, key);
            }
        }
    }

    let scenario = Scenario {
        path: PathBuf::new(),
        name: String::new(),
        description: None,
        skip: None,
        ipv6: false,
        timeout: DEFAULT_TIMEOUT,
        host: HostSetup {
            forwarding: host.forwarding.unwrap_or(false),
            bridges,
            uplinks,
        },
        nodes,
        rules: RuleSet {
            backends: Vec::new(),
            files: Vec::new(),
        },
        probes: Vec::new(),
        counters: Vec::new(),
    };
    let lab = Lab {
        ids,
        incomplete,
        any_incomplete,
    };
    (scenario, lab)
}

/// The rule set, and the rule format when the back ends agree on one.
fn rules(
    c: &mut Checker,
    path: &Path,
    file: Option<&super::file::RulesFile>,
) -> (RuleSet, Option<RuleFormat>) {
    let Some(file) = file else {
        c.missing("rules", "a mapping with `backends` and `files`");
        let set = RuleSet {
            backends: Vec::new(),
            files: Vec::new(),
        };
        return (set, None);
    };

    let mut backends: Vec<Backend> = Vec::new();
    let list = c.list(
        "rules.backends",
        &file.backends,
        "a non-empty list of back ends (iptables-nft, iptables-legacy, nft)",
    );
    let mut complete = true;
    for (i, b) in list.iter().enumerate() {
        let key = item("rules.backends", i);
        match Backend::from_name(b) {
            None => {
                complete = false;
                c.value(
                    &key,
                    format!(
                        "expected a back end (one of {}), found `{b}`",
                        names(Backend::ALL.iter().map(|b| b.name()))
                    ),
                );
            }
            Some(be) if backends.contains(&be) => {
                c.value(&key, format!("back end `{be}` is listed twice"));
            }
            Some(be) => backends.push(be),
        }
    }
    let format = match backends.first() {
        Some(first) if backends.iter().all(|b| b.format() == first.format()) => {
            complete.then_some(first.format())
        }
        Some(_) => {
            c.value(
                "rules.backends",
                "expected back ends that share one rule format, found nft (which loads nft \
                 scripts) together with iptables (which loads iptables-save files); split \
                 the scenario into one per format",
            );
            None
        }
        None => None,
    };

    let folder = path.parent().unwrap_or(Path::new(""));
    let mut files = Vec::new();
    let list = c.list(
        "rules.files",
        &file.files,
        "a non-empty list of rule file paths",
    );
    for (i, f) in list.iter().enumerate() {
        let key = item("rules.files", i);
        if f.is_empty() {
            c.value(
                &key,
                "expected the path of a rule file, found an empty string",
            );
            continue;
        }
        let resolved = folder.join(f);
        let problem = match fs::metadata(&resolved) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(format!(
                "expected a rule file, but `{}` does not exist",
                resolved.display()
            )),
            Err(e) => Some(format!("cannot read `{}`: {e}", resolved.display())),
            Ok(m) if m.is_dir() => Some(format!(
                "expected a rule file, but `{}` is a folder",
                resolved.display()
            )),
            Ok(_) => fs::File::open(&resolved)
                .err()
                .map(|e| format!("cannot read `{}`: {e}", resolved.display())),
        };
        if let Some(p) = problem {
            c.value(&key, p);
        }
        files.push(RuleFile {
            path: resolved,
            format: format.unwrap_or(RuleFormat::Iptables),
        });
    }
    (RuleSet { backends, files }, format)
}

fn probes(c: &mut Checker, scenario: &Scenario, lab: &Lab, list: &[ProbeFile]) -> Vec<Probe> {
    let mut out = Vec::new();
    // Probe name → where it was declared.
    let mut names_seen: HashMap<String, String> = HashMap::new();
    for (i, p) in list.iter().enumerate() {
        let key = item("probes", i);
        let node = |c: &mut Checker, field: &str, text: &str| -> Option<NodeId> {
            let id = lab.ids.get(text).copied();
            if id.is_none() {
                c.value(
                    &join(&key, field),
                    format!("no node named `{text}`; nodes: {}", lab.node_list(scenario)),
                );
            }
            id
        };

        let from = match &p.from {
            None => {
                c.missing(
                    &join(&key, "from"),
                    "the name of the node that sends the probe",
                );
                None
            }
            Some(f) => node(c, "from", f),
        };

        let to = match &p.to {
            None => {
                c.missing(&join(&key, "to"), "a node name or an IPv4 address");
                None
            }
            Some(t) => resolve_to(c, scenario, lab, &join(&key, "to"), t),
        };

        let port = p.port.and_then(|n| c.port(&join(&key, "port"), n));
        let proto_name =
            p.proto
                .as_deref()
                .unwrap_or(if p.port.is_some() { "tcp" } else { "icmp" });
        let proto = match proto_name {
            "icmp" => {
                if p.port.is_some() {
                    c.key(
                        &join(&key, "port"),
                        "expected no `port` for an icmp probe; remove it, or set `proto` to tcp or udp",
                    );
                }
                Some(Proto::Icmp)
            }
            "tcp" | "udp" => {
                if p.port.is_none() {
                    c.missing(
                        &join(&key, "port"),
                        &format!("a port from 1 to 65535 for a {proto_name} probe"),
                    );
                }
                port.map(|n| {
                    if proto_name == "tcp" {
                        Proto::Tcp(n)
                    } else {
                        Proto::Udp(n)
                    }
                })
            }
            other => {
                c.value(
                    &join(&key, "proto"),
                    format!("expected icmp, tcp or udp, found `{other}`"),
                );
                None
            }
        };

        let expect = match p.expect.as_deref() {
            None => {
                c.missing(&join(&key, "expect"), "reached, refused or dropped");
                None
            }
            Some("reached") => Some(Expect::Reached),
            Some("refused") => Some(Expect::Refused),
            Some("dropped") => Some(Expect::Dropped),
            Some(other) => {
                c.value(
                    &join(&key, "expect"),
                    format!("expected reached, refused or dropped, found `{other}`"),
                );
                None
            }
        };

        // served_by and source_seen describe the answering service.
        let answers = |c: &mut Checker, field: &str| -> bool {
            let reason = match (expect, proto) {
                (Some(e), _) if e != Expect::Reached => Some(format!("this probe expects `{e}`")),
                (_, Some(Proto::Icmp)) => Some("this is an icmp probe".to_string()),
                _ => None,
            };
            if let Some(reason) = reason {
                c.key(
                    &join(&key, field),
                    format!(
                        "expected `{field}` only on a tcp or udp probe that expects `reached`; \
                         {reason}"
                    ),
                );
                return false;
            }
            true
        };

        let served_by = match &p.served_by {
            None => None,
            Some(s) => {
                let applies = answers(c, "served_by");
                let id = node(c, "served_by", s);
                if let (true, Some(id), Some(proto)) = (applies, id, proto) {
                    let services = &scenario.node(id).services;
                    let (name, ports) = match proto {
                        Proto::Udp(_) => ("udp", &services.udp),
                        _ => ("tcp", &services.tcp),
                    };
                    if ports.is_empty() {
                        c.value(
                            &join(&key, "served_by"),
                            format!(
                                "expected a node with a {name} service, but `{s}` declares none; \
                                 add its port under `services: {name}:`"
                            ),
                        );
                    }
                }
                id
            }
        };

        let source_seen = match &p.source_seen {
            None => None,
            Some(s) => {
                answers(c, "source_seen");
                if let Some(&id) = lab.ids.get(s) {
                    Some(SourceSeen::Node(id))
                } else if let Ok(a) = s.parse::<Ipv4Addr>() {
                    Some(SourceSeen::Address(a))
                } else {
                    c.value(
                        &join(&key, "source_seen"),
                        format!(
                            "expected a node name (one of {}) or an IPv4 address, found `{s}`",
                            lab.node_list(scenario)
                        ),
                    );
                    None
                }
            }
        };

        let timeout = match &p.timeout {
            None => Some(scenario.timeout),
            Some(t) => c.duration(&join(&key, "timeout"), t),
        };

        let name = match &p.name {
            Some(n) if n.trim().is_empty() => {
                c.value(
                    &join(&key, "name"),
                    "expected a probe name, found an empty string",
                );
                None
            }
            Some(n) => Some(n.clone()),
            None => match (&p.from, &p.to, proto) {
                (Some(f), Some(t), Some(Proto::Icmp)) => Some(format!("{f} -> {t} icmp")),
                (Some(f), Some(t), Some(proto)) => Some(format!("{f} -> {t}:{proto}")),
                _ => None,
            },
        };
        if let Some(n) = &name {
            match names_seen.get(n) {
                Some(first) => c.value(
                    if p.name.is_some() {
                        join(&key, "name")
                    } else {
                        key.clone()
                    }
                    .as_str(),
                    format!(
                        "probe name `{n}` is already used by {first}; give one of them a \
                         distinct `name`"
                    ),
                ),
                None => {
                    names_seen.insert(n.clone(), key.clone());
                }
            }
        }

        if let (Some(name), Some(from), Some(to), Some(proto), Some(expect), Some(timeout)) =
            (name, from, to, proto, expect, timeout)
        {
            out.push(Probe {
                name,
                location: c.location(&key),
                from,
                to,
                to_text: p.to.clone().unwrap_or_default(),
                proto,
                expect,
                served_by,
                source_seen,
                timeout,
            });
        }
    }
    out
}

/// A probe's destination: a node's first address, or an address of the lab or of
/// loopback.
fn resolve_to(
    c: &mut Checker,
    scenario: &Scenario,
    lab: &Lab,
    key: &str,
    text: &str,
) -> Option<Ipv4Addr> {
    if let Some(&id) = lab.ids.get(text) {
        let first = scenario.addresses_of(id).first().copied();
        if first.is_none() && !lab.incomplete.contains(&id) {
            c.value(
                key,
                format!(
                    "node `{text}` has no address to send to (the host's addresses are those \
                     of its uplinks and bridges); give an address instead"
                ),
            );
        }
        return first;
    }
    match text.parse::<Ipv4Addr>() {
        Ok(a) if a.is_loopback() || scenario.owner_of(a).is_some() => Some(a),
        Ok(a) => {
            if !lab.any_incomplete {
                c.value(
                    key,
                    format!(
                        "{a} is no address of this lab: traffic must stay inside the lab, so \
                         expected the address of a bridge, uplink or node interface, or one \
                         in 127.0.0.0/8"
                    ),
                );
            }
            None
        }
        Err(_) => {
            c.value(
                key,
                format!(
                    "expected a node name (one of {}) or an IPv4 address, found `{text}`",
                    lab.node_list(scenario)
                ),
            );
            None
        }
    }
}

fn counters(
    c: &mut Checker,
    format: Option<RuleFormat>,
    list: &[CounterFile],
) -> Vec<CounterExpectation> {
    let mut out = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let key = item("counters", i);

        let family = match (&f.family, format) {
            (Some(_), Some(RuleFormat::Iptables)) => {
                c.key(
                    &join(&key, "family"),
                    "expected no `family`: it names an nft table's family, and this scenario's \
                     back ends load iptables-save files",
                );
                None
            }
            (Some(fam), Some(RuleFormat::Nft)) if !NFT_FAMILIES.contains(&fam.as_str()) => {
                c.value(
                    &join(&key, "family"),
                    format!(
                        "expected an nft family (one of {}), found `{fam}`",
                        NFT_FAMILIES.join(", ")
                    ),
                );
                None
            }
            (None, Some(RuleFormat::Nft)) => Some(NFT_DEFAULT_FAMILY.to_string()),
            (fam, _) => fam.clone(),
        };

        let table = match &f.table {
            None => {
                c.missing(
                    &join(&key, "table"),
                    "the name of the table that holds the chain",
                );
                None
            }
            Some(t)
                if format == Some(RuleFormat::Iptables)
                    && !IPTABLES_TABLES.contains(&t.as_str()) =>
            {
                c.value(
                    &join(&key, "table"),
                    format!(
                        "expected an iptables table (one of {}), found `{t}`",
                        IPTABLES_TABLES.join(", ")
                    ),
                );
                None
            }
            Some(t) if t.is_empty() => {
                c.value(
                    &join(&key, "table"),
                    "expected a table name, found an empty string",
                );
                None
            }
            Some(t) => Some(t.clone()),
        };

        let chain = match &f.chain {
            None => {
                c.missing(
                    &join(&key, "chain"),
                    "the name of the chain that holds the rule",
                );
                None
            }
            Some(ch) if ch.is_empty() => {
                c.value(
                    &join(&key, "chain"),
                    "expected a chain name, found an empty string",
                );
                None
            }
            Some(ch) => Some(ch.clone()),
        };

        let given: Vec<&str> = [
            f.rule.as_ref().map(|_| "rule"),
            f.position.as_ref().map(|_| "position"),
            f.comment.as_ref().map(|_| "comment"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let rule = match given.as_slice() {
            [] => {
                c.value(
                    &key,
                    "expected one of `rule`, `position` or `comment` to pick the rule, found none",
                );
                None
            }
            [_] => selector(c, &key, f, chain.as_deref()),
            [first, second, ..] => {
                c.key(
                    &join(&key, second),
                    format!("expected one of `rule`, `position` or `comment`, found both `{first}` and `{second}`"),
                );
                None
            }
        };

        let packets = match &f.packets {
            None => {
                c.missing(
                    &join(&key, "packets"),
                    "a packet count: an integer (exactly) or a string such as \">= 1\" (at least)",
                );
                None
            }
            Some(p) => c.count(&join(&key, "packets"), p),
        };
        // Some(None): no byte count asked for.
        let bytes = match &f.bytes {
            None => Some(None),
            Some(b) => c.count(&join(&key, "bytes"), b).map(Some),
        };

        if let (Some(table), Some(chain), Some(rule), Some(packets), Some(bytes)) =
            (table, chain, rule, packets, bytes)
        {
            out.push(CounterExpectation {
                location: c.location(&key),
                family,
                table,
                chain,
                rule,
                packets,
                bytes,
            });
        }
    }
    out
}

/// The one of `rule`, `position` and `comment` that is given.
fn selector(
    c: &mut Checker,
    key: &str,
    f: &CounterFile,
    chain: Option<&str>,
) -> Option<RuleSelector> {
    if let Some(rule) = &f.rule {
        let rkey = join(key, "rule");
        let mut text = rule.trim();
        if let Some(rest) = text.strip_prefix("-A ") {
            let rest = rest.trim_start();
            let (named, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match chain {
                Some(ch) if ch != named => {
                    c.value(
                        &rkey,
                        format!("expected a rule of chain `{ch}`, found one that starts with `-A {named}`"),
                    );
                    return None;
                }
                _ => text = tail.trim_start(),
            }
        }
        if text.is_empty() {
            c.value(
                &rkey,
                "expected the text of a rule, such as `-p tcp --dport 22 -j ACCEPT`, found none",
            );
            return None;
        }
        return Some(RuleSelector::Text(text.to_string()));
    }
    if let Some(n) = f.position {
        return match usize::try_from(n.0) {
            Ok(p) if p >= 1 => Some(RuleSelector::Position(p)),
            _ => {
                c.value(
                    &join(key, "position"),
                    format!("expected a rule position of 1 or more, found {}", n.0),
                );
                None
            }
        };
    }
    if let Some(comment) = &f.comment {
        if comment.is_empty() {
            c.value(
                &join(key, "comment"),
                "expected a rule comment, found an empty string",
            );
            return None;
        }
        return Some(RuleSelector::Comment(comment.clone()));
    }
    None
}
