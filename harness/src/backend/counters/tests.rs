use std::path::{Path, PathBuf};

use rstest::rstest;

use super::*;
use crate::backend::iptables::save::{parse_iptables_save, tokenize_iptables};
use crate::backend::nft::listing::parse_nft_ruleset;
use crate::scenario::model::{Count, Location};

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A file under tests/data/counters.
fn data(name: &str) -> String {
    read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/counters").join(name))
}

/// A rule file of the suite: `AREA/NAME` is scenarios/AREA/rules/NAME.
fn fixture(name: &str) -> String {
    let (area, file) = name.split_once('/').expect("AREA/NAME");
    read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(area).join("rules").join(file))
}

fn ipt(name: &str) -> Dump {
    parse_iptables_save(&data(name)).unwrap()
}

fn nft(name: &str) -> Dump {
    parse_nft_ruleset(&data(name)).unwrap()
}

fn text(t: &str) -> RuleSelector {
    RuleSelector::Text(t.to_string())
}

fn comment(c: &str) -> RuleSelector {
    RuleSelector::Comment(c.to_string())
}

fn expectation(family: Option<&str>, table: &str, chain: &str, rule: RuleSelector) -> CounterExpectation {
    CounterExpectation {
        location: Location::default(),
        family: family.map(str::to_string),
        table: table.to_string(),
        chain: chain.to_string(),
        rule,
        packets: Count::AtLeast(1),
        bytes: None,
    }
}

fn parse_error(result: Result<Dump, ParseError>) -> (usize, String) {
    match result {
        Err(ParseError::Syntax { line, text, .. }) => (line, text),
        Ok(d) => panic!("parsed: {d:?}"),
    }
}

// --- iptables-save ------------------------------------------------------------------

#[rstest]
#[case("captured/cni-plugins-1.1.1-live.rules", 16, 7)]
#[case("captured/docker-20.10.24-live.rules", 26, 7)]
#[case("captured/netavark-1.4.0-iptables-live.rules", 15, 7)]
#[case("captured/ufw-0.36.2-live.rules", 68, 3)]
#[case("docker/docker-20.10-iptables.rules", 26, 7)]
#[case("docker/docker-28-ip6tables.rules", 7, 7)]
#[case("docker/docker-28-iptables.rules", 27, 9)]
#[case("docker/docker-28.0.0-iptables.rules", 22, 9)]
#[case("docker/docker-29-iptables.rules", 21, 9)]
#[case("docker/netavark-iptables.rules", 29, 7)]
#[case("seed/docker-18.05-seed.rules", 15, 7)]
#[case("seed/docker-18.05-seed-publish-8080.rules", 3, 0)]
fn shared_iptables_fixtures_parse(#[case] name: &str, #[case] rules: usize, #[case] policies: usize) {
    let dump = parse_iptables_save(&fixture(name)).unwrap();
    assert_eq!(dump.rules.len(), rules);
    assert_eq!(dump.policies.len(), policies);
    // Without -c there are no counters.
    assert!(dump.rules.iter().all(|r| r.packets.is_none() && r.bytes.is_none()));
    assert!(dump.rules.iter().all(|r| r.family.is_none() && !r.text.is_empty()));
    // Positions count from 1 in every chain, without gaps.
    for id in &dump.chains {
        let positions: Vec<usize> =
            dump.rules.iter().filter(|r| r.table == id.table && r.chain == id.chain).map(|r| r.position).collect();
        assert_eq!(positions, (1..=positions.len()).collect::<Vec<_>>(), "{}", id.chain);
    }
}

#[rstest]
#[case("docker-20.10.24-before.rules", 26, 7, 12)]
#[case("docker-20.10.24-after.rules", 26, 7, 12)]
#[case("iptables-legacy-cni.rules", 16, 7, 14)]
#[case("iptables-nft-lab-before.rules", 7, 7, 8)]
#[case("iptables-nft-lab-after.rules", 7, 7, 8)]
#[case("iptables-nft-ufw-warning.rules", 68, 3, 35)]
#[case("lab-iptables.rules", 7, 7, 8)]
fn captured_iptables_dumps_parse(
    #[case] name: &str,
    #[case] rules: usize,
    #[case] policies: usize,
    #[case] chains: usize,
) {
    let dump = ipt(name);
    assert_eq!((dump.rules.len(), dump.policies.len(), dump.chains.len()), (rules, policies, chains));
    let counted = !name.starts_with("lab-");
    assert!(dump.rules.iter().all(|r| r.packets.is_some() == counted && r.bytes.is_some() == counted));
}

#[test]
fn iptables_counters_and_text() {
    let dump = ipt("iptables-nft-lab-after.rules");
    let first = &dump.rules[0];
    assert_eq!(
        first,
        &RuleCounter {
            family: None,
            table: "filter".into(),
            chain: "INPUT".into(),
            position: 1,
            text: "-j LAB-IN".into(),
            comment: None,
            packets: Some(27),
            bytes: Some(1992),
        }
    );
    let ret = dump.find(None, "filter", "LAB-IN", &RuleSelector::Position(4)).unwrap();
    assert_eq!((ret.text.as_str(), ret.packets, ret.bytes), ("-j RETURN", Some(12), Some(876)));
    let nat = dump.find(None, "nat", "POSTROUTING", &RuleSelector::Position(1)).unwrap();
    assert_eq!((nat.text.as_str(), nat.packets), ("-s 10.0.0.0/8 ! -o lo -j MASQUERADE", Some(0)));
}

