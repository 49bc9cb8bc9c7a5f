//! The one reader of nft text: `nft list ruleset` (with or without `-a` handles) and
//! nft scripts, split into tables, chains, policies and rules with their counters and
//! handles. Counters, trace and mutation all read nft text through it.

use crate::backend::counters::{push_chain, syntax, ChainPolicy, Dump, ParseError, RuleCounter};

/// Parse `nft list ruleset` output (nft 1.0.6; `-a` handles are fine too).
///
/// Reads `table FAMILY NAME { ... }` (a missing family means `ip`) and in it
/// `chain NAME { ... }`. Inside a chain, `type ... ;` and `policy X;` declare the chain
/// (a policy gives a [`ChainPolicy`] without counters), `comment "..."`, `devices = ...`
/// and `flags ...` describe it, and every other statement is a rule. Sets, maps,
/// flowtables, named counters, quotas, ct helpers and any other `KIND NAME { ... }`
/// block of a table are skipped. `#` starts a comment outside quoted strings.
pub fn parse_nft_ruleset(text: &str) -> Result<Dump, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let tokens =
        lex_nft(text).map_err(|(line, reason)| syntax(line, lines.get(line - 1).copied().unwrap_or(""), reason))?;
    let mut parser = NftParser { tokens, pos: 0, lines, dump: Dump::default() };
    parser.ruleset()?;
    Ok(parser.dump)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    /// A double-quoted string, quotes included.
    Str,
    Open,
    Close,
    Semi,
    Newline,
}

#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    kind: Kind,
    text: &'a str,
    line: usize,
    /// White space, a comment or a line break comes before it.
    space_before: bool,
}

impl Tok<'_> {
    fn is_word(&self, w: &str) -> bool {
        self.kind == Kind::Word && self.text == w
    }

    /// The token's value: a string without its quotes, a word as it is.
    fn value(&self) -> &str {
        match self.kind {
            Kind::Str => &self.text[1..self.text.len() - 1],
            _ => self.text,
        }
    }
}

/// Split nft text into words, strings, braces, semicolons and line breaks. nft strings
/// cannot span lines and have no escapes.
fn lex_nft(text: &str) -> Result<Vec<Tok<'_>>, (usize, &'static str)> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut space = true;
    let mut push = |kind: Kind, start: usize, end: usize, line: usize, space: &mut bool| {
        tokens.push(Tok { kind, text: &text[start..end], line, space_before: *space });
        *space = false;
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                push(Kind::Newline, i, i + 1, line, &mut space);
                space = true;
                line += 1;
                i += 1;
            }
            b'\\' if bytes.get(i + 1) == Some(&b'\n') => {
                space = true;
                line += 1;
                i += 2;
            }
            c if c.is_ascii_whitespace() => {
                space = true;
                i += 1;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                space = true;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
                if i == bytes.len() || bytes[i] == b'\n' {
                    return Err((line, "unterminated quoted string"));
                }
                i += 1;
                push(Kind::Str, start, i, line, &mut space);
            }
            c @ (b'{' | b'}' | b';') => {
                let kind = match c {
                    b'{' => Kind::Open,
                    b'}' => Kind::Close,
                    _ => Kind::Semi,
                };
                push(kind, i, i + 1, line, &mut space);
                i += 1;
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !bytes[i].is_ascii_whitespace()
                    && !matches!(bytes[i], b'{' | b'}' | b';' | b'"' | b'#')
                {
                    i += 1;
                }
                push(Kind::Word, start, i, line, &mut space);
            }
        }
    }
    Ok(tokens)
}

const NFT_FAMILIES: [&str; 6] = ["ip", "ip6", "inet", "arp", "bridge", "netdev"];

struct NftParser<'a> {
    tokens: Vec<Tok<'a>>,
    pos: usize,
    lines: Vec<&'a str>,
    dump: Dump,
}

