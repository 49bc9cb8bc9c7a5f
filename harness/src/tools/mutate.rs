//! Mutation testing of a rule set: every rule of a rule file deleted in turn, every
//! verdict and base chain policy flipped, and each such mutation run against the
//! scenarios that load the file. A mutation that some scenario notices is *killed*; one
//! that no scenario notices *survived*: the rule set behaves differently and nothing in
//! the suite says so. The share of mutations killed measures how much of a rule set the
//! suite pins down.
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
//! rewrites it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;

use crate::report::first_failure;
use crate::run::{self, RunError, ScenarioReport, Status};
use crate::scenario::{Backend, RuleFormat, Scenario};

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
        RuleFormat::Iptables => iptables_mutations(text),
        RuleFormat::Nft => nft_mutations(text),
    }
}

/// Collects mutations of one file, each a change of one of its lines.
struct Mutator<'a> {
    /// The file's lines, each with its line terminator.
    lines: Vec<&'a str>,
    out: Vec<Mutation>,
}

impl<'a> Mutator<'a> {
    fn new(text: &'a str) -> Mutator<'a> {
        Mutator { lines: text.split_inclusive('\n').collect(), out: Vec::new() }
    }

    fn delete(&mut self, index: usize, place: &str) {
        let original = content(self.lines[index]).trim();
        let description = format!("delete `{original}` ({place}, line {})", index + 1);
        let text = self.lines.iter().enumerate().filter(|&(i, _)| i != index).map(|(_, l)| *l).collect();
        self.push(MutationKind::Delete, index, description, text);
    }

    /// Replaces line `index` with `new`, keeping its terminator.
    fn replace(&mut self, kind: MutationKind, index: usize, new: &str, description: String) {
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
fn content(line: &str) -> &str {
    match line.strip_suffix('\n') {
        Some(l) => l.strip_suffix('\r').unwrap_or(l),
        None => line,
    }
}

/// A word of a line: byte span, and for nft the depth of `{ }` it starts at.
#[derive(Debug, Clone, Copy)]
struct Word {
    start: usize,
    end: usize,
    depth: isize,
}

/// The white-space separated words of `line`. A double-quoted string (with backslash
/// escapes) stays inside its word. With `nft`, `{` and `}` are words of their own and
/// an unquoted `#` at the start of a word ends the line.
fn words(line: &str, nft: bool) -> Vec<Word> {
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

fn splice(line: &str, start: usize, end: usize, with: &str) -> String {
    format!("{}{with}{}", &line[..start], &line[end..])
}

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
        let ws = words(line, false);
        let word = |k: usize| ws.get(k).map(|w| &line[w.start..w.end]);
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

/// `--timeout`: a duration in the form scenarios use, greater than 0 and at most 60 s.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{text:?} is no duration ({e}); write e.g. 200ms"))?;
    if d.is_zero() || d > Duration::from_secs(60) {
        return Err(format!("{text:?}: a timeout must be greater than 0 and at most 60s"));
    }
    Ok(d)
}

/// Every probe of `scn` waits `timeout` before calling its outcome dropped.
pub fn override_timeout(scn: &mut Scenario, timeout: Duration) {
    scn.timeout = timeout;
    for p in &mut scn.probes {
        p.timeout = timeout;
    }
}

/// Whether `scn` loads the rule file whose canonical path is `rules`.
pub fn uses_rules(scn: &Scenario, rules: &Path) -> bool {
    scn.rules.files.iter().any(|f| same_file(&f.path, rules))
}

fn same_file(path: &Path, canonical: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| p == canonical)
}

/// `scn` loading `replacement` wherever it loaded the file whose canonical path is `rules`.
pub fn with_rules(scn: &Scenario, rules: &Path, replacement: &Path) -> Scenario {
    let mut scn = scn.clone();
    for f in &mut scn.rules.files {
        if same_file(&f.path, rules) {
            f.path = replacement.to_path_buf();
        }
    }
    scn
}

/// A scenario and the back end it runs under for every mutation.
#[derive(Debug, Clone)]
pub struct Target {
    pub scenario: Scenario,
    pub backend: Backend,
}

impl Target {
    /// `seed/isolation.yaml [iptables-nft]`
    pub fn label(&self) -> String {
        format!("{} [{}]", self.scenario.name, self.backend)
    }
}

/// Runs every target at once, each in its own lab; the reports in the same order.
pub async fn run_targets(targets: &[Target]) -> Vec<ScenarioReport> {
    let handles =
        targets.iter().cloned().map(|t| tokio::spawn(async move { run::run_scenario(&t.scenario, t.backend).await }));
    let joined = futures::future::join_all(handles).await;
    joined
        .into_iter()
        .zip(targets)
        .map(|(r, t)| {
            r.unwrap_or_else(|e| {
                ScenarioReport::new(&t.scenario.name, t.backend, Status::Error(RunError::Abnormal(e.to_string())))
            })
        })
        .collect()
}

/// What became of a mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// A scenario failed on it: `by` is the first such target, `reason` its first
    /// failing probe or counter.
    Killed { by: String, reason: String },
    /// Every scenario passed on it.
    Survived,
    /// A rule tool rejected the mutated rule set; not counted in the score.
    Invalid { by: String, reason: String },
    /// A scenario could not be carried out for another reason (lab, services); not
    /// counted in the score.
    Error { by: String, reason: String },
}

/// The rule file a rule tool rejected, if that is why a run failed.
fn rejected_file<'a>(scn: &'a Scenario, rep: &ScenarioReport) -> Option<&'a Path> {
    let Status::Error(RunError::RulesRejected { file, .. }) = &rep.status else { return None };
    scn.rules.files.iter().map(|f| f.path.as_path()).find(|p| p == file)
}

