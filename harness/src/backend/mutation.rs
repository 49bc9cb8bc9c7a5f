//! The rule-text mutations of a rule file, each a change of one of its lines, for
//! mutation testing ([`crate::tools::mutate`] runs scenarios against them). The
//! format's own rules live beside its back end: [`crate::backend::iptables::mutate`]
//! and [`crate::backend::nft::mutate`].
//!
//! # What is mutated
//!
//! iptables-restore files:
//!
//! - every rule line (`-A`, `-I`, also with a leading `[packets:bytes]`) is deleted;
//! - in the filter, mangle, raw and security tables a rule's verdict is flipped:
//!
//!   | target                            | flipped to |
//!   |-----------------------------------|------------|
//!   | `ACCEPT`                          | `DROP`     |
//!   | `DROP`                            | `ACCEPT`   |
//!   | `REJECT` (and its `--reject-with`) | `ACCEPT`   |
//!   | `RETURN`                          | `ACCEPT`   |
//!
//!   `RETURN` hands the packet back to the rules after the jump; `ACCEPT` skips them,
//!   which is how a chain lets traffic past the filters further down;
//! - the policy of a built-in chain (`:FORWARD DROP [0:0]`) is flipped, `DROP` to
//!   `ACCEPT` and `ACCEPT` to `DROP`, in every table but nat;
//! - nat rules are only deleted: `DROP` is not allowed in nat, and `ACCEPT` and
//!   `RETURN` there only decide where translation stops. Jumps and gotos to user
//!   chains and every other target (`DNAT`, `SNAT`, `MASQUERADE`, `MARK`, `LOG`, ...)
//!   are only deleted too;
//! - comments, table headers, user chain declarations and `COMMIT` stay as they are.
//!
//! nft scripts:
//!
//! - every rule line inside a `chain` block of a `table` block is deleted;
//! - a rule's verdict is flipped: `accept` to `drop`, `drop` to `accept`,
//!   `reject` (with its `with ...`) to `accept`, `return` to `accept`; `jump`, `goto`,
//!   verdict maps, `dnat`, `masquerade` and other statements are only deleted;
//! - a base chain's `policy accept;` or `policy drop;` is flipped, except in chains of
//!   `type nat`;
//! - sets, maps, chain properties (`type`, `hook`, `priority`, `policy`, `comment`)
//!   and comments stay as they are. A rule written over several lines and rules given
//!   as commands outside blocks (`add rule ...`) are left alone.
//!
//! Each mutation changes exactly one line of the file: a deletion removes it, a flip

use crate::backend::{iptables, nft};
use crate::scenario::RuleFormat;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutationKind {
    /// The rule line is removed.
    Delete,
    /// The rule's verdict is replaced by its opposite.
    FlipVerdict,
    /// A base chain's policy is replaced by its opposite.
    FlipPolicy,
}

impl MutationKind {
    pub fn name(self) -> &'static str {
        match self {
            MutationKind::Delete => "delete",
            MutationKind::FlipVerdict => "flip verdict",
            MutationKind::FlipPolicy => "flip policy",
        }
    }
}

impl std::fmt::Display for MutationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One mutation of a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// 1-based, in the order of the file.
    pub id: usize,
    pub kind: MutationKind,
    /// 1-based line of the rule file that is changed.
    pub line: usize,
    /// That line as written, without surrounding white space.
    pub original: String,
    /// In words, e.g. "delete `-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP` (filter, line 23)".
    pub description: String,
    /// The whole mutated file.
    pub text: String,
}

/// Every mutation of a rule file in `format`.
pub fn mutations(text: &str, format: RuleFormat) -> Vec<Mutation> {
    match format {
        RuleFormat::Iptables | RuleFormat::Ip6tables => iptables::mutate::iptables_mutations(text),
        RuleFormat::Nft => nft::mutate::nft_mutations(text),
    }
}

