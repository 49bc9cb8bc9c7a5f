//! A back end's dump with counters: the rules of each chain with their packet and byte
//! counters (read by [`crate::backend::iptables::save`] and
//! [`crate::backend::nft::listing`]), the lookup of the rule a counter expectation
//! names, and the change of the counters between two dumps of the same rule set.

use std::collections::HashMap;
use std::fmt;

use crate::backend::iptables::save;
use crate::backend::nft::listing;
use crate::scenario::model::{CounterExpectation, RuleSelector};

/// One rule and its counters, as a back end's dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    /// nft family (`ip`, `inet`, ...); None for iptables.
    pub family: Option<String>,
    pub table: String,
    pub chain: String,
    /// 1-based within its chain.
    pub position: usize,
    /// iptables: what follows `-A CHAIN `, as printed. nft: the rule with its
    /// `counter packets N bytes M` statement (or a bare `counter`) and any `#` comment
    /// removed, runs of white space collapsed to one space.
    pub text: String,
    /// iptables `-m comment --comment X` (unquoted), nft `comment "X"` (unquoted).
    pub comment: Option<String>,
    /// None when the rule has no counter (nft rules without a `counter` statement,
    /// iptables dumps made without `-c`).
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

/// A chain's policy with its counters, e.g. iptables `:FORWARD DROP [12:720]` or nft
/// `policy drop;` (nft prints no counters for policies: None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPolicy {
    pub family: Option<String>,
    pub table: String,
    pub chain: String,
    pub policy: String,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

/// A chain the dump declares, whether or not it holds rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainId {
    pub family: Option<String>,
    pub table: String,
    pub chain: String,
}

/// A parsed dump: every rule in dump order, every base chain's policy, and every chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    pub rules: Vec<RuleCounter>,
    pub policies: Vec<ChainPolicy>,
    /// Every declared chain in dump order, including empty and user-defined ones.
    pub chains: Vec<ChainId>,
}

impl Dump {
    /// Adds `other`'s rules, policies and chains under `family`: an ip6tables dump
    /// beside an iptables one, whose own have none.
    pub fn merge_family(&mut self, family: &str, other: Dump) {
        let f = || Some(family.to_string());
        self.rules.extend(other.rules.into_iter().map(|r| RuleCounter { family: f(), ..r }));
        self.policies.extend(other.policies.into_iter().map(|p| ChainPolicy { family: f(), ..p }));
        self.chains.extend(other.chains.into_iter().map(|c| ChainId { family: f(), ..c }));
    }
}

/// A dump that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `line` is 1-based; `text` is that line, trimmed.
    #[error("line {line}: {reason}: `{text}`")]
    Syntax { line: usize, text: String, reason: String },
}

