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
    ContractFile, CountText, CounterFile, DurationText, ExtraRuleFile, HostFile, Integer, NodeFile, ProbeFile,
    ProducersFile, ScenarioFile, ServicesFile, SysctlValue,
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
        Diagnostic { path: path.to_path_buf(), location: None, key: None, message: message.into() }
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
        InputError { diagnostics: vec![d] }
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
/// file and checks that its rule files exist; creates nothing. A file with `producers`
/// expands to several scenarios: use [`load_file`] for those.
pub fn load(path: &Path, name: &str) -> Result<Scenario, InputError> {
    let mut scenarios = load_file(path, name)?;
    if scenarios.len() != 1 {
        return Err(Diagnostic::new(path, "this file runs against several producers; load it with load_file").into());
    }
    Ok(scenarios.remove(0))
}

/// Load and validate one scenario file: one scenario, or for a file with `producers`
/// one per producer, named `NAME @PRODUCER`, with the producer's variables put in for
/// each `${var}` and its rules in place of `rules`.
pub fn load_file(path: &Path, name: &str) -> Result<Vec<Scenario>, InputError> {
    let text = read_text(path, "scenario file")?;
    let Some((line, producers_path)) = producers_key(&text) else {
        return Ok(vec![load_text(path, name, &text, None)?]);
    };
    let folder = path.parent().unwrap_or(Path::new(""));
    let producers_file = folder.join(&producers_path);
    if !producers_file.is_file() {
        return Err(Diagnostic {
            path: path.to_path_buf(),
            location: Some(Location { line, column: 1 }),
            key: Some("producers".into()),
            message: format!("expected a producers file, but `{}` does not exist", producers_file.display()),
        }
        .into());
    }
    let producers = load_producers(&producers_file)?;
    let mut scenarios = Vec::new();
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    for producer in &producers {
        let ctx = ProducerCtx { producer, all: &producers, file: &producers_file };
        let result = substitute(path, &text, producer)
            .and_then(|t| load_text(path, &format!("{name} @{}", producer.name), &t, Some(&ctx)));
        match result {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                // The same mistake shows once, not once per producer.
                for d in e.diagnostics {
                    if !diagnostics.iter().any(|x| x.path == d.path && x.location == d.location && x.key == d.key) {
                        diagnostics.push(d);
                    }
                }
            }
        }
    }
    if diagnostics.is_empty() {
        Ok(scenarios)
    } else {
        Err(diagnostics.into())
    }
}

/// The largest scenario or producers file read.
const MAX_FILE: u64 = 16 << 20;

/// The text of a regular file of at most [`MAX_FILE`] bytes; a byte that is not UTF-8
/// is reported at its line and column.
fn read_text(path: &Path, what: &str) -> Result<String, Diagnostic> {
    use std::io::Read;
    let meta = fs::metadata(path).map_err(|e| Diagnostic::new(path, format!("cannot read the {what}: {e}")))?;
    if !meta.is_file() {
        return Err(Diagnostic::new(
            path,
            format!("expected a {what}, but this is not a regular file (a fifo, a device or a socket)"),
        ));
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| Diagnostic::new(path, format!("cannot read the {what}: {e}")))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(Diagnostic::new(path, format!("expected a {what} of at most {} MiB, found more", MAX_FILE >> 20)));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[start..]).chars().count() + 1;
        let bad = e.as_bytes()[valid.len()];
        Diagnostic {
            path: path.to_path_buf(),
            location: Some(Location { line, column }),
            key: None,
            message: format!("expected UTF-8 text, found the byte 0x{bad:02x}, which is not UTF-8 here"),
        }
    })
}

/// A top-level `producers: FILE` line: its line number and the file. Found in the text
/// because the rest of the file may not be YAML before its variables are put in.
fn producers_key(text: &str) -> Option<(usize, String)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let value = line.strip_prefix("producers:")?.trim();
        let value = value.split(" #").next().unwrap_or(value).trim().trim_matches(['"', '\'']);
        Some((i + 1, value.to_string()))
    })
}

/// One producer of a producers file, checked.
#[derive(Debug)]
struct ProducerDef {
    name: String,
    title: Option<String>,
    rules: RuleSet,
    format: Option<RuleFormat>,
    /// The file's `vars`, overridden by the producer's own.
    vars: indexmap::IndexMap<String, String>,
}

