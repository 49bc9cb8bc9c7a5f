//! The conformance matrix: contract statement × producer, each cell pass, fail,
//! expected difference or not applicable, built from the scenario runs of a contract.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::run::{ScenarioReport, Status};
use crate::scenario::{Backend, Scenario};

/// What became of one scenario under one back end.
// One entry per planned run, kept in one Vec: boxing the report would only add an
// allocation per run.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Entry {
    Ran(ScenarioReport),
    /// Not run under `backend`: skipped, not applicable, or not possible here; says
    /// why.
    Ignored {
        backend: Backend,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CellStatus {
    /// Nothing ran: every scenario was ignored for a reason other than "not applicable".
    NotRun,
    NotApplicable,
    Pass,
    /// Passed, with at least one probe where the producer is expected to differ.
    ExpectedDifference,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub status: CellStatus,
    /// Why: the differences, the failing probes, or why nothing ran.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Matrix {
    pub contract: String,
    /// Producer names with their titles, in the order they were first seen.
    pub producers: Vec<(String, Option<String>)>,
    /// Statements with a title (that of the first scenario checking it), sorted.
    pub statements: Vec<(String, Option<String>)>,
    pub cells: BTreeMap<(String, String), Cell>,
}

impl Matrix {
    pub fn cell(&self, statement: &str, producer: &str) -> Option<&Cell> {
        self.cells.get(&(statement.to_string(), producer.to_string()))
    }
}

/// Statements sort by number where they are numbers: 9 before 10.
fn statement_key(s: &str) -> (u64, String) {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    (digits.parse().unwrap_or(u64::MAX), s.to_string())
}

/// One matrix per contract found among `entries`.
pub fn build(entries: &[(&Scenario, Entry)]) -> Vec<Matrix> {
    let mut matrices: Vec<Matrix> = Vec::new();
    for (scn, entry) in entries {
        let (Some(contract), Some(producer)) = (&scn.contract, &scn.producer) else { continue };
        let m = match matrices.iter_mut().position(|m| m.contract == contract.name) {
            Some(i) => &mut matrices[i],
            None => {
                matrices.push(Matrix {
                    contract: contract.name.clone(),
                    producers: Vec::new(),
                    statements: Vec::new(),
                    cells: BTreeMap::new(),
                });
                matrices.last_mut().expect("just pushed")
            }
        };
        if !m.producers.iter().any(|(p, _)| p == &producer.name) {
            m.producers.push((producer.name.clone(), producer.title.clone()));
        }
        for statement in &contract.statements {
            if !m.statements.iter().any(|(s, _)| s == statement) {
                m.statements.push((statement.clone(), contract.title.clone()));
            }
            let (status, notes) = judge_entry(scn, entry);
            let cell = m
                .cells
                .entry((statement.clone(), producer.name.clone()))
                .or_insert(Cell { status: CellStatus::NotRun, notes: Vec::new() });
            merge(cell, status, notes);
        }
    }
    for m in &mut matrices {
        m.statements.sort_by_key(|(s, _)| statement_key(s));
    }
    matrices
}

fn judge_entry(scn: &Scenario, entry: &Entry) -> (CellStatus, Vec<String>) {
    match entry {
        Entry::Ignored { reason, .. } if scn.not_applicable.is_some() => {
            (CellStatus::NotApplicable, vec![reason.clone()])
        }
        Entry::Ignored { reason, .. } => (CellStatus::NotRun, vec![format!("{}: {reason}", scn.name)]),
        Entry::Ran(rep) => match &rep.status {
            Status::Error(why) => {
                let why = why.to_string();
                let first = why.lines().next().unwrap_or_default();
                (CellStatus::Fail, vec![format!("{} [{}]: {first}", scn.name, rep.backend)])
            }
            Status::Failed => {
                let mut notes = Vec::new();
                for p in rep.probes.iter().filter(|p| !p.verdict.pass()) {
                    let probe = &scn.probes[p.probe];
                    notes.push(format!("{} [{}]: {}: {}", scn.name, rep.backend, probe.name, p.verdict.problems[0]));
                }
                for c in rep.counters.iter().filter(|c| !c.verdict.pass()) {
                    let exp = &scn.counters[c.counter];
                    let problem = c.verdict.problems[0].lines().next().unwrap_or_default();
                    notes
                        .push(format!("{} [{}]: counter {} {}: {problem}", scn.name, rep.backend, exp.chain, exp.rule));
                }
                (CellStatus::Fail, notes)
            }
            Status::Passed => {
                let mut differences: Vec<String> = Vec::new();
                for why in rep.probes.iter().filter_map(|p| scn.probes[p.probe].difference.clone()) {
                    if !differences.contains(&why) {
                        differences.push(why);
                    }
                }
                if differences.is_empty() {
                    (CellStatus::Pass, Vec::new())
                } else {
                    (CellStatus::ExpectedDifference, differences)
                }
            }
        },
    }
}

/// A cell shows the worst of what its scenarios found; N/A only if nothing else ran.
fn merge(cell: &mut Cell, status: CellStatus, notes: Vec<String>) {
    let rank = |s: CellStatus| match s {
        CellStatus::NotRun => 0,
        CellStatus::NotApplicable => 1,
        CellStatus::Pass => 2,
        CellStatus::ExpectedDifference => 3,
        CellStatus::Fail => 4,
    };
    match rank(status).cmp(&rank(cell.status)) {
        std::cmp::Ordering::Greater => {
            cell.status = status;
            cell.notes = notes;
        }
        std::cmp::Ordering::Equal => {
            for n in notes {
                if !cell.notes.contains(&n) {
                    cell.notes.push(n);
                }
            }
        }
        std::cmp::Ordering::Less => {}
    }
}

fn symbol(status: CellStatus) -> &'static str {
    match status {
        CellStatus::Pass => "pass",
        CellStatus::Fail => "FAIL",
        CellStatus::ExpectedDifference => "differs",
        CellStatus::NotApplicable => "n/a",
        CellStatus::NotRun => "-",
    }
}

