//! Mutations of an iptables-restore file: rule lines deleted, verdicts and built-in
//! chain policies flipped (see [`crate::backend::mutation`]).

use crate::backend::iptables::save;
use crate::backend::mutation::{content, splice, Mutation, MutationKind, Mutator};

/// The opposite of an iptables verdict in a table where verdicts are flipped.
fn iptables_flip(table: &str, target: &str) -> Option<&'static str> {
    if !matches!(table, "filter" | "mangle" | "raw" | "security") {
        return None;
    }
    match target {
        "ACCEPT" => Some("DROP"),
        "DROP" | "REJECT" | "RETURN" => Some("ACCEPT"),
        _ => None,
    }
}

/// Every mutation of an iptables-restore file; see the module documentation.
pub fn iptables_mutations(text: &str) -> Vec<Mutation> {
    let mut m = Mutator::new(text);
    let mut table = String::new();
    for i in 0..m.lines.len() {
        let line = content(m.lines[i]);
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('*') {
            table = name.trim().to_string();
            continue;
        }
        // A line iptables-restore could not split is left alone: it would reject it anyway.
        let Ok(ws) = save::tokenize_iptables(line) else { continue };
        let word = |k: usize| ws.get(k).map(|w| w.value.as_str());
        if trimmed.starts_with(':') {
            // `:CHAIN POLICY [packets:bytes]`; user chains have `-` for a policy.
            let chain = &trimmed[1..trimmed.find(char::is_whitespace).unwrap_or(trimmed.len())];
            let new = match word(1) {
                Some("ACCEPT") => "DROP",
                Some("DROP") => "ACCEPT",
                _ => continue,
            };
            if table == "nat" {
                continue;
            }
            let old = word(1).unwrap_or_default();
            let description = format!("flip the {table} {chain} policy from {old} to {new} (line {})", i + 1);
            let new_line = splice(line, ws[1].start, ws[1].end, new);
            m.replace(MutationKind::FlipPolicy, i, &new_line, description);
            continue;
        }
        let first = usize::from(word(0).is_some_and(|w| w.starts_with('[')));
        if !matches!(word(first), Some("-A" | "--append" | "-I" | "--insert")) || word(first + 1).is_none() {
            continue;
        }
        m.delete(i, &table);
        let Some(j) = (0..ws.len()).rev().find(|&k| matches!(word(k), Some("-j" | "--jump"))) else {
            continue;
        };
        let Some(target) = word(j + 1) else { continue };
        let Some(new) = iptables_flip(&table, target) else { continue };
        let mut end = ws[j + 1].end;
        if target == "REJECT" && word(j + 2) == Some("--reject-with") {
            end = ws.get(j + 3).map_or(ws[j + 2].end, |w| w.end);
        }
        let new_line = splice(line, ws[j + 1].start, end, new);
        let description = format!("flip `{trimmed}` to {new} ({table}, line {})", i + 1);
        m.replace(MutationKind::FlipVerdict, i, &new_line, description);
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

    /// The flipped rule line of a one-rule iptables file, if the rule is flipped.
    fn iptables_flipped(table: &str, rule: &str) -> Option<String> {
        let text = format!("*{table}\n:CHAIN - [0:0]\n{rule}\nCOMMIT\n");
        let found = iptables_mutations(&text);
        assert_eq!(count(&found, MutationKind::Delete), 1, "{rule}");
        let flip = found.iter().find(|m| m.kind == MutationKind::FlipVerdict)?;
        Some(flip.text.lines().nth(2).unwrap().to_string())
    }

    #[rstest]
    #[case::accept("filter", "-A CHAIN -i docker0 -j ACCEPT", Some("-A CHAIN -i docker0 -j DROP"))]
    #[case::drop("filter", "-A CHAIN -o docker0 -j DROP", Some("-A CHAIN -o docker0 -j ACCEPT"))]
    #[case::reject("filter", "-A CHAIN -p tcp -j REJECT", Some("-A CHAIN -p tcp -j ACCEPT"))]
    #[case::reject_with(
        "filter",
        "-A CHAIN -p tcp -j REJECT --reject-with tcp-reset",
        Some("-A CHAIN -p tcp -j ACCEPT")
    )]
    #[case::return_("filter", "-A CHAIN -j RETURN", Some("-A CHAIN -j ACCEPT"))]
    #[case::long_jump("filter", "-A CHAIN --jump DROP", Some("-A CHAIN --jump ACCEPT"))]
    #[case::insert("filter", "-I FORWARD 3 -o br-net2 -j ACCEPT", Some("-I FORWARD 3 -o br-net2 -j DROP"))]
    #[case::counters("filter", "[5:300] -A CHAIN -j DROP", Some("[5:300] -A CHAIN -j ACCEPT"))]
    #[case::quoted(
        "filter",
        r#"-A CHAIN -m comment --comment "say \"-j DROP\" here" -j ACCEPT"#,
        Some(r#"-A CHAIN -m comment --comment "say \"-j DROP\" here" -j DROP"#)
    )]
    #[case::raw(
        "raw",
        "-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP",
        Some("-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j ACCEPT")
    )]
    #[case::mangle("mangle", "-A PREROUTING -j ACCEPT", Some("-A PREROUTING -j DROP"))]
    #[case::user_chain("filter", "-A FORWARD -j DOCKER-USER", None)]
    #[case::goto("filter", "-A FORWARD -g DOCKER", None)]
    #[case::log("filter", r#"-A CHAIN -j LOG --log-prefix "[UFW BLOCK] ""#, None)]
    #[case::nat_return("nat", "-A DOCKER -i docker0 -j RETURN", None)]
    #[case::nat_accept("nat", "-A POSTROUTING -d 10.22.0.0/16 -j ACCEPT", None)]
    #[case::dnat("nat", "-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80", None)]
    #[case::masquerade("nat", "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE", None)]
    fn iptables_flip_table(#[case] table: &str, #[case] rule: &str, #[case] expected: Option<&str>) {
        assert_eq!(iptables_flipped(table, rule).as_deref(), expected);
    }

    #[rstest]
    #[case::drop("filter", ":FORWARD DROP [0:0]", Some(":FORWARD ACCEPT [0:0]"))]
    #[case::accept("filter", ":INPUT ACCEPT [12:720]", Some(":INPUT DROP [12:720]"))]
    #[case::raw("raw", ":PREROUTING ACCEPT [0:0]", Some(":PREROUTING DROP [0:0]"))]
    #[case::nat("nat", ":PREROUTING ACCEPT [0:0]", None)]
    #[case::user_chain("filter", ":DOCKER - [0:0]", None)]
    fn iptables_policies(#[case] table: &str, #[case] line: &str, #[case] expected: Option<&str>) {
        let text = format!("# {line}\n*{table}\n{line}\nCOMMIT\n");
        let found = iptables_mutations(&text);
        assert!(found.iter().all(|m| m.kind == MutationKind::FlipPolicy && m.line == 3), "{found:#?}");
        assert_eq!(found.first().map(|m| m.text.lines().nth(2).unwrap()), expected);
    }

    #[test]
    fn iptables_leaves_the_rest_alone() {
        let text = "# -A FORWARD -j DROP\n*filter\n:DOCKER - [0:0]\n\nCOMMIT\n";
        assert_eq!(iptables_mutations(text), Vec::new());
    }

    #[test]
    fn line_endings_are_kept() {
        let text = "*filter\r\n:FORWARD DROP [0:0]\r\n-A FORWARD -j ACCEPT\r\nCOMMIT";
        let found = iptables_mutations(text);
        let texts: Vec<&str> = found.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "*filter\r\n:FORWARD ACCEPT [0:0]\r\n-A FORWARD -j ACCEPT\r\nCOMMIT",
                "*filter\r\n:FORWARD DROP [0:0]\r\nCOMMIT",
                "*filter\r\n:FORWARD DROP [0:0]\r\n-A FORWARD -j DROP\r\nCOMMIT",
            ]
        );
    }
}
