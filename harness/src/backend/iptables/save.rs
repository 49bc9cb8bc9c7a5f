//! The one reader of `iptables-save` text: the lines of a dump or of an
//! iptables-restore file, split into tables, chain declarations and rules, and the
//! words of a rule the way iptables-restore splits them. Counters, trace and mutation
//! all read iptables text through it.

use std::collections::HashMap;

use crate::backend::counters::{push_chain, syntax, ChainPolicy, Dump, ParseError, RuleCounter};

/// Parse `iptables-save -c` output (also what iptables-legacy-save -c, iptables-nft-save -c
/// and the ip6tables variants print).
///
/// Lines: `# ...` comments and warnings (`# Warning: iptables-legacy tables present, ...`),
/// `*table`, `:CHAIN POLICY [p:b]` (policy `-` for user chains, which get no
/// [`ChainPolicy`]), `[p:b] -A CHAIN rest...` and `COMMIT`. Rules without the `[p:b]`
/// prefix (a dump made without `-c`) get no counters.
pub fn parse_iptables_save(text: &str) -> Result<Dump, ParseError> {
    let mut dump = Dump::default();
    // The open table and the line that opened it.
    let mut table: Option<(String, usize)> = None;
    let mut positions: HashMap<String, usize> = HashMap::new();

    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        let err = |reason: &str| syntax(number, line, reason);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some((open, at)) = &table {
                return Err(err(&format!("table {open} (line {at}) is not closed with COMMIT before the next table")));
            }
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(err("expected a table name after `*`"));
            }
            table = Some((name.to_string(), number));
            positions.clear();
            continue;
        }
        if line == "COMMIT" {
            if table.take().is_none() {
                return Err(err("COMMIT outside a table"));
            }
            continue;
        }
        let Some((table_name, _)) = &table else {
            return Err(err("expected `*TABLE` before chains and rules"));
        };

        if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let (Some(chain), Some(policy)) = (words.next(), words.next()) else {
                return Err(err("expected `:CHAIN POLICY [packets:bytes]`"));
            };
            let counters = match words.next() {
                None => None,
                Some(c) => Some(
                    parse_bracket_counters(c)
                        .ok_or_else(|| err("malformed chain counters; expected `[packets:bytes]`"))?,
                ),
            };
            if words.next().is_some() {
                return Err(err("unexpected text after the chain counters"));
            }
            push_chain(&mut dump, None, table_name, chain);
            if policy != "-" {
                dump.policies.push(ChainPolicy {
                    family: None,
                    table: table_name.clone(),
                    chain: chain.to_string(),
                    policy: policy.to_string(),
                    packets: counters.map(|c| c.0),
                    bytes: counters.map(|c| c.1),
                });
            }
            continue;
        }

        let (counters, rest) = if line.starts_with('[') {
            let end = line.find(']').ok_or_else(|| err("unclosed `[` of the rule counters"))?;
            let c = parse_bracket_counters(&line[..=end])
                .ok_or_else(|| err("malformed rule counters; expected `[packets:bytes]`"))?;
            (Some(c), &line[end + 1..])
        } else {
            (None, line)
        };
        let tokens = tokenize_iptables(rest).map_err(err)?;
        if tokens.first().map(|t| t.value.as_str()) != Some("-A") || tokens.len() < 2 {
            return Err(err("expected `-A CHAIN ...`"));
        }
        let chain = tokens[1].value.clone();
        let rule_text = rest[tokens[1].end..].trim().to_string();
        let comment = tokens.windows(2).find(|w| w[0].value == "--comment").map(|w| w[1].value.clone());
        push_chain(&mut dump, None, table_name, &chain);
        let position = positions.entry(chain.clone()).or_insert(0);
        *position += 1;
        dump.rules.push(RuleCounter {
            family: None,
            table: table_name.clone(),
            chain,
            position: *position,
            text: rule_text,
            comment,
            packets: counters.map(|c| c.0),
            bytes: counters.map(|c| c.1),
        });
    }
    if let Some((name, at)) = table {
        let line = text.lines().nth(at - 1).unwrap_or("").trim();
        return Err(syntax(at, line, &format!("table {name} is not closed with COMMIT")));
    }
    Ok(dump)
}

/// `[12:720]` -> (12, 720).
pub(crate) fn parse_bracket_counters(s: &str) -> Option<(u64, u64)> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let (p, b) = inner.split_once(':')?;
    Some((p.parse().ok()?, b.parse().ok()?))
}

/// One word of an iptables rule: its unquoted value and its byte span in the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IptToken {
    pub value: String,
    pub start: usize,
    pub end: usize,
}

/// Split an iptables-save rule into words the way iptables-restore does: white space
/// separates words, double quotes group them, and a backslash makes the next character
/// literal (iptables-save quotes values with spaces or special characters and escapes
/// `"`, `\` and `'` inside the quotes).
pub(crate) fn tokenize_iptables(line: &str) -> Result<Vec<IptToken>, &'static str> {
    let mut tokens = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut value = String::new();
        let mut quoted = false;
        let mut end = line.len();
        while let Some(&(i, c)) = chars.peek() {
            if !quoted && c.is_whitespace() {
                end = i;
                break;
            }
            chars.next();
            match c {
                '"' => quoted = !quoted,
                '\\' => match chars.next() {
                    Some((_, escaped)) => value.push(escaped),
                    None => return Err("a backslash ends the line"),
                },
                _ => value.push(c),
            }
        }
        if quoted {
            return Err("unterminated quoted string");
        }
        tokens.push(IptToken { value, start, end });
    }
    Ok(tokens)
}