impl<'a> NftParser<'a> {
    fn next(&mut self) -> Option<Tok<'a>> {
        let t = self.tokens.get(self.pos).copied();
        self.pos += usize::from(t.is_some());
        t
    }

    fn peek(&self) -> Option<Tok<'a>> {
        self.tokens.get(self.pos).copied()
    }

    fn err(&self, line: usize, reason: &str) -> ParseError {
        syntax(line, self.lines.get(line - 1).copied().unwrap_or(""), reason)
    }

    fn skip_separators(&mut self) {
        while self.peek().is_some_and(|t| matches!(t.kind, Kind::Newline | Kind::Semi)) {
            self.pos += 1;
        }
    }

    /// Tokens up to the next `{`, `}`, `;` or line break, and that terminator (consumed);
    /// None at the end of the text.
    fn header(&mut self) -> (Vec<Tok<'a>>, Option<Tok<'a>>) {
        let mut words = Vec::new();
        while let Some(t) = self.next() {
            match t.kind {
                Kind::Word | Kind::Str => words.push(t),
                _ => return (words, Some(t)),
            }
        }
        (words, None)
    }

    fn ruleset(&mut self) -> Result<(), ParseError> {
        loop {
            self.skip_separators();
            let Some(t) = self.next() else { return Ok(()) };
            if !t.is_word("table") {
                return Err(self.err(t.line, "expected `table FAMILY NAME {`"));
            }
            self.table(t)?;
        }
    }

    fn table(&mut self, keyword: Tok<'a>) -> Result<(), ParseError> {
        let at = keyword.line;
        let (words, end) = self.header();
        if end.map(|t| t.kind) != Some(Kind::Open) {
            return Err(self.err(at, "expected `{` after `table FAMILY NAME`"));
        }
        let (family, name) = match words.as_slice() {
            [name] => ("ip".to_string(), name.value().to_string()),
            [family, name] if NFT_FAMILIES.contains(&family.text) => {
                (family.text.to_string(), name.value().to_string())
            }
            [family, _] => return Err(self.err(at, &format!("unknown table family `{}`", family.text))),
            _ => return Err(self.err(at, "expected `table FAMILY NAME {`")),
        };
        loop {
            self.skip_separators();
            let Some(first) = self.peek() else {
                return Err(self.err(at, &format!("table {family} {name} is not closed with `}}`")));
            };
            if first.kind == Kind::Close {
                self.pos += 1;
                return Ok(());
            }
            let (words, end) = self.header();
            match end.map(|t| t.kind) {
                Some(Kind::Open) => {
                    if words.first().is_some_and(|w| w.is_word("chain")) {
                        let [_, chain] = words.as_slice() else {
                            return Err(self.err(first.line, "expected `chain NAME {`"));
                        };
                        self.chain(&family, &name, chain.value(), first.line)?;
                    } else if words.is_empty() {
                        return Err(self.err(first.line, "`{` without a name before it"));
                    } else {
                        self.skip_block(first.line)?;
                    }
                }
                closing => {
                    let attribute = words.first().is_some_and(|w| w.is_word("flags") || w.is_word("comment"));
                    if !attribute {
                        return Err(self.err(
                            first.line,
                            &format!(
                                "unexpected statement in table {family} {name}; expected \
                                 `chain NAME {{`, another object block, `flags`, `comment` or `}}`"
                            ),
                        ));
                    }
                    if closing == Some(Kind::Close) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Skip a block whose `{` was just read, with any blocks nested in it.
    fn skip_block(&mut self, at: usize) -> Result<(), ParseError> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next().map(|t| t.kind) {
                Some(Kind::Open) => depth += 1,
                Some(Kind::Close) => depth -= 1,
                Some(_) => {}
                None => return Err(self.err(at, "block is not closed with `}`")),
            }
        }
        Ok(())
    }

    fn chain(&mut self, family: &str, table: &str, chain: &str, at: usize) -> Result<(), ParseError> {
        push_chain(&mut self.dump, Some(family), table, chain);
        let mut position = 0;
        loop {
            let mut statement: Vec<Tok<'a>> = Vec::new();
            let mut depth = 0usize;
            let chain_closed = loop {
                let Some(t) = self.next() else {
                    return Err(match statement.first() {
                        Some(s) if depth > 0 => self.err(s.line, "`{` in this rule is not closed"),
                        _ => self.err(at, &format!("chain {chain} is not closed with `}}`")),
                    });
                };
                match t.kind {
                    Kind::Newline | Kind::Semi if depth == 0 => break false,
                    Kind::Newline => {}
                    Kind::Close if depth == 0 => break true,
                    Kind::Close => {
                        depth -= 1;
                        statement.push(t);
                    }
                    Kind::Open => {
                        depth += 1;
                        statement.push(t);
                    }
                    _ => statement.push(t),
                }
            };
            if !statement.is_empty() {
                self.chain_statement(family, table, chain, &statement, &mut position)?;
            }
            if chain_closed {
                return Ok(());
            }
        }
    }

    fn chain_statement(
        &mut self,
        family: &str,
        table: &str,
        chain: &str,
        statement: &[Tok<'a>],
        position: &mut usize,
    ) -> Result<(), ParseError> {
        let first = statement[0];
        let policy = |at: usize| statement.get(at + 1).filter(|t| t.kind == Kind::Word).map(|t| t.text.to_string());
        if first.kind == Kind::Word {
            match first.text {
                "type" => {
                    if let Some(at) = statement.iter().position(|t| t.is_word("policy")) {
                        let p = policy(at).ok_or_else(|| self.err(first.line, "`policy` without a verdict"))?;
                        self.push_policy(family, table, chain, p);
                    }
                    return Ok(());
                }
                "policy" => {
                    let p = policy(0).ok_or_else(|| self.err(first.line, "`policy` without a verdict"))?;
                    self.push_policy(family, table, chain, p);
                    return Ok(());
                }
                "comment" if statement.len() == 2 => return Ok(()),
                "devices" | "flags" => return Ok(()),
                _ => {}
            }
        }
        let rule = nft_rule(statement).map_err(|(line, reason)| self.err(line, &reason))?;
        *position += 1;
        self.dump.rules.push(RuleCounter {
            family: Some(family.to_string()),
            table: table.to_string(),
            chain: chain.to_string(),
            position: *position,
            text: rule.text,
            comment: rule.comment,
            packets: rule.counters.map(|c| c.0),
            bytes: rule.counters.map(|c| c.1),
        });
        Ok(())
    }

    fn push_policy(&mut self, family: &str, table: &str, chain: &str, policy: String) {
        self.dump.policies.push(ChainPolicy {
            family: Some(family.to_string()),
            table: table.to_string(),
            chain: chain.to_string(),
            policy,
            packets: None,
            bytes: None,
        });
    }
}

struct NftRule {
    text: String,
    comment: Option<String>,
    counters: Option<(u64, u64)>,
}

/// Take one rule's tokens apart: its text without the counter statement, its comment,
/// and its counters. Only statements outside braces count: a `counter` inside `{ }`
/// belongs to a set element or a meter, not to the rule.
fn nft_rule(statement: &[Tok<'_>]) -> Result<NftRule, (usize, String)> {
    let mut keep = vec![true; statement.len()];
    let mut counters = None;
    let mut comment = None;
    let mut depth = 0usize;
    let mut i = 0;
    while i < statement.len() {
        let t = statement[i];
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && t.is_word("comment") && comment.is_none() {
            if let Some(c) = statement.get(i + 1).filter(|c| matches!(c.kind, Kind::Str | Kind::Word)) {
                comment = Some(c.value().to_string());
            }
        }
        if depth == 0 && t.is_word("counter") {
            let next = statement.get(i + 1);
            if next.is_some_and(|n| n.is_word("packets")) {
                let number = |k: usize| {
                    statement.get(i + k).filter(|n| n.kind == Kind::Word).and_then(|n| n.text.parse::<u64>().ok())
                };
                let bytes_word = statement.get(i + 3).is_some_and(|n| n.is_word("bytes"));
                let (Some(p), true, Some(b)) = (number(2), bytes_word, number(4)) else {
                    return Err((t.line, "malformed counter; expected `counter packets N bytes M`".into()));
                };
                counters.get_or_insert((p, b));
                keep[i..i + 5].iter_mut().for_each(|k| *k = false);
                i += 5;
                continue;
            } else if !next.is_some_and(|n| n.is_word("name")) {
                keep[i] = false;
            }
        }
        i += 1;
    }
    Ok(NftRule { text: rebuild(statement, &keep), comment, counters })
}

/// The kept tokens joined as written, with every gap of white space, comments or line
/// breaks (including where a removed token stood) turned into one space.
fn rebuild(tokens: &[Tok<'_>], keep: &[bool]) -> String {
    let mut out = String::new();
    let mut gap = false;
    for (t, &k) in tokens.iter().zip(keep) {
        if !k {
            gap = true;
            continue;
        }
        if !out.is_empty() && (gap || t.space_before) {
            out.push(' ');
        }
        gap = false;
        out.push_str(t.text);
    }
    out
}

/// A rule's text as [`parse_nft_ruleset`] reads it (counter statement and comments
/// removed, white space collapsed); None when `s` is no rule nft could print.
pub(crate) fn rule_text(s: &str) -> Option<String> {
    let tokens: Vec<Tok<'_>> = lex_nft(s).ok()?.into_iter().filter(|t| t.kind != Kind::Newline).collect();
    nft_rule(&tokens).ok().map(|rule| rule.text)
}
