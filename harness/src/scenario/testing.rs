//! What the scenario tests share: a valid scenario that uses every key, a folder to
//! load it from, and assertions that pin a diagnostic's key, position and message.

pub(crate) use std::fs;
pub(crate) use std::net::Ipv4Addr;
pub(crate) use std::path::PathBuf;

pub(crate) use ipnet::Ipv4Net;
pub(crate) use tempfile::TempDir;

pub(crate) use super::model::*;
pub(crate) use super::{discover, load, load_file, Diagnostic, InputError};

/// A valid scenario that uses every key. The failing cases of each check edit it.
pub(crate) const GOOD: &str = r#"description: Two containers on a bridge and one external node
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

/// A valid dual-stack scenario; the IPv6 cases edit it.
pub(crate) const DUAL: &str = r#"host:
  forwarding: true
  bridges:
    br0: { address: [10.0.0.1/24, "fd00::1/64"] }
    br1: { address: 10.0.1.1/24 }
  uplinks:
    up0: { address: [192.0.2.1/24, "2001:db8::1/64"] }
nodes:
  a:
    interfaces: [{ bridge: br0, address: [10.0.0.2/24, "fd00::2/64", "fd00::22/64"], gateway: [10.0.0.1, "fd00::1"] }]
  v4:
    interfaces: [{ bridge: br1, address: 10.0.1.2/24 }]
  lan:
    interfaces: [{ uplink: up0, address: [192.0.2.2/24, "2001:db8::2/64"], gateway: "fe80::1" }]
rules:
  backends: [iptables-nft]
  files: [rules/base.rules]
  files6: [rules/base.rules]
probes:
  - { from: a, to: lan, family: ipv6, port: 80, expect: reached, source_seen: "fd00::2" }
  - { from: a, to: "2001:db8::2", proto: icmp, expect: reached }
  - { from: a, to: v4, expect: reached }
  - { from: lan, to: "::1", expect: reached }
counters:
  - { family: ip6, table: filter, chain: FORWARD, position: 1, packets: 1 }
"#;

/// DUAL with the first `from` replaced by `to`.
pub(crate) fn edit6(from: &str, to: &str) -> String {
    assert!(DUAL.contains(from), "DUAL has no {from:?}");
    DUAL.replacen(from, to, 1)
}

/// A folder with rule files and `text` as `scenario.yaml`.
pub(crate) fn write(text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("rules")).unwrap();
    fs::write(dir.path().join("rules/base.rules"), "*filter\nCOMMIT\n").unwrap();
    fs::write(dir.path().join("rules/extra.rules"), "*nat\nCOMMIT\n").unwrap();
    fs::write(dir.path().join("rules/base.nft"), "flush ruleset\n").unwrap();
    let path = dir.path().join("scenario.yaml");
    fs::write(&path, text).unwrap();
    (dir, path)
}

pub(crate) fn load_str(text: &str) -> Result<Scenario, InputError> {
    let (_dir, path) = write(text);
    load(&path, "test/scenario.yaml")
}

pub(crate) fn errors(text: &str) -> Vec<Diagnostic> {
    match load_str(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.diagnostics,
    }
}

/// GOOD with the first `from` replaced by `to`.
pub(crate) fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "GOOD has no {from:?}");
    GOOD.replacen(from, to, 1)
}

/// Where `needle` first occurs in `text`; a `|` in the needle marks the exact spot.
pub(crate) fn loc(text: &str, needle: &str) -> Location {
    let offset = needle.find('|').unwrap_or(0);
    let plain = needle.replacen('|', "", 1);
    let at = text.find(&plain).unwrap_or_else(|| panic!("no {plain:?} in text")) + offset;
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location { line: before.matches('\n').count() + 1, column: before[line_start..].chars().count() + 1 }
}

/// Exactly one diagnostic, with this key, at `needle`, saying `says`.
pub(crate) fn assert_one(text: &str, key: &str, needle: &str, says: &str) {
    let diagnostics = errors(text);
    assert_eq!(diagnostics.len(), 1, "{}", InputError::from(diagnostics.clone()));
    assert_diagnostic(text, &diagnostics, key, needle, says);
}

/// Some diagnostic with this key, at `needle`, saying `says`.
pub(crate) fn assert_diagnostic(text: &str, diagnostics: &[Diagnostic], key: &str, needle: &str, says: &str) {
    let all = InputError::from(diagnostics.to_vec());
    let d = diagnostics
        .iter()
        .find(|d| d.key.as_deref() == Some(key))
        .unwrap_or_else(|| panic!("no diagnostic for {key}:\n{all}"));
    assert_eq!(d.location, Some(loc(text, needle)), "{all}");
    assert!(d.message.contains(says), "{:?} does not say {says:?}", d.message);
}

pub(crate) fn at(line: usize, column: usize) -> Location {
    Location { line, column }
}

// Contracts: producers, variables, differences.

pub(crate) const PRODUCERS: &str = "\
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

pub(crate) const CONTRACT: &str = "\
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
pub(crate) fn contract_dir(scenario: &str, producers: &str) -> (TempDir, PathBuf) {
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