/// The fate of a mutation of the file `mutated` from the reports of its targets (same
/// order). A rule set the tool rejects is invalid. A target whose *other* rule file no
/// longer loads (a patch that deletes the very rule the mutation changed) tells
/// nothing and is left out; of the rest, the first failed target kills the mutation.
/// If no target could run, the mutation is invalid.
pub fn fate(targets: &[Target], reports: &[ScenarioReport], mutated: &Path) -> Fate {
    let runs = || targets.iter().zip(reports);
    fn rejected<'a>(t: &'a Target, rep: &ScenarioReport) -> Option<&'a Path> {
        rejected_file(&t.scenario, rep)
    }
    if let Some((t, rep)) = runs().find(|(t, rep)| rejected(t, rep) == Some(mutated)) {
        return Fate::Invalid { by: t.label(), reason: first_failure(&t.scenario, rep) };
    }
    let ran: Vec<(&Target, &ScenarioReport)> = runs().filter(|(t, rep)| rejected(t, rep).is_none()).collect();
    if ran.is_empty() {
        if let Some((t, rep)) = runs().next() {
            return Fate::Invalid { by: t.label(), reason: first_failure(&t.scenario, rep) };
        }
    }
    if let Some((t, rep)) = ran.iter().find(|(_, rep)| rep.status == Status::Failed) {
        return Fate::Killed { by: t.label(), reason: first_failure(&t.scenario, rep) };
    }
    if let Some((t, rep)) = ran.iter().find(|(_, rep)| matches!(rep.status, Status::Error(_))) {
        return Fate::Error { by: t.label(), reason: first_failure(&t.scenario, rep) };
    }
    Fate::Survived
}

/// A mutation and what became of it.
#[derive(Debug, Clone)]
pub struct Tried {
    pub mutation: Mutation,
    pub fate: Fate,
}

/// Writes `m` to a file of the same name as `rules` in a fresh temporary folder,
/// runs every target on it, and judges.
pub async fn try_mutation(targets: &[Target], rules: &Path, m: &Mutation) -> Fate {
    let error =
        |e: std::io::Error| Fate::Error { by: "netconform".into(), reason: format!("writing the mutated file: {e}") };
    let dir = match tempfile::Builder::new().prefix("netconform-mutate-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return error(e),
    };
    let file: PathBuf = dir.path().join(rules.file_name().unwrap_or(std::ffi::OsStr::new("rules")));
    if let Err(e) = std::fs::write(&file, &m.text) {
        return error(e);
    }
    let mutated: Vec<Target> = targets
        .iter()
        .map(|t| Target { scenario: with_rules(&t.scenario, rules, &file), backend: t.backend })
        .collect();
    let reports = run_targets(&mutated).await;
    fate(&mutated, &reports, &file)
}

