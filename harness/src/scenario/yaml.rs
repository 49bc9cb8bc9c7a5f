//! The one place that reads YAML.
//!
//! A scenario or producers file is read here and nowhere else: serde_yaml gives the
//! values (into the shapes of `file.rs`) but no positions, so the same text is also
//! walked with yaml-rust2's marked event parser, and every node of the first document
//! is recorded under its key path, in the notation serde_yaml uses in its error
//! messages: `host.bridges.br0.address`, `probes[2].to`; the document itself is the
//! empty path. [`read`] does both and turns every failure into a [`Diagnostic`] at its
//! file, line and column. `netconform capture` writes YAML with [`to_string`].

use std::collections::HashMap;
use std::path::Path;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diagnostic::{Diagnostic, InputError};
use super::model::Location;

pub use serde_yaml::{Mapping, Value};

/// Where one node of the document sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The key naming this node, when the node is a mapping value.
    pub key: Option<Location>,
    /// The value itself. For a block mapping this is its first key, for a sequence its
    /// first `-`, and for an empty value the key it belongs to.
    pub value: Location,
}

/// A key that appears twice in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// Path of the repeated key.
    pub path: String,
    /// The key as written.
    pub key: String,
    pub first: Location,
    pub second: Location,
}

/// How deep mappings and lists may nest. A scenario needs a handful of levels;
/// serde_yaml gives up at 128, but only after its scanner has read the whole text, in
/// time quadratic in the depth of flow collections (`[[[[...]]]]`).
pub const MAX_DEPTH: usize = 64;

/// Key path → position, for the first document of a YAML text.
#[derive(Debug, Default)]
pub struct Positions {
    spans: HashMap<String, Span>,
    duplicates: Vec<Duplicate>,
    /// Where a second document starts, if the text has one.
    second_document: Option<Location>,
    /// Values written with YAML's non-specific tag `!` (`rule: ! -i br0`), which
    /// serde_yaml drops without a word: their paths and positions.
    tagged: Vec<(String, Location)>,
}

/// A YAML syntax error found while indexing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub location: Location,
    pub message: String,
    /// The text nests deeper than [`MAX_DEPTH`]; nothing else should read it.
    pub too_deep: bool,
}

impl Positions {
    /// Index `text`. Fails only on YAML syntax errors.
    pub fn parse(text: &str) -> Result<Positions, SyntaxError> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        // Events one by one: Parser::load recurses once per level and overflows the
        // stack on deep input.
        let mut depth = 0usize;
        loop {
            let (event, mark) = parser.next_token().map_err(|e| {
                // The scanner reads ahead, and gives up at 256 open flow collections.
                let too_deep = e.info() == "recursion limit exceeded";
                SyntaxError {
                    location: location(*e.marker()),
                    message: if too_deep { too_deep_message() } else { e.info().to_string() },
                    too_deep,
                }
            })?;
            match event {
                Event::StreamEnd => break,
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(SyntaxError {
                            location: location(mark),
                            message: too_deep_message(),
                            too_deep: true,
                        });
                    }
                }
                Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
                _ => {}
            }
            builder.on_event(event, mark);
        }
        Ok(Positions {
            spans: builder.spans,
            duplicates: builder.duplicates,
            second_document: builder.second_document,
            tagged: builder.tagged,
        })
    }

    /// Where a second document starts, if the text has one.
    pub fn second_document(&self) -> Option<Location> {
        self.second_document
    }

    /// Values written with the non-specific tag `!`, in document order.
    pub fn tagged(&self) -> &[(String, Location)] {
        &self.tagged
    }

    pub fn get(&self, path: &str) -> Option<Span> {
        self.spans.get(path).copied()
    }

    pub fn contains(&self, path: &str) -> bool {
        self.spans.contains_key(path)
    }

    /// The value at `path`, or failing that the nearest enclosing value that exists
    /// (for a missing key: the mapping it should be in).
    pub fn value(&self, path: &str) -> Option<Location> {
        self.nearest(path).map(|s| s.value)
    }

    /// The key naming `path` (its value when it has no key), or failing that the
    /// nearest enclosing value that exists.
    pub fn key(&self, path: &str) -> Option<Location> {
        match self.get(path) {
            Some(span) => Some(span.key.unwrap_or(span.value)),
            None => self.value(path),
        }
    }

    /// Keys that appear more than once in their mapping, in document order.
    pub fn duplicates(&self) -> &[Duplicate] {
        &self.duplicates
    }

    fn nearest(&self, path: &str) -> Option<Span> {
        let mut path = path;
        loop {
            if let Some(span) = self.get(path) {
                return Some(span);
            }
            path = parent(path)?;
        }
    }
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The path one level up; None for the document itself. Keys that contain dots
/// (sysctl names) are taken apart too, which only means more steps up.
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