/// Why a counter expectation could not be looked up.
///
/// `table` is the table as a person names it: `filter` for iptables, `inet filter`
/// when the nft family is known. `selector` is the selector as displayed
/// (``rule `-j DROP` ``, `rule #2`, `rule with comment "x"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The table exists but has no such chain. `chains` are those it has.
    NoChain { table: String, chain: String, chains: Vec<String> },
    /// No table of that name (in that family). `tables` are those the dump has.
    NoTable { table: String, chain: String, tables: Vec<String> },
    /// No family was given and several nft families have this table and chain.
    AmbiguousFamily { table: String, chain: String, families: Vec<String> },
    /// The chain has no rule the selector picks. `candidates` are `N: text` for each
    /// rule of the chain.
    NoRule { table: String, chain: String, selector: String, candidates: Vec<String> },
    /// The selector picks more than one rule.
    Ambiguous { table: String, chain: String, selector: String, positions: Vec<usize> },
    /// The rule exists but the dump shows no counter for it.
    NoCounter { table: String, chain: String, position: usize, text: String },
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NoChain { table, chain, chains } => {
                write!(f, "no chain {chain} in {table}; ")?;
                if chains.is_empty() {
                    write!(f, "the table has no chains")
                } else {
                    write!(f, "its chains are: {}", chains.join(", "))
                }
            }
            LookupError::NoTable { table, chain, tables } => {
                write!(f, "no table {table} (for chain {chain}) in the dump; ")?;
                if tables.is_empty() {
                    write!(f, "the dump holds no tables")
                } else {
                    write!(f, "its tables are: {}", tables.join(", "))
                }
            }
            LookupError::AmbiguousFamily { table, chain, families } => write!(
                f,
                "table {table} with chain {chain} exists in the families {}; name the family",
                families.join(", ")
            ),
            LookupError::NoRule { table, chain, selector, candidates } => {
                write!(f, "no {selector} in {table} {chain}; ")?;
                if candidates.is_empty() {
                    write!(f, "the chain is empty")
                } else {
                    write!(f, "the chain holds:")?;
                    for c in candidates {
                        write!(f, "\n  {c}")?;
                    }
                    Ok(())
                }
            }
            LookupError::Ambiguous { table, chain, selector, positions } => {
                let list: Vec<String> = positions.iter().map(|p| format!("#{p}")).collect();
                write!(
                    f,
                    "{selector} in {table} {chain} is ambiguous: rules {} all match; \
                     select one by position",
                    list.join(", ")
                )
            }
            LookupError::NoCounter { table, chain, position, text } => write!(
                f,
                "rule #{position} in {table} {chain} has no counter: `{}`; nft counts only \
                 rules with a `counter` statement, and iptables-save prints counters only with -c",
                display_text(text)
            ),
        }
    }
}

/// The change of one expectation's counter between two dumps of the same rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterDelta {
    /// The rule's position and text in the later dump.
    pub position: usize,
    pub text: String,
    pub packets: u64,
    pub bytes: u64,
}

pub(crate) fn syntax(line: usize, text: &str, reason: &str) -> ParseError {
    ParseError::Syntax { line, text: text.trim().to_string(), reason: reason.to_string() }
}

