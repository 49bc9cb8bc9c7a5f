//! `--format tap`: TAP version 14, one test point per scenario and back end.

use std::fmt::Write;

use crate::report::matrix::Entry;
use crate::run::Status;
use crate::scenario::{InputError, Scenario};

/// A TAP description may not contain `#` unescaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('#', "\\#")
}

/// `--format tap`.
pub struct Tap;

impl super::Reporter for Tap {
    fn finish(&mut self, record: &super::Record<'_>) -> Result<String, super::ReportError> {
        Ok(report(record.entries, record.invalid))
    }
}

/// One test point per run, then one per problem of a file that did not load.
pub fn report(entries: &[(&Scenario, Entry)], invalid: &[InputError]) -> String {
    let invalid: Vec<_> = invalid.iter().flat_map(|e| &e.diagnostics).collect();
    let mut out = format!("TAP version 14\n1..{}\n", entries.len() + invalid.len());
    runs(entries, &mut out);
    for (i, d) in invalid.iter().enumerate() {
        let n = entries.len() + i + 1;
        let _ = writeln!(
            out,
            "not ok {n} - {}\n  ---\n  message: {:?}\n  ...",
            escape(&d.path.display().to_string()),
            d.to_string()
        );
    }
    out
}

fn runs(entries: &[(&Scenario, Entry)], out: &mut String) {
    for (i, (scn, entry)) in entries.iter().enumerate() {
        let n = i + 1;
        match entry {
            Entry::Ignored { backend, reason } => {
                let name = escape(&format!("{} [{backend}]", scn.name));
                let _ = writeln!(out, "ok {n} - {name} # SKIP {}", escape(&reason.replace('\n', " ")));
            }
            Entry::Ran(rep) => {
                let name = escape(&format!("{} [{}]", scn.name, rep.backend));
                if rep.status == Status::Passed {
                    let _ = writeln!(out, "ok {n} - {name}");
                    continue;
                }
                let _ = writeln!(out, "not ok {n} - {name}");
                out.push_str("  ---\n");
                let _ = writeln!(out, "  file: {:?}", scn.path.display().to_string());
                match &rep.status {
                    Status::Error(why) => {
                        let _ = writeln!(out, "  stage: {}\n  message: {:?}", why.stage(), why.to_string());
                    }
                    _ => {
                        out.push_str("  failures:\n");
                        for p in rep.probes.iter().filter(|p| !p.verdict.pass()) {
                            let probe = &scn.probes[p.probe];
                            let _ = writeln!(
                                out,
                                "    - probe: {:?}\n      line: {}\n      message: {:?}",
                                probe.name,
                                probe.location.line,
                                p.verdict.problems.join("; ")
                            );
                        }
                        for c in rep.counters.iter().filter(|c| !c.verdict.pass()) {
                            let exp = &scn.counters[c.counter];
                            let _ = writeln!(
                                out,
                                "    - counter: {:?}\n      line: {}\n      message: {:?}",
                                format!("{} {} {}", exp.table, exp.chain, exp.rule),
                                exp.location.line,
                                c.verdict.problems.join("; ")
                            );
                        }
                    }
                }
                out.push_str("  ...\n");
            }
        }
    }
}