fn too_deep_message() -> String {
    format!("expected mappings and lists nested at most {MAX_DEPTH} levels deep, found more")
}

fn location(mark: Marker) -> Location {
    Location {
        line: mark.line(),
        // yaml-rust2 counts columns from 0.
        column: mark.col() + 1,
    }
}

fn before(a: Location, b: Location) -> bool {
    (a.line, a.column) < (b.line, b.column)
}

enum Frame {
    Mapping {
        path: String,
        /// The key read and waiting for its value.
        key: Option<(String, Location)>,
        seen: HashMap<String, Location>,
        first_key: bool,
    },
    Sequence {
        path: String,
        next: usize,
    },
    /// Inside a mapping or sequence used as a key: nothing there is indexed.
    Skip {
        depth: usize,
    },
}

#[derive(Default)]
struct Builder {
    spans: HashMap<String, Span>,
    duplicates: Vec<Duplicate>,
    stack: Vec<Frame>,
    /// The first document is over; later ones are not indexed.
    done: bool,
    started: bool,
    second_document: Option<Location>,
    tagged: Vec<(String, Location)>,
}

impl Builder {
    /// A node starts (scalar, alias, mapping or sequence). Returns the path it got, or
    /// None when it is a key or skipped.
    fn node(&mut self, loc: Location, empty: bool, scalar: Option<&str>, nests: bool) -> Option<String> {
        let (path, key_loc) = match self.stack.last_mut() {
            None => {
                if self.started {
                    return None;
                }
                self.started = true;
                (String::new(), None)
            }
            Some(Frame::Skip { depth }) => {
                if nests {
                    *depth += 1;
                }
                return None;
            }
            Some(Frame::Sequence { path, next }) => {
                let p = item(path, *next);
                *next += 1;
                (p, None)
            }
            Some(Frame::Mapping { path, key, seen, first_key }) => match key.take() {
                None => {
                    // This node is a key.
                    let name = scalar.unwrap_or("?").to_string();
                    if *first_key {
                        *first_key = false;
                        // A block mapping's start mark sits after its first key;
                        // point at the key instead.
                        if let Some(span) = self.spans.get_mut(path.as_str()) {
                            if before(loc, span.value) {
                                span.value = loc;
                            }
                        }
                    }
                    match seen.get(&name) {
                        Some(&first) if scalar.is_some() => self.duplicates.push(Duplicate {
                            path: join(path, &name),
                            key: name.clone(),
                            first,
                            second: loc,
                        }),
                        _ => {
                            seen.insert(name.clone(), loc);
                        }
                    }
                    *key = Some((name, loc));
                    if nests {
                        self.stack.push(Frame::Skip { depth: 1 });
                    }
                    return None;
                }
                Some((name, kloc)) => (join(path, &name), Some(kloc)),
            },
        };
        let value = match (empty, key_loc) {
            (true, Some(k)) => k,
            _ => loc,
        };
        self.spans.entry(path.clone()).or_insert(Span { key: key_loc, value });
        Some(path)
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let loc = location(mark);
        if self.done {
            if matches!(ev, Event::DocumentStart) && self.second_document.is_none() {
                self.second_document = Some(loc);
            }
            return;
        }
        match ev {
            Event::DocumentEnd if self.started => self.done = true,
            Event::Scalar(text, style, _, tag) => {
                let empty = text.is_empty() && style == TScalarStyle::Plain;
                let path = self.node(loc, empty, Some(&text), false);
                let non_specific = matches!(&tag, Some(Tag { handle, suffix }) if handle.is_empty() && suffix == "!");
                if let (Some(path), true) = (path, non_specific) {
                    self.tagged.push((path, loc));
                }
            }
            Event::Alias(_) => {
                self.node(loc, false, None, false);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.node(loc, false, None, true) {
                    self.stack.push(Frame::Mapping { path, key: None, seen: HashMap::new(), first_key: true });
                }
            }
            Event::SequenceStart(..) => {
                if let Some(path) = self.node(loc, false, None, true) {
                    self.stack.push(Frame::Sequence { path, next: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => match self.stack.last_mut() {
                Some(Frame::Skip { depth }) if *depth > 1 => *depth -= 1,
                _ => {
                    self.stack.pop();
                }
            },
            _ => {}
        }
    }
}

/// `text` read into `T`, with the positions of its keys: a valid file is read twice,
/// once as events for the positions and once by serde_yaml into `T`. The events come
/// first: they refuse deep nesting before serde_yaml's scanner spends quadratic time on
/// it, and they find duplicate keys and bad tags anywhere, even under keys `T` does not
/// know. serde_yaml reads a whole document before it gives a value, so a syntax error
/// anywhere fails the second read too. Only a file that fails is read a third time, as
/// a generic value, so that a fault of the whole text wins over the first key `T`
/// refuses; serde_yaml's words are the ones given. Any failure here ends the file's
/// checks.
pub fn read<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<(T, Positions), InputError> {
    let syntax = |e: SyntaxError| Diagnostic {
        path: path.to_path_buf(),
        location: Some(e.location),
        key: None,
        message: e.message,
    };
    let positions = match Positions::parse(text) {
        Ok(positions) => positions,
        Err(e) if e.too_deep => return Err(syntax(e).into()),
        Err(e) => {
            return Err(match serde_yaml::from_str::<Value>(text) {
                Err(said) => serde_error(path, &Positions::default(), said),
                Ok(_) => syntax(e),
            }
            .into())
        }
    };
    if !positions.duplicates().is_empty() {
        return Err(duplicates(path, &positions).into());
    }
    if !positions.tagged().is_empty() {
        return Err(tagged(path, &positions).into());
    }
    match serde_yaml::from_str(text) {
        Ok(file) => Ok((file, positions)),
        // serde_yaml stops at the first key `T` refuses, before it expands what comes
        // later; a fault of the text as a whole (aliases that would expand beyond
        // serde_yaml's repetition limit) is the one to tell.
        Err(e) => Err(match serde_yaml::from_str::<Value>(text) {
            Err(whole) => serde_error(path, &positions, whole),
            Ok(_) => serde_error(path, &positions, e),
        }
        .into()),
    }
}

/// Values written with the non-specific tag `!`, which serde_yaml drops without a word.
fn tagged(path: &Path, positions: &Positions) -> Vec<Diagnostic> {
    positions
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
        .collect()
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

/// `value` as YAML text.
pub fn to_string(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

/// Whether `text` is YAML at all, without reading it into a shape; the error as text.
#[cfg(test)]
pub fn check_syntax(text: &str) -> Result<(), String> {
    serde_yaml::from_str::<Value>(text).map(drop).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const TEXT: &str = "\
host:
  name: gw
  bridges:
    br0:
    br1: {}
    br2: { address: \"10.0.0.1/24\" }
probes:
  - from: a
    to: b
  -   name: x
      port: 1
  -
    expect: reached
  - [1, 2]
? [complex, key]
: ignored
anchor: &a 5
alias: *a
last: end
";

    fn at(line: usize, column: usize) -> Location {
        Location { line, column }
    }

    #[rstest]
    #[case("", None, at(1, 1))]
    #[case("host", Some(at(1, 1)), at(2, 3))]
    #[case("host.name", Some(at(2, 3)), at(2, 9))]
    #[case("host.bridges", Some(at(3, 3)), at(4, 5))]
    #[case("host.bridges.br0", Some(at(4, 5)), at(4, 5))]
    #[case("host.bridges.br1", Some(at(5, 5)), at(5, 10))]
    #[case("host.bridges.br2", Some(at(6, 5)), at(6, 10))]
    #[case("host.bridges.br2.address", Some(at(6, 12)), at(6, 21))]
    #[case("probes", Some(at(7, 1)), at(8, 3))]
    #[case("probes[0]", None, at(8, 5))]
    #[case("probes[0].to", Some(at(9, 5)), at(9, 9))]
    #[case("probes[1]", None, at(10, 7))]
    #[case("probes[1].port", Some(at(11, 7)), at(11, 13))]
    #[case("probes[2].expect", Some(at(13, 5)), at(13, 13))]
    #[case("probes[3]", None, at(14, 5))]
    #[case("probes[3][1]", None, at(14, 9))]
    #[case("anchor", Some(at(17, 1)), at(17, 12))]
    #[case("alias", Some(at(18, 1)), at(18, 8))]
    #[case("last", Some(at(19, 1)), at(19, 7))]
    fn spans(#[case] path: &str, #[case] key: Option<Location>, #[case] value: Location) {
        let positions = Positions::parse(TEXT).unwrap();
        assert_eq!(positions.get(path), Some(Span { key, value }), "{path}");
    }

    #[rstest]
    #[case("probes[0].port", at(8, 5))]
    #[case("host.bridges.br0.address", at(4, 5))]
    #[case("host.sysctls.net.ipv4.ip_forward", at(2, 3))]
    #[case("nothing.at.all", at(1, 1))]
    fn missing_paths_point_at_the_nearest_enclosing_value(#[case] path: &str, #[case] expected: Location) {
        let positions = Positions::parse(TEXT).unwrap();
        assert!(!positions.contains(path));
        assert_eq!(positions.value(path), Some(expected));
        assert_eq!(positions.key(path), Some(expected));
    }

    #[test]
    fn complex_keys_are_skipped() {
        let positions = Positions::parse(TEXT).unwrap();
        assert!(!positions.contains("?[0]"));
        assert!(!positions.contains("complex"));
        assert!(positions.duplicates().is_empty());
    }

    #[test]
    fn duplicates_are_recorded() {
        let text = "a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\na: 4\n";
        let positions = Positions::parse(text).unwrap();
        assert_eq!(
            positions.duplicates(),
            &[
                Duplicate { path: "b.x".into(), key: "x".into(), first: at(3, 3), second: at(5, 3) },
                Duplicate { path: "a".into(), key: "a".into(), first: at(1, 1), second: at(6, 1) },
            ]
        );
        // The first occurrence stays indexed.
        assert_eq!(positions.get("b.x").unwrap().value, at(3, 6));
    }

    #[test]
    fn only_the_first_document_is_indexed() {
        let positions = Positions::parse("a: 1\n---\nb: 2\n").unwrap();
        assert!(positions.contains("a"));
        assert!(!positions.contains("b"));
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let err = Positions::parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.location.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[rstest]
    #[case("", None)]
    #[case("host", Some(""))]
    #[case("host.name", Some("host"))]
    #[case("probes[2]", Some("probes"))]
    #[case("probes[2].to", Some("probes[2]"))]
    fn parents(#[case] path: &str, #[case] expected: Option<&str>) {
        assert_eq!(parent(path), expected);
    }

    // Reading whole files: syntax, types, unknown and duplicate keys.
    mod files {
        use crate::scenario::model::Location;
        use crate::scenario::testing::*;
        use rstest::rstest;

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
        fn wrong_type(
            #[case] from: &str,
            #[case] to: &str,
            #[case] key: &str,
            #[case] needle: &str,
            #[case] says: &str,
        ) {
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
        fn unknown_key(
            #[case] from: &str,
            #[case] to: &str,
            #[case] key: &str,
            #[case] needle: &str,
            #[case] says: &str,
        ) {
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
    }
}
