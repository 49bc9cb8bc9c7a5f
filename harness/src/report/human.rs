//! `--format human`, the default: each run as it finishes, in plan order, each probe
//! and counter with its verdict, and a failing verdict with the file position, what was
//! expected, what happened and the path; at the end the contract matrices, a recap of
//! every failure and error, and the totals. `--quiet` leaves out passing and ignored
//! runs and the matrices. Colour comes from a [`Palette`] while the text is written.

use std::fmt::Write;

use super::matrix::{self, Entry};
use super::{Options, Record, ReportError, Reporter};
use crate::backend::counters::LookupError;
use crate::run::{CounterReport, ProbeReport, ScenarioReport, Status};
use crate::scenario::Scenario;
use crate::traffic::probe::OutcomeKind;

/// How verdict words are shown: plain, or coloured for a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Palette {
    colour: bool,
}

impl Palette {
    pub const PLAIN: Palette = Palette { colour: false };
    pub const COLOUR: Palette = Palette { colour: true };

    fn paint(self, word: &str, style: console::Style) -> String {
        if self.colour {
            style.force_styling(true).apply_to(word).to_string()
        } else {
            word.to_string()
        }
    }

    pub fn pass(self, word: &str) -> String {
        self.paint(word, console::Style::new().green())
    }

    pub fn fail(self, word: &str) -> String {
        self.paint(word, console::Style::new().red().bold())
    }

    pub fn ignored(self, word: &str) -> String {
        self.paint(word, console::Style::new().yellow())
    }
}

/// The terminal report.
pub struct Human {
    palette: Palette,
    quiet: bool,
    tables: bool,
    /// One line per failed or errored run, for the recap.
    recap: Vec<String>,
}

impl Human {
    pub fn new(options: &Options) -> Human {
        Human { palette: options.palette, quiet: options.quiet, tables: options.tables, recap: Vec::new() }
    }
}

impl Reporter for Human {
    fn entry(&mut self, scn: &Scenario, entry: &Entry) -> String {
        match entry {
            Entry::Ignored { .. } if self.quiet => String::new(),
            Entry::Ignored { backend, reason } => {
                format!("{} {} [{backend}]: {reason}\n", self.palette.ignored("IGNORED"), scn.name)
            }
            Entry::Ran(rep) => {
                if rep.status != Status::Passed {
                    let word = if rep.status == Status::Failed { "FAIL " } else { "ERROR" };
                    let why = super::first_failure(scn, rep);
                    self.recap.push(format!("  {} {} [{}]: {why}", self.palette.fail(word), scn.name, rep.backend));
                }
                if self.quiet && rep.status == Status::Passed {
                    return String::new();
                }
                let mut text = render(scn, rep, self.palette);
                if self.tables {
                    if let Some(t) = super::connectivity::table(scn, rep) {
                        text.push_str(&t);
                    }
                }
                text
            }
        }
    }

    fn finish(&mut self, record: &Record<'_>) -> Result<String, ReportError> {
        let mut out = String::new();
        let invalid: Vec<_> = record.invalid.iter().flat_map(|e| &e.diagnostics).collect();
        for d in &invalid {
            self.recap.push(format!("  {} {d}", self.palette.fail("ERROR")));
        }
        if !self.quiet {
            for m in matrix::build(record.entries) {
                let _ = writeln!(out, "\n{}", matrix::render_text(&m));
            }
        }
        if !self.recap.is_empty() {
            let _ = writeln!(out, "\nfailures and errors ({}):", self.recap.len());
            for line in &self.recap {
                let _ = writeln!(out, "{line}");
            }
        }
        let unloaded = match record.invalid.len() {
            0 => String::new(),
            1 => ", 1 scenario file did not load".to_string(),
            n => format!(", {n} scenario files did not load"),
        };
        let _ = writeln!(out, "\n{}{unloaded} in {:.2} s", record.summary, record.elapsed.as_secs_f64());
        Ok(out)
    }
}

/// The report of one scenario run, as plain lines (evidence folders, JUnit, mutate).
pub fn scenario(scn: &Scenario, rep: &ScenarioReport) -> String {
    render(scn, rep, Palette::PLAIN)
}

