//! Loading a scenario file, step by step: read the text, expand a contract into one
//! text per producer (`contract`, `vars`), read the YAML once (`yaml`), then check it
//! part by part (`check`) into the model, collecting every problem found.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::check::containers::containers;
use super::check::counters::counters;
use super::check::probes::probes;
use super::check::rules::{live_program, rules};
use super::check::topology::build_lab;
use super::check::Checker;
use super::contract::{load_producers, producer_rules, producers_key, refuse_contract_keys, ProducerCtx};
use super::diagnostic::{one_line, Diagnostic, InputError};
use super::file::{HostFile, ScenarioFile};
use super::model::*;
use super::vars::substitute;
use super::yaml;

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

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
pub(crate) const MAX_FILE: u64 = 16 << 20;

/// The text of a regular file of at most [`MAX_FILE`] bytes; a byte that is not UTF-8
/// is reported at its line and column.
pub(crate) fn read_text(path: &Path, what: &str) -> Result<String, Diagnostic> {
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

/// [`load`] with the text already read; rule files are still looked up next to `path`.
pub(crate) fn load_text(
    path: &Path,
    name: &str,
    text: &str,
    ctx: Option<&ProducerCtx>,
) -> Result<Scenario, InputError> {
    let (file, positions) = yaml::read::<ScenarioFile>(path, text)?;
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

pub(crate) fn convert(
    c: &mut Checker,
    path: &Path,
    name: &str,
    mut file: ScenarioFile,
    ctx: Option<&ProducerCtx>,
) -> Scenario {
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
    scenario.description = file.description.take();
    // A folded or literal block leaves line breaks and a final newline: one line.
    scenario.skip = file.skip.as_deref().map(one_line);
    // IPv6 addresses in the lab turn IPv6 on; `ipv6: false` beside them contradicts.
    let has_ipv6 = (0..scenario.nodes.len()).any(|id| !scenario.addresses6_of(NodeId(id)).is_empty());
    if file.ipv6 == Some(false) && has_ipv6 {
        c.value("ipv6", "expected `ipv6: true` or no `ipv6` key: the lab has IPv6 addresses");
    }
    scenario.ipv6 = file.ipv6.unwrap_or(false) || has_ipv6;
    scenario.timeout = timeout;
    scenario.sequential = file.sequential.unwrap_or(false);

    for (key, target) in std::mem::take(&mut c.forward_targets) {
        if scenario.owner_of(*target.ip()).is_none() && !lab.rejected.contains(&IpAddr::V4(*target.ip())) {
            c.value(&key, format!("{} is no address of this lab; a forwarder connects to a lab node", target.ip()));
        }
    }

    let format = match ctx {
        None => own_rules(c, path, &file, &mut scenario),
        Some(ctx) => producer_rules(c, path, &file, ctx, &mut scenario),
    };
    let wired = scenario.rules.live.as_ref().is_some_and(|l| l.kind().wires_containers());
    if !wired && (file.containers.is_some() || file.networks.is_some()) {
        let what = if file.containers.is_some() { "containers" } else { "networks" };
        c.key(
            what,
            "expected `networks` and `containers` only with a live program that wires containers \
             (rules.live.program: netavark, cni, dockerd or command); give other nodes `interfaces`",
        );
    }
    // Of the programs that wire containers, netavark, the CNI plugins and dockerd are
    // given dual-stack networks.
    let dual = scenario
        .rules
        .live
        .as_ref()
        .is_some_and(|l| matches!(l.kind(), LiveProgram::Netavark | LiveProgram::Cni | LiveProgram::Dockerd));
    if wired && !dual {
        for (name, n) in file.networks.iter().flatten() {
            if n.as_ref().is_some_and(|n| n.subnet6.is_some()) {
                c.key(
                    &yaml::join(&yaml::join("networks", name), "subnet6"),
                    "expected `subnet6` only under the netavark, cni or dockerd program: a command is given IPv4 \
                     networks",
                );
            }
        }
    }
    if ctx.is_none() {
        own_program(c, path, &scenario);
        refuse_contract_keys(c, &file);
    }
    scenario.probes = probes(c, &scenario, &lab, file.probes.as_deref().unwrap_or_default(), ctx);
    scenario.counters = counters(c, format, file.counters.as_deref().unwrap_or_default(), ctx);
    scenario
}

/// The rules of a scenario that is no contract: its own `rules`.
fn own_rules(c: &mut Checker, path: &Path, file: &ScenarioFile, scenario: &mut Scenario) -> Option<RuleFormat> {
    if file.contract.is_some() {
        c.key("contract", "a contract scenario runs against producers: add `producers: FILE`");
    }
    let folder = path.parent().unwrap_or(Path::new(""));
    let (rules, format) = rules(c, "rules", folder, file.rules.as_ref());
    scenario.rules = rules;
    format
}

/// A `command` program of the scenario's own must be there to run.
fn own_program(c: &mut Checker, path: &Path, scenario: &Scenario) {
    if let Some(Program::Command { run, .. }) = scenario.rules.live.as_ref().map(|l| &l.program) {
        if let Some(program) = run.first() {
            let folder = path.parent().unwrap_or(Path::new(""));
            live_program(c, "rules.live.run[0]", folder, program);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::testing::*;
    use rstest::rstest;

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
        assert_eq!((p[0].from, p[0].to), (NodeId(1), IpAddr::V4(Ipv4Addr::new(172, 20, 0, 3))));
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
        assert_eq!(p[3].source_seen, Some(SourceSeen::Address(Ipv4Addr::new(192, 0, 2, 1).into())));

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
        assert_eq!(
            (p.proto, p.to, p.timeout),
            (Proto::Icmp, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), Duration::from_millis(200))
        );
        assert_eq!(p.name, "a -> host icmp");
        assert_eq!(s.counters[0].family.as_deref(), Some("ip"));
        assert_eq!(s.counters[0].location, at(13, 5));
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
            yaml::check_syntax(block).unwrap_or_else(|e| panic!("{e}:\n{block}"));
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
    fn all_problems_are_reported_in_file_order() {
        let text = edit("timeout: 300ms", "timeout: soon")
            .replace("address: 172.20.0.2/16", "address: 172.20.0.0/16")
            .replace("expect: dropped", "expect: nothing")
            .replace("packets: 1\n", "packets: lots\n");
        let d = errors(&text);
        let keys: Vec<_> = d.iter().map(|d| d.key.as_deref().unwrap_or("")).collect();
        assert_eq!(keys, ["timeout", "nodes.c1.interfaces[0].address", "probes[0].expect", "counters[0].packets"]);
    }

    #[rstest]
    // Top level.
    #[case::skip_empty("ipv6: true\n", "ipv6: true\nskip: \"\"\n", "skip", "skip: |\"\"", "reason")]
    fn invalid(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str, #[case] says: &str) {
        let text = edit(from, to);
        assert_one(&text, key, needle, says);
    }
}