#[test]
fn iptables_policies() {
    let dump = ipt("iptables-nft-lab-after.rules");
    let policy =
        |table: &str, chain: &str| dump.policies.iter().find(|p| p.table == table && p.chain == chain).cloned();
    assert_eq!(
        policy("filter", "INPUT"),
        Some(ChainPolicy {
            family: None,
            table: "filter".into(),
            chain: "INPUT".into(),
            policy: "ACCEPT".into(),
            packets: Some(12),
            bytes: Some(876),
        })
    );
    assert_eq!(policy("filter", "FORWARD").map(|p| (p.policy, p.packets)), Some(("DROP".into(), Some(0))));
    assert_eq!(policy("nat", "OUTPUT").map(|p| (p.packets, p.bytes)), Some((Some(7), Some(444))));
    // A user chain has no policy, but it is a chain of its table.
    assert_eq!(policy("filter", "LAB-IN"), None);
    assert!(dump.chains.iter().any(|c| c.table == "filter" && c.chain == "LAB-IN"));
}

#[test]
fn iptables_comments_are_unquoted() {
    let dump = ipt("iptables-nft-lab-after.rules");
    let comments: Vec<Option<&str>> =
        dump.rules.iter().filter(|r| r.chain == "LAB-IN").map(|r| r.comment.as_deref()).collect();
    assert_eq!(comments, [Some("echo on lo"), Some(r#"say "hi" to a \ back-slash"#), Some("single_word"), None]);
    let rule = dump.find(None, "filter", "LAB-IN", &comment(r#"say "hi" to a \ back-slash"#)).unwrap();
    assert_eq!(rule.position, 2);
    assert_eq!(
        rule.text,
        r#"-p tcp -m tcp --dport 8080 -m comment --comment "say \"hi\" to a \\ back-slash" -j REJECT --reject-with tcp-reset"#
    );

    let cni = ipt("iptables-legacy-cni.rules");
    let masq = cni.find(None, "nat", "POSTROUTING", &comment(r#"name: "feascni" id: "feasc2""#)).unwrap();
    assert_eq!(
        masq.text,
        r#"-s 10.22.0.2/32 -m comment --comment "name: \"feascni\" id: \"feasc2\"" -j CNI-48a91cc97f2a15f3d72615b5"#
    );

    // A quoted value that is not a comment stays out of `comment`, and its quotes
    // keep the white space in it.
    let ufw = ipt("iptables-nft-ufw-warning.rules");
    let log = ufw.find(None, "filter", "ufw-user-limit", &RuleSelector::Position(1)).unwrap();
    assert_eq!(log.comment, None);
    assert!(log.text.ends_with(r#"--log-prefix "[UFW LIMIT BLOCK] ""#), "{}", log.text);
}

#[test]
fn iptables_tokenizer() {
    let values =
        |line: &str| -> Vec<String> { tokenize_iptables(line).unwrap().into_iter().map(|t| t.value).collect() };
    assert_eq!(
        values(r#"-A X  -m comment --comment "a  b" -j Y"#),
        ["-A", "X", "-m", "comment", "--comment", "a  b", "-j", "Y"]
    );
    assert_eq!(values(r#"--comment "q\"uote\\d" x"#), ["--comment", r#"q"uote\d"#, "x"]);
    assert_eq!(values(r#"--comment "it\'s""#), ["--comment", "it's"]);
    assert_eq!(values(r#"--comment """#), ["--comment", ""]);
    let tokens = tokenize_iptables(r#"-A CH "x y" z"#).unwrap();
    assert_eq!((tokens[2].start, tokens[2].end), (6, 11));
    assert!(tokenize_iptables(r#"--comment "open"#).is_err());
    assert!(tokenize_iptables(r"--comment x\").is_err());
}

#[test]
fn legacy_warning_and_generated_lines_are_skipped() {
    let text = data("iptables-nft-ufw-warning.rules");
    assert!(text.starts_with("# Warning: iptables-legacy tables present"));
    let dump = parse_iptables_save(&text).unwrap();
    assert_eq!(dump.policies[0].policy, "DROP");
    assert_eq!(dump.policies[0].chain, "INPUT");
}

#[test]
fn rules_without_counters_have_none() {
    let dump = parse_iptables_save("*filter\n:INPUT ACCEPT\n-A INPUT -j ACCEPT\nCOMMIT\n").unwrap();
    assert_eq!((dump.rules[0].packets, dump.rules[0].bytes), (None, None));
    assert_eq!((dump.policies[0].packets, dump.policies[0].bytes), (None, None));
}

#[rstest]
#[case::rule_before_table("-A INPUT -j ACCEPT\n", 1, "-A INPUT -j ACCEPT")]
#[case::bad_counters("*filter\n[x:0] -A INPUT -j ACCEPT\nCOMMIT\n", 2, "[x:0] -A INPUT -j ACCEPT")]
#[case::unclosed_counters("*filter\n[1:2 -A INPUT\nCOMMIT\n", 2, "[1:2 -A INPUT")]
#[case::bad_chain_counters("*filter\n:INPUT ACCEPT [1]\nCOMMIT\n", 2, ":INPUT ACCEPT [1]")]
#[case::no_policy("*filter\n:INPUT\nCOMMIT\n", 2, ":INPUT")]
#[case::insert("*filter\n[0:0] -I INPUT -j ACCEPT\nCOMMIT\n", 2, "[0:0] -I INPUT -j ACCEPT")]
#[case::no_chain("*filter\n-A\nCOMMIT\n", 2, "-A")]
#[case::open_quote(
    "*filter\n-A INPUT -m comment --comment \"x -j ACCEPT\nCOMMIT\n",
    2,
    "-A INPUT -m comment --comment \"x -j ACCEPT"
)]
#[case::no_commit("# x\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n", 2, "*filter")]
#[case::two_tables("*filter\n*nat\nCOMMIT\n", 2, "*nat")]
#[case::stray_commit("COMMIT\n", 1, "COMMIT")]
#[case::no_table_name("*\nCOMMIT\n", 1, "*")]
fn malformed_iptables_dumps(#[case] input: &str, #[case] line: usize, #[case] bad: &str) {
    assert_eq!(parse_error(parse_iptables_save(input)), (line, bad.to_string()));
}

#[test]
fn parse_error_message_names_line_and_text() {
    let err = parse_iptables_save("*filter\n[x:0] -A INPUT -j ACCEPT\nCOMMIT\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: malformed rule counters; expected `[packets:bytes]`: `[x:0] -A INPUT -j ACCEPT`"
    );
}

// --- nft list ruleset ---------------------------------------------------------------

#[rstest]
#[case("docker/docker-29-nftables.nft", 28, 10, 20, 20)]
#[case("docker/netavark-nftables.nft", 25, 5, 13, 0)]
#[case("captured/firewalld-1.3.3-live.nft", 99, 8, 75, 0)]
fn shared_nft_fixtures_parse(
    #[case] name: &str,
    #[case] rules: usize,
    #[case] policies: usize,
    #[case] chains: usize,
    #[case] counted: usize,
) {
    let dump = parse_nft_ruleset(&fixture(name)).unwrap();
    assert_eq!(dump.rules.len(), rules);
    assert_eq!(dump.policies.len(), policies);
    assert_eq!(dump.chains.len(), chains);
    assert_eq!(dump.rules.iter().filter(|r| r.packets.is_some()).count(), counted);
    assert!(dump.rules.iter().all(|r| r.family.is_some()));
    assert!(dump.rules.iter().all(|r| !r.text.contains("packets") && !r.text.contains('#')));
}

#[rstest]
#[case("nft-docker-29-listing.nft", 28, 10, 20, 20)]
#[case("nft-iptables-nft-handles.nft", 7, 7, 8, 7)]
#[case("nft-lab-before.nft", 13, 6, 7, 9)]
#[case("nft-lab-after.nft", 13, 6, 7, 9)]
#[case("lab-nft.nft", 13, 6, 7, 0)]
fn captured_nft_listings_parse(
    #[case] name: &str,
    #[case] rules: usize,
    #[case] policies: usize,
    #[case] chains: usize,
    #[case] counted: usize,
) {
    let dump = nft(name);
    assert_eq!(dump.rules.len(), rules);
    assert_eq!(dump.policies.len(), policies);
    assert_eq!(dump.chains.len(), chains);
    assert_eq!(dump.rules.iter().filter(|r| r.packets.is_some()).count(), counted);
}

#[test]
fn nft_rules_of_a_listing() {
    let dump = nft("nft-lab-after.nft");
    type Row<'a> = (usize, &'a str, Option<&'a str>, Option<u64>, Option<u64>);
    let input: Vec<Row> = dump
        .rules
        .iter()
        .filter(|r| r.family.as_deref() == Some("inet") && r.chain == "input")
        .map(|r| (r.position, r.text.as_str(), r.comment.as_deref(), r.packets, r.bytes))
        .collect();
    assert_eq!(
        input,
        [
            (1, "ct state established,related accept", None, Some(24), Some(1752)),
            (2, r#"iif "lo" accept comment "loopback { in""#, Some("loopback { in"), Some(6), Some(360)),
            (3, r#"ip saddr @allowed icmp type echo-request counter name "http-hits" accept"#, None, None, None),
            (4, "tcp dport vmap @ports", None, None, None),
            (5, r#"meta l4proto icmp accept comment "say hi # here }""#, Some("say hi # here }"), Some(0), Some(0)),
            (6, "drop", None, Some(0), Some(0)),
        ]
    );
    let ip_out = dump.find(Some("ip"), "filter", "output", &RuleSelector::Position(1)).unwrap();
    assert_eq!(
        (ip_out.text.as_str(), ip_out.comment.as_deref(), ip_out.packets),
        (r#"comment "all out""#, Some("all out"), Some(30))
    );
    let netdev = dump.find(None, "ingress", "lo_in", &RuleSelector::Position(1)).unwrap();
    assert_eq!((netdev.family.as_deref(), netdev.text.as_str(), netdev.packets), (Some("netdev"), "", Some(30)));
    let bridge = dump.find(None, "br", "forward_br", &text("ether type ip")).unwrap();
    assert_eq!(bridge.family.as_deref(), Some("bridge"));
}

#[test]
fn nft_policies() {
    let dump = nft("nft-lab-after.nft");
    assert_eq!(
        dump.policies[0],
        ChainPolicy {
            family: Some("inet".into()),
            table: "filter".into(),
            chain: "input".into(),
            policy: "drop".into(),
            packets: None,
            bytes: None,
        }
    );
    let policies: Vec<(&str, &str, &str)> =
        dump.policies.iter().map(|p| (p.table.as_str(), p.chain.as_str(), p.policy.as_str())).collect();
    assert_eq!(
        policies,
        [
            ("filter", "input", "drop"),
            ("filter", "output", "accept"),
            ("filter", "output", "accept"),
            ("nat", "postrouting", "accept"),
            ("ingress", "lo_in", "accept"),
            ("br", "forward_br", "accept"),
        ]
    );
    // Chains without a hook have no policy but are chains all the same.
    assert!(dump.chains.iter().any(|c| c.chain == "web"));
    assert!(!dump.policies.iter().any(|p| p.chain == "web"));
}

#[test]
fn nft_script_and_its_listing_give_the_same_rule_texts() {
    let key = |d: &Dump| -> Vec<(Option<String>, String, String, usize, String)> {
        let mut v: Vec<_> = d
            .rules
            .iter()
            .map(|r| (r.family.clone(), r.table.clone(), r.chain.clone(), r.position, r.text.clone()))
            .collect();
        v.sort();
        v
    };
    // A bare `counter` in the script, `counter packets N bytes M` in the listing.
    assert_eq!(key(&nft("lab-nft.nft")), key(&nft("nft-lab-after.nft")));
    // `# [F1]` notes between the rules of the script.
    let script = parse_nft_ruleset(&fixture("docker/docker-29-nftables.nft")).unwrap();
    assert_eq!(key(&script), key(&nft("nft-docker-29-listing.nft")));
    let firewalld = parse_nft_ruleset(&fixture("captured/firewalld-1.3.3-live.nft")).unwrap();
    assert!(firewalld.rules.iter().all(|r| r.family.as_deref() == Some("inet") && r.table == "firewalld"));
}

#[test]
fn iptables_fixture_and_its_dump_give_the_same_rule_texts() {
    let key = |d: &Dump| -> Vec<(String, String, usize, String)> {
        let mut v: Vec<_> =
            d.rules.iter().map(|r| (r.table.clone(), r.chain.clone(), r.position, r.text.clone())).collect();
        v.sort();
        v
    };
    let fixture = parse_iptables_save(&fixture("captured/docker-20.10.24-live.rules")).unwrap();
    assert_eq!(key(&fixture), key(&ipt("docker-20.10.24-before.rules")));
}

#[test]
fn nft_handles_and_warnings_of_iptables_nft_tables() {
    let dump = nft("nft-iptables-nft-handles.nft");
    let texts: Vec<&str> = dump.rules.iter().filter(|r| r.chain == "LAB-IN").map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            r#"iifname "lo" meta l4proto icmp icmp type echo-request accept"#,
            "tcp dport 8080 reject with tcp reset",
            "tcp dport 9999 drop",
            "return",
        ]
    );
    let input = dump.find(Some("ip"), "filter", "INPUT", &text("counter jump LAB-IN")).unwrap();
    assert_eq!((input.packets, input.bytes), (Some(27), Some(1992)));
}

#[test]
fn nft_blocks_other_than_chains_are_skipped() {
    let input = r#"
# Warning: something
table inet t { # handle 3
	flags dormant
	comment "table { comment"
	set s {
		type ipv4_addr
		flags dynamic,timeout
		elements = { 10.0.0.1 counter packets 5 bytes 300,
			     10.0.0.2 counter packets 0 bytes 0 }
	}
	flowtable ft {
		hook ingress priority filter
		devices = { eth0, eth1 }
	}
	ct timeout agressive-tcp {
		protocol tcp
		l3proto ip
		policy = { established : 100, close : 4 }
	}
	counter c { packets 1 bytes 2 }
	chain "odd name" {
		type filter hook ingress devices = { eth0,
			eth1 } priority 0; policy accept;
	}
	chain c2 {
		comment "chain } comment"
		ip saddr { 10.0.0.1,
			   10.0.0.2 } counter packets 3 bytes 180 accept
		update @s { ip saddr counter packets 1 bytes 60 } counter packets 4 bytes 240
		ip daddr 10.0.0.9 counter; counter packets 1 bytes 1 drop
	}
}
table t2 { chain c { accept } }
"#;
    let dump = parse_nft_ruleset(input).unwrap();
    let rules: Vec<(&str, &str, &str, Option<u64>)> = dump
        .rules
        .iter()
        .map(|r| (r.family.as_deref().unwrap(), r.chain.as_str(), r.text.as_str(), r.packets))
        .collect();
    assert_eq!(
        rules,
        [
            ("inet", "c2", "ip saddr { 10.0.0.1, 10.0.0.2 } accept", Some(3)),
            ("inet", "c2", "update @s { ip saddr counter packets 1 bytes 60 }", Some(4)),
            ("inet", "c2", "ip daddr 10.0.0.9", None),
            ("inet", "c2", "drop", Some(1)),
            ("ip", "c", "accept", None),
        ]
    );
    let chains: Vec<&str> = dump.chains.iter().map(|c| c.chain.as_str()).collect();
    assert_eq!(chains, ["odd name", "c2", "c"]);
    assert_eq!(dump.policies.len(), 1);
    assert_eq!(dump.policies[0].chain, "odd name");
    // A selector may be written across lines, with or without the counter.
    let found = dump
        .find(None, "t", "c2", &text("ip saddr { 10.0.0.1,\n 10.0.0.2 } counter packets 9 bytes 9 accept"))
        .unwrap();
    assert_eq!(found.position, 1);
}

#[rstest]
#[case::unclosed_table("table ip t {\n\tchain c {\n\t}\n", 1, "table ip t {")]
#[case::unclosed_chain("table ip t {\n\tchain c {\n\t\taccept\n", 2, "chain c {")]
#[case::unclosed_rule_brace("table ip t {\n\tchain c {\n\t\tip saddr { 1.2.3.4\n", 3, "ip saddr { 1.2.3.4")]
#[case::unclosed_set("table ip t {\n\tset s {\n\t\ttype ipv4_addr\n", 2, "set s {")]
#[case::stray_brace("table ip t {\n}\n}\n", 3, "}")]
#[case::top_level_rule("tcp dport 22 accept\n", 1, "tcp dport 22 accept")]
#[case::open_string("table ip t {\n\tchain c {\n\t\tcomment \"x\n\t}\n}\n", 3, "comment \"x")]
#[case::bad_counter(
    "table ip t {\n\tchain c {\n\t\tcounter packets x bytes 0 accept\n\t}\n}\n",
    3,
    "counter packets x bytes 0 accept"
)]
#[case::short_counter(
    "table ip t {\n\tchain c {\n\t\tcounter packets 1 accept\n\t}\n}\n",
    3,
    "counter packets 1 accept"
)]
#[case::unknown_family("table ipx t {\n}\n", 1, "table ipx t {")]
#[case::no_brace("table ip t\n", 1, "table ip t")]
#[case::rule_in_table("table ip t {\n\ttcp dport 22 accept\n}\n", 2, "tcp dport 22 accept")]
#[case::chain_without_name("table ip t {\n\tchain {\n\t}\n}\n", 2, "chain {")]
#[case::policy_without_verdict(
    "table ip t {\n\tchain c {\n\t\ttype filter hook input priority 0; policy;\n\t}\n}\n",
    3,
    "type filter hook input priority 0; policy;"
)]
fn malformed_nft_listings(#[case] input: &str, #[case] line: usize, #[case] bad: &str) {
    assert_eq!(parse_error(parse_nft_ruleset(input)), (line, bad.to_string()));
}

#[test]
fn empty_inputs() {
    assert_eq!(parse_nft_ruleset("").unwrap(), Dump::default());
    assert_eq!(parse_iptables_save("").unwrap(), Dump::default());
    assert_eq!(parse_iptables_save("# Warning: x\n\n").unwrap(), Dump::default());
}

// --- find ---------------------------------------------------------------------------

#[rstest]
#[case::as_printed("-o br-e186b900a364 -j DROP")]
#[case::with_prefix("-A DOCKER-ISOLATION-STAGE-2 -o br-e186b900a364 -j DROP")]
#[case::with_counters_and_prefix("[1:60] -A DOCKER-ISOLATION-STAGE-2 -o br-e186b900a364 -j DROP")]
#[case::extra_space("  -o   br-e186b900a364\t-j DROP ")]
#[case::prefix_extra_space("-A  DOCKER-ISOLATION-STAGE-2   -o br-e186b900a364 -j DROP")]
fn find_iptables_rule_by_text(#[case] selector: &str) {
    let dump = ipt("docker-20.10.24-after.rules");
    let rule = dump.find(None, "filter", "DOCKER-ISOLATION-STAGE-2", &text(selector)).unwrap();
    assert_eq!((rule.position, rule.packets, rule.bytes), (1, Some(1), Some(60)));
}

#[test]
fn prefix_of_another_chain_is_not_stripped() {
    let dump = ipt("docker-20.10.24-after.rules");
    let err = dump.find(None, "filter", "DOCKER-ISOLATION-STAGE-2", &text("-A FORWARD -o docker0 -j DROP"));
    assert!(matches!(err, Err(LookupError::NoRule { .. })), "{err:?}");
}

#[rstest]
#[case::listing_line(r#"iif "lo" counter packets 6 bytes 360 accept comment "loopback { in""#)]
#[case::script_line(r#"iif "lo" counter accept comment "loopback { in""#)]
#[case::without_counter(r#"iif "lo"   accept comment "loopback { in"  "#)]
#[case::with_note(r#"iif "lo" counter accept comment "loopback { in" # handle 4"#)]
fn find_nft_rule_by_text(#[case] selector: &str) {
    let dump = nft("nft-lab-after.nft");
    let rule = dump.find(Some("inet"), "filter", "input", &text(selector)).unwrap();
    assert_eq!((rule.position, rule.packets), (2, Some(6)));
    let rule = dump.find(None, "filter", "input", &text(selector)).unwrap();
    assert_eq!(rule.position, 2);
}

#[test]
fn find_by_position_and_comment() {
    let dump = ipt("iptables-nft-lab-after.rules");
    let by_pos = dump.find(None, "filter", "LAB-IN", &RuleSelector::Position(3)).unwrap();
    let by_comment = dump.find(None, "filter", "LAB-IN", &comment("single_word")).unwrap();
    assert_eq!(by_pos, by_comment);
    assert_eq!(by_pos.text, "-p tcp -m tcp --dport 9999 -m comment --comment single_word -j DROP");

    let nft = nft("nft-docker-29-listing.nft");
    let drop = nft.find(Some("ip"), "docker-bridges", "raw-PREROUTING", &RuleSelector::Position(2)).unwrap();
    assert_eq!(drop.text, r#"ip daddr 172.18.0.2 iifname != "br-test" drop comment "DROP DIRECT ACCESS""#);
    let dnat = nft.find(None, "docker-bridges", "nat-prerouting-and-output", &comment("DNAT"));
    // ip and ip6 both have docker-bridges with that chain.
    assert!(matches!(dnat, Err(LookupError::AmbiguousFamily { .. })), "{dnat:?}");
    let dnat = nft.find(Some("ip"), "docker-bridges", "nat-prerouting-and-output", &comment("DNAT")).unwrap();
    assert_eq!(dnat.text, r#"iifname != "docker0" tcp dport 8080 dnat to 172.17.0.2:80 comment "DNAT""#);
}

#[test]
fn no_rule_lists_the_chain() {
    let dump = ipt("docker-20.10.24-after.rules");
    let err = dump.find(None, "filter", "DOCKER-ISOLATION-STAGE-2", &text("-o docker1 -j DROP")).unwrap_err();
    assert_eq!(
        err,
        LookupError::NoRule {
            table: "filter".into(),
            chain: "DOCKER-ISOLATION-STAGE-2".into(),
            selector: "rule `-o docker1 -j DROP`".into(),
            candidates: vec![
                "1: -o br-e186b900a364 -j DROP".into(),
                "2: -o docker0 -j DROP".into(),
                "3: -j RETURN".into(),
            ],
        }
    );
    assert_eq!(
        err.to_string(),
        "no rule `-o docker1 -j DROP` in filter DOCKER-ISOLATION-STAGE-2; the chain holds:\n  \
         1: -o br-e186b900a364 -j DROP\n  2: -o docker0 -j DROP\n  3: -j RETURN"
    );
    let err = dump.find(None, "filter", "DOCKER-USER", &RuleSelector::Position(2)).unwrap_err();
    assert_eq!(err.to_string(), "no rule #2 in filter DOCKER-USER; the chain holds:\n  1: -j RETURN");
    let err = dump.find(None, "filter", "DOCKER-USER", &comment("x")).unwrap_err();
    assert_eq!(err.to_string(), "no rule with comment \"x\" in filter DOCKER-USER; the chain holds:\n  1: -j RETURN");
}

#[test]
fn no_rule_in_an_empty_chain() {
    let dump = nft("nft-docker-29-listing.nft");
    let err =
        dump.find(Some("ip"), "docker-bridges", "nat-postrouting-in__docker0", &RuleSelector::Position(1)).unwrap_err();
    assert_eq!(err.to_string(), "no rule #1 in ip docker-bridges nat-postrouting-in__docker0; the chain is empty");
    let ipt = parse_iptables_save("*filter\n:EMPTY - [0:0]\nCOMMIT\n").unwrap();
    let err = ipt.find(None, "filter", "EMPTY", &text("-j ACCEPT")).unwrap_err();
    assert_eq!(err.to_string(), "no rule `-j ACCEPT` in filter EMPTY; the chain is empty");
}

#[test]
fn nft_rule_that_is_only_a_counter() {
    let dump = nft("nft-lab-after.nft");
    let rule = dump.find(None, "ingress", "lo_in", &text("counter")).unwrap();
    assert_eq!(rule.text, "");
    let err = dump.find(None, "ingress", "lo_in", &text("drop")).unwrap_err();
    assert_eq!(err.to_string(), "no rule `drop` in netdev ingress lo_in; the chain holds:\n  1: counter");
}

#[test]
fn no_chain_lists_the_tables_chains() {
    let dump = ipt("docker-20.10.24-after.rules");
    let err = dump.find(None, "nat", "FORWARD", &RuleSelector::Position(1)).unwrap_err();
    assert_eq!(
        err,
        LookupError::NoChain {
            table: "nat".into(),
            chain: "FORWARD".into(),
            chains: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "DOCKER"].map(String::from).to_vec(),
        }
    );
    assert_eq!(
        err.to_string(),
        "no chain FORWARD in nat; its chains are: PREROUTING, INPUT, OUTPUT, POSTROUTING, DOCKER"
    );

    let nft = nft("nft-lab-after.nft");
    let err = nft.find(Some("inet"), "filter", "forward", &RuleSelector::Position(1)).unwrap_err();
    assert_eq!(err.to_string(), "no chain forward in inet filter; its chains are: input, web, output");
    // Several families have the table, none has the chain.
    let err = nft.find(None, "filter", "forward", &RuleSelector::Position(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no chain forward in filter; its chains are: input (inet filter), web (inet filter), \
         output (inet filter), output (ip filter)"
    );
}

#[test]
fn no_table_lists_the_dumps_tables() {
    let dump = ipt("docker-20.10.24-after.rules");
    let err = dump.find(None, "mangle", "FORWARD", &RuleSelector::Position(1)).unwrap_err();
    assert_eq!(
        err,
        LookupError::NoTable {
            table: "mangle".into(),
            chain: "FORWARD".into(),
            tables: vec!["filter".into(), "nat".into()],
        }
    );
    assert_eq!(err.to_string(), "no table mangle (for chain FORWARD) in the dump; its tables are: filter, nat");
    // An nft family on an iptables dump.
    let err = dump.find(Some("ip"), "filter", "FORWARD", &RuleSelector::Position(1)).unwrap_err();
    assert!(matches!(err, LookupError::NoTable { ref table, .. } if table == "ip filter"), "{err:?}");

    let nft = nft("nft-lab-after.nft");
    let err = nft.find(Some("ip6"), "filter", "input", &RuleSelector::Position(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no table ip6 filter (for chain input) in the dump; its tables are: inet filter, ip filter, \
         ip nat, netdev ingress, bridge br"
    );
    let err = Dump::default().find(None, "filter", "INPUT", &RuleSelector::Position(1)).unwrap_err();
    assert_eq!(err.to_string(), "no table filter (for chain INPUT) in the dump; the dump holds no tables");
}

#[test]
fn nft_family_resolution() {
    let dump = nft("nft-lab-after.nft");
    // Only inet filter has `input`.
    let rule = dump.find(None, "filter", "input", &RuleSelector::Position(1)).unwrap();
    assert_eq!(rule.family.as_deref(), Some("inet"));
    // Only ip has `nat`.
    let rule = dump.find(None, "nat", "postrouting", &RuleSelector::Position(1)).unwrap();
    assert_eq!((rule.family.as_deref(), rule.packets), (Some("ip"), None));
    // Both inet filter and ip filter have `output`.
    let err = dump.find(None, "filter", "output", &RuleSelector::Position(1)).unwrap_err();
    assert_eq!(
        err,
        LookupError::AmbiguousFamily {
            table: "filter".into(),
            chain: "output".into(),
            families: vec!["inet".into(), "ip".into()],
        }
    );
    assert_eq!(err.to_string(), "table filter with chain output exists in the families inet, ip; name the family");
    let inet = dump.find(Some("inet"), "filter", "output", &RuleSelector::Position(1)).unwrap();
    let ip = dump.find(Some("ip"), "filter", "output", &RuleSelector::Position(1)).unwrap();
    assert_eq!(inet.text, "ip daddr 127.0.0.1 icmp type echo-request");
    assert_eq!(ip.text, r#"comment "all out""#);
}

#[test]
fn ambiguous_selector() {
    let input = "*filter\n:INPUT ACCEPT [0:0]\n[1:1] -A INPUT -j ACCEPT\n\
                 [2:2] -A INPUT -m comment --comment x -j DROP\n[3:3] -A INPUT -j ACCEPT\n\
                 [4:4] -A INPUT -m comment --comment x -j ACCEPT\nCOMMIT\n";
    let dump = parse_iptables_save(input).unwrap();
    let err = dump.find(None, "filter", "INPUT", &text("-j ACCEPT")).unwrap_err();
    assert_eq!(
        err,
        LookupError::Ambiguous {
            table: "filter".into(),
            chain: "INPUT".into(),
            selector: "rule `-j ACCEPT`".into(),
            positions: vec![1, 3],
        }
    );
    assert_eq!(
        err.to_string(),
        "rule `-j ACCEPT` in filter INPUT is ambiguous: rules #1, #3 all match; select one by position"
    );
    let err = dump.find(None, "filter", "INPUT", &comment("x")).unwrap_err();
    assert!(matches!(err, LookupError::Ambiguous { ref positions, .. } if positions == &[2, 4]));
}

// --- delta and moved -----------------------------------------------------------------

#[test]
fn no_counter() {
    let before = nft("nft-lab-before.nft");
    let after = nft("nft-lab-after.nft");
    let exp = expectation(Some("inet"), "filter", "input", text("tcp dport vmap @ports"));
    let err = delta(&before, &after, &exp).unwrap_err();
    assert_eq!(
        err,
        LookupError::NoCounter {
            table: "inet filter".into(),
            chain: "input".into(),
            position: 4,
            text: "tcp dport vmap @ports".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "rule #4 in inet filter input has no counter: `tcp dport vmap @ports`; nft counts only \
         rules with a `counter` statement, and iptables-save prints counters only with -c"
    );
    // A named counter is not the rule's own counter.
    let exp = expectation(None, "filter", "input", RuleSelector::Position(3));
    assert!(matches!(delta(&before, &after, &exp), Err(LookupError::NoCounter { position: 3, .. })));
    // A dump without -c.
    let plain = ipt("lab-iptables.rules");
    let exp = expectation(None, "filter", "LAB-IN", comment("echo on lo"));
    assert!(matches!(delta(&plain, &plain, &exp), Err(LookupError::NoCounter { position: 1, .. })));
}

#[test]
fn delta_of_iptables_counters() {
    let before = ipt("iptables-nft-lab-before.rules");
    let after = ipt("iptables-nft-lab-after.rules");
    let exp = expectation(None, "filter", "LAB-IN", comment("echo on lo"));
    let d = delta(&before, &after, &exp).unwrap();
    assert_eq!(
        d,
        CounterDelta {
            position: 1,
            text: r#"-i lo -p icmp -m icmp --icmp-type 8 -m comment --comment "echo on lo" -j ACCEPT"#.into(),
            packets: 6,
            bytes: 504,
        }
    );
    let exp = expectation(None, "nat", "POSTROUTING", RuleSelector::Position(1));
    assert_eq!(delta(&before, &after, &exp).unwrap().packets, 0);
    // Counters that went down (a reload in between) count as no change.
    let exp = expectation(None, "filter", "INPUT", text("-A INPUT -j LAB-IN"));
    let d = delta(&after, &before, &exp).unwrap();
    assert_eq!((d.packets, d.bytes), (0, 0));
}

#[test]
fn delta_of_nft_counters() {
    let before = nft("nft-lab-before.nft");
    let after = nft("nft-lab-after.nft");
    let exp = expectation(None, "filter", "input", comment("loopback { in"));
    let d = delta(&before, &after, &exp).unwrap();
    assert_eq!((d.position, d.packets, d.bytes), (2, 4, 240));
    let exp = expectation(Some("ip"), "filter", "output", text("counter comment \"all out\""));
    let d = delta(&before, &after, &exp).unwrap();
    assert_eq!((d.packets, d.bytes), (20, 1408));
    // Lookup errors come through.
    let exp = expectation(None, "filter", "output", RuleSelector::Position(1));
    assert!(matches!(delta(&before, &after, &exp), Err(LookupError::AmbiguousFamily { .. })));
}

#[test]
fn moved_rules_of_a_docker_probe() {
    let before = ipt("docker-20.10.24-before.rules");
    let after = ipt("docker-20.10.24-after.rules");
    let path: Vec<(&str, usize, &str, u64, u64)> = moved(&before, &after)
        .into_iter()
        .map(|(r, p, b)| (r.chain.as_str(), r.position, r.text.as_str(), p, b))
        .collect();
    assert_eq!(
        path,
        [
            ("FORWARD", 1, "-j DOCKER-USER", 1, 60),
            ("FORWARD", 2, "-j DOCKER-ISOLATION-STAGE-1", 1, 60),
            ("DOCKER-ISOLATION-STAGE-1", 2, "-i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2", 1, 60),
            ("DOCKER-ISOLATION-STAGE-2", 1, "-o br-e186b900a364 -j DROP", 1, 60),
            ("DOCKER-USER", 1, "-j RETURN", 1, 60),
        ]
    );
    assert!(moved(&before, &before).is_empty());
    assert!(moved(&after, &before).is_empty());
}

#[test]
fn moved_nft_rules() {
    let before = nft("nft-lab-before.nft");
    let after = nft("nft-lab-after.nft");
    let moved: Vec<(&str, &str, usize, u64, u64)> = moved(&before, &after)
        .into_iter()
        .map(|(r, p, b)| (r.family.as_deref().unwrap(), r.chain.as_str(), r.position, p, b))
        .collect();
    assert_eq!(
        moved,
        [
            ("inet", "input", 1, 16, 1168),
            ("inet", "input", 2, 4, 240),
            ("inet", "output", 1, 6, 504),
            ("ip", "output", 1, 20, 1408),
            ("netdev", "lo_in", 1, 20, 1408),
        ]
    );
}

#[test]
fn moved_skips_rules_whose_text_changed() {
    let before = parse_iptables_save("*filter\n[1:10] -A INPUT -j ACCEPT\n[1:10] -A INPUT -j DROP\nCOMMIT\n").unwrap();
    let after = parse_iptables_save(
        "*filter\n[5:50] -A INPUT -j REJECT\n[3:30] -A INPUT -j DROP\n[9:90] -A INPUT -j LOG\nCOMMIT\n",
    )
    .unwrap();
    let moved: Vec<(usize, u64)> = moved(&before, &after).into_iter().map(|(r, p, _)| (r.position, p)).collect();
    assert_eq!(moved, [(2, 2)]);
}