/// Collects mutations of one file, each a change of one of its lines.
pub(crate) struct Mutator<'a> {
    /// The file's lines, each with its line terminator.
    pub lines: Vec<&'a str>,
    pub out: Vec<Mutation>,
}

impl<'a> Mutator<'a> {
    pub(crate) fn new(text: &'a str) -> Mutator<'a> {
        Mutator { lines: text.split_inclusive('\n').collect(), out: Vec::new() }
    }

    pub(crate) fn delete(&mut self, index: usize, place: &str) {
        let original = content(self.lines[index]).trim();
        let description = format!("delete `{original}` ({place}, line {})", index + 1);
        let text = self.lines.iter().enumerate().filter(|&(i, _)| i != index).map(|(_, l)| *l).collect();
        self.push(MutationKind::Delete, index, description, text);
    }

    /// Replaces line `index` with `new`, keeping its terminator.
    pub(crate) fn replace(&mut self, kind: MutationKind, index: usize, new: &str, description: String) {
        let old = self.lines[index];
        let terminator = &old[content(old).len()..];
        let text = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| if i == index { format!("{new}{terminator}") } else { (*l).to_string() })
            .collect();
        self.push(kind, index, description, text);
    }

    fn push(&mut self, kind: MutationKind, index: usize, description: String, text: String) {
        self.out.push(Mutation {
            id: self.out.len() + 1,
            kind,
            line: index + 1,
            original: content(self.lines[index]).trim().to_string(),
            description,
            text,
        });
    }
}

/// A line without its terminator (`\n` or `\r\n`).
pub(crate) fn content(line: &str) -> &str {
    match line.strip_suffix('\n') {
        Some(l) => l.strip_suffix('\r').unwrap_or(l),
        None => line,
    }
}

/// A word of a line: byte span, and for nft the depth of `{ }` it starts at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Word {
    pub start: usize,
    pub end: usize,
    pub depth: isize,
}

/// The white-space separated words of `line`. A double-quoted string (with backslash
/// escapes) stays inside its word. With `nft`, `{` and `}` are words of their own and
/// an unquoted `#` at the start of a word ends the line.
pub(crate) fn words(line: &str, nft: bool) -> Vec<Word> {
    let mut words = Vec::new();
    let mut depth: isize = 0;
    let mut start: Option<usize> = None;
    let mut quoted = false;
    let mut escaped = false;
    let mut end = line.len();
    for (i, c) in line.char_indices() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' => {
                start.get_or_insert(i);
                quoted = true;
            }
            '#' if nft && start.is_none() => {
                end = i;
                break;
            }
            '{' | '}' if nft => {
                if let Some(s) = start.take() {
                    words.push(Word { start: s, end: i, depth });
                }
                if c == '}' {
                    depth -= 1;
                }
                words.push(Word { start: i, end: i + 1, depth });
                if c == '{' {
                    depth += 1;
                }
            }
            c if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    words.push(Word { start: s, end: i, depth });
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        words.push(Word { start: s, end, depth });
    }
    words
}