/// Tries every mutation, `jobs` at a time (at least one), calling `progress` as each
/// one is judged. The results in the order of the mutations.
pub async fn try_all(
    targets: &[Target],
    rules: &Path,
    mutations: Vec<Mutation>,
    jobs: usize,
    mut progress: impl FnMut(&Tried),
) -> Vec<Tried> {
    let mut tried: Vec<Tried> = futures::stream::iter(mutations)
        .map(|mutation| async move {
            let fate = try_mutation(targets, rules, &mutation).await;
            Tried { mutation, fate }
        })
        .buffer_unordered(jobs.max(1))
        .inspect(|t| progress(t))
        .collect()
        .await;
    tried.sort_by_key(|t| t.mutation.id);
    tried
}

/// The tally of a mutation run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Score {
    pub killed: usize,
    pub survived: usize,
    pub invalid: usize,
    pub errors: usize,
}

impl Score {
    pub fn of(tried: &[Tried]) -> Score {
        let mut s = Score::default();
        for t in tried {
            match t.fate {
                Fate::Killed { .. } => s.killed += 1,
                Fate::Survived => s.survived += 1,
                Fate::Invalid { .. } => s.invalid += 1,
                Fate::Error { .. } => s.errors += 1,
            }
        }
        s
    }

    /// Mutations that count: killed or survived.
    pub fn valid(&self) -> usize {
        self.killed + self.survived
    }

    /// Killed as a share of the valid mutations, in percent; None without any.
    pub fn percent(&self) -> Option<f64> {
        (self.valid() > 0).then(|| 100.0 * self.killed as f64 / self.valid() as f64)
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.percent() {
            Some(p) => write!(f, "{p:.1} % ({} of {} mutations killed", self.killed, self.valid())?,
            None => write!(f, "no score (no valid mutations")?,
        }
        if self.invalid > 0 {
            write!(f, "; {} invalid", self.invalid)?;
        }
        if self.errors > 0 {
            write!(f, "; {} could not be run", self.errors)?;
        }
        f.write_str(")")
    }
}

fn survivors(tried: &[Tried]) -> impl Iterator<Item = &Tried> {
    tried.iter().filter(|t| t.fate == Fate::Survived)
}

/// The report for a terminal: score, survivors, invalid mutations and errors.
pub fn text_report(rules: &str, targets: &[Target], tried: &[Tried]) -> String {
    use std::fmt::Write;
    let score = Score::of(tried);
    let mut out = String::new();
    let _ = writeln!(out, "mutation score of {rules}: {score}");
    let labels: Vec<String> = targets.iter().map(Target::label).collect();
    let _ = writeln!(out, "scenarios: {}", labels.join(", "));
    let _ = writeln!(out, "\nsurvivors ({}):", score.survived);
    for t in survivors(tried) {
        let _ = writeln!(out, "  {}", t.mutation.description);
    }
    for t in tried {
        let (what, by, reason) = match &t.fate {
            Fate::Invalid { by, reason } => ("invalid", by, reason),
            Fate::Error { by, reason } => ("not run", by, reason),
            _ => continue,
        };
        let _ = writeln!(out, "{what}: {}\n    {by}: {reason}", t.mutation.description);
    }
    out
}

