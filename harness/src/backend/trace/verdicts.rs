//! What the user's rules do to a packet, where the trace does not say: the verdict of
//! each x_tables rule position, and which nf_tables rules reject.

use std::collections::{HashMap, HashSet};

use super::event::RuleVerdict;
use crate::backend::counters::Dump;
use crate::backend::iptables::save;
/// (family, table, chain, position) of an x_tables rule.
pub(super) type XtRuleKey = (Option<String>, String, String, usize);

/// What each rule and chain end of an x_tables rule set does, from its dump: TRACE
/// names a rule by its position, not its verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct XtRules {
    /// (family, table, chain, position) -> the rule's verdict, and whether it rejects.
    /// The family is None for iptables', `ip6` for ip6tables'.
    pub(super) rules: HashMap<XtRuleKey, (RuleVerdict, bool)>,
    /// (family, table, chain) -> the built-in chain's policy.
    pub(super) policies: HashMap<(Option<String>, String, String), RuleVerdict>,
}

impl XtRules {
    pub(super) fn from_dump(dump: &Dump) -> XtRules {
        let chains: HashSet<(Option<&str>, &str, &str)> =
            dump.chains.iter().map(|c| (c.family.as_deref(), c.table.as_str(), c.chain.as_str())).collect();
        let rules = dump
            .rules
            .iter()
            .map(|r| {
                let is_chain = |name: &str| chains.contains(&(r.family.as_deref(), r.table.as_str(), name));
                ((r.family.clone(), r.table.clone(), r.chain.clone(), r.position), xt_verdict(&r.text, is_chain))
            })
            .collect();
        let policies = dump
            .policies
            .iter()
            .filter_map(|p| {
                let verdict = match p.policy.as_str() {
                    "ACCEPT" => RuleVerdict::Accept,
                    "DROP" => RuleVerdict::Drop,
                    _ => return None,
                };
                Some(((p.family.clone(), p.table.clone(), p.chain.clone()), verdict))
            })
            .collect();
        XtRules { rules, policies }
    }
}

/// What an `iptables-save` rule (the text after `-A CHAIN`) does to a packet it
/// matches, as nf_tables would report it, and whether it rejects. Targets that let the
/// packet on to the next rule (LOG, MARK, CT, ...) and rules without one continue; NAT
/// targets end the nat chain as an accept does.
pub(super) fn xt_verdict(text: &str, is_chain: impl Fn(&str) -> bool) -> (RuleVerdict, bool) {
    // Quoted arguments (comments) are one word each and hold no options.
    let tokens = save::tokenize_iptables(text).unwrap_or_default();
    let words: Vec<&str> = tokens.iter().map(|t| t.value.as_str()).collect();
    let target = |flags: &[&str]| {
        words.iter().position(|w| flags.contains(w)).and_then(|i| words.get(i + 1)).map(|w| w.to_string())
    };
    if let Some(chain) = target(&["-g", "--goto"]) {
        return (RuleVerdict::Goto(chain), false);
    }
    let Some(name) = target(&["-j", "--jump"]) else { return (RuleVerdict::Continue, false) };
    let verdict = match name.as_str() {
        "ACCEPT" => RuleVerdict::Accept,
        "DROP" => RuleVerdict::Drop,
        "REJECT" => return (RuleVerdict::Drop, true),
        "RETURN" => RuleVerdict::Return,
        "QUEUE" | "NFQUEUE" => RuleVerdict::Queue,
        "DNAT" | "SNAT" | "MASQUERADE" | "REDIRECT" | "NETMAP" => RuleVerdict::Accept,
        chain if is_chain(chain) => RuleVerdict::Jump(name.clone()),
        _ => RuleVerdict::Continue,
    };
    (verdict, false)
}

/// Whether an nft rule rejects: a `reject` statement, or iptables' REJECT target as
/// nft shows it when it cannot translate it. Quoted strings (comments) do not count.
pub(super) fn rejects(rule: &str) -> bool {
    let mut unquoted = String::new();
    let mut quoted = false;
    for c in rule.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted {
            unquoted.push(c);
        }
    }
    let words: Vec<&str> = unquoted.split_whitespace().collect();
    words.contains(&"reject") || (words.contains(&"target") && rule.contains("REJECT"))
}