pub(crate) fn splice(line: &str, start: usize, end: usize, with: &str) -> String {
    format!("{}{with}{}", &line[..start], &line[end..])
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rstest::rstest;

    use super::*;

    fn suite() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
    }

    fn fixture(path: &str) -> (String, Vec<Mutation>) {
        let text = std::fs::read_to_string(suite().join(path)).unwrap();
        let format = if path.ends_with(".nft") { RuleFormat::Nft } else { RuleFormat::Iptables };
        let found = mutations(&text, format);
        (text, found)
    }

    fn count(found: &[Mutation], kind: MutationKind) -> usize {
        found.iter().filter(|m| m.kind == kind).count()
    }

    #[rstest]
    #[case::seed("seed/rules/docker-18.05-seed.rules", 15, 7, 3)]
    #[case::seed_publish("seed/rules/docker-18.05-seed-publish-8080.rules", 3, 1, 0)]
    #[case::seed_second_network("seed/rules/docker-18.05-seed-second-network.rules", 8, 4, 0)]
    #[case::docker_20_10("docker/rules/docker-20.10-iptables.rules", 26, 12, 3)]
    #[case::docker_28("docker/rules/docker-28-iptables.rules", 27, 11, 5)]
    #[case::docker_28_ip6("docker/rules/docker-28-ip6tables.rules", 7, 0, 3)]
    #[case::docker_28_0_0("docker/rules/docker-28.0.0-iptables.rules", 22, 10, 5)]
    #[case::docker_29("docker/rules/docker-29-iptables.rules", 21, 9, 5)]
    #[case::docker_29_nft("docker/rules/docker-29-nftables.nft", 28, 13, 4)]
    #[case::netavark("docker/rules/netavark-iptables.rules", 29, 11, 3)]
    #[case::netavark_nft("docker/rules/netavark-nftables.nft", 25, 11, 2)]
    #[case::docker_20_10_live("captured/rules/docker-20.10.24-live.rules", 26, 12, 3)]
    #[case::cni_live("captured/rules/cni-plugins-1.1.1-live.rules", 16, 2, 3)]
    #[case::netavark_live("captured/rules/netavark-1.4.0-iptables-live.rules", 15, 2, 3)]
    #[case::ufw_live("captured/rules/ufw-0.36.2-live.rules", 68, 32, 3)]
    #[case::firewalld_live("captured/rules/firewalld-1.3.3-live.nft", 99, 27, 5)]
    fn fixture_mutations(#[case] path: &str, #[case] deletes: usize, #[case] flips: usize, #[case] policies: usize) {
        let (text, found) = fixture(path);
        assert_eq!(count(&found, MutationKind::Delete), deletes, "deletions of {path}");
        assert_eq!(count(&found, MutationKind::FlipVerdict), flips, "verdict flips of {path}");
        assert_eq!(count(&found, MutationKind::FlipPolicy), policies, "policy flips of {path}");

        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut texts = std::collections::HashSet::new();
        for (n, m) in found.iter().enumerate() {
            assert_eq!(m.id, n + 1, "{path}: ids count from 1 in order");
            assert_eq!(m.original, lines[m.line - 1].trim(), "{path}: {}", m.description);
            assert!(m.description.contains(&format!("line {})", m.line)), "{}", m.description);
            let mutated: Vec<&str> = m.text.split_inclusive('\n').collect();
            match m.kind {
                MutationKind::Delete => {
                    let mut expected = lines.clone();
                    expected.remove(m.line - 1);
                    assert_eq!(mutated, expected, "{path}: {}", m.description);
                }
                MutationKind::FlipVerdict | MutationKind::FlipPolicy => {
                    assert_eq!(mutated.len(), lines.len(), "{path}: {}", m.description);
                    let changed: Vec<usize> = (0..lines.len()).filter(|&i| mutated[i] != lines[i]).collect();
                    assert_eq!(changed, vec![m.line - 1], "{path}: {}", m.description);
                }
            }
            assert!(texts.insert(m.text.clone()), "{path}: {} repeats another mutation", m.description);
        }
        assert!(!texts.contains(&text), "{path}: a mutation left the file as it was");
    }

    #[test]
    fn seed_descriptions() {
        let (_, found) = fixture("seed/rules/docker-18.05-seed.rules");
        let descriptions: Vec<&str> = found.iter().map(|m| m.description.as_str()).collect();
        for expected in [
            "delete `-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP` (filter, line 32)",
            "flip `-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP` to ACCEPT (filter, line 32)",
            "delete `-A DOCKER -i docker0 -j RETURN` (nat, line 14)",
            "flip the filter INPUT policy from DROP to ACCEPT (line 17)",
            "flip the filter FORWARD policy from ACCEPT to DROP (line 18)",
        ] {
            assert!(descriptions.contains(&expected), "{expected} missing from {descriptions:#?}");
        }
        // The nat table's RETURN is only deleted.
        assert!(!descriptions.iter().any(|d| d.starts_with("flip") && d.contains("(nat,")));
    }
}