/// `|` would end a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The report as Markdown: the score and a table of the survivors.
pub fn markdown_report(rules: &str, targets: &[Target], tried: &[Tried]) -> String {
    use std::fmt::Write;
    let score = Score::of(tried);
    let mut out = String::new();
    let _ = writeln!(out, "### Mutation score of `{rules}`\n");
    let _ = writeln!(out, "**{score}**\n");
    let labels: Vec<String> = targets.iter().map(|t| format!("`{}`", t.label())).collect();
    let _ = writeln!(out, "Scenarios: {}.\n", labels.join(", "));
    if score.survived == 0 {
        let _ = writeln!(out, "No mutation survived.");
    } else {
        let _ = writeln!(out, "| line | surviving mutation |");
        let _ = writeln!(out, "|---:|---|");
        for t in survivors(tried) {
            let _ = writeln!(out, "| {} | {} |", t.mutation.line, cell(&t.mutation.description));
        }
    }
    let others: Vec<&Tried> =
        tried.iter().filter(|t| matches!(t.fate, Fate::Invalid { .. } | Fate::Error { .. })).collect();
    if !others.is_empty() {
        let _ = writeln!(out, "\nNot counted:\n");
        for t in others {
            let (what, reason) = match &t.fate {
                Fate::Invalid { reason, .. } => ("rejected by the rule tool", reason),
                Fate::Error { reason, .. } => ("could not be run", reason),
                _ => continue,
            };
            let _ = writeln!(out, "- {} ({what}: {reason})", t.mutation.description);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rstest::rstest;

    use super::*;
    use crate::judge::Verdict;
    use crate::run::ProbeReport;
    use crate::traffic::probe::{Outcome, OutcomeKind};

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

    #[rstest]
    #[case("200ms", Ok(Duration::from_millis(200)))]
    #[case("1s 500ms", Ok(Duration::from_millis(1500)))]
    #[case("60s", Ok(Duration::from_secs(60)))]
    #[case("0s", Err("greater than 0"))]
    #[case("61s", Err("at most 60s"))]
    #[case("soon", Err("no duration"))]
    fn timeouts(#[case] text: &str, #[case] expected: Result<Duration, &str>) {
        match (parse_timeout(text), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
            (got, want) => panic!("{text}: got {got:?}, expected {want:?}"),
        }
    }

    fn isolation() -> Scenario {
        let path = suite().join("seed/isolation.yaml");
        crate::scenario::load(&path, "seed/isolation.yaml").unwrap()
    }

    fn seed_rules() -> PathBuf {
        std::fs::canonicalize(suite().join("seed/rules/docker-18.05-seed.rules")).unwrap()
    }

    #[test]
    fn rules_are_replaced_where_used() {
        let scn = isolation();
        let rules = seed_rules();
        assert!(uses_rules(&scn, &rules));
        let other = std::fs::canonicalize(suite().join("seed/rules/docker-18.05-seed-publish-8080.rules")).unwrap();
        assert!(!uses_rules(&scn, &other));
        let replaced = with_rules(&scn, &rules, Path::new("/tmp/x/docker-18.05-seed.rules"));
        let paths: Vec<&Path> = replaced.rules.files.iter().map(|f| f.path.as_path()).collect();
        assert_eq!(paths[0], Path::new("/tmp/x/docker-18.05-seed.rules"));
        assert_eq!(paths[1..], scn.rules.files[1..].iter().map(|f| f.path.as_path()).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn timeouts_are_overridden() {
        let mut scn = isolation();
        override_timeout(&mut scn, Duration::from_millis(50));
        assert_eq!(scn.timeout, Duration::from_millis(50));
        assert!(scn.probes.iter().all(|p| p.timeout == Duration::from_millis(50)));
    }

    fn report(scn: &Scenario, status: Status, failing_probe: Option<usize>) -> ScenarioReport {
        let probes = (0..scn.probes.len())
            .map(|i| ProbeReport {
                probe: i,
                path: None,
                deciding: None,
                trace: Vec::new(),
                outcome: Outcome::new(OutcomeKind::Reached, "an answer"),
                verdict: Verdict {
                    problems: if failing_probe == Some(i) {
                        vec!["expected dropped, got reached: an answer".into(), "more".into()]
                    } else {
                        Vec::new()
                    },
                },
            })
            .collect();
        ScenarioReport { probes, ..ScenarioReport::new(&scn.name, Backend::IptablesNft, status) }
    }

    #[test]
    fn fates() {
        let scn = isolation();
        let targets = vec![
            Target { scenario: scn.clone(), backend: Backend::IptablesNft },
            Target { scenario: scn.clone(), backend: Backend::IptablesNft },
        ];
        let passed = report(&scn, Status::Passed, None);
        let failed = report(&scn, Status::Failed, Some(1));
        let mutated = scn.rules.files[0].path.clone();
        let rules = mutated.display();
        let refused = |message: String| Status::Error(RunError::RulesRejected { file: mutated.clone(), message });
        let rejected = report(&scn, refused(format!("loading {rules}: iptables-nft-restore failed\nline 3")), None);
        let broken = report(&scn, Status::Error(RunError::Lab("building the lab: no bridge".into())), None);

        assert_eq!(fate(&targets, &[passed.clone(), passed.clone()], &mutated), Fate::Survived);
        let probe = &scn.probes[1];
        assert_eq!(
            fate(&targets, &[passed.clone(), failed.clone()], &mutated),
            Fate::Killed {
                by: "seed/isolation.yaml [iptables-nft]".into(),
                reason: format!(
                    "probe `{}` (line {}): expected dropped, got reached: an answer",
                    probe.name, probe.location.line
                ),
            }
        );
        assert!(matches!(fate(&targets, &[failed.clone(), rejected.clone()], &mutated), Fate::Invalid { reason, .. }
            if reason == format!("loading {rules}: iptables-nft-restore failed")));
        let rejected = report(&scn, refused(format!("loading {rules}: restore failed:\n\nline 3: bad\nmore")), None);
        assert!(matches!(fate(&targets, &[rejected, passed.clone()], &mutated), Fate::Invalid { reason, .. }
            if reason == format!("loading {rules}: restore failed: line 3: bad")));
        assert!(matches!(fate(&targets, &[broken.clone(), failed], &mutated), Fate::Killed { .. }));
        assert!(
            matches!(fate(&targets, &[broken, passed], &mutated), Fate::Error { reason, .. } if reason == "building the lab: no bridge")
        );
    }

    fn tried(line: usize, fate: Fate) -> Tried {
        let mutation = Mutation {
            id: line,
            kind: MutationKind::Delete,
            line,
            original: "meta mark set meta mark | 0x00002000".into(),
            description: format!("delete `meta mark set meta mark | 0x00002000` (inet t c, line {line})"),
            text: String::new(),
        };
        Tried { mutation, fate }
    }

    #[test]
    fn scores_and_reports() {
        let killed = || Fate::Killed { by: "a".into(), reason: "b".into() };
        let results = vec![
            tried(1, killed()),
            tried(2, Fate::Survived),
            tried(3, killed()),
            tried(4, Fate::Invalid { by: "a".into(), reason: "rejected".into() }),
            tried(5, killed()),
        ];
        let score = Score::of(&results);
        assert_eq!(score, Score { killed: 3, survived: 1, invalid: 1, errors: 0 });
        assert_eq!(score.percent(), Some(75.0));
        assert_eq!(score.to_string(), "75.0 % (3 of 4 mutations killed; 1 invalid)");
        assert_eq!(Score::default().percent(), None);

        let scn = isolation();
        let targets = [Target { scenario: scn, backend: Backend::IptablesLegacy }];
        let text = text_report("x.nft", &targets, &results);
        assert!(text.starts_with("mutation score of x.nft: 75.0 %"), "{text}");
        assert!(
            text.contains("survivors (1):\n  delete `meta mark set meta mark | 0x00002000` (inet t c, line 2)\n"),
            "{text}"
        );
        assert!(
            text.contains("invalid: delete `meta mark set meta mark | 0x00002000` (inet t c, line 4)\n    a: rejected"),
            "{text}"
        );

        let md = markdown_report("x.nft", &targets, &results);
        assert!(md.contains("`seed/isolation.yaml [iptables-legacy]`"), "{md}");
        assert!(md.contains("| 2 | delete `meta mark set meta mark \\| 0x00002000` (inet t c, line 2) |"), "{md}");
        assert!(md.contains("- delete `meta mark set meta mark | 0x00002000` (inet t c, line 4) (rejected by the rule tool: rejected)"), "{md}");
        assert!(!md.contains("| 1 |"), "{md}");
    }
}
