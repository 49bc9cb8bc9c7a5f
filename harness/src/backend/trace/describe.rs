//! Naming the rule a verdict came from, in the syntax the user loaded it in: the
//! `iptables-save` line under the iptables back ends, the nft rule otherwise, found
//! through the handles of `nft -a list ruleset`.

use super::event::{EventKind, RuleVerdict, TraceEvent};
use super::TraceError;
use crate::backend::counters::Dump;
use crate::backend::{self, nft};
use crate::lab::netns::NetNs;
use crate::scenario::{Backend, RuleFormat};
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Listing {
    pub(super) chains: Vec<ListedChain>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListedChain {
    pub(super) family: String,
    pub(super) table: String,
    pub(super) name: String,
    /// `type filter hook forward priority filter; policy drop;` of a base chain.
    pub(super) hook: Option<String>,
    pub(super) policy: Option<String>,
    pub(super) rules: Vec<ListedRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListedRule {
    pub(super) handle: u64,
    /// The rule as listed, without `# handle N`, counter values and extra spaces.
    pub(super) text: String,
}

impl Listing {
    /// The chain and 1-based position of the rule with `handle` (unique in its table).
    pub(super) fn rule(&self, family: &str, table: &str, handle: u64) -> Option<(&ListedChain, usize, &ListedRule)> {
        self.chains
            .iter()
            .filter(|c| c.family == family && c.table == table)
            .find_map(|c| c.rules.iter().position(|r| r.handle == handle).map(|i| (c, i + 1, &c.rules[i])))
    }
}

/// The code of a listing line and its `#` note, split outside quoted strings.
pub(super) fn split_note(line: &str) -> (&str, Option<&str>) {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return (&line[..i], Some(&line[i + 1..])),
            _ => {}
        }
    }
    (line, None)
}

pub(super) fn braces(code: &str) -> (usize, usize) {
    let mut quoted = false;
    let (mut open, mut close) = (0, 0);
    for c in code.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => open += 1,
            '}' if !quoted => close += 1,
            _ => {}
        }
    }
    (open, close)
}

pub(super) fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// `... counter packets 3 bytes 180 drop` -> `... counter drop`, white space collapsed.
pub(super) fn clean_rule(code: &str) -> String {
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        out.push(words[i]);
        if words[i] == "counter"
            && words.get(i + 1) == Some(&"packets")
            && words.get(i + 3) == Some(&"bytes")
            && words.get(i + 2).is_some_and(|w| w.parse::<u64>().is_ok())
            && words.get(i + 4).is_some_and(|w| w.parse::<u64>().is_ok())
        {
            i += 5;
        } else {
            i += 1;
        }
    }
    out.join(" ")
}

/// Read the chains and their rules' handles from `nft -a list ruleset`. nft prints one
/// rule per line, each ending in `# handle N`; sets, maps and other blocks are skipped.
pub(super) fn parse_listing(text: &str) -> Listing {
    let mut listing = Listing::default();
    let mut depth = 0usize;
    let mut table: Option<(String, String)> = None;
    let mut chain: Option<usize> = None;
    for line in text.lines() {
        let (code, note) = split_note(line);
        let words: Vec<&str> = code.split_whitespace().collect();
        let (open, close) = braces(code);
        match depth {
            0 if words.first() == Some(&"table") => {
                table = match words.len() {
                    // `table ip filter {`
                    n if n >= 4 => Some((words[1].to_string(), unquote(words[2]))),
                    // `table filter {`: nft's default family
                    3 => Some(("ip".to_string(), unquote(words[1]))),
                    _ => None,
                };
            }
            1 if words.first() == Some(&"chain") && words.len() >= 2 => {
                if let Some((family, name)) = &table {
                    listing.chains.push(ListedChain {
                        family: family.clone(),
                        table: name.clone(),
                        name: unquote(words[1]),
                        hook: None,
                        policy: None,
                        rules: Vec::new(),
                    });
                    chain = Some(listing.chains.len() - 1);
                }
            }
            2 if chain.is_some() => {
                let c = &mut listing.chains[chain.unwrap_or_default()];
                if words.first() == Some(&"type") && words.contains(&"hook") {
                    let after = |key: &str| {
                        words
                            .iter()
                            .position(|w| *w == key)
                            .and_then(|i| words.get(i + 1))
                            .map(|w| w.trim_end_matches(';').to_string())
                    };
                    c.hook = after("hook");
                    c.policy = after("policy");
                } else if let Some(handle) =
                    note.and_then(|n| n.trim().strip_prefix("handle ")).and_then(|h| h.trim().parse().ok())
                {
                    if open == close {
                        c.rules.push(ListedRule { handle, text: clean_rule(code) });
                    }
                }
            }
            _ => {}
        }
        depth = (depth + open).saturating_sub(close);
        if depth < 2 {
            chain = None;
        }
        if depth < 1 {
            table = None;
        }
    }
    listing
}