pub(crate) fn push_chain(dump: &mut Dump, family: Option<&str>, table: &str, chain: &str) {
    let known = dump.chains.iter().any(|c| c.family.as_deref() == family && c.table == table && c.chain == chain);
    if !known {
        dump.chains.push(ChainId {
            family: family.map(str::to_string),
            table: table.to_string(),
            chain: chain.to_string(),
        });
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How a rule's text reads in a message.
fn display_text(text: &str) -> &str {
    if text.is_empty() {
        "counter"
    } else {
        text
    }
}

fn table_label(family: Option<&str>, table: &str) -> String {
    match family {
        Some(f) => format!("{f} {table}"),
        None => table.to_string(),
    }
}

/// A text selector in the two forms rules are compared with: for iptables rules, with
/// a leading `[p:b]` and `-A CHAIN ` stripped and white space collapsed; for nft rules,
/// also normalized the way rules are (counter statement and comments removed).
struct TextKey {
    iptables: String,
    nft: String,
}

impl TextKey {
    fn new(selector: &str, chain: &str) -> TextKey {
        let mut s = selector.trim();
        if s.starts_with('[') {
            if let Some(end) = s.find(']') {
                if save::parse_bracket_counters(&s[..=end]).is_some() {
                    s = s[end + 1..].trim_start();
                }
            }
        }
        if let Some(rest) = s.strip_prefix("-A").filter(|r| r.starts_with(char::is_whitespace)) {
            if let Some(after) = rest.trim_start().strip_prefix(chain) {
                if after.is_empty() || after.starts_with(char::is_whitespace) {
                    s = after;
                }
            }
        }
        let nft = listing::rule_text(s).unwrap_or_else(|| collapse(s));
        TextKey { iptables: collapse(s), nft }
    }

    fn matches(&self, rule: &RuleCounter) -> bool {
        if rule.family.is_some() {
            rule.text == self.nft
        } else {
            collapse(&rule.text) == self.iptables
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lookup

impl Dump {
    /// Every chain the dump knows, from its declarations, policies and rules, in order.
    fn chain_ids(&self) -> Vec<(Option<&str>, &str, &str)> {
        let declared = self.chains.iter().map(|c| (c.family.as_deref(), c.table.as_str(), c.chain.as_str()));
        let policies = self.policies.iter().map(|c| (c.family.as_deref(), c.table.as_str(), c.chain.as_str()));
        let rules = self.rules.iter().map(|c| (c.family.as_deref(), c.table.as_str(), c.chain.as_str()));
        let mut ids = Vec::new();
        for id in declared.chain(policies).chain(rules) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The family the lookup is about: `family` itself when given (the table must exist
    /// in it), else the one family that has this table, or among several the one that
    /// also has this chain.
    fn resolve_family<'s>(
        &'s self,
        family: Option<&'s str>,
        table: &str,
        chain: &str,
    ) -> Result<Option<&'s str>, LookupError> {
        let ids = self.chain_ids();
        let mut tables: Vec<(Option<&str>, &str)> = Vec::new();
        for &(f, t, _) in &ids {
            if !tables.contains(&(f, t)) {
                tables.push((f, t));
            }
        }
        let no_table = || LookupError::NoTable {
            table: table_label(family, table),
            chain: chain.to_string(),
            tables: tables.iter().map(|&(f, t)| table_label(f, t)).collect(),
        };
        if let Some(f) = family {
            return if tables.contains(&(Some(f), table)) { Ok(Some(f)) } else { Err(no_table()) };
        }
        let families: Vec<Option<&str>> = tables.iter().filter(|&&(_, t)| t == table).map(|&(f, _)| f).collect();
        // An iptables table without a family is IPv4's; its IPv6 twin is named `ip6`.
        if families.contains(&None) {
            return Ok(None);
        }
        match families.as_slice() {
            [] => Err(no_table()),
            [only] => Ok(*only),
            _ => {
                let with_chain: Vec<Option<&str>> = families
                    .iter()
                    .copied()
                    .filter(|&f| ids.iter().any(|&(g, t, c)| g == f && t == table && c == chain))
                    .collect();
                match with_chain.as_slice() {
                    [only] => Ok(*only),
                    [] => {
                        let mut chains: Vec<String> = Vec::new();
                        for &(f, t, c) in &ids {
                            let name = format!("{c} ({})", table_label(f, t));
                            if t == table && !chains.contains(&name) {
                                chains.push(name);
                            }
                        }
                        Err(LookupError::NoChain { table: table.to_string(), chain: chain.to_string(), chains })
                    }
                    several => Err(LookupError::AmbiguousFamily {
                        table: table.to_string(),
                        chain: chain.to_string(),
                        families: several.iter().map(|f| f.unwrap_or("(none)").to_string()).collect(),
                    }),
                }
            }
        }
    }

    /// The rule selected by (family, table, chain, selector).
    ///
    /// Text selectors compare with runs of white space collapsed and surrounding white
    /// space trimmed; a leading `[p:b]` counter prefix and `-A CHAIN ` are stripped
    /// first, and for nft rules a `counter` statement and `#` comments in the selector are
    /// ignored, so a line copied from the rule file or from the dump both match. A
    /// comment selector must equal the rule's comment exactly. `family` None matches any
    /// family as long as only one family has this table (or, among several, this chain);
    /// `Some(f)` matches only `f`.
    pub fn find(
        &self,
        family: Option<&str>,
        table: &str,
        chain: &str,
        selector: &RuleSelector,
    ) -> Result<&RuleCounter, LookupError> {
        let family = self.resolve_family(family, table, chain)?;
        let label = table_label(family, table);
        let in_table = |f: Option<&str>, t: &str| f == family && t == table;
        let ids = self.chain_ids();
        if !ids.iter().any(|&(f, t, c)| in_table(f, t) && c == chain) {
            return Err(LookupError::NoChain {
                table: label,
                chain: chain.to_string(),
                chains: ids.iter().filter(|&&(f, t, _)| in_table(f, t)).map(|&(_, _, c)| c.to_string()).collect(),
            });
        }
        let rules: Vec<&RuleCounter> =
            self.rules.iter().filter(|r| in_table(r.family.as_deref(), &r.table) && r.chain == chain).collect();
        let found: Vec<&RuleCounter> = match selector {
            RuleSelector::Position(p) => rules.iter().copied().filter(|r| r.position == *p).collect(),
            RuleSelector::Text(t) => {
                let key = TextKey::new(t, chain);
                rules.iter().copied().filter(|r| key.matches(r)).collect()
            }
            RuleSelector::Comment(c) => {
                rules.iter().copied().filter(|r| r.comment.as_deref() == Some(c.as_str())).collect()
            }
        };
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(LookupError::NoRule {
                table: label,
                chain: chain.to_string(),
                selector: selector.to_string(),
                candidates: rules.iter().map(|r| format!("{}: {}", r.position, display_text(&r.text))).collect(),
            }),
            several => Err(LookupError::Ambiguous {
                table: label,
                chain: chain.to_string(),
                selector: selector.to_string(),
                positions: several.iter().map(|r| r.position).collect(),
            }),
        }
    }
}

fn counters_of(rule: &RuleCounter) -> Result<(u64, u64), LookupError> {
    match (rule.packets, rule.bytes) {
        (Some(p), Some(b)) => Ok((p, b)),
        _ => Err(LookupError::NoCounter {
            table: table_label(rule.family.as_deref(), &rule.table),
            chain: rule.chain.clone(),
            position: rule.position,
            text: rule.text.clone(),
        }),
    }
}

/// Look the expectation's rule up in both dumps and subtract its counters.
///
/// A counter that went down (the rule set was reloaded or its counters were zeroed in
/// between) gives 0, not an error. The lookup in `after` comes first, so its errors
/// describe the current rule set.
pub fn delta(before: &Dump, after: &Dump, exp: &CounterExpectation) -> Result<CounterDelta, LookupError> {
    let family = exp.family.as_deref();
    let now = after.find(family, &exp.table, &exp.chain, &exp.rule)?;
    let then = before.find(family, &exp.table, &exp.chain, &exp.rule)?;
    let (p1, b1) = counters_of(now)?;
    let (p0, b0) = counters_of(then)?;
    Ok(CounterDelta {
        position: now.position,
        text: now.text.clone(),
        packets: p1.saturating_sub(p0),
        bytes: b1.saturating_sub(b0),
    })
}

/// Rules whose counters moved between two dumps, to explain the path a probe took:
/// (rule from `after`, packets delta, bytes delta), in dump order. Rules are paired by
/// (family, table, chain, position) and skipped when their text differs, when either has
/// no counter, or when `before` has no rule at that place.
pub fn moved<'a>(before: &Dump, after: &'a Dump) -> Vec<(&'a RuleCounter, u64, u64)> {
    let earlier: HashMap<(Option<&str>, &str, &str, usize), &RuleCounter> = before
        .rules
        .iter()
        .map(|r| ((r.family.as_deref(), r.table.as_str(), r.chain.as_str(), r.position), r))
        .collect();
    after
        .rules
        .iter()
        .filter_map(|r| {
            let b = earlier.get(&(r.family.as_deref(), r.table.as_str(), r.chain.as_str(), r.position))?;
            if b.text != r.text {
                return None;
            }
            let (p1, b1) = (r.packets?, r.bytes?);
            let (p0, b0) = (b.packets?, b.bytes?);
            let (dp, db) = (p1.saturating_sub(p0), b1.saturating_sub(b0));
            (dp > 0 || db > 0).then_some((r, dp, db))
        })
        .collect()
}

#[cfg(test)]
mod tests;
