//! Mutations of an nft script: rule lines of chains deleted, verdicts and base chain
//! policies flipped (see [`crate::backend::mutation`]).

use crate::backend::mutation::{content, splice, words, Mutation, MutationKind, Mutator, Word};

#[derive(Debug)]
enum Block {
    Table(String),
    Chain { place: String, nat: bool },
    Other,
}

/// A word without a trailing `;` (nft allows one after each statement).
fn bare(s: &str) -> &str {
    s.trim_end_matches(';')
}

/// The verdict of an nft rule flipped: the new line and the new verdict.
fn nft_flip(line: &str, ws: &[Word]) -> Option<(String, &'static str)> {
    let top: Vec<Word> = ws.iter().copied().filter(|w| w.depth == 0).collect();
    let text = |k: usize| top.get(k).map(|w| bare(&line[w.start..w.end]));
    let k = (0..top.len()).rev().find(|&k| {
        matches!(text(k), Some("accept" | "drop" | "reject" | "return"))
            && (k == 0 || !matches!(text(k - 1), Some("jump" | "goto")))
    })?;
    let verdict = text(k)?;
    let new = if verdict == "accept" { "drop" } else { "accept" };
    let mut last = k;
    if verdict == "reject" && text(k + 1) == Some("with") {
        // `with icmp|icmpv6|icmpx [type] CODE` or `with tcp reset`.
        last = if text(k + 3) == Some("type") { k + 4 } else { k + 3 };
        last = last.min(top.len() - 1);
    }
    let end = top[last].start + bare(&line[top[last].start..top[last].end]).len();
    Some((splice(line, top[k].start, end, new), new))
}