fn load_producers(path: &Path) -> Result<Vec<ProducerDef>, InputError> {
    let text = read_text(path, "producers file")?;
    let (file, positions) = parse::<ProducersFile>(path, &text)?;
    let mut c = Checker { path, pos: &positions, diagnostics: Vec::new(), forward_targets: Vec::new() };
    let folder = path.parent().unwrap_or(Path::new(""));
    let defaults: indexmap::IndexMap<String, String> =
        file.vars.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    // Values go into the scenario's text as they are: a line break would move every
    // later line, and with it every position reported.
    let mut one_line = |key: String, value: &str| {
        if value.contains(['\n', '\r']) {
            c.value(&key, "expected a value of one line (it is put into the scenario's text), found a line break");
        }
    };
    for (k, v) in file.vars.iter().flatten() {
        one_line(join("vars", k), &v.0);
    }
    for (name, p) in file.producers.iter().flatten() {
        for (k, v) in p.as_ref().and_then(|p| p.vars.as_ref()).into_iter().flatten() {
            one_line(join(&join(&join("producers", name), "vars"), k), &v.0);
        }
    }
    let mut out = Vec::new();
    match &file.producers {
        None => c.missing("producers", "a mapping of producer names to their rules and variables"),
        Some(map) if map.is_empty() => c.value("producers", "expected at least one producer, found none"),
        Some(map) => {
            for (name, p) in map {
                let key = join("producers", name);
                if name.is_empty() || name.contains(char::is_whitespace) || name.contains(['[', ']', '@']) {
                    c.key(&key, format!("a producer name has no white space, '[', ']' or '@'; found `{name}`"));
                }
                let default = super::file::ProducerFile::default();
                let p = p.as_ref().unwrap_or(&default);
                let (rules, format) = rules(&mut c, &join(&key, "rules"), folder, p.rules.as_ref());
                let mut vars = defaults.clone();
                vars.extend(p.vars.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
                out.push(ProducerDef { name: name.clone(), title: p.title.clone(), rules, format, vars });
            }
        }
    }
    if c.diagnostics.is_empty() {
        Ok(out)
    } else {
        Err(c.diagnostics.into())
    }
}

/// The text with each `${var}` replaced by the producer's value. Values are single
/// words, so every line keeps its number.
fn substitute(path: &Path, text: &str, producer: &ProducerDef) -> Result<String, InputError> {
    let mut out = String::with_capacity(text.len());
    let mut diagnostics = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let var = &after[..end];
            match producer.vars.get(var) {
                Some(value) => out.push_str(value),
                None => {
                    let column = line.len() - rest.len() + start + 1;
                    diagnostics.push(Diagnostic {
                        path: path.to_path_buf(),
                        location: Some(Location { line: i + 1, column }),
                        key: None,
                        message: format!(
                            "no variable `{var}` for producer `{}`; its variables: {}",
                            producer.name,
                            names(producer.vars.keys().map(String::as_str))
                        ),
                    });
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    if diagnostics.is_empty() {
        Ok(out)
    } else {
        Err(diagnostics.into())
    }
}

/// [`load`] with the text already read; rule files are still looked up next to `path`.
fn load_text(path: &Path, name: &str, text: &str, ctx: Option<&ProducerCtx>) -> Result<Scenario, InputError> {
    let (file, positions) = parse::<ScenarioFile>(path, text)?;
    let mut c = Checker { path, pos: &positions, diagnostics: Vec::new(), forward_targets: Vec::new() };
    if !positions.contains("") {
        c.push(None, "", "the file holds no YAML document; a scenario needs at least `host` and `rules`");
        return Err(c.diagnostics.into());
    }
    let scenario = convert(&mut c, path, name, file, ctx);
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
/// `rules`. A scenario's display name is its path relative to the nearest folder named
/// `scenarios` that holds it (the argument itself included), so the same file gets the
/// same name whether `scenarios/`, `scenarios/seed` or the file itself is given.
/// Outside any `scenarios` folder, a folder argument F names its files relative to F's
/// parent and a file argument is named by its file name. A path that does not exist is
/// an error; finding nothing is not.
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
            let prefix = match suite_root(&real) {
                Some(root) => real.strip_prefix(root).unwrap_or(Path::new("")).to_path_buf(),
                None => real.file_name().map(PathBuf::from).unwrap_or_default(),
            };
            walk(arg, Path::new(""), &prefix, &mut found, &mut diagnostics);
        } else {
            let name = real
                .parent()
                .and_then(suite_root)
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

/// The nearest folder named `scenarios` that holds `path` (or is `path`).
fn suite_root(path: &Path) -> Option<&Path> {
    path.ancestors().find(|a| a.file_name().is_some_and(|n| n == "scenarios"))
}

fn walk(root: &Path, rel: &Path, prefix: &Path, found: &mut Vec<(PathBuf, String)>, diagnostics: &mut Vec<Diagnostic>) {
    let dir = root.join(rel);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            diagnostics.push(Diagnostic::new(&dir, format!("cannot read the folder: {e}")));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                diagnostics.push(Diagnostic::new(&dir, format!("cannot read the folder: {e}")));
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
fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<(T, Positions), InputError> {
    // Positions first: it refuses deep nesting early, before serde_yaml's scanner
    // spends quadratic time on it.
    let indexed = Positions::parse(text);
    let syntax = |e: position::SyntaxError| Diagnostic {
        path: path.to_path_buf(),
        location: Some(e.location),
        key: None,
        message: e.message,
    };
    let indexed = match indexed {
        Err(e) if e.too_deep => return Err(syntax(e).into()),
        other => other,
    };
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        let positions = indexed.unwrap_or_default();
        if !positions.duplicates().is_empty() {
            return Err(duplicates(path, &positions).into());
        }
        return Err(serde_error(path, &positions, e).into());
    }
    let positions = indexed.map_err(syntax)?;
    if !positions.duplicates().is_empty() {
        return Err(duplicates(path, &positions).into());
    }
    if !positions.tagged().is_empty() {
        let diagnostics: Vec<Diagnostic> = positions
            .tagged()
            .iter()
            .map(|(key, at)| Diagnostic {
                path: path.to_path_buf(),
                location: Some(*at),
                key: (!key.is_empty()).then(|| key.clone()),
                message: "a value that starts with `!` is a YAML tag, and the `!` would be dropped; \
                          quote the value: '! -i ...'"
                    .to_string(),
            })
            .collect();
        return Err(diagnostics.into());
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
    let location = e.location().map(|l| Location { line: l.line(), column: l.column() });
    let mut message = e.to_string();
    if let Some(l) = location {
        let suffix = format!(" at line {} column {}", l.line, l.column);
        if let Some(i) = message.find(&suffix) {
            message.replace_range(i..i + suffix.len(), "");
        }
    }
    let mut location = location;
    if message.starts_with("deserializing from YAML containing more than one document") {
        message = "expected one YAML document, found more than one".to_string();
        location = location.or(positions.second_document());
    }
    let mut key = None;
    if let Some(i) = message.match_indices(": ").map(|(i, _)| i).find(|&i| positions.contains(&message[..i])) {
        key = Some(message[..i].to_string());
        message = message[i + 2..].to_string();
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            key = Some(join(key.as_deref().unwrap_or(""), &rest[..end]));
            message = format!("unknown key `{rest}");
        }
    }
    Diagnostic { path: path.to_path_buf(), location, key, message }
}

/// Collects diagnostics, placing each with the position index.
struct Checker<'a> {
    path: &'a Path,
    pos: &'a Positions,
    diagnostics: Vec<Diagnostic>,
    /// Forwarder targets (key, address), checked once the lab's addresses are known.
    forward_targets: Vec<(String, std::net::SocketAddrV4)>,
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
            self.value(key, format!("missing required key `{leaf}`: expected {expected}"));
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
                self.value(key, format!("expected a duration such as \"200ms\" or \"1s\", found `{text}` ({e})"));
                None
            }
            Ok(d) if d.is_zero() || d > MAX_TIMEOUT => {
                self.value(key, format!("expected a duration greater than 0 and at most 60s, found `{text}`"));
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
                self.value(key, format!("expected {expected}, found `{text}` without a prefix length"));
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
                    format!("expected a host address, found `{text}`, the {what} address of {}", net.trunc()),
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
                self.value(key, format!("expected an IPv4 address such as 192.168.0.1, found `{text}`"));
                None
            }
        }
    }

    /// A Linux interface name. `at_key`: the name is a mapping key rather than a value.
    fn ifname(&mut self, key: &str, name: &str, at_key: bool) {
        let problem = if name.is_empty() {
            Some("expected an interface name, found an empty string".to_string())
        } else if name.len() > MAX_IFNAME {
            Some(format!("interface names are at most {MAX_IFNAME} bytes; `{name}` is {} bytes", name.len()))
        } else if name == "." || name == ".." {
            Some(format!("`{name}` is not a valid interface name"))
        } else if name.contains(['/', ':']) || name.contains(char::is_whitespace) {
            Some(format!("an interface name has no '/', ':' or white space; found `{name}`"))
        } else if name == "lo" {
            Some("`lo` is the loopback interface that every namespace has; pick another name".to_string())
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
            Some(format!("a node name has no '/', ':' or white space; found `{name}`"))
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

    fn sysctls(&mut self, key: &str, map: Option<&indexmap::IndexMap<String, SysctlValue>>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in map.into_iter().flatten() {
            let k = join(key, name);
            let well_formed = name.split('.').all(|part| {
                !part.is_empty() && part.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
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
            for (i, f) in s.forward.iter().flatten().enumerate() {
                let fkey = item(&join(key, "forward"), i);
                let port = match f.port {
                    None => {
                        self.missing(&join(&fkey, "port"), "the port the forwarder listens on");
                        None
                    }
                    Some(n) => self.port(&join(&fkey, "port"), n),
                };
                if port.is_some_and(|p| out.tcp.contains(&p) || out.forward.iter().any(|f| f.port == p)) {
                    self.value(&join(&fkey, "port"), format!("tcp port {} is already served here", port.unwrap_or(0)));
                }
                let to = match f.to.as_deref() {
                    None => {
                        self.missing(&join(&fkey, "to"), "the address and port to forward to, e.g. 172.17.0.2:80");
                        None
                    }
                    Some(t) => match t.parse::<std::net::SocketAddrV4>() {
                        Ok(a) if a.port() != 0 => {
                            self.forward_targets.push((join(&fkey, "to"), a));
                            Some(a)
                        }
                        _ => {
                            self.value(
                                &join(&fkey, "to"),
                                format!("expected an IPv4 address and port such as 172.17.0.2:80, found `{t}`"),
                            );
                            None
                        }
                    },
                };
                if let (Some(port), Some(to)) = (port, to) {
                    out.forward.push(Forward { port, to });
                }
            }
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
                self.value(key, format!("expected a port from 1 to 65535, found {}", n.0));
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

    /// `name` resolved against `folder`, if it is a readable file.
    fn existing_file(&mut self, key: &str, folder: &Path, name: &str, what: &str) -> Option<PathBuf> {
        if name.is_empty() {
            self.value(key, format!("expected the path of a {what}, found an empty string"));
            return None;
        }
        let resolved = folder.join(name);
        let problem = match fs::metadata(&resolved) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Some(format!("expected a {what}, but `{}` does not exist", resolved.display()))
            }
            Err(e) => Some(format!("cannot read `{}`: {e}", resolved.display())),
            Ok(m) if m.is_dir() => Some(format!("expected a {what}, but `{}` is a folder", resolved.display())),
            // Opening a fifo blocks until a writer comes; a device may never end.
            Ok(m) if !m.is_file() => Some(format!(
                "expected a {what}, but `{}` is not a regular file (a fifo, a device or a socket)",
                resolved.display()
            )),
            Ok(_) => fs::File::open(&resolved).err().map(|e| format!("cannot read `{}`: {e}", resolved.display())),
        };
        match problem {
            Some(p) => {
                self.value(key, p);
                None
            }
            None => Some(resolved),
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
struct LabIndex {
    ids: HashMap<String, NodeId>,
    /// Nodes with an address that did not parse: resolving their names says nothing.
    incomplete: HashSet<NodeId>,
    /// Addresses written in the lab but rejected (`10.0.0.0/24`, `10.0.0.5` without a
    /// prefix): a probe to one of them gets no second complaint.
    rejected: HashSet<Ipv4Addr>,
}

impl LabIndex {
    fn node_list(&self, scenario: &Scenario) -> String {
        let mut seen = HashSet::new();
        names(scenario.nodes.iter().map(|n| n.name.as_str()).filter(|n| seen.insert(*n)))
    }
}

/// The address part of a rejected interface address, if it has one.
fn written_address(text: &str) -> Option<Ipv4Addr> {
    text.split('/').next()?.trim().parse().ok()
}

/// The producer a contract scenario is being expanded for.
struct ProducerCtx<'p> {
    producer: &'p ProducerDef,
    /// Every producer of the producers file, for checking names.
    all: &'p [ProducerDef],
    /// Where the producers file is, for messages.
    file: &'p Path,
}

impl ProducerCtx<'_> {
    /// Checks that `name`, written at `key`, names a producer.
    fn check_name(&self, c: &mut Checker, key: &str, name: &str) {
        if !self.all.iter().any(|p| p.name == name) {
            c.key(
                key,
                format!(
                    "no producer named `{name}` in {}; producers: {}",
                    self.file.display(),
                    names(self.all.iter().map(|p| p.name.as_str()))
                ),
            );
        }
    }
}

/// A reason as one line: runs of white space, line breaks included, become one space.
fn one_line(reason: &str) -> String {
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn convert(c: &mut Checker, path: &Path, name: &str, mut file: ScenarioFile, ctx: Option<&ProducerCtx>) -> Scenario {
    if file.skip.as_deref().is_some_and(|s| s.trim().is_empty()) {
        c.value("skip", "expected the reason for skipping, found an empty string");
    }
    let timeout = file.timeout.as_ref().and_then(|t| c.duration("timeout", t)).unwrap_or(DEFAULT_TIMEOUT);

    let host_file = file.host.take().unwrap_or_else(|| {
        c.missing("host", "a mapping of host settings");
        HostFile::default()
    });
    let (mut scenario, mut lab) = build_lab(c, host_file, file.nodes.take().unwrap_or_default());
    containers(c, &mut scenario, &mut lab, &file);
    scenario.path = path.to_path_buf();
    scenario.name = name.to_string();
    scenario.description = file.description;
    // A folded or literal block leaves line breaks and a final newline: one line.
    scenario.skip = file.skip.as_deref().map(one_line);
    scenario.ipv6 = file.ipv6.unwrap_or(false);
    scenario.timeout = timeout;
    scenario.sequential = file.sequential.unwrap_or(false);

    for (key, target) in std::mem::take(&mut c.forward_targets) {
        if scenario.owner_of(*target.ip()).is_none() && !lab.rejected.contains(target.ip()) {
            c.value(&key, format!("{} is no address of this lab; a forwarder connects to a lab node", target.ip()));
        }
    }

    let format = match ctx {
        None => {
            if file.contract.is_some() {
                c.key("contract", "a contract scenario runs against producers: add `producers: FILE`");
            }
            let folder = path.parent().unwrap_or(Path::new(""));
            let (rules, format) = rules(c, "rules", folder, file.rules.as_ref());
            scenario.rules = rules;
            format
        }
        Some(ctx) => {
            if file.rules.is_some() {
                c.key(
                    "rules",
                    format!(
                        "expected no `rules`: a scenario with `producers` takes its rules from {}",
                        ctx.file.display()
                    ),
                );
            }
            for (producer, reason) in file.not_applicable.iter().flatten() {
                ctx.check_name(c, &join("not_applicable", producer), producer);
                if producer == &ctx.producer.name {
                    scenario.not_applicable = Some(one_line(reason));
                }
            }
            scenario.contract = file.contract.as_ref().and_then(|f| contract(c, f));
            scenario.producer = Some(Producer { name: ctx.producer.name.clone(), title: ctx.producer.title.clone() });
            scenario.rules = ctx.producer.rules.clone();
            extra_rules(c, path, file.extra_rules.as_deref().unwrap_or_default(), ctx, &mut scenario);
            ctx.producer.format
        }
    };
    let wired = scenario.rules.live.as_ref().is_some_and(|l| l.program.wires_containers());
    if !wired && (file.containers.is_some() || file.networks.is_some()) {
        let what = if file.containers.is_some() { "containers" } else { "networks" };
        c.key(
            what,
            "expected `networks` and `containers` only with a live program that wires containers \
             (rules.live.program: netavark, cni, dockerd or command); give other nodes `interfaces`",
        );
    }
    if let (None, Some(live)) = (ctx, &scenario.rules.live) {
        if live.program == LiveProgram::Command {
            if let Some(program) = live.run.first() {
                let folder = path.parent().unwrap_or(Path::new(""));
                live_program(c, "rules.live.run[0]", folder, program);
            }
        }
    }
    if ctx.is_none() && file.producers.is_some() {
        c.key("producers", "write `producers: FILE` as a line of its own at the start of a line");
    }
    if ctx.is_none() && file.extra_rules.is_some() {
        c.key(
            "extra_rules",
            "expected `extra_rules` only in a scenario with `producers`; list rule files under `rules.files`",
        );
    }
    if ctx.is_none() && file.not_applicable.is_some() {
        c.key("not_applicable", "expected `not_applicable` only in a scenario with `producers`");
    }
    scenario.probes = probes(c, &scenario, &lab, file.probes.as_deref().unwrap_or_default(), ctx);
    scenario.counters = counters(c, format, file.counters.as_deref().unwrap_or_default(), ctx);
    scenario
}

/// The program of a `command` producer: a path (with a '/') is the scenario's own and
/// must be an executable file; a bare name is looked up on PATH when the scenario runs.
fn live_program(c: &mut Checker, key: &str, folder: &Path, program: &str) {
    use std::os::unix::fs::PermissionsExt;
    if program.is_empty() {
        c.value(key, "expected a program, found an empty string");
    } else if program.contains('/') {
        if let Some(p) = c.existing_file(key, folder, program, "program") {
            let executable = fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
            if !executable {
                c.value(key, format!("expected an executable program, but `{}` is not executable", p.display()));
            }
        }
    }
}

/// Rule files the scenario adds after the producer's, with the producer's variables
/// put in.
fn extra_rules(c: &mut Checker, path: &Path, list: &[ExtraRuleFile], ctx: &ProducerCtx, scenario: &mut Scenario) {
    let folder = path.parent().unwrap_or(Path::new(""));
    for (i, entry) in list.iter().enumerate() {
        let key = item("extra_rules", i);
        let (file, only) = match entry {
            ExtraRuleFile::Path(f) => (f, None),
            ExtraRuleFile::Entry(e) => (&e.file, e.only.as_ref()),
        };
        for (j, name) in only.into_iter().flatten().enumerate() {
            ctx.check_name(c, &item(&join(&key, "only"), j), name);
        }
        if only.is_some_and(|o| !o.contains(&ctx.producer.name)) {
            continue;
        }
        let Some(resolved) = c.existing_file(&key, folder, file, "rule file") else { continue };
        let format =
            if resolved.extension().is_some_and(|e| e == "nft") { RuleFormat::Nft } else { RuleFormat::Iptables };
        if Some(format) != ctx.producer.format {
            if scenario.not_applicable.is_none() {
                c.value(
                    &key,
                    format!(
                        "`{file}` is an {} file, but producer `{}` loads {} rules; limit it with \
                         `only:` or mark the producer `not_applicable`",
                        if format == RuleFormat::Nft { "nft" } else { "iptables-save" },
                        ctx.producer.name,
                        if format == RuleFormat::Nft { "iptables-save" } else { "nft" },
                    ),
                );
            }
            continue;
        }
        let text = match fs::read_to_string(&resolved) {
            Ok(t) => t,
            Err(e) => {
                c.value(&key, format!("cannot read `{}`: {e}", resolved.display()));
                continue;
            }
        };
        match substitute(&resolved, &text, ctx.producer) {
            Ok(text) => scenario.rules.files.push(RuleFile { path: resolved, format, text: Some(text) }),
            Err(e) => c.diagnostics.extend(e.diagnostics),
        }
    }
}

fn contract(c: &mut Checker, f: &ContractFile) -> Option<Contract> {
    let name = match f.name.as_deref() {
        None | Some("") => {
            c.missing("contract.name", "the contract's name, e.g. docker-bridge");
            None
        }
        Some(n) => Some(n.to_string()),
    };
    let statements: Vec<String> = c
        .list("contract.statements", &f.statements, "a non-empty list of statement numbers")
        .iter()
        .map(|w| w.0.clone())
        .collect();
    Some(Contract { name: name?, statements, title: f.title.clone() })
}

/// The host, its bridges and uplinks, and the nodes: everything but rules, probes and
/// counters.
fn build_lab(
    c: &mut Checker,
    host: HostFile,
    node_files: indexmap::IndexMap<String, Option<NodeFile>>,
) -> (Scenario, LabIndex) {
    let host_name = host.name.clone().unwrap_or_else(|| "host".to_string());
    if host.name.is_some() {
        c.node_name("host.name", &host_name, false);
    }

    // Every address of the lab with where it was written, in file order.
    let mut addresses: Vec<(Ipv4Addr, String)> = Vec::new();
    let mut rejected = HashSet::new();

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
                    None => rejected.extend(written_address(text)),
                }
                a
            }
        };
        bridges.push(Bridge { name: bname.clone(), address });
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
        let text = u.as_ref().and_then(|u| u.address.as_deref());
        let address = match text {
            None => {
                c.missing(&akey, "an IPv4 address with a prefix length such as 192.0.2.1/24");
                None
            }
            Some(text) => c.cidr(&akey, text),
        };
        match address {
            Some(a) => addresses.push((a.addr(), akey)),
            None => rejected.extend(text.and_then(written_address)),
        }
        uplink_nets.push(address);
        uplinks.push(Uplink {
            name: uname.clone(),
            address: address.unwrap_or(Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 32).unwrap()),
            peer: NodeId::HOST,
        });
    }

    // The host routes a subnet through one interface: two with the same one contradict.
    let mut subnets: Vec<(Ipv4Net, String)> = Vec::new();
    let host_nets = bridges
        .iter()
        .filter_map(|b| {
            b.address.map(|a| (a, format!("bridge `{}`", b.name), join(&join("host.bridges", &b.name), "address")))
        })
        .chain(uplinks.iter().zip(&uplink_nets).filter_map(|(u, n)| {
            n.map(|a| (a, format!("uplink `{}`", u.name), join(&join("host.uplinks", &u.name), "address")))
        }))
        .collect::<Vec<_>>();
    for (net, what, key) in host_nets {
        match subnets.iter().find(|(n, _)| *n == net.trunc()) {
            Some((_, first)) => c.value(
                &key,
                format!(
                    "{what} has the subnet {}, as {first} does; the host would route it through only one of them",
                    net.trunc()
                ),
            ),
            None => subnets.push((net.trunc(), what)),
        }
    }

    let mut nodes = vec![Node {
        name: host_name.clone(),
        interfaces: Vec::new(),
        sysctls: c.sysctls("host.sysctls", host.sysctls.as_ref()),
        loopback: true,
        services: c.services("host.services", host.services.as_ref()),
        container: None,
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
            c.key(&key, format!("`{nname}` is the host's name (`host.name`); node names must differ from it"));
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
                Some(first) if f.name.is_some() => {
                    c.value(&nkey, format!("interface name `{ifname}` is already used by {first}"))
                }
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
                    c.missing(&akey, "an IPv4 address with a prefix length such as 192.168.0.2/20");
                    None
                }
                Some(text) => c.cidr(&akey, text),
            };
            if let Some(a) = address {
                let subnet = match attach {
                    Some(Attach::Bridge(k)) => bridges[k].address.map(|n| (n, format!("bridge `{}`", bridges[k].name))),
                    Some(Attach::Uplink(k)) => uplink_nets[k].map(|n| (n, format!("uplink `{}`", uplinks[k].name))),
                    None => None,
                };
                if let Some((net, what)) = subnet {
                    if !net.contains(&a.addr()) {
                        c.value(
                            &akey,
                            format!("expected an address in {what}'s subnet {}, found {}", net.trunc(), a.addr()),
                        );
                    }
                }
                addresses.push((a.addr(), akey.clone()));
            } else {
                incomplete.insert(id);
                rejected.extend(f.address.as_deref().and_then(written_address));
            }

            let gkey = join(&fkey, "gateway");
            let gateway = f.gateway.as_deref().and_then(|g| c.address(&gkey, g));
            if let (Some(g), Some(a)) = (gateway, address) {
                if g == a.addr() {
                    c.value(&gkey, format!("expected the address of a router, found the interface's own address {g}"));
                } else if !a.contains(&g) {
                    c.value(&gkey, format!("expected a gateway in the interface's subnet {}, found {g}", a.trunc()));
                }
            }
            if f.gateway.is_some() {
                match &gateway_at {
                    Some(first) => {
                        c.key(&gkey, format!("a node has one default route, and {first} already sets a gateway"))
                    }
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
        let loopback = nfile.loopback.unwrap_or(true);
        let mut sysctls = Vec::new();
        if !loopback {
            // Lets the node send to 127.0.0.0/8 through its interfaces, and take
            // answers from there, as a neighbour on the host's segment can.
            sysctls.push(("net.ipv4.conf.all.route_localnet".to_string(), "1".to_string()));
        }
        sysctls.extend(c.sysctls(&join(&key, "sysctls"), nfile.sysctls.as_ref()));
        nodes.push(Node {
            name: nname.clone(),
            interfaces,
            sysctls,
            loopback,
            services: c.services(&join(&key, "services"), nfile.services.as_ref()),
            container: None,
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
    let mut taken: HashSet<String> =
        bridges.iter().map(|b| b.name.clone()).chain(uplinks.iter().map(|u| u.name.clone())).collect();
    for node in nodes.iter_mut().skip(1) {
        for iface in &mut node.interfaces {
            iface.host_side = match iface.attach {
                Attach::Uplink(k) => uplinks[k].name.clone(),
                Attach::Bridge(_) => {
                    let wanted = format!("{}-{}", node.name, iface.name);
                    let name = if wanted.len() <= MAX_IFNAME && !taken.contains(&wanted) {
                        wanted
                    } else {
                        (0..).map(|k| format!("veth{k}")).find(|n| !taken.contains(n)).expect("some vethN is free")
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
            Some(first) => {
                c.value(key, format!("address {addr} is already used by {first}; each address in the lab is unique"))
            }
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
        sequential: false,
        host: HostSetup { forwarding: host.forwarding.unwrap_or(false), bridges, uplinks },
        nodes,
        rules: RuleSet { backends: Vec::new(), files: Vec::new(), ipsets: Vec::new(), live: None },
        probes: Vec::new(),
        counters: Vec::new(),
        networks: Vec::new(),
        producer: None,
        contract: None,
        not_applicable: None,
    };
    let lab = LabIndex { ids, incomplete, rejected };
    (scenario, lab)
}

/// The rule set, and the rule format when the back ends agree on one.
/// `prefix` is the key path of the `rules` mapping; files are found relative to `folder`.
fn rules(
    c: &mut Checker,
    prefix: &str,
    folder: &Path,
    file: Option<&super::file::RulesFile>,
) -> (RuleSet, Option<RuleFormat>) {
    let Some(file) = file else {
        c.missing(prefix, "a mapping with `backends` and `files`");
        let set = RuleSet { backends: Vec::new(), files: Vec::new(), ipsets: Vec::new(), live: None };
        return (set, None);
    };

    let mut backends: Vec<Backend> = Vec::new();
    let list = c.list(
        &join(prefix, "backends"),
        &file.backends,
        "a non-empty list of back ends (iptables-nft, iptables-legacy, nft)",
    );
    let mut complete = true;
    for (i, b) in list.iter().enumerate() {
        let key = item(&join(prefix, "backends"), i);
        match crate::backend::by_name(b) {
            None => {
                complete = false;
                c.value(
                    &key,
                    format!(
                        "expected a back end (one of {}), found `{b}`",
                        names(crate::backend::ALL.iter().map(|b| b.name()))
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
        Some(first) if backends.iter().all(|b| b.format() == first.format()) => complete.then_some(first.format()),
        Some(_) => {
            c.value(
                &join(prefix, "backends"),
                "expected back ends that share one rule format, found nft (which loads nft \
                 scripts) together with iptables (which loads iptables-save files); split \
                 the scenario into one per format",
            );
            None
        }
        None => None,
    };

    let live = file.live.as_ref().and_then(|l| live(c, &join(prefix, "live"), l));
    let mut files = Vec::new();
    let list: &[String] = match (&file.files, &file.live) {
        (Some(_), Some(_)) => {
            c.key(&join(prefix, "live"), "expected either `files` or `live`: rules come from files or from a program");
            &[]
        }
        (None, Some(_)) => &[],
        _ => c.list(&join(prefix, "files"), &file.files, "a non-empty list of rule file paths (or `live`)"),
    };
    for (i, f) in list.iter().enumerate() {
        if let Some(path) = c.existing_file(&item(&join(prefix, "files"), i), folder, f, "rule file") {
            files.push(RuleFile { path, format: format.unwrap_or(RuleFormat::Iptables), text: None });
        }
    }
    let mut ipsets = Vec::new();
    for (i, f) in file.ipsets.iter().flatten().enumerate() {
        ipsets.extend(c.existing_file(&item(&join(prefix, "ipsets"), i), folder, f, "ipset restore file"));
    }
    (RuleSet { backends, files, ipsets, live }, format)
}

/// Longest a live program's step may be given.
const MAX_LIVE_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_LIVE_TIMEOUT: Duration = Duration::from_secs(60);

fn live(c: &mut Checker, key: &str, f: &super::file::LiveFile) -> Option<Live> {
    let program = match f.program.as_deref() {
        None => {
            c.missing(&join(key, "program"), "the program that writes the rules");
            return None;
        }
        Some(p) => match LiveProgram::ALL.into_iter().find(|l| l.name() == p) {
            Some(l) => l,
            None => {
                let all = names(LiveProgram::ALL.iter().map(|l| l.name()));
                c.value(&join(key, "program"), format!("expected one of {all}, found `{p}`"));
                return None;
            }
        },
    };
    let run = f.run.clone().unwrap_or_default();
    let commands = f.commands.clone().unwrap_or_default();
    match program {
        LiveProgram::Command if run.is_empty() => {
            c.missing(&join(key, "run"), "the command to run, as a list: [program, arguments...]");
        }
        LiveProgram::Command => {}
        _ if f.run.is_some() => {
            c.key(&join(key, "run"), format!("expected `run` only with program `command`, not `{}`", program.name()))
        }
        _ => {}
    }
    if f.commands.is_some() && !matches!(program, LiveProgram::Ufw | LiveProgram::Firewalld | LiveProgram::Dockerd) {
        c.key(
            &join(key, "commands"),
            "expected `commands` only with program `ufw`, `firewalld` or `dockerd` (ufw command lines run before dockerd)",
        );
    }
    let driver = match (&f.driver, program) {
        (None, _) => None,
        (Some(d), LiveProgram::Netavark) if ["iptables", "nftables", "firewalld"].contains(&d.as_str()) => {
            Some(d.clone())
        }
        (Some(d), LiveProgram::Netavark) => {
            c.value(&join(key, "driver"), format!("expected iptables, nftables or firewalld, found `{d}`"));
            None
        }
        (Some(_), _) => {
            c.key(&join(key, "driver"), "expected `driver` only with program `netavark`");
            None
        }
    };
    let mut daemon = Vec::new();
    match (&f.daemon, program) {
        (None, _) => {}
        (Some(options), LiveProgram::Dockerd) => {
            for (name, value) in options {
                let at = join(&join(key, "daemon"), name);
                if let Some(why) = reserved_daemon_option(name) {
                    c.key(&at, format!("`{name}` is netconform's to set: {why}; expected any other daemon.json key"));
                } else if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-.".contains(ch)) {
                    c.key(&at, "expected a daemon.json key: letters, digits, `-` and `.`");
                } else {
                    daemon.push((name.clone(), value.clone()));
                }
            }
        }
        (Some(_), _) => c.key(&join(key, "daemon"), "expected `daemon` only with program `dockerd`"),
    }
    let timeout = match &f.timeout {
        None => DEFAULT_LIVE_TIMEOUT,
        Some(t) => match humantime::parse_duration(t.0.trim()) {
            Ok(d) if !d.is_zero() && d <= MAX_LIVE_TIMEOUT => d,
            _ => {
                c.value(
                    &join(key, "timeout"),
                    format!("expected a duration greater than 0 and at most 10m, found `{}`", t.0),
                );
                DEFAULT_LIVE_TIMEOUT
            }
        },
    };
    let mut reads = Vec::new();
    match (&f.reads, program) {
        (None, _) => {}
        (Some(paths), LiveProgram::Command) => {
            for (i, path) in paths.iter().enumerate() {
                if path.starts_with('/') {
                    reads.push(path.clone());
                } else {
                    c.value(
                        &format!("{}[{i}]", join(key, "reads")),
                        format!("expected an absolute path, found `{path}`"),
                    );
                }
            }
        }
        (Some(_), _) => c.key(
            &join(key, "reads"),
            format!("expected `reads` only with program `command`; `{}` knows what it reads", program.name()),
        ),
    }
    Some(Live { program, run, commands, driver, daemon, timeout, reads })
}

/// Why a daemon.json key is not the scenario's to set, if it is not.
fn reserved_daemon_option(name: &str) -> Option<&'static str> {
    match name {
        "data-root" | "exec-root" | "pidfile" | "hosts" | "deprecated-key-path" => {
            Some("the private daemon keeps everything under the sandbox's /run")
        }
        "storage-driver" | "exec-opts" | "cgroup-parent" => {
            Some("the private daemon's containers run on vfs, under a cgroup that netconform removes")
        }
        "bip" => Some("docker0's address comes from the network whose bridge is docker0, under `networks`"),
        _ => None,
    }
}

/// Container networks and the containers on them, added to the lab after its nodes.
fn containers(c: &mut Checker, scenario: &mut Scenario, lab: &mut LabIndex, file: &ScenarioFile) {
    for (name, n) in file.networks.iter().flatten() {
        let key = join("networks", name);
        let default = super::file::NetworkFile::default();
        let n = n.as_ref().unwrap_or(&default);
        let bridge = match &n.bridge {
            None => {
                c.missing(&join(&key, "bridge"), "the name of the bridge the producer creates");
                continue;
            }
            Some(b) => b.clone(),
        };
        c.ifname(&join(&key, "bridge"), &bridge, false);
        if scenario.host.bridges.iter().any(|b| b.name == bridge)
            || scenario.host.uplinks.iter().any(|u| u.name == bridge)
        {
            c.value(&join(&key, "bridge"), format!("the host already has an interface named `{bridge}`"));
        }
        let subnet = match &n.subnet {
            None => {
                c.missing(&join(&key, "subnet"), "the network's subnet, e.g. 172.17.0.0/16");
                continue;
            }
            Some(s) => match s.parse::<Ipv4Net>() {
                Ok(net) => net.trunc(),
                Err(_) => {
                    c.value(&join(&key, "subnet"), format!("expected a subnet such as 172.17.0.0/16, found `{s}`"));
                    continue;
                }
            },
        };
        let gateway = match &n.gateway {
            None => subnet.hosts().next().unwrap_or(subnet.addr()),
            Some(g) => match c.address(&join(&key, "gateway"), g) {
                Some(a) => a,
                None => continue,
            },
        };
        if !subnet.contains(&gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
            c.value(&join(&key, "gateway"), format!("expected a host address of {subnet}, found {gateway}"));
        } else if let Some(owner) = scenario.owner_of(gateway) {
            c.value(
                &join(&key, "gateway"),
                format!("address {gateway} already belongs to {}", scenario.node(owner).name),
            );
        }
        scenario.networks.push(Network {
            name: name.clone(),
            bridge,
            subnet,
            gateway,
            internal: n.internal.unwrap_or(false),
        });
    }
    for (name, f) in file.containers.iter().flatten() {
        let key = join("containers", name);
        c.node_name(&key, name, true);
        if lab.ids.contains_key(name) {
            c.key(&key, format!("`{name}` is already the name of a node; names are unique in the lab"));
            continue;
        }
        let default = super::file::ContainerFile::default();
        let f = f.as_ref().unwrap_or(&default);
        let network = match &f.network {
            None => {
                c.missing(&join(&key, "network"), "the name of the network the container joins");
                None
            }
            Some(n) => {
                let found = scenario.networks.iter().position(|x| &x.name == n);
                if found.is_none() {
                    let known = names(scenario.networks.iter().map(|x| x.name.as_str()));
                    c.value(&join(&key, "network"), format!("no network named `{n}`; networks: {known}"));
                }
                found
            }
        };
        let address = match &f.address {
            None => {
                c.missing(&join(&key, "address"), "the container's IPv4 address, e.g. 172.17.0.2");
                None
            }
            Some(a) => c.address(&join(&key, "address"), a),
        };
        if let (Some(net), Some(addr)) = (network, address) {
            let subnet = scenario.networks[net].subnet;
            if !subnet.contains(&addr) || addr == subnet.network() || addr == subnet.broadcast() {
                c.value(&join(&key, "address"), format!("expected a host address of {subnet}, found {addr}"));
            } else if let Some(owner) = scenario.owner_of(addr) {
                c.value(
                    &join(&key, "address"),
                    format!("address {addr} already belongs to {}", scenario.node(owner).name),
                );
            }
        }
        let mut publish = Vec::new();
        for (i, p) in f.publish.iter().flatten().enumerate() {
            match parse_publish(p) {
                Some(p) => publish.push(p),
                None => c.value(
                    &item(&join(&key, "publish"), i),
                    format!("expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] such as 8080:80, found `{p}`"),
                ),
            }
        }
        let node = Node {
            name: name.clone(),
            interfaces: Vec::new(),
            sysctls: c.sysctls(&join(&key, "sysctls"), f.sysctls.as_ref()),
            loopback: true,
            services: c.services(&join(&key, "services"), f.services.as_ref()),
            container: None,
        };
        if let (Some(network), Some(address)) = (network, address) {
            lab.ids.insert(name.clone(), NodeId(scenario.nodes.len()));
            scenario.nodes.push(Node { container: Some(Container { network, address, publish }), ..node });
        }
    }
}

fn parse_publish(text: &str) -> Option<Publish> {
    let (ports, udp) = match text.rsplit_once('/') {
        Some((p, "tcp")) => (p, false),
        Some((p, "udp")) => (p, true),
        Some(_) => return None,
        None => (text, false),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host, container) = match parts.as_slice() {
        [h, c] => (None, h, c),
        [ip, h, c] => (Some(ip.parse().ok()?), h, c),
        _ => return None,
    };
    let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    Some(Publish { host_ip, host_port: port(host)?, container_port: port(container)?, udp })
}

fn probes(
    c: &mut Checker,
    scenario: &Scenario,
    lab: &LabIndex,
    list: &[ProbeFile],
    ctx: Option<&ProducerCtx>,
) -> Vec<Probe> {
    let mut out = Vec::new();
    // Probe name → where it was declared.
    let mut names_seen: HashMap<String, String> = HashMap::new();
    for (i, p) in list.iter().enumerate() {
        let key = item("probes", i);
        let (p, difference) = differs(c, &key, p, ctx);
        let p = &p;
        let node = |c: &mut Checker, field: &str, text: &str| -> Option<NodeId> {
            let id = lab.ids.get(text).copied();
            if id.is_none() {
                c.value(&join(&key, field), format!("no node named `{text}`; nodes: {}", lab.node_list(scenario)));
            }
            id
        };

        let from = match &p.from {
            None => {
                c.missing(&join(&key, "from"), "the name of the node that sends the probe");
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
        let proto_name = p.proto.as_deref().unwrap_or(if p.port.is_some() { "tcp" } else { "icmp" });
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
                    c.missing(&join(&key, "port"), &format!("a port from 1 to 65535 for a {proto_name} probe"));
                }
                port.map(|n| if proto_name == "tcp" { Proto::Tcp(n) } else { Proto::Udp(n) })
            }
            other => {
                c.value(&join(&key, "proto"), format!("expected icmp, tcp or udp, found `{other}`"));
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
                c.value(&join(&key, "expect"), format!("expected reached, refused or dropped, found `{other}`"));
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
                c.value(&join(&key, "name"), "expected a probe name, found an empty string");
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
                    if p.name.is_some() { join(&key, "name") } else { key.clone() }.as_str(),
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
                difference,
            });
        }
    }
    out
}

/// The probe as the producer in `ctx` is expected to see it, and why it differs from
/// the contract, if it does.
fn differs(c: &mut Checker, key: &str, p: &ProbeFile, ctx: Option<&ProducerCtx>) -> (ProbeFile, Option<String>) {
    let mut probe = p.clone();
    let Some(map) = &p.differs else { return (probe, None) };
    let Some(ctx) = ctx else {
        c.key(&join(key, "differs"), "expected `differs` only in a scenario with `producers`");
        return (probe, None);
    };
    let mut difference = None;
    for (producer, d) in map {
        let dkey = join(&join(key, "differs"), producer);
        ctx.check_name(c, &dkey, producer);
        let why = match d.why.as_deref().map(str::trim) {
            None | Some("") => {
                c.missing(&join(&dkey, "why"), "the reason this producer differs from the contract here");
                None
            }
            Some(w) => Some(w.to_string()),
        };
        if d.expect.is_none() && d.served_by.is_none() && d.source_seen.is_none() {
            c.value(&dkey, "expected at least one of `expect`, `served_by` or `source_seen` to differ");
        }
        if producer == &ctx.producer.name {
            if let Some(e) = &d.expect {
                probe.expect = Some(e.clone());
                if e != "reached" {
                    // What answers is moot when nothing should.
                    probe.served_by = None;
                    probe.source_seen = None;
                }
            }
            if d.served_by.is_some() {
                probe.served_by = d.served_by.clone();
            }
            if d.source_seen.is_some() {
                probe.source_seen = d.source_seen.clone();
            }
            difference = why;
        }
    }
    (probe, difference)
}

/// A probe's destination: a node's first address, or an address of the lab or of
/// loopback.
fn resolve_to(c: &mut Checker, scenario: &Scenario, lab: &LabIndex, key: &str, text: &str) -> Option<Ipv4Addr> {
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
            if !lab.rejected.contains(&a) {
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
                format!("expected a node name (one of {}) or an IPv4 address, found `{text}`", lab.node_list(scenario)),
            );
            None
        }
    }
}

fn counters(
    c: &mut Checker,
    format: Option<RuleFormat>,
    list: &[CounterFile],
    ctx: Option<&ProducerCtx>,
) -> Vec<CounterExpectation> {
    let mut out = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let key = item("counters", i);
        if let Some(only) = &f.only {
            let Some(ctx) = ctx else {
                c.key(&join(&key, "only"), "expected `only` only in a scenario with `producers`");
                continue;
            };
            for (j, name) in only.iter().enumerate() {
                ctx.check_name(c, &item(&join(&key, "only"), j), name);
            }
            if !only.contains(&ctx.producer.name) {
                continue;
            }
        }

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
                    format!("expected an nft family (one of {}), found `{fam}`", NFT_FAMILIES.join(", ")),
                );
                None
            }
            (None, Some(RuleFormat::Nft)) => Some(NFT_DEFAULT_FAMILY.to_string()),
            (fam, _) => fam.clone(),
        };

        let table = match &f.table {
            None => {
                c.missing(&join(&key, "table"), "the name of the table that holds the chain");
                None
            }
            Some(t) if format == Some(RuleFormat::Iptables) && !IPTABLES_TABLES.contains(&t.as_str()) => {
                c.value(
                    &join(&key, "table"),
                    format!("expected an iptables table (one of {}), found `{t}`", IPTABLES_TABLES.join(", ")),
                );
                None
            }
            Some(t) if t.is_empty() => {
                c.value(&join(&key, "table"), "expected a table name, found an empty string");
                None
            }
            Some(t) => Some(t.clone()),
        };

        let chain = match &f.chain {
            None => {
                c.missing(&join(&key, "chain"), "the name of the chain that holds the rule");
                None
            }
            Some(ch) if ch.is_empty() => {
                c.value(&join(&key, "chain"), "expected a chain name, found an empty string");
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
                c.value(&key, "expected one of `rule`, `position` or `comment` to pick the rule, found none");
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

        if let (Some(table), Some(chain), Some(rule), Some(packets), Some(bytes)) = (table, chain, rule, packets, bytes)
        {
            out.push(CounterExpectation { location: c.location(&key), family, table, chain, rule, packets, bytes });
        }
    }
    out
}

/// The one of `rule`, `position` and `comment` that is given.
fn selector(c: &mut Checker, key: &str, f: &CounterFile, chain: Option<&str>) -> Option<RuleSelector> {
    if let Some(rule) = &f.rule {
        let rkey = join(key, "rule");
        let mut text = rule.trim();
        if let Some(rest) = text.strip_prefix("-A ") {
            let rest = rest.trim_start();
            let (named, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match chain {
                Some(ch) if ch != named => {
                    c.value(&rkey, format!("expected a rule of chain `{ch}`, found one that starts with `-A {named}`"));
                    return None;
                }
                _ => text = tail.trim_start(),
            }
        }
        if text.is_empty() {
            c.value(&rkey, "expected the text of a rule, such as `-p tcp --dport 22 -j ACCEPT`, found none");
            return None;
        }
        return Some(RuleSelector::Text(text.to_string()));
    }
    if let Some(n) = f.position {
        return match usize::try_from(n.0) {
            Ok(p) if p >= 1 => Some(RuleSelector::Position(p)),
            _ => {
                c.value(&join(key, "position"), format!("expected a rule position of 1 or more, found {}", n.0));
                None
            }
        };
    }
    if let Some(comment) = &f.comment {
        if comment.is_empty() {
            c.value(&join(key, "comment"), "expected a rule comment, found an empty string");
            return None;
        }
        return Some(RuleSelector::Comment(comment.clone()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use tempfile::TempDir;

    /// A valid scenario that uses every key. The failing cases below each edit it.
    const GOOD: &str = r#"description: Two containers on a bridge and one external node
timeout: 300ms
ipv6: true
host:
  forwarding: true
  sysctls:
    net.ipv4.conf.all.rp_filter: 0
    net.ipv4.conf.all.route_localnet: true
    net.ipv4.ip_forward: "1"
  bridges:
    br0:
      address: 172.20.0.1/16
    iso:
  uplinks:
    up0:
      address: 192.0.2.1/24
  services:
    tcp: [22]
nodes:
  c1:
    interfaces:
      - bridge: br0
        address: 172.20.0.2/16
        gateway: 172.20.0.1
    services:
      tcp: [80, 8080]
      udp: [53]
  c2:
    interfaces:
      - bridge: br0
        address: 172.20.0.3/16
        gateway: 172.20.0.1
      - bridge: iso
        name: inner
        address: 10.9.0.3/24
  ext:
    interfaces:
      - uplink: up0
        address: 192.0.2.2/24
        gateway: 192.0.2.1
    sysctls:
      net.ipv4.tcp_syncookies: 1
    services:
      tcp: [443]
rules:
  backends: [iptables-nft, iptables-legacy]
  files: [rules/base.rules, rules/extra.rules]
probes:
  - from: c1
    to: c2
    port: 80
    expect: dropped
  - name: external web
    from: ext
    to: 192.0.2.1
    port: 443
    expect: reached
    served_by: c1
    source_seen: ext
    timeout: 1s
  - from: c1
    to: 127.0.0.1
    expect: refused
  - from: host
    to: ext
    proto: udp
    port: 53
    expect: reached
    served_by: c1
    source_seen: 192.0.2.1
counters:
  - table: filter
    chain: FORWARD
    rule: -A FORWARD -i br0 -j DROP
    packets: 1
  - table: nat
    chain: PREROUTING
    position: 2
    packets: ">= 1"
    bytes: 60
  - table: filter
    chain: INPUT
    comment: allow ssh
    packets: ">=0"
"#;

    /// A folder with rule files and `text` as `scenario.yaml`.
    fn write(text: &str) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("rules")).unwrap();
        fs::write(dir.path().join("rules/base.rules"), "*filter\nCOMMIT\n").unwrap();
        fs::write(dir.path().join("rules/extra.rules"), "*nat\nCOMMIT\n").unwrap();
        fs::write(dir.path().join("rules/base.nft"), "flush ruleset\n").unwrap();
        let path = dir.path().join("scenario.yaml");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn load_str(text: &str) -> Result<Scenario, InputError> {
        let (_dir, path) = write(text);
        load(&path, "test/scenario.yaml")
    }

    fn errors(text: &str) -> Vec<Diagnostic> {
        match load_str(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.diagnostics,
        }
    }

    /// GOOD with the first `from` replaced by `to`.
    fn edit(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "GOOD has no {from:?}");
        GOOD.replacen(from, to, 1)
    }

    /// Where `needle` first occurs in `text`; a `|` in the needle marks the exact spot.
    fn loc(text: &str, needle: &str) -> Location {
        let offset = needle.find('|').unwrap_or(0);
        let plain = needle.replacen('|', "", 1);
        let at = text.find(&plain).unwrap_or_else(|| panic!("no {plain:?} in text")) + offset;
        let before = &text[..at];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location { line: before.matches('\n').count() + 1, column: before[line_start..].chars().count() + 1 }
    }

    /// Exactly one diagnostic, with this key, at `needle`, saying `says`.
    fn assert_one(text: &str, key: &str, needle: &str, says: &str) {
        let diagnostics = errors(text);
        assert_eq!(diagnostics.len(), 1, "{}", InputError::from(diagnostics.clone()));
        assert_diagnostic(text, &diagnostics, key, needle, says);
    }

    /// Some diagnostic with this key, at `needle`, saying `says`.
    fn assert_diagnostic(text: &str, diagnostics: &[Diagnostic], key: &str, needle: &str, says: &str) {
        let all = InputError::from(diagnostics.to_vec());
        let d = diagnostics
            .iter()
            .find(|d| d.key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("no diagnostic for {key}:\n{all}"));
        assert_eq!(d.location, Some(loc(text, needle)), "{all}");
        assert!(d.message.contains(says), "{:?} does not say {says:?}", d.message);
    }

    fn at(line: usize, column: usize) -> Location {
        Location { line, column }
    }

    #[test]
    fn a_node_without_loopback_routes_127_through_its_interfaces() {
        let s = load_str(&edit("  ext:\n    interfaces:", "  ext:\n    loopback: false\n    interfaces:"))
            .unwrap_or_else(|e| panic!("{e}"));
        let ext = s.nodes.iter().find(|n| n.name == "ext").expect("ext");
        assert!(!ext.loopback);
        // route_localnet first, so the node's own sysctls can still change it.
        assert_eq!(
            ext.sysctls,
            vec![
                ("net.ipv4.conf.all.route_localnet".to_string(), "1".to_string()),
                ("net.ipv4.tcp_syncookies".to_string(), "1".to_string())
            ]
        );
        assert!(s.nodes.iter().filter(|n| n.name != "ext").all(|n| n.loopback));
    }

    #[test]
    fn a_folded_skip_reason_is_one_line() {
        let text = format!("skip: >\n  not testable\n  yet\n{GOOD}");
        let (_dir, path) = write(&text);
        let s = load(&path, "test/scenario.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.skip.as_deref(), Some("not testable yet"));
    }

    #[test]
    fn good_scenario_loads() {
        let (dir, path) = write(GOOD);
        let s = load(&path, "test/scenario.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.path, path);
        assert_eq!(s.name, "test/scenario.yaml");
        assert_eq!(s.description.as_deref(), Some("Two containers on a bridge and one external node"));
        assert_eq!(s.skip, None);
        assert!(s.ipv6);
        assert_eq!(s.timeout, Duration::from_millis(300));

        assert!(s.host.forwarding);
        let bridges: Vec<_> = s.host.bridges.iter().map(|b| (b.name.as_str(), b.address)).collect();
        assert_eq!(bridges, [("br0", Some("172.20.0.1/16".parse().unwrap())), ("iso", None)]);
        assert_eq!(s.host.uplinks.len(), 1);
        assert_eq!(s.host.uplinks[0].name, "up0");
        assert_eq!(s.host.uplinks[0].address, "192.0.2.1/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(s.host.uplinks[0].peer, NodeId(3));

        let names: Vec<_> = s.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["host", "c1", "c2", "ext"]);
        let host = s.host();
        assert!(host.interfaces.is_empty());
        assert_eq!(
            host.sysctls,
            [
                ("net.ipv4.conf.all.rp_filter".to_string(), "0".to_string()),
                ("net.ipv4.conf.all.route_localnet".to_string(), "1".to_string()),
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            ]
        );
        assert_eq!(host.services, Services { tcp: vec![22], udp: vec![], forward: vec![] });

        let c1 = s.node(NodeId(1));
        assert_eq!(c1.services, Services { tcp: vec![80, 8080], udp: vec![53], forward: vec![] });
        let c2 = s.node(NodeId(2));
        let ifaces: Vec<_> = c2
            .interfaces
            .iter()
            .map(|i| (i.name.as_str(), i.host_side.as_str(), i.attach, i.address.to_string(), i.gateway))
            .collect();
        assert_eq!(
            ifaces,
            [
                ("eth0", "c2-eth0", Attach::Bridge(0), "172.20.0.3/16".to_string(), Some(Ipv4Addr::new(172, 20, 0, 1))),
                ("inner", "c2-inner", Attach::Bridge(1), "10.9.0.3/24".to_string(), None),
            ]
        );
        assert_eq!(c1.interfaces[0].host_side, "c1-eth0");
        let ext = s.node(NodeId(3));
        assert_eq!(ext.interfaces[0].host_side, "up0");
        assert_eq!(ext.interfaces[0].attach, Attach::Uplink(0));
        assert_eq!(ext.sysctls, [("net.ipv4.tcp_syncookies".to_string(), "1".to_string())]);

        assert_eq!(s.rules.backends, [Backend::IptablesNft, Backend::IptablesLegacy]);
        let files: Vec<_> = s.rules.files.iter().map(|f| (f.path.clone(), f.format)).collect();
        let folder = dir.path();
        assert_eq!(
            files,
            [
                (folder.join("rules/base.rules"), RuleFormat::Iptables),
                (folder.join("rules/extra.rules"), RuleFormat::Iptables),
            ]
        );

        let p = &s.probes;
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].name, "c1 -> c2:80/tcp");
        assert_eq!(p[0].location, loc(GOOD, "  - |from: c1\n    to: c2"));
        assert_eq!((p[0].from, p[0].to), (NodeId(1), Ipv4Addr::new(172, 20, 0, 3)));
        assert_eq!(p[0].to_text, "c2");
        assert_eq!((p[0].proto, p[0].expect), (Proto::Tcp(80), Expect::Dropped));
        assert_eq!((p[0].served_by, p[0].source_seen.clone()), (None, None));
        assert_eq!(p[0].timeout, Duration::from_millis(300));

        assert_eq!(p[1].name, "external web");
        assert_eq!(p[1].location, loc(GOOD, "  - |name: external web"));
        assert_eq!(p[1].to, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p[1].served_by, Some(NodeId(1)));
        assert_eq!(p[1].source_seen, Some(SourceSeen::Node(NodeId(3))));
        assert_eq!(p[1].timeout, Duration::from_secs(1));

        assert_eq!(p[2].name, "c1 -> 127.0.0.1 icmp");
        assert_eq!((p[2].proto, p[2].expect), (Proto::Icmp, Expect::Refused));
        assert_eq!(p[2].to, Ipv4Addr::LOCALHOST);

        assert_eq!(p[3].name, "host -> ext:53/udp");
        assert_eq!(p[3].from, NodeId::HOST);
        assert_eq!(p[3].to, Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(p[3].proto, Proto::Udp(53));
        assert_eq!(p[3].source_seen, Some(SourceSeen::Address(Ipv4Addr::new(192, 0, 2, 1))));

        let c = &s.counters;
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].location, loc(GOOD, "  - |table: filter\n    chain: FORWARD"));
        assert_eq!(c[0].family, None);
        assert_eq!((c[0].table.as_str(), c[0].chain.as_str()), ("filter", "FORWARD"));
        assert_eq!(c[0].rule, RuleSelector::Text("-i br0 -j DROP".into()));
        assert_eq!((c[0].packets, c[0].bytes), (Count::Exactly(1), None));
        assert_eq!(c[1].rule, RuleSelector::Position(2));
        assert_eq!((c[1].packets, c[1].bytes), (Count::AtLeast(1), Some(Count::Exactly(60))));
        assert_eq!(c[2].rule, RuleSelector::Comment("allow ssh".into()));
        assert_eq!(c[2].packets, Count::AtLeast(0));
    }

    #[test]
    fn defaults() {
        let text = "\
host:
  bridges:
    br0: { address: 10.0.0.1/24 }
nodes:
  a:
    interfaces: [{ bridge: br0, address: 10.0.0.2/24 }]
rules:
  backends: [nft]
  files: [rules/base.nft]
probes:
  - { from: a, to: host, expect: reached }
counters:
  - { table: t, chain: c, position: 1, packets: 0 }
";
        let s = load_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.timeout, Duration::from_millis(200));
        assert!(!s.ipv6);
        assert_eq!(s.description, None);
        assert!(!s.host.forwarding);
        assert_eq!(s.host().name, "host");
        assert!(s.host().sysctls.is_empty());
        assert_eq!(s.rules.files[0].format, RuleFormat::Nft);
        let p = &s.probes[0];
        assert_eq!((p.proto, p.to, p.timeout), (Proto::Icmp, Ipv4Addr::new(10, 0, 0, 1), Duration::from_millis(200)));
        assert_eq!(p.name, "a -> host icmp");
        assert_eq!(s.counters[0].family.as_deref(), Some("ip"));
        assert_eq!(s.counters[0].location, at(13, 5));
    }

    #[test]
    fn host_side_names_fall_back_to_vethn() {
        let text = "\
host:
  name: gw
  bridges:
    br0: { address: 10.0.0.1/24 }
    a-eth0: {}
    veth0: {}
nodes:
  a:
    interfaces: [{ bridge: br0, address: 10.0.0.2/24 }]
  averylongname:
    interfaces: [{ bridge: br0, address: 10.0.0.3/24 }, { bridge: br0, address: 10.0.0.4/24 }]
  b-c:
    interfaces: [{ bridge: br0, name: d, address: 10.0.0.5/24 }]
  b:
    interfaces: [{ bridge: br0, name: c-d, address: 10.0.0.6/24 }]
rules:
  backends: [iptables-legacy]
  files: [rules/base.rules]
probes:
  - { from: gw, to: a, expect: reached }
";
        let s = load_str(text).unwrap_or_else(|e| panic!("{e}"));
        let sides: Vec<&str> = s.nodes.iter().flat_map(|n| n.interfaces.iter().map(|i| i.host_side.as_str())).collect();
        assert_eq!(sides, ["veth1", "veth2", "veth3", "b-c-d", "veth4"]);
        assert_eq!(s.host().name, "gw");
        assert_eq!(s.probes[0].from, NodeId::HOST);
        // Deterministic.
        let again = load_str(text).unwrap();
        let sides_again: Vec<String> =
            again.nodes.iter().flat_map(|n| n.interfaces.iter().map(|i| i.host_side.clone())).collect();
        assert_eq!(sides, sides_again);
    }

    #[test]
    fn suite_scenarios_load() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let found = discover(&[folder]).unwrap();
        assert!(found.len() >= 5, "{found:?}");
        for (path, name) in found {
            assert!(!load_file(&path, &name).unwrap_or_else(|e| panic!("{e}")).is_empty());
        }
    }

    // Contracts: producers, variables, differences.

    const PRODUCERS: &str = "\
vars:
  br: br0
producers:
  one:
    title: first
    rules: { backends: [iptables-nft], files: [one.rules] }
  two:
    rules: { backends: [iptables-nft, iptables-legacy], files: [two.rules] }
    vars: { br: br9 }
  three:
    rules: { backends: [nft], files: [three.nft] }
";

    const CONTRACT: &str = "\
contract: { name: c, statements: [7, 3] }
producers: rules/producers.yaml
not_applicable: { three: \"no such chain in nft\" }
host:
  bridges: { ${br}: { address: 10.0.0.1/24 } }
nodes:
  a: { interfaces: [{ bridge: ${br}, address: 10.0.0.2/24 }], services: { tcp: [80] } }
probes:
  - from: a
    to: host
    port: 80
    expect: refused
    differs:
      two: { expect: dropped, why: because }
counters:
  - { table: filter, chain: INPUT, position: 1, packets: 1, only: [one] }
extra_rules:
  - { file: extra.rules, only: [two] }
";

    /// A folder with the producers file, its rule files and the contract scenario.
    fn contract_dir(scenario: &str, producers: &str) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("rules")).unwrap();
        fs::write(dir.path().join("rules/producers.yaml"), producers).unwrap();
        for f in ["one.rules", "two.rules", "three.nft"] {
            fs::write(dir.path().join("rules").join(f), "").unwrap();
        }
        fs::write(dir.path().join("extra.rules"), "*filter\n-A INPUT -i ${br} -j DROP\nCOMMIT\n").unwrap();
        let path = dir.path().join("c.yaml");
        fs::write(&path, scenario).unwrap();
        (dir, path)
    }

    #[test]
    fn a_contract_expands_per_producer() {
        let (_dir, path) = contract_dir(CONTRACT, PRODUCERS);
        let all = load_file(&path, "c.yaml").unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["c.yaml @one", "c.yaml @two", "c.yaml @three"]);
        let (one, two, three) = (&all[0], &all[1], &all[2]);
        assert_eq!(one.host.bridges[0].name, "br0");
        assert_eq!(two.host.bridges[0].name, "br9");
        assert_eq!(one.producer.as_ref().unwrap().title.as_deref(), Some("first"));
        assert_eq!(one.contract.as_ref().unwrap().statements, ["7", "3"]);
        assert_eq!(one.probes[0].expect, Expect::Refused);
        assert_eq!(one.probes[0].difference, None);
        assert_eq!(two.probes[0].expect, Expect::Dropped);
        assert_eq!(two.probes[0].difference.as_deref(), Some("because"));
        assert_eq!(one.counters.len(), 1);
        assert_eq!(two.counters.len(), 0);
        assert_eq!(one.rules.files.len(), 1);
        assert_eq!(two.rules.files.len(), 2);
        assert_eq!(two.rules.files[1].text.as_deref(), Some("*filter\n-A INPUT -i br9 -j DROP\nCOMMIT\n"));
        assert_eq!(two.rules.backends, [Backend::IptablesNft, Backend::IptablesLegacy]);
        assert_eq!(three.not_applicable.as_deref(), Some("no such chain in nft"));
        assert_eq!(three.rules.backends, [Backend::Nft]);
        assert!(load(&path, "c.yaml").is_err(), "load() takes one scenario only");
    }

    #[rstest]
    #[case::unknown_variable(("${br}: {", "${nope}: {"), "", "no variable `nope` for producer `one`")]
    #[case::unknown_producer_in_differs(("two: { expect", "six: { expect"), "probes[0].differs.six", "no producer named `six`")]
    #[case::differs_without_why(("expect: dropped, why: because", "expect: dropped"), "probes[0].differs.two.why", "missing required key `why`")]
    #[case::unknown_in_not_applicable(("{ three:", "{ thre:"), "not_applicable.thre", "no producer named `thre`")]
    #[case::unknown_in_only(("only: [one]", "only: [uno]"), "counters[0].only[0]", "no producer named `uno`")]
    #[case::rules_in_a_contract(("host:\n", "rules: { backends: [nft], files: [x] }\nhost:\n"), "rules", "takes its rules from")]
    #[case::missing_contract_name(("{ name: c, statements", "{ statements"), "contract.name", "missing required key `name`")]
    #[case::extra_rules_wrong_format(("{ file: extra.rules, only: [two] }", "extra.rules"), "extra_rules[0]", "producer `three` loads nft rules")]
    fn contract_errors(#[case] edit: (&str, &str), #[case] key: &str, #[case] says: &str) {
        assert!(CONTRACT.contains(edit.0), "{edit:?}");
        let text = CONTRACT.replacen(edit.0, edit.1, 1);
        let text = if key == "extra_rules[0]" {
            text.replace("not_applicable: { three: \"no such chain in nft\" }\n", "")
        } else {
            text
        };
        let (_dir, path) = contract_dir(&text, PRODUCERS);
        let d = load_file(&path, "c.yaml").expect_err("an error").diagnostics;
        assert!(
            d.iter().any(|d| d.key.as_deref().unwrap_or("") == key && d.message.contains(says) && d.location.is_some()),
            "wanted {key}: {says}; got {d:#?}"
        );
    }

    #[test]
    fn an_unknown_variable_names_its_line_and_column() {
        let text = CONTRACT.replacen("${br}: {", "${nope}: {", 1);
        let (_dir, path) = contract_dir(&text, PRODUCERS);
        let d = load_file(&path, "c.yaml").expect_err("an error").diagnostics;
        // Reported once, not once per producer.
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].location, Some(at(5, 14)));
    }

    #[test]
    fn producers_file_errors_point_into_it() {
        let producers = PRODUCERS.replacen("files: [two.rules]", "files: [missing.rules]", 1);
        let (_dir, path) = contract_dir(CONTRACT, &producers);
        let d = load_file(&path, "c.yaml").expect_err("an error").diagnostics;
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].path.ends_with("rules/producers.yaml"));
        assert_eq!(d[0].key.as_deref(), Some("producers.two.rules.files[0]"));
        assert!(d[0].message.contains("does not exist"));
    }

    fn readme() -> String {
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/README.md"))
            .expect("scenarios/README.md is part of the repository")
    }

    /// The ```yaml blocks of the schema documentation.
    fn yaml_blocks(text: &str) -> Vec<&str> {
        text.split("```yaml\n").skip(1).map(|b| &b[..b.find("```").expect("closed block")]).collect()
    }

    #[test]
    fn readme_examples_are_yaml() {
        let text = readme();
        let blocks = yaml_blocks(&text);
        assert!(blocks.len() > 30);
        for block in blocks {
            serde_yaml::from_str::<serde_yaml::Value>(block).unwrap_or_else(|e| panic!("{e}:\n{block}"));
        }
    }

    #[test]
    fn readme_complete_example_loads() {
        let text = readme();
        let section = &text[text.find("## A complete scenario").expect("the README has a complete example")..];
        let example = yaml_blocks(section).into_iter().next().expect("a yaml block in that section");
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("rules")).unwrap();
        for f in ["docker-18.05-seed.rules", "docker-18.05-seed-publish-8080.rules"] {
            fs::write(dir.path().join("rules").join(f), "").unwrap();
        }
        let path = dir.path().join("example.yaml");
        fs::write(&path, example).unwrap();
        let s = load(&path, "example.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.nodes.len(), 4);
        assert!(!s.probes.is_empty() && !s.counters.is_empty());
    }

    // Parsing: syntax, types, unknown and duplicate keys.

    #[rstest]
    #[case::flow_not_closed("host: [\n", at(2, 1), "did not find expected node content")]
    #[case::bad_indent("host:\n  name: a\n bridges: {}\n", at(3, 2), "did not find expected key")]
    #[case::tab("host:\n\tname: x\n", at(2, 1), "cannot start any token")]
    #[case::unclosed_quote("description: \"abc\n", at(2, 1), "end of stream")]
    fn malformed_yaml(#[case] text: &str, #[case] location: Location, #[case] says: &str) {
        let d = errors(text);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].location, Some(location), "{d:?}");
        assert_eq!(d[0].key, None);
        assert!(d[0].message.contains(says), "{}", d[0].message);
        let at = format!(" at line {} column {}", location.line, location.column);
        assert!(!d[0].message.contains(&at), "{}", d[0].message);
    }

    #[rstest]
    #[case::bool(
        "forwarding: true",
        "forwarding: maybe",
        "host.forwarding",
        "forwarding: |maybe",
        "expected a boolean"
    )]
    #[case::port_string(
        "tcp: [80, 8080]",
        "tcp: [80, http]",
        "nodes.c1.services.tcp[1]",
        "tcp: [80, |http]",
        "expected an integer"
    )]
    #[case::host_list(
        "ipv6: true\nhost:\n  forwarding: true\n",
        "ipv6: true\nhost: [forwarding]\nold_host:\n  forwarding: true\n",
        "host",
        "host: |[forwarding]",
        "expected a mapping of host settings"
    )]
    #[case::interfaces_map(
        "    interfaces:\n      - bridge: br0\n        address: 172.20.0.2/16\n        gateway: 172.20.0.1\n",
        "    interfaces: { bridge: br0 }\n",
        "nodes.c1.interfaces",
        "interfaces: |{",
        "expected a sequence"
    )]
    #[case::sysctl_list(
        "net.ipv4.tcp_syncookies: 1",
        "net.ipv4.tcp_syncookies: [1]",
        "nodes.ext.sysctls.net.ipv4.tcp_syncookies",
        "syncookies: |[1]",
        "expected a sysctl value"
    )]
    #[case::count_list("packets: 1\n", "packets: [1]\n", "counters[0].packets", "packets: |[1]", "a count")]
    #[case::timeout_map("timeout: 300ms", "timeout: {ms: 300}", "timeout", "timeout: |{", "a duration")]
    fn wrong_type(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str, #[case] says: &str) {
        let text = edit(from, to);
        assert_one(&text, key, needle, says);
    }

    #[rstest]
    #[case::top_level("ipv6: true\n", "ipv6: true\ncolour: blue\n", "colour", "|colour:", "unknown key `colour`")]
    #[case::host(
        "  forwarding: true\n",
        "  forwarding: true\n  forward: true\n",
        "host.forward",
        "  |forward: true",
        "unknown key `forward`"
    )]
    #[case::interface(
        "        gateway: 172.20.0.1\n",
        "        gateway: 172.20.0.1\n        mtu: 1400\n",
        "nodes.c1.interfaces[0].mtu",
        "|mtu:",
        "unknown key `mtu`"
    )]
    #[case::probe(
        "    expect: dropped\n",
        "    expect: dropped\n    expcet: reached\n",
        "probes[0].expcet",
        "|expcet",
        "expected one of"
    )]
    #[case::bridge(
        "      address: 172.20.0.1/16\n",
        "      address: 172.20.0.1/16\n      stp: true\n",
        "host.bridges.br0.stp",
        "|stp",
        "unknown key `stp`"
    )]
    #[case::counter(
        "    comment: allow ssh\n",
        "    comment: allow ssh\n    note: x\n",
        "counters[2].note",
        "|note",
        "unknown key `note`"
    )]
    fn unknown_key(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str, #[case] says: &str) {
        let text = edit(from, to);
        assert_one(&text, key, needle, says);
    }

    #[rstest]
    #[case::node(
        "nodes:\n",
        "nodes:\n  c2:\n    interfaces: [{ bridge: br0, address: 172.20.0.9/16 }]\n",
        "nodes.c2",
        "  |c2:\n    interfaces:\n"
    )]
    #[case::sysctl(
        "    net.ipv4.ip_forward: \"1\"\n",
        "    net.ipv4.ip_forward: \"1\"\n    net.ipv4.conf.all.rp_filter: 1\n",
        "host.sysctls.net.ipv4.conf.all.rp_filter",
        "\"1\"\n    |net.ipv4.conf.all.rp_filter"
    )]
    #[case::bridge("    iso:\n", "    iso:\n    br0: {}\n", "host.bridges.br0", "    iso:\n    |br0")]
    #[case::struct_field("    port: 80\n", "    port: 80\n    port: 81\n", "probes[0].port", "    |port: 81")]
    #[case::top_level("ipv6: true\n", "ipv6: true\nipv6: false\n", "ipv6", "|ipv6: false")]
    fn duplicate_key(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str) {
        let text = edit(from, to);
        let d = errors(&text);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].key.as_deref(), Some(key));
        assert_eq!(d[0].location, Some(loc(&text, needle)));
        assert!(d[0].message.starts_with("duplicate key"), "{}", d[0].message);
        assert!(d[0].message.contains("already appears at line"), "{}", d[0].message);
    }

    #[test]
    fn several_duplicates_are_all_reported() {
        let text = edit("nodes:\n", "nodes:\n  c2: {}\n  c2: {}\n");
        assert_eq!(errors(&text).len(), 2);
    }

    #[test]
    fn more_than_one_document() {
        let text = format!("{GOOD}---\n{GOOD}");
        let d = errors(&text);
        assert_eq!(d.len(), 1);
        assert!(d[0].message.contains("more than one"), "{}", d[0].message);
    }

    #[rstest]
    #[case::empty("")]
    #[case::comment("# nothing yet\n")]
    fn empty_file(#[case] text: &str) {
        let d = errors(text);
        assert_eq!(d.len(), 1);
        assert!(d[0].message.contains("no YAML document"), "{}", d[0].message);
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.yaml");
        let e = load(&path, "nope.yaml").unwrap_err();
        assert_eq!(e.diagnostics.len(), 1);
        assert_eq!(e.diagnostics[0].path, path);
        assert!(e.diagnostics[0].message.contains("cannot read"));
    }

    // Validation: one case per rule, each checked for key, position and message.

    #[rstest]
    // Names.
    #[case::node_named_like_host(
        "nodes:\n",
        "nodes:\n  host:\n    interfaces: [{ bridge: br0, address: 172.20.0.9/16 }]\n",
        "nodes.host",
        "nodes:\n  |host:",
        "is the host's name"
    )]
    #[case::node_name_address(
        "nodes:\n",
        "nodes:\n  10.1.1.1:\n    interfaces: [{ bridge: br0, address: 172.20.0.9/16 }]\n",
        "nodes.10.1.1.1",
        "|10.1.1.1:",
        "reads as an IPv4 address"
    )]
    #[case::node_name_slash(
        "nodes:\n",
        "nodes:\n  a/b:\n    interfaces: [{ bridge: br0, address: 172.20.0.9/16 }]\n",
        "nodes.a/b",
        "|a/b:",
        "no '/'"
    )]
    #[case::ifname_too_long(
        "name: inner",
        "name: averyveryverylongname",
        "nodes.c2.interfaces[1].name",
        "name: |averyvery",
        "at most 15 bytes; `averyveryverylongname` is 21 bytes"
    )]
    #[case::ifname_slash(
        "name: inner",
        "name: in/ner",
        "nodes.c2.interfaces[1].name",
        "name: |in/ner",
        "no '/', ':' or white space"
    )]
    #[case::ifname_colon(
        "name: inner",
        "name: \"in:ner\"",
        "nodes.c2.interfaces[1].name",
        "name: |\"in:ner",
        "no '/', ':' or white space"
    )]
    #[case::ifname_dot(
        "name: inner",
        "name: \"..\"",
        "nodes.c2.interfaces[1].name",
        "name: |\"..\"",
        "not a valid interface name"
    )]
    #[case::ifname_empty("name: inner", "name: \"\"", "nodes.c2.interfaces[1].name", "name: |\"\"", "empty")]
    #[case::ifname_lo("name: inner", "name: lo", "nodes.c2.interfaces[1].name", "name: |lo", "loopback")]
    #[case::ifname_twice(
        "name: inner",
        "name: eth0",
        "nodes.c2.interfaces[1].name",
        "name: |eth0",
        "already used by nodes.c2.interfaces[0]"
    )]
    #[case::default_ifname_taken(
        "        address: 172.20.0.3/16\n        gateway: 172.20.0.1\n      - bridge: iso\n        name: inner\n",
        "        name: eth1\n        address: 172.20.0.3/16\n        gateway: 172.20.0.1\n      - bridge: iso\n",
        "nodes.c2.interfaces[1]",
        "      - |bridge: iso",
        "default name `eth1` is already used by nodes.c2.interfaces[0]"
    )]
    #[case::bridge_name_long(
        "    iso:\n",
        "    iso:\n    bridge-number-one: {}\n",
        "host.bridges.bridge-number-one",
        "|bridge-number-one",
        "at most 15 bytes; `bridge-number-one` is 17 bytes"
    )]
    #[case::bridge_name_space(
        "    iso:\n",
        "    iso:\n    \"br 1\": {}\n",
        "host.bridges.br 1",
        "|\"br 1\"",
        "white space"
    )]
    #[case::bridge_lo("    iso:\n", "    iso:\n    lo:\n", "host.bridges.lo", "    |lo:", "loopback")]
    #[case::uplink_same_as_bridge(
        "    iso:\n",
        "    iso:\n    up0:\n",
        "host.uplinks.up0",
        "uplinks:\n    |up0:",
        "already has a bridge named `up0`"
    )]
    // Attachments.
    #[case::unknown_bridge(
        "      - bridge: br0\n        address: 172.20.0.2/16",
        "      - bridge: br9\n        address: 172.20.0.2/16",
        "nodes.c1.interfaces[0].bridge",
        "bridge: |br9",
        "no bridge named `br9` under host.bridges; bridges: br0, iso"
    )]
    #[case::uplink_unused(
        "  services:\n    tcp: [22]",
        "    up1: { address: 198.51.100.1/24 }\n  services:\n    tcp: [22]",
        "host.uplinks.up1",
        "|up1:",
        "found none"
    )]
    #[case::uplink_twice(
        "nodes:\n",
        "nodes:\n  ext2:\n    interfaces: [{ uplink: up0, address: 192.0.2.3/24 }]\n",
        "nodes.ext.interfaces[0].uplink",
        "uplink: |up0\n",
        "already used by nodes.ext2.interfaces[0]"
    )]
    #[case::neither(
        "      - bridge: br0\n        address: 172.20.0.2/16",
        "      - address: 172.20.0.2/16",
        "nodes.c1.interfaces[0]",
        "      - |address: 172.20.0.2/16",
        "found neither"
    )]
    #[case::no_interfaces(
        "nodes:\n",
        "nodes:\n  c9:\n    services: { tcp: [1] }\n",
        "nodes.c9.interfaces",
        "    |services: { tcp: [1] }",
        "missing required key `interfaces`"
    )]
    #[case::null_node(
        "nodes:\n",
        "nodes:\n  c9:\n",
        "nodes.c9.interfaces",
        "  |c9:",
        "missing required key `interfaces`"
    )]
    #[case::empty_interfaces(
        "nodes:\n",
        "nodes:\n  c9: { interfaces: [] }\n",
        "nodes.c9.interfaces",
        "interfaces: |[]",
        "found an empty list"
    )]
    // Addresses.
    #[case::network_address(
        "address: 172.20.0.2/16",
        "address: 172.20.0.0/16",
        "nodes.c1.interfaces[0].address",
        "address: |172.20.0.0/16",
        "the network address of 172.20.0.0/16"
    )]
    #[case::broadcast_address(
        "address: 10.9.0.3/24",
        "address: 10.9.0.255/24",
        "nodes.c2.interfaces[1].address",
        "address: |10.9.0.255/24",
        "the broadcast address of 10.9.0.0/24"
    )]
    #[case::bridge_network_address(
        "address: 172.20.0.1/16",
        "address: 172.20.0.0/16",
        "host.bridges.br0.address",
        "address: |172.20.0.0/16",
        "network address"
    )]
    #[case::no_prefix(
        "address: 10.9.0.3/24",
        "address: 10.9.0.3",
        "nodes.c2.interfaces[1].address",
        "address: |10.9.0.3",
        "without a prefix length"
    )]
    #[case::not_an_address(
        "address: 10.9.0.3/24",
        "address: fd00::3/64",
        "nodes.c2.interfaces[1].address",
        "address: |fd00::3/64",
        "expected an IPv4 address with a prefix length"
    )]
    #[case::prefix_too_long(
        "address: 10.9.0.3/24",
        "address: 10.9.0.3/33",
        "nodes.c2.interfaces[1].address",
        "address: |10.9.0.3/33",
        "found `10.9.0.3/33`"
    )]
    #[case::outside_bridge(
        "address: 172.20.0.2/16",
        "address: 172.21.0.2/12",
        "nodes.c1.interfaces[0].address",
        "address: |172.21.0.2/12",
        "expected an address in bridge `br0`'s subnet 172.20.0.0/16, found 172.21.0.2"
    )]
    #[case::outside_uplink(
        "address: 192.0.2.2/24\n        gateway: 192.0.2.1",
        "address: 198.51.100.2/24",
        "nodes.ext.interfaces[0].address",
        "address: |198.51.100.2/24",
        "uplink `up0`'s subnet 192.0.2.0/24"
    )]
    #[case::address_twice(
        "address: 172.20.0.3/16",
        "address: 172.20.0.2/16",
        "nodes.c2.interfaces[0].address",
        "address: |172.20.0.2/16\n        gateway: 172.20.0.1\n      - bridge: iso",
        "address 172.20.0.2 is already used by nodes.c1.interfaces[0].address"
    )]
    #[case::address_of_bridge(
        "address: 10.9.0.3/24",
        "address: 172.20.0.1/24",
        "nodes.c2.interfaces[1].address",
        "address: |172.20.0.1/24",
        "already used by host.bridges.br0.address"
    )]
    #[case::address_missing(
        "        name: inner\n        address: 10.9.0.3/24\n",
        "        name: inner\n",
        "nodes.c2.interfaces[1].address",
        "      - |bridge: iso",
        "missing required key `address`"
    )]
    #[case::gateway_outside(
        "gateway: 172.20.0.1",
        "gateway: 10.0.0.1",
        "nodes.c1.interfaces[0].gateway",
        "gateway: |10.0.0.1",
        "in the interface's subnet 172.20.0.0/16, found 10.0.0.1"
    )]
    #[case::gateway_own(
        "gateway: 172.20.0.1",
        "gateway: 172.20.0.2",
        "nodes.c1.interfaces[0].gateway",
        "gateway: |172.20.0.2",
        "own address"
    )]
    #[case::gateway_not_address(
        "gateway: 172.20.0.1",
        "gateway: 172.20.0.1/16",
        "nodes.c1.interfaces[0].gateway",
        "gateway: |172.20.0.1/16",
        "expected an IPv4 address"
    )]
    #[case::two_gateways(
        "address: 10.9.0.3/24\n",
        "address: 10.9.0.3/24\n        gateway: 10.9.0.1\n",
        "nodes.c2.interfaces[1].gateway",
        "        |gateway: 10.9.0.1",
        "nodes.c2.interfaces[0] already sets a gateway"
    )]
    // Sysctls and services.
    #[case::sysctl_not_net(
        "    net.ipv4.conf.all.rp_filter: 0\n",
        "    kernel.panic: 0\n",
        "host.sysctls.kernel.panic",
        "|kernel.panic",
        "would change the whole machine"
    )]
    #[case::sysctl_upper(
        "      net.ipv4.tcp_syncookies: 1",
        "      net.IPv4.tcp_syncookies: 1",
        "nodes.ext.sysctls.net.IPv4.tcp_syncookies",
        "|net.IPv4",
        "lowercase letters"
    )]
    #[case::sysctl_empty_part(
        "      net.ipv4.tcp_syncookies: 1",
        "      net..tcp_syncookies: 1",
        "nodes.ext.sysctls.net..tcp_syncookies",
        "|net..tcp",
        "joined by dots"
    )]
    #[case::sysctl_slash(
        "      net.ipv4.tcp_syncookies: 1",
        "      net/ipv4/tcp_syncookies: 1",
        "nodes.ext.sysctls.net/ipv4/tcp_syncookies",
        "|net/ipv4",
        "joined by dots"
    )]
    #[case::port_zero(
        "tcp: [80, 8080]",
        "tcp: [80, 0]",
        "nodes.c1.services.tcp[1]",
        "tcp: [80, |0]",
        "expected a port from 1 to 65535, found 0"
    )]
    #[case::port_too_big(
        "tcp: [80, 8080]",
        "tcp: [80, 70000]",
        "nodes.c1.services.tcp[1]",
        "tcp: [80, |70000]",
        "found 70000"
    )]
    #[case::port_twice(
        "tcp: [80, 8080]",
        "tcp: [80, 80]",
        "nodes.c1.services.tcp[1]",
        "tcp: [80, |80]",
        "port 80 is listed twice"
    )]
    // Rules.
    #[case::backends_empty(
        "backends: [iptables-nft, iptables-legacy]",
        "backends: []",
        "rules.backends",
        "backends: |[]",
        "found an empty list"
    )]
    #[case::backend_unknown(
        "backends: [iptables-nft, iptables-legacy]",
        "backends: [iptables-nft, iptables]",
        "rules.backends[1]",
        "iptables-nft, |iptables]",
        "expected a back end (one of iptables-nft, iptables-legacy, nft), found `iptables`"
    )]
    #[case::backend_twice(
        "backends: [iptables-nft, iptables-legacy]",
        "backends: [iptables-nft, iptables-nft]",
        "rules.backends[1]",
        "iptables-nft, |iptables-nft]",
        "listed twice"
    )]
    #[case::backends_mixed(
        "backends: [iptables-nft, iptables-legacy]",
        "backends: [iptables-nft, nft]",
        "rules.backends",
        "backends: |[",
        "split the scenario"
    )]
    #[case::backends_missing(
        "  backends: [iptables-nft, iptables-legacy]\n",
        "",
        "rules.backends",
        "  |files: [rules",
        "missing required key `backends`"
    )]
    #[case::rule_file_missing(
        "files: [rules/base.rules, rules/extra.rules]",
        "files: [rules/base.rules, rules/gone.rules]",
        "rules.files[1]",
        "|rules/gone.rules",
        "does not exist"
    )]
    #[case::rule_file_folder(
        "files: [rules/base.rules, rules/extra.rules]",
        "files: [rules/base.rules, rules]",
        "rules.files[1]",
        "rules/base.rules, |rules]",
        "is a folder"
    )]
    #[case::rule_files_empty(
        "files: [rules/base.rules, rules/extra.rules]",
        "files: []",
        "rules.files",
        "files: |[]",
        "found an empty list"
    )]
    // Probes.
    #[case::timeout_bad(
        "timeout: 300ms",
        "timeout: fast",
        "timeout",
        "timeout: |fast",
        "expected a duration such as \"200ms\" or \"1s\", found `fast`"
    )]
    #[case::timeout_zero("timeout: 300ms", "timeout: 0s", "timeout", "timeout: |0s", "greater than 0 and at most 60s")]
    #[case::timeout_long("timeout: 1s", "timeout: 2m", "probes[1].timeout", "timeout: |2m", "at most 60s")]
    #[case::from_unknown(
        "  - from: c1\n    to: c2",
        "  - from: c7\n    to: c2",
        "probes[0].from",
        "from: |c7",
        "no node named `c7`; nodes: host, c1, c2, ext"
    )]
    #[case::from_missing(
        "  - from: c1\n    to: c2\n",
        "  - to: c2\n",
        "probes[0].from",
        "  - |to: c2",
        "missing required key `from`"
    )]
    #[case::to_unknown(
        "    to: c2\n",
        "    to: c2x\n",
        "probes[0].to",
        "to: |c2x",
        "expected a node name (one of host, c1, c2, ext) or an IPv4 address, found `c2x`"
    )]
    #[case::to_outside(
        "    to: c2\n",
        "    to: 8.8.8.8\n",
        "probes[0].to",
        "to: |8.8.8.8",
        "8.8.8.8 is no address of this lab"
    )]
    #[case::proto_unknown(
        "    proto: udp\n",
        "    proto: sctp\n",
        "probes[3].proto",
        "proto: |sctp",
        "expected icmp, tcp or udp, found `sctp`"
    )]
    #[case::port_for_icmp(
        "    to: 127.0.0.1\n",
        "    to: 127.0.0.1\n    port: 22\n    proto: icmp\n",
        "probes[2].port",
        "    |port: 22",
        "no `port` for an icmp probe"
    )]
    #[case::port_missing(
        "    proto: udp\n    port: 53\n",
        "    proto: udp\n",
        "probes[3].port",
        "  - |from: host",
        "missing required key `port`"
    )]
    #[case::probe_port_zero(
        "    port: 80\n",
        "    port: 0\n",
        "probes[0].port",
        "port: |0",
        "expected a port from 1 to 65535, found 0"
    )]
    #[case::expect_missing(
        "    port: 80\n    expect: dropped\n",
        "    port: 80\n",
        "probes[0].expect",
        "  - |from: c1\n    to: c2",
        "missing required key `expect`"
    )]
    #[case::expect_unknown(
        "expect: dropped",
        "expect: blocked",
        "probes[0].expect",
        "expect: |blocked",
        "expected reached, refused or dropped, found `blocked`"
    )]
    #[case::served_by_dropped(
        "    expect: dropped\n",
        "    expect: dropped\n    served_by: c2\n",
        "probes[0].served_by",
        "    |served_by: c2",
        "this probe expects `dropped`"
    )]
    #[case::served_by_icmp(
        "    expect: refused\n",
        "    expect: reached\n    served_by: c1\n",
        "probes[2].served_by",
        "    |served_by: c1\n  - from: host",
        "this is an icmp probe"
    )]
    #[case::served_by_no_service(
        "    served_by: c1\n    source_seen: ext",
        "    served_by: c2\n    source_seen: ext",
        "probes[1].served_by",
        "served_by: |c2",
        "`c2` declares none"
    )]
    #[case::served_by_no_udp_service(
        "    served_by: c1\n    source_seen: 192",
        "    served_by: ext\n    source_seen: 192",
        "probes[3].served_by",
        "served_by: |ext",
        "with a udp service, but `ext` declares none"
    )]
    #[case::served_by_unknown(
        "    served_by: c1\n    source_seen: ext",
        "    served_by: c9\n    source_seen: ext",
        "probes[1].served_by",
        "served_by: |c9",
        "no node named `c9`"
    )]
    #[case::source_seen_refused(
        "    expect: refused\n",
        "    expect: refused\n    source_seen: c1\n",
        "probes[2].source_seen",
        "    |source_seen: c1",
        "expects `refused`"
    )]
    #[case::source_seen_bad(
        "source_seen: ext",
        "source_seen: extern",
        "probes[1].source_seen",
        "source_seen: |extern",
        "expected a node name (one of host, c1, c2, ext) or an IPv4 address, found `extern`"
    )]
    #[case::probe_name_twice(
        "  - name: external web\n",
        "  - name: c1 -> c2:80/tcp\n",
        "probes[1].name",
        "name: |c1 -> c2",
        "probe name `c1 -> c2:80/tcp` is already used by probes[0]"
    )]
    #[case::probe_name_empty("  - name: external web\n", "  - name: \"\"\n", "probes[1].name", "name: |\"\"", "empty")]
    // Counters.
    #[case::family_with_iptables(
        "  - table: nat\n",
        "  - family: inet\n    table: nat\n",
        "counters[1].family",
        "  - |family: inet",
        "expected no `family`"
    )]
    #[case::iptables_table(
        "  - table: nat\n",
        "  - table: natt\n",
        "counters[1].table",
        "table: |natt",
        "expected an iptables table (one of filter, nat, mangle, raw, security), found `natt`"
    )]
    #[case::table_missing(
        "  - table: nat\n    chain: PREROUTING\n",
        "  - chain: PREROUTING\n",
        "counters[1].table",
        "  - |chain: PREROUTING",
        "missing required key `table`"
    )]
    #[case::chain_missing(
        "    chain: INPUT\n",
        "",
        "counters[2].chain",
        "  - |table: filter\n    comment",
        "missing required key `chain`"
    )]
    #[case::no_selector(
        "    position: 2\n",
        "",
        "counters[1]",
        "  - |table: nat",
        "expected one of `rule`, `position` or `comment` to pick the rule, found none"
    )]
    #[case::two_selectors(
        "    position: 2\n",
        "    position: 2\n    comment: x\n",
        "counters[1].comment",
        "    |comment: x",
        "found both `position` and `comment`"
    )]
    #[case::position_zero(
        "    position: 2\n",
        "    position: 0\n",
        "counters[1].position",
        "position: |0",
        "1 or more, found 0"
    )]
    #[case::rule_other_chain(
        "rule: -A FORWARD -i br0",
        "rule: -A INPUT -i br0",
        "counters[0].rule",
        "rule: |-A INPUT",
        "expected a rule of chain `FORWARD`, found one that starts with `-A INPUT`"
    )]
    #[case::rule_empty(
        "rule: -A FORWARD -i br0 -j DROP",
        "rule: -A FORWARD",
        "counters[0].rule",
        "rule: |-A FORWARD",
        "found none"
    )]
    #[case::packets_missing(
        "    packets: 1\n",
        "",
        "counters[0].packets",
        "  - |table: filter\n    chain: FORWARD",
        "missing required key `packets`"
    )]
    #[case::packets_greater(
        "packets: \">= 1\"",
        "packets: \"> 1\"",
        "counters[1].packets",
        "packets: |\"> 1\"",
        "a non-negative integer (exactly that many) or a string such as \">= 10\" (at least that many), found \"> 1\""
    )]
    #[case::packets_negative("packets: 1\n", "packets: -1\n", "counters[0].packets", "packets: |-1", "found -1")]
    #[case::packets_text("packets: 1\n", "packets: many\n", "counters[0].packets", "packets: |many", "found \"many\"")]
    #[case::bytes_bad(
        "bytes: 60",
        "bytes: \">= x\"",
        "counters[1].bytes",
        "bytes: |\">= x\"",
        "string such as \">= 10\""
    )]
    // Top level.
    #[case::skip_empty("ipv6: true\n", "ipv6: true\nskip: \"\"\n", "skip", "skip: |\"\"", "reason")]
    fn invalid(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str, #[case] says: &str) {
        let text = edit(from, to);
        assert_one(&text, key, needle, says);
    }

    #[rstest]
    #[case::host_name_space(
        "  forwarding: true\n",
        "  name: my host\n  forwarding: true\n",
        "host.name",
        "name: |my host",
        "white space"
    )]
    #[case::uplink_name_slash(
        "  services:\n    tcp: [22]",
        "    u/2: { address: 198.51.100.1/24 }\n  services:\n    tcp: [22]",
        "host.uplinks.u/2",
        "|u/2",
        "no '/'"
    )]
    #[case::uplink_address_missing(
        "    up0:\n      address: 192.0.2.1/24\n",
        "    up0:\n",
        "host.uplinks.up0.address",
        "    |up0:",
        "missing required key `address`"
    )]
    #[case::both_bridge_and_uplink(
        "      - uplink: up0\n",
        "      - uplink: up0\n        bridge: br0\n",
        "nodes.ext.interfaces[0].uplink",
        "      - |uplink: up0",
        "found both"
    )]
    #[case::unknown_uplink(
        "uplink: up0",
        "uplink: up9",
        "nodes.ext.interfaces[0].uplink",
        "uplink: |up9",
        "no uplink named `up9` under host.uplinks; uplinks: up0"
    )]
    #[case::host_missing("host:\n  forwarding: true\n  sysctls:\n    net.ipv4.conf.all.rp_filter: 0\n    net.ipv4.conf.all.route_localnet: true\n    net.ipv4.ip_forward: \"1\"\n  bridges:\n    br0:\n      address: 172.20.0.1/16\n    iso:\n  uplinks:\n    up0:\n      address: 192.0.2.1/24\n  services:\n    tcp: [22]\n", "", "host", "|description", "missing required key `host`")]
    #[case::rules_missing(
        "rules:\n  backends: [iptables-nft, iptables-legacy]\n  files: [rules/base.rules, rules/extra.rules]\n",
        "",
        "rules",
        "|description",
        "missing required key `rules`"
    )]
    #[case::rules_empty(
        "rules:\n  backends: [iptables-nft, iptables-legacy]\n  files: [rules/base.rules, rules/extra.rules]\n",
        "rules:\n",
        "rules",
        "|rules:",
        "expected a mapping with `backends` and `files`, found an empty value"
    )]
    fn invalid_among_others(
        #[case] from: &str,
        #[case] to: &str,
        #[case] key: &str,
        #[case] needle: &str,
        #[case] says: &str,
    ) {
        let text = edit(from, to);
        let diagnostics = errors(&text);
        assert_diagnostic(&text, &diagnostics, key, needle, says);
    }

    #[test]
    fn nft_counters() {
        let text = edit("backends: [iptables-nft, iptables-legacy]", "backends: [nft]")
            .replace("files: [rules/base.rules, rules/extra.rules]", "files: [rules/base.nft]")
            .replace("  - table: nat\n", "  - family: inet\n    table: nat\n")
            .replace("  - table: filter\n    chain: INPUT\n", "  - family: ipx\n    table: filter\n    chain: INPUT\n");
        let diagnostics = errors(&text);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert_diagnostic(
            &text,
            &diagnostics,
            "counters[2].family",
            "family: |ipx",
            "expected an nft family (one of ip, ip6, inet, arp, bridge, netdev), found `ipx`",
        );

        let text = text.replace("family: ipx", "family: ip6");
        let s = load_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let families: Vec<_> = s.counters.iter().map(|c| c.family.as_deref()).collect();
        assert_eq!(families, [Some("ip"), Some("inet"), Some("ip6")]);
        assert_eq!(s.counters[0].table, "filter");
        assert!(s.rules.files.iter().all(|f| f.format == RuleFormat::Nft));
    }

    #[test]
    fn all_problems_are_reported_in_file_order() {
        let text = edit("timeout: 300ms", "timeout: soon")
            .replace("address: 172.20.0.2/16", "address: 172.20.0.0/16")
            .replace("expect: dropped", "expect: nothing")
            .replace("packets: 1\n", "packets: lots\n");
        let d = errors(&text);
        let keys: Vec<_> = d.iter().map(|d| d.key.as_deref().unwrap_or("")).collect();
        assert_eq!(keys, ["timeout", "nodes.c1.interfaces[0].address", "probes[0].expect", "counters[0].packets"]);
    }

    #[test]
    fn display() {
        let text = edit("expect: dropped", "expect: nothing");
        let (_dir, path) = write(&text);
        let e = load(&path, "x").unwrap_err();
        let l = loc(&text, "expect: |nothing");
        assert_eq!(
            e.to_string(),
            format!(
                "{}:{}:{}: probes[0].expect: expected reached, refused or dropped, found `nothing`",
                path.display(),
                l.line,
                l.column
            )
        );
        let two = InputError::from(vec![
            Diagnostic::new(Path::new("a.yaml"), "one"),
            Diagnostic { path: "b.yaml".into(), location: None, key: Some("k".into()), message: "two".into() },
        ]);
        assert_eq!(two.to_string(), "a.yaml: one\nb.yaml: k: two");
    }

    // discover()

    fn tree(root: &Path, files: &[&str]) {
        for f in files {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "").unwrap();
        }
    }

    const TREE: &[&str] = &[
        "scenarios/seed/isolation.yaml",
        "scenarios/seed/masquerade.yml",
        "scenarios/seed/rules/not-a-scenario.yaml",
        "scenarios/seed/rules/docker.rules",
        "scenarios/seed/notes.txt",
        "scenarios/nat/deep/a.yaml",
        "scenarios/b.yaml",
        "other/z.yaml",
        "other/sub/y.yaml",
    ];

    fn names_of(found: &[(PathBuf, String)]) -> Vec<&str> {
        found.iter().map(|(_, n)| n.as_str()).collect()
    }

    #[rstest]
    #[case::suite(&["scenarios"], &["b.yaml", "nat/deep/a.yaml", "seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::suite_slash(&["scenarios/"], &["b.yaml", "nat/deep/a.yaml", "seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::area(&["scenarios/seed"], &["seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::file_under_suite(&["scenarios/seed/isolation.yaml"], &["seed/isolation.yaml"])]
    #[case::other_folder(&["other"], &["other/sub/y.yaml", "other/z.yaml"])]
    #[case::other_file(&["other/sub/y.yaml"], &["y.yaml"])]
    #[case::deeper_folder(&["scenarios/nat/deep"], &["nat/deep/a.yaml"])]
    #[case::rules_folder_itself(&["scenarios/seed/rules"], &["seed/rules/not-a-scenario.yaml"])]
    #[case::rules_folder_outside(&["other/sub"], &["sub/y.yaml"])]
    #[case::sorted_across_arguments(&["scenarios/seed", "other", "scenarios/b.yaml"], &["b.yaml", "other/sub/y.yaml", "other/z.yaml", "seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::given_twice(&["scenarios/seed", "scenarios/seed/isolation.yaml"], &["seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::nothing(&[], &[])]
    fn discover_names(#[case] args: &[&str], #[case] expected: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), TREE);
        let args: Vec<PathBuf> = args.iter().map(|a| dir.path().join(a)).collect();
        let found = discover(&args).unwrap();
        assert_eq!(names_of(&found), expected);
        for (path, _) in &found {
            assert!(path.is_file(), "{}", path.display());
        }
    }

    #[test]
    fn discover_keeps_paths_as_given() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), TREE);
        let arg = dir.path().join("scenarios/seed");
        let found = discover(std::slice::from_ref(&arg)).unwrap();
        assert_eq!(found[0].0, arg.join("isolation.yaml"));
    }

    #[test]
    fn discover_empty_folder_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discover(&[dir.path().to_path_buf()]).unwrap(), []);
    }

    #[test]
    fn discover_missing_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), TREE);
        let args = [dir.path().join("scenarios/nope.yaml"), dir.path().join("scenarios/seed"), dir.path().join("gone")];
        let e = discover(&args).unwrap_err();
        let paths: Vec<_> = e.diagnostics.iter().map(|d| d.path.clone()).collect();
        assert_eq!(paths, [args[0].clone(), args[2].clone()]);
        assert!(e.diagnostics.iter().all(|d| d.message == "no such file or folder"));
    }
}
