//! `--matrix`: a scenario's probes as a connectivity table, source node down,
//! destination and port across, in the manner of Kubernetes network-policy truth
//! tables. A cell shows the outcome; where it differs from the expectation it shows
//! `expected>got` and a `*`.

use std::fmt::Write;

use crate::run::ScenarioReport;
use crate::scenario::{destination_label, Expect, Scenario};
use crate::traffic::probe::OutcomeKind;

fn expect_mark(e: Expect) -> &'static str {
    match e {
        Expect::Reached => "ok",
        Expect::Refused => "rej",
        Expect::Dropped => "drop",
    }
}

fn outcome_mark(k: OutcomeKind) -> &'static str {
    match k {
        OutcomeKind::Reached => "ok",
        OutcomeKind::Refused => "rej",
        OutcomeKind::Dropped => "drop",
        OutcomeKind::Failed => "fail",
    }
}

/// The table for one run, or None when the scenario has no probes.
pub fn table(scn: &Scenario, rep: &ScenarioReport) -> Option<String> {
    if rep.probes.is_empty() {
        return None;
    }
    let column = |i: usize| {
        let p = &scn.probes[i];
        destination_label(&p.to_text, p.to, p.proto)
    };
    let mut rows: Vec<String> = Vec::new();
    let mut cols: Vec<String> = Vec::new();
    for p in &rep.probes {
        let from = scn.node(scn.probes[p.probe].from).name.clone();
        if !rows.contains(&from) {
            rows.push(from);
        }
        let col = column(p.probe);
        if !cols.contains(&col) {
            cols.push(col);
        }
    }
    let mut cells = vec![vec![String::new(); cols.len()]; rows.len()];
    for p in &rep.probes {
        let probe = &scn.probes[p.probe];
        let r = rows.iter().position(|x| *x == scn.node(probe.from).name).expect("row");
        let c = cols.iter().position(|x| *x == column(p.probe)).expect("column");
        let cell = if p.verdict.pass() {
            outcome_mark(p.outcome.kind).to_string()
        } else {
            format!("{}>{}*", expect_mark(probe.expect), outcome_mark(p.outcome.kind))
        };
        cells[r][c] = cell;
    }
    let first = rows.iter().map(String::len).max().unwrap_or(0).max("from \\ to".len());
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(c, name)| cells.iter().map(|row| row[c].len()).max().unwrap_or(0).max(name.len()))
        .collect();
    let mut out = format!("{:first$}", "from \\ to");
    for (name, w) in cols.iter().zip(&widths) {
        let _ = write!(out, "  {name:w$}");
    }
    out.push('\n');
    for (r, row) in rows.iter().enumerate() {
        let _ = write!(out, "{row:first$}");
        for (c, w) in widths.iter().enumerate() {
            let _ = write!(out, "  {:w$}", cells[r][c]);
        }
        out.push('\n');
    }
    out.push_str("ok reached, rej refused, drop dropped; expected>got* where they differ\n");
    Some(out)
}
