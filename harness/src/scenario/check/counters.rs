//! Counter expectations: which rule of which chain and table must have counted how many
//! packets (and bytes), in the terms of the scenario's rule format.

use super::Checker;
use crate::scenario::contract::ProducerCtx;
use crate::scenario::file::CounterFile;
use crate::scenario::model::*;
use crate::scenario::yaml::{item, join};

pub(crate) const IPTABLES_TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];

pub(crate) const NFT_FAMILIES: [&str; 6] = ["ip", "ip6", "inet", "arp", "bridge", "netdev"];

/// The family nft assumes when a table is named without one.
pub(crate) const NFT_DEFAULT_FAMILY: &str = "ip";

pub(crate) fn counters(
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
        out.extend(counter(c, format, &key, f));
    }
    out
}

/// One counter expectation; None when any part of it is wrong.
fn counter(c: &mut Checker, format: Option<RuleFormat>, key: &str, f: &CounterFile) -> Option<CounterExpectation> {
    let family = family(c, format, key, f);
    let table = table(c, format, key, f);
    let chain = chain(c, key, f);
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
            c.value(key, "expected one of `rule`, `position` or `comment` to pick the rule, found none");
            None
        }
        [_] => selector(c, key, f, chain.as_deref()),
        [first, second, ..] => {
            c.key(
                &join(key, second),
                format!("expected one of `rule`, `position` or `comment`, found both `{first}` and `{second}`"),
            );
            None
        }
    };

    let packets = match &f.packets {
        None => {
            c.missing(
                &join(key, "packets"),
                "a packet count: an integer (exactly) or a string such as \">= 1\" (at least)",
            );
            None
        }
        Some(p) => c.count(&join(key, "packets"), p),
    };
    // Some(None): no byte count asked for.
    let bytes = match &f.bytes {
        None => Some(None),
        Some(b) => c.count(&join(key, "bytes"), b).map(Some),
    };

    Some(CounterExpectation {
        location: c.location(key),
        family,
        table: table?,
        chain: chain?,
        rule: rule?,
        packets: packets?,
        bytes: bytes?,
    })
}

/// `family`: an nft table's family, `ip` unless given. An iptables table has none
/// (IPv4), or `ip6` for ip6tables' (`ip` says IPv4 as well).
fn family(c: &mut Checker, format: Option<RuleFormat>, key: &str, f: &CounterFile) -> Option<String> {
    match (&f.family, format) {
        (Some(fam), Some(RuleFormat::Iptables)) if fam == "ip6" => Some(fam.clone()),
        (Some(fam), Some(RuleFormat::Iptables)) if fam == "ip" => None,
        (Some(fam), Some(RuleFormat::Iptables)) => {
            c.key(
                &join(key, "family"),
                format!(
                    "expected ip6 (an ip6tables table) or ip (an iptables one, the default) under \
                     this scenario's iptables back ends, found `{fam}`"
                ),
            );
            None
        }
        (Some(fam), Some(RuleFormat::Nft)) if !NFT_FAMILIES.contains(&fam.as_str()) => {
            c.value(
                &join(key, "family"),
                format!("expected an nft family (one of {}), found `{fam}`", NFT_FAMILIES.join(", ")),
            );
            None
        }
        (None, Some(RuleFormat::Nft)) => Some(NFT_DEFAULT_FAMILY.to_string()),
        (fam, _) => fam.clone(),
    }
}

/// `table`: for iptables, one of its tables.
fn table(c: &mut Checker, format: Option<RuleFormat>, key: &str, f: &CounterFile) -> Option<String> {
    match &f.table {
        None => {
            c.missing(&join(key, "table"), "the name of the table that holds the chain");
            None
        }
        Some(t) if format == Some(RuleFormat::Iptables) && !IPTABLES_TABLES.contains(&t.as_str()) => {
            c.value(
                &join(key, "table"),
                format!("expected an iptables table (one of {}), found `{t}`", IPTABLES_TABLES.join(", ")),
            );
            None
        }
        Some(t) if t.is_empty() => {
            c.value(&join(key, "table"), "expected a table name, found an empty string");
            None
        }
        Some(t) => Some(t.clone()),
    }
}

fn chain(c: &mut Checker, key: &str, f: &CounterFile) -> Option<String> {
    match &f.chain {
        None => {
            c.missing(&join(key, "chain"), "the name of the chain that holds the rule");
            None
        }
        Some(ch) if ch.is_empty() => {
            c.value(&join(key, "chain"), "expected a chain name, found an empty string");
            None
        }
        Some(ch) => Some(ch.clone()),
    }
}

/// The one of `rule`, `position` and `comment` that is given.
pub(crate) fn selector(c: &mut Checker, key: &str, f: &CounterFile, chain: Option<&str>) -> Option<RuleSelector> {
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
    use crate::scenario::testing::*;
    use rstest::rstest;

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

    #[rstest]
    // Counters.
    #[case::family_with_iptables(
        "  - table: nat\n",
        "  - family: inet\n    table: nat\n",
        "counters[1].family",
        "  - |family: inet",
        "expected ip6 (an ip6tables table) or ip (an iptables one, the default)"
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
    fn invalid(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str, #[case] says: &str) {
        let text = edit(from, to);
        assert_one(&text, key, needle, says);
    }
}