/// The report of one scenario run, as lines for a terminal, coloured by `palette`.
pub fn render(scn: &Scenario, rep: &ScenarioReport, palette: Palette) -> String {
    let mut out = String::new();
    let head = match &rep.status {
        Status::Passed => palette.pass("PASS "),
        Status::Failed => palette.fail("FAIL "),
        Status::Error(_) => palette.fail("ERROR"),
    };
    let _ = writeln!(
        out,
        "{head} {} [{}] ({} probes, {} counters, {} ms)",
        rep.name,
        rep.backend,
        scn.probes.len(),
        scn.counters.len(),
        rep.elapsed.as_millis()
    );
    if let Status::Error(why) = &rep.status {
        for line in why.to_string().lines() {
            let _ = writeln!(out, "      {line}");
        }
    }
    producer_log(scn, rep, &mut out);
    for problem in &rep.teardown_problems {
        let _ = writeln!(out, "  warning: teardown: {problem}");
    }
    for p in &rep.probes {
        probe(scn, p, palette, &mut out);
    }
    for c in &rep.counters {
        counter(scn, c, palette, &mut out);
    }
    out
}

/// A live producer's words are evidence whether its rules made the scenario fail or
/// kept it from running.
fn producer_log(scn: &Scenario, rep: &ScenarioReport, out: &mut String) {
    let live = scn.rules.live.is_some();
    let shown = matches!(rep.status, Status::Error(_)) || (live && rep.status == Status::Failed);
    if shown && !rep.producer_log.entries.is_empty() {
        let _ = writeln!(out, "      what the producer ran:");
        for line in rep.producer_log.to_string().lines() {
            // No control characters from a program reach the terminal.
            let line: String = line
                .chars()
                .map(|c| if c.is_control() && c != '\t' { char::REPLACEMENT_CHARACTER } else { c })
                .collect();
            let _ = writeln!(out, "        {line}");
        }
    }
}

/// One probe's line, and for a failing one where it is written, its problems, the
/// deciding rule and the path it took.
fn probe(scn: &Scenario, p: &ProbeReport, palette: Palette, out: &mut String) {
    let probe = &scn.probes[p.probe];
    let mark = if p.verdict.pass() { palette.pass("ok  ") } else { palette.fail("FAIL") };
    let got = match (&p.outcome.delivered_to, p.outcome.kind) {
        (Some(node), OutcomeKind::Dropped) => {
            format!("dropped on the way back (the request reached {node}; {})", p.outcome.detail)
        }
        (Some(node), OutcomeKind::Refused) => {
            format!("refused ({}; the request reached {node})", p.outcome.detail)
        }
        (_, kind) => format!("{kind} ({})", p.outcome.detail),
    };
    let retried = if p.outcome.retried { ", sent twice (the first met only silence)" } else { "" };
    let _ = writeln!(
        out,
        "  {mark} {}: expected {}, got {got}, {} ms{retried}",
        probe.name,
        probe.expect,
        p.outcome.elapsed.as_millis()
    );
    if p.verdict.pass() {
        return;
    }
    let _ = writeln!(out, "       at {}:{}:{}", scn.path.display(), probe.location.line, probe.location.column);
    for problem in &p.verdict.problems {
        let _ = writeln!(out, "       {problem}");
    }
    if let Some(rule) = &p.deciding {
        let _ = writeln!(out, "       decided by {rule}");
    }
    match &p.path {
        Some(steps) if steps.is_empty() => {
            let _ = writeln!(out, "       path: no rule counter moved (nothing in the rule set saw it)");
        }
        Some(steps) => {
            let _ = writeln!(out, "       path (rules whose counters this probe moved):");
            for step in steps {
                let _ = writeln!(out, "         {step}");
            }
        }
        None => {}
    }
}

/// One counter's line, and for a failing one where it is written and its problems.
fn counter(scn: &Scenario, c: &CounterReport, palette: Palette, out: &mut String) {
    let exp = &scn.counters[c.counter];
    let mark = if c.verdict.pass() { palette.pass("ok  ") } else { palette.fail("FAIL") };
    let table = match &exp.family {
        Some(f) => format!("{f} {}", exp.table),
        None => exp.table.clone(),
    };
    let counted = match &c.delta {
        Ok(d) => format!("{} packets, {} bytes", d.packets, d.bytes),
        Err(LookupError::NoCounter { .. }) => "no counter on this rule".to_string(),
        Err(LookupError::Ambiguous { .. } | LookupError::AmbiguousFamily { .. }) => "ambiguous".to_string(),
        Err(_) => "not found".to_string(),
    };
    let _ = writeln!(out, "  {mark} counter {table} {} {}: {counted}", exp.chain, exp.rule);
    if !c.verdict.pass() {
        let _ = writeln!(out, "       at {}:{}:{}", scn.path.display(), exp.location.line, exp.location.column);
        for problem in &c.verdict.problems {
            for line in problem.lines() {
                let _ = writeln!(out, "       {line}");
            }
        }
    }
}