/// Footnote numbers for cells with notes worth reading (differences and failures).
fn footnotes(m: &Matrix) -> Vec<((String, String), usize)> {
    let mut out = Vec::new();
    for (s, _) in &m.statements {
        for (p, _) in &m.producers {
            if let Some(cell) = m.cell(s, p) {
                if matches!(cell.status, CellStatus::Fail | CellStatus::ExpectedDifference | CellStatus::NotApplicable)
                {
                    out.push(((s.clone(), p.clone()), out.len() + 1));
                }
            }
        }
    }
    out
}

fn note_text(m: &Matrix, key: &(String, String)) -> String {
    let cell = &m.cells[key];
    format!("statement {} × {}: {}", key.0, key.1, cell.notes.join("; "))
}

/// The matrix for a terminal: statements down, producers across.
pub fn render_text(m: &Matrix) -> String {
    let notes = footnotes(m);
    let label = |s: &str, p: &str| -> String {
        match m.cell(s, p) {
            None => "".to_string(),
            Some(cell) => {
                let n = notes.iter().find(|(k, _)| k.0 == s && k.1 == p).map(|(_, n)| format!(" [{n}]"));
                format!("{}{}", symbol(cell.status), n.unwrap_or_default())
            }
        }
    };
    let first_width = m.statements.iter().map(|(s, _)| s.len()).max().unwrap_or(0).max("statement".len());
    let widths: Vec<usize> = m
        .producers
        .iter()
        .map(|(p, _)| m.statements.iter().map(|(s, _)| label(s, p).len()).max().unwrap_or(0).max(p.len()))
        .collect();
    let mut out = format!("contract {}\n", m.contract);
    let _ = write!(out, "{:first_width$}", "statement");
    for ((p, _), w) in m.producers.iter().zip(&widths) {
        let _ = write!(out, "  {p:w$}");
    }
    out.push('\n');
    for (s, _) in &m.statements {
        let _ = write!(out, "{s:first_width$}");
        for ((p, _), w) in m.producers.iter().zip(&widths) {
            let _ = write!(out, "  {:w$}", label(s, p));
        }
        out.push('\n');
    }
    for (key, n) in &notes {
        let _ = writeln!(out, "[{n}] {}", note_text(m, key));
    }
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The matrix as a Markdown table with footnotes, to paste into issues and docs.
pub fn render_markdown(m: &Matrix) -> String {
    let notes = footnotes(m);
    let mut out = format!("### Contract `{}`\n\n| statement |", m.contract);
    for (p, title) in &m.producers {
        match title {
            Some(t) => {
                let _ = write!(out, " {} |", md_escape(t));
            }
            None => {
                let _ = write!(out, " {p} |");
            }
        }
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(m.producers.len()));
    out.push('\n');
    for (s, title) in &m.statements {
        let _ = write!(out, "| {s}{} |", title.as_deref().map(|t| format!(" {}", md_escape(t))).unwrap_or_default());
        for (p, _) in &m.producers {
            let text = match m.cell(s, p) {
                None => String::new(),
                Some(cell) => {
                    let mark = match cell.status {
                        CellStatus::Pass => "✅ pass",
                        CellStatus::Fail => "❌ FAIL",
                        CellStatus::ExpectedDifference => "⚠️ differs",
                        CellStatus::NotApplicable => "n/a",
                        CellStatus::NotRun => "not run",
                    };
                    match notes.iter().find(|(k, _)| k.0 == *s && k.1 == *p) {
                        Some((_, n)) => format!("{mark} [{n}]"),
                        None => mark.to_string(),
                    }
                }
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    if !notes.is_empty() {
        out.push('\n');
        for (key, n) in &notes {
            let _ = writeln!(out, "{n}. {}", md_escape(&note_text(m, key)));
        }
    }
    out
}