/// Every mutation of an nft script; see the module documentation.
pub fn nft_mutations(text: &str) -> Vec<Mutation> {
    let mut m = Mutator::new(text);
    let mut stack: Vec<Block> = Vec::new();
    for i in 0..m.lines.len() {
        let line = content(m.lines[i]);
        let ws = words(line, true);
        let word = |k: usize| ws.get(k).map(|w| &line[w.start..w.end]);
        let count = |brace: &str| ws.iter().filter(|w| &line[w.start..w.end] == brace).count();
        let balanced = count("{") == count("}");
        if let (Some(Block::Chain { place, nat }), Some(first), true) = (stack.last_mut(), word(0), balanced) {
            if matches!(first, "type" | "hook" | "priority" | "policy" | "comment" | "devices" | "device") {
                if first == "type" && word(1) == Some("nat") {
                    *nat = true;
                }
                let Some(k) = (0..ws.len()).find(|&k| word(k) == Some("policy")) else { continue };
                let Some(old) = word(k + 1).map(bare) else { continue };
                let new = match old {
                    "accept" => "drop",
                    "drop" => "accept",
                    _ => continue,
                };
                if *nat {
                    continue;
                }
                let description = format!("flip the {place} policy from {old} to {new} (line {})", i + 1);
                let start = ws[k + 1].start;
                let new_line = splice(line, start, start + old.len(), new);
                m.replace(MutationKind::FlipPolicy, i, &new_line, description);
            } else {
                let place = place.clone();
                m.delete(i, &place);
                if let Some((new_line, new)) = nft_flip(line, &ws) {
                    let description = format!("flip `{}` to {new} ({place}, line {})", line.trim(), i + 1);
                    m.replace(MutationKind::FlipVerdict, i, &new_line, description);
                }
            }
            continue;
        }
        let mut opened = false;
        for w in &ws {
            match &line[w.start..w.end] {
                "{" => {
                    let block = match (stack.last(), word(0), opened) {
                        (None, Some("table"), false) => {
                            // `table FAMILY NAME {`, or `table NAME {` for family ip.
                            let name: Vec<&str> = (1..3).filter_map(word).filter(|w| *w != "{").collect();
                            Block::Table(name.join(" "))
                        }
                        (Some(Block::Table(table)), Some("chain"), false) => {
                            Block::Chain { place: format!("{table} {}", word(1).unwrap_or_default()), nat: false }
                        }
                        _ => Block::Other,
                    };
                    opened = true;
                    stack.push(block);
                }
                "}" => {
                    stack.pop();
                }
                _ => {}
            }
        }
    }
    m.out
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn count(found: &[Mutation], kind: MutationKind) -> usize {
        found.iter().filter(|m| m.kind == kind).count()
    }

    /// The flipped line of a one-rule nft chain, if the rule is flipped.
    fn nft_flipped(rule: &str) -> Option<String> {
        let text = format!("table inet t {{\n\tchain c {{\n\t\t{rule}\n\t}}\n}}\n");
        let found = nft_mutations(&text);
        assert_eq!(count(&found, MutationKind::Delete), 1, "{rule}");
        let flip = found.iter().find(|m| m.kind == MutationKind::FlipVerdict)?;
        Some(flip.text.lines().nth(2).unwrap().trim().to_string())
    }

    #[rstest]
    #[case::accept("ct state established,related accept", Some("ct state established,related drop"))]
    #[case::drop("ct state invalid drop", Some("ct state invalid accept"))]
    #[case::counter_comment(
        r#"counter packets 0 bytes 0 drop comment "UNPUBLISHED PORT DROP""#,
        Some(r#"counter packets 0 bytes 0 accept comment "UNPUBLISHED PORT DROP""#)
    )]
    #[case::reject("tcp dport 22 reject", Some("tcp dport 22 accept"))]
    #[case::reject_with("reject with icmpx admin-prohibited", Some("accept"))]
    #[case::reject_type("reject with icmp type host-unreachable comment \"x\"", Some("accept comment \"x\""))]
    #[case::reject_reset("meta l4proto tcp reject with tcp reset", Some("meta l4proto tcp accept"))]
    #[case::set(
        "ip6 daddr { ::/96, 2002::/24 } reject with icmpv6 addr-unreachable",
        Some("ip6 daddr { ::/96, 2002::/24 } accept")
    )]
    #[case::anonymous_set(
        "meta l4proto { tcp, udp } th dport 53 accept",
        Some("meta l4proto { tcp, udp } th dport 53 drop")
    )]
    #[case::return_("return", Some("accept"))]
    #[case::semicolon("iifname \"lo\" accept;", Some("iifname \"lo\" drop;"))]
    #[case::trailing_comment("iifname \"lo\" accept # drop", Some("iifname \"lo\" drop # drop"))]
    #[case::quoted("log prefix \"drop \" accept", Some("log prefix \"drop \" drop"))]
    #[case::jump("jump NETAVARK-ISOLATION-1", None)]
    #[case::goto("iifname \"ext0\" goto filter_IN_public", None)]
    #[case::vmap("oifname vmap @filter-forward-in-jumps", None)]
    #[case::anonymous_vmap("tcp dport vmap { 22 : accept, 23 : drop }", None)]
    #[case::dnat("tcp dport 8080 dnat ip to 172.17.0.2:80", None)]
    #[case::masquerade("ip daddr != 224.0.0.0/4 masquerade", None)]
    #[case::mark("meta mark set meta mark | 0x00002000", None)]
    fn nft_flip_table(#[case] rule: &str, #[case] expected: Option<&str>) {
        assert_eq!(nft_flipped(rule).as_deref(), expected);
    }

    #[test]
    fn nft_structure() {
        let text = r#"#!/usr/sbin/nft -f
flush ruleset
table ip docker-bridges {
	map filter-forward-in-jumps {
		type ifname : verdict
		elements = { "docker0" : jump filter-forward-in__docker0,
			     "br-test" : drop }
	}

	set blocked {
		type ipv4_addr
		elements = { 10.0.0.1 }
	}

	chain filter-FORWARD {
		type filter hook forward priority filter; policy accept;
		comment "the forward chain"
		# a comment line: drop
		oifname vmap @filter-forward-in-jumps
	}

	chain nat-PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local counter packets 0 bytes 0 jump nat-prerouting-and-output
	}

	chain input {
		type filter hook input priority 0
		policy drop
		ip saddr {
			10.0.0.1,
			10.0.0.2
		} accept
		iifname "lo" accept
	}

	chain empty {
	}
}
"#;
        let found = nft_mutations(text);
        let got: Vec<(MutationKind, usize)> = found.iter().map(|m| (m.kind, m.line)).collect();
        assert_eq!(
            got,
            [
                (MutationKind::FlipPolicy, 16),
                (MutationKind::Delete, 19),
                (MutationKind::Delete, 24),
                (MutationKind::FlipPolicy, 29),
                (MutationKind::Delete, 34),
                (MutationKind::FlipVerdict, 34),
            ],
            "{found:#?}"
        );
        assert_eq!(
            found[0].description,
            "flip the ip docker-bridges filter-FORWARD policy from accept to drop (line 16)"
        );
        assert_eq!(found[0].text.lines().nth(15), Some("\t\ttype filter hook forward priority filter; policy drop;"));
        assert_eq!(found[3].text.lines().nth(28), Some("\t\tpolicy accept"));
        assert_eq!(
            found[2].description,
            "delete `fib daddr type local counter packets 0 bytes 0 jump nat-prerouting-and-output` \
             (ip docker-bridges nat-PREROUTING, line 24)"
        );
    }

    #[test]
    fn nft_table_without_family() {
        let found = nft_mutations("table filter {\n\tchain c {\n\t\taccept\n\t}\n}\n");
        assert_eq!(found[0].description, "delete `accept` (filter c, line 3)");
    }
}