/// What [`describe`] needs to name rules: the rule set listed with handles, and for
/// iptables-nft and iptables-legacy the `iptables-save` dump of the same rule set.
#[derive(Debug, Clone, Default)]
pub struct Dumps {
    listing: Listing,
    iptables: Option<Dump>,
}

impl Dumps {
    /// From the text of `nft -a list ruleset` and, for iptables-nft, the back end's
    /// parsed dump (`iptables-nft-save -c`, as [`backend::dump`] returns it). Both must
    /// be of the rule set the events came from: handles change when rules are reloaded.
    pub fn new(nft_listing: &str, iptables: Option<Dump>) -> Dumps {
        Dumps { listing: parse_listing(nft_listing), iptables }
    }

    /// Read both from the lab host: `nft -a list ruleset`, and under iptables-nft and
    /// iptables-legacy the back end's dump (with `ipv6`, ip6tables' as well).
    pub async fn read(host: &NetNs, backend: Backend, ipv6: bool) -> Result<Dumps, TraceError> {
        let listing = list_ruleset(host).await?;
        let iptables = match backend.format() {
            RuleFormat::Iptables | RuleFormat::Ip6tables => {
                Some(backend::dump(backend::for_backend(backend).as_ref(), host, ipv6).await?.0)
            }
            RuleFormat::Nft => None,
        };
        Ok(Dumps::new(&listing, iptables))
    }
}

/// A rule located in the user's rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// The nft family; for a rule in iptables syntax `ip`, or `ip6` for ip6tables'.
    pub family: String,
    pub table: String,
    pub chain: String,
    /// 1-based within its chain.
    pub position: usize,
    /// iptables-nft: the `iptables-save` line (`-A CHAIN ...`). nft: the rule as `nft
    /// list ruleset` prints it, without its handle and counter values.
    pub text: String,
    /// The text is in iptables syntax.
    pub iptables: bool,
}

/// The rule of a [`EventKind::Rule`] event in the user's syntax, if the dumps have it.
pub fn locate(event: &TraceEvent, dumps: &Dumps) -> Option<RuleRef> {
    if let (Some(position), None) = (event.position, event.rule_handle) {
        return locate_xt(event, position, dumps);
    }
    let handle = event.rule_handle?;
    let (chain, position, rule) = dumps.listing.rule(&event.family, &event.table, handle)?;
    if let Some(line) = iptables_line(dumps, chain, position) {
        return Some(RuleRef {
            family: chain.family.clone(),
            table: chain.table.clone(),
            chain: chain.name.clone(),
            position,
            text: line,
            iptables: true,
        });
    }
    Some(RuleRef {
        family: chain.family.clone(),
        table: chain.table.clone(),
        chain: chain.name.clone(),
        position,
        text: rule.text.clone(),
        iptables: false,
    })
}

/// An x_tables rule by its position in its chain.
pub(super) fn locate_xt(event: &TraceEvent, position: usize, dumps: &Dumps) -> Option<RuleRef> {
    let family = dump_family(&event.family)?;
    let rule = dumps.iptables.as_ref()?.rules.iter().find(|r| {
        r.family.as_deref() == family && r.table == event.table && r.chain == event.chain && r.position == position
    })?;
    Some(RuleRef {
        family: event.family.clone(),
        table: rule.table.clone(),
        chain: rule.chain.clone(),
        position,
        text: if rule.text.is_empty() {
            format!("-A {}", rule.chain)
        } else {
            format!("-A {} {}", rule.chain, rule.text)
        },
        iptables: true,
    })
}

/// The iptables-save line at `position` of `chain`, when the iptables dump has the
/// same chain with as many rules as the listing (else the two are not of one rule set).
pub(super) fn iptables_line(dumps: &Dumps, chain: &ListedChain, position: usize) -> Option<String> {
    let dump = dumps.iptables.as_ref()?;
    let family = dump_family(&chain.family)?;
    let rules: Vec<_> = dump
        .rules
        .iter()
        .filter(|r| r.family.as_deref() == family && r.table == chain.table && r.chain == chain.name)
        .collect();
    if rules.len() != chain.rules.len() {
        return None;
    }
    let rule = rules.iter().find(|r| r.position == position)?;
    Some(if rule.text.is_empty() { format!("-A {}", rule.chain) } else { format!("-A {} {}", rule.chain, rule.text) })
}

/// The family in an iptables dump of the nft family `family`: None for iptables'
/// own (`ip`), `ip6` for ip6tables'; no other family is in such a dump.
fn dump_family(family: &str) -> Option<Option<&'static str>> {
    match family {
        "ip" => Some(None),
        "ip6" => Some(Some("ip6")),
        _ => None,
    }
}

/// Whether names in this event's table read as iptables: an iptables-nft table, or
/// an x_tables one.
pub(super) fn in_iptables(event: &TraceEvent, dumps: &Dumps) -> bool {
    let Some(family) = dump_family(&event.family) else { return false };
    dumps
        .iptables
        .as_ref()
        .is_some_and(|d| d.chains.iter().any(|c| c.family.as_deref() == family && c.table == event.table))
}

/// One line naming what the event did, in the user's syntax, e.g.
/// ``filter LAB-FWD rule 1 `-A LAB-FWD -p tcp -m tcp --dport 81 -j DROP`: DROP`` or
/// ``inet lab forward rule 2 `tcp dport 81 counter drop`: drop``, or
/// `policy DROP of filter FORWARD`.
pub fn describe(event: &TraceEvent, dumps: &Dumps) -> String {
    let ipt = in_iptables(event, dumps);
    let place = if ipt && event.family == "ip6" {
        format!("ip6 {} {}", event.table, event.chain)
    } else if ipt {
        format!("{} {}", event.table, event.chain)
    } else {
        format!("{} {} {}", event.family, event.table, event.chain)
    };
    let verdict = |v: &Option<RuleVerdict>| match v {
        Some(v) if ipt => v.iptables_name(),
        Some(v) => v.nft_name(),
        None => "no verdict".into(),
    };
    if event.is_ours() {
        let hook = match event.chain.as_str() {
            "pre" => "prerouting",
            "out" => "output",
            other => other,
        };
        let iface = |name: &Option<String>, index: Option<u32>| name.clone().or(index.map(|i| format!("#{i}")));
        let mut line = format!("{} at {hook}", event.packet);
        if let Some(i) = iface(&event.iif_name, event.iif) {
            line.push_str(&format!(", in {i}"));
        }
        if let Some(o) = iface(&event.oif_name, event.oif) {
            line.push_str(&format!(", out {o}"));
        }
        return line;
    }
    match event.kind {
        EventKind::Policy => {
            let policy = verdict(&event.verdict);
            format!("policy {policy} of {place}")
        }
        EventKind::Return if event.rule_handle.is_none() => {
            format!("end of {place}: back to the calling chain")
        }
        // Newer kernels report the end of a chain's rules as a rule event without a
        // handle, before the policy or the return.
        EventKind::Rule
            if event.rule_handle.is_none()
                && event.position.is_none()
                && event.verdict == Some(RuleVerdict::Continue) =>
        {
            format!("end of the rules of {place}")
        }
        _ => {
            let mut line = match (locate(event, dumps), event.rule_handle) {
                (Some(r), _) => format!("{place} rule {} `{}`", r.position, r.text),
                (None, Some(h)) => format!("{place} rule with handle {h} (not in the rule set as listed)"),
                (None, None) if event.position.is_some() => {
                    format!("{place} rule {} (not in the rule set as saved)", event.position.unwrap_or_default())
                }
                (None, None) => place,
            };
            line.push_str(": ");
            line.push_str(&verdict(&event.verdict));
            if event.rejects {
                line.push_str(" (rejected: the sender was answered)");
            }
            line
        }
    }
}

/// `nft -a list ruleset` of `host`.
pub(super) async fn list_ruleset(host: &NetNs) -> Result<String, TraceError> {
    nft::list_with_handles(host).await.map_err(|source| TraceError::List { ns: host.name().to_string(), source })
}
