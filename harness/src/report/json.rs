//! `--format json`: the whole run as one JSON document. The schema is versioned by
//! its `schema` field; fields are only ever added within a version. See the README's
//! "Machine-readable output" for every field.

use serde_json::{json, Value};

use crate::report::matrix::{self, CellStatus, Entry};
use crate::run::Status;
use crate::scenario::{Count, Proto, Scenario, SourceSeen};

pub const SCHEMA: &str = "netconform-report/2";

fn proto(p: Proto) -> (&'static str, Option<u16>) {
    match p {
        Proto::Icmp => ("icmp", None),
        Proto::Tcp(port) => ("tcp", Some(port)),
        Proto::Udp(port) => ("udp", Some(port)),
    }
}

fn run(scn: &Scenario, entry: &Entry) -> Value {
    let mut v = json!({
        "scenario": scn.name,
        "file": scn.path.display().to_string(),
        "producer": scn.producer.as_ref().map(|p| &p.name),
        "contract": scn.contract.as_ref().map(|c| json!({"name": c.name, "statements": c.statements})),
    });
    match entry {
        Entry::Ignored { backend, reason } => {
            // The same fields as a run, so that a reader need not tell the two apart.
            v["backend"] = json!(backend.name());
            v["status"] = json!("ignored");
            v["reason"] = json!(reason);
            v["probes"] = json!([]);
            v["counters"] = json!([]);
        }
        Entry::Ran(rep) => {
            v["backend"] = json!(rep.backend.name());
            v["elapsed_ms"] = json!(rep.elapsed.as_millis() as u64);
            v["explained"] = json!(rep.explained);
            let (status, reason) = match &rep.status {
                Status::Passed => ("passed", None),
                Status::Failed => ("failed", None),
                Status::Error(why) => {
                    v["stage"] = json!(why.stage());
                    ("error", Some(why.to_string()))
                }
            };
            v["status"] = json!(status);
            v["reason"] = json!(reason);
            v["probes"] = rep
                .probes
                .iter()
                .map(|p| {
                    let probe = &scn.probes[p.probe];
                    let (name, port) = proto(probe.proto);
                    json!({
                        "name": probe.name,
                        "line": probe.location.line,
                        "column": probe.location.column,
                        "from": scn.node(probe.from).name,
                        "to": probe.to.to_string(),
                        "proto": name,
                        "port": port,
                        "expect": probe.expect.name(),
                        "served_by": probe.served_by.map(|id| &scn.node(id).name),
                        "source_seen": probe.source_seen.as_ref().map(|s| match s {
                            SourceSeen::Node(id) => scn.node(*id).name.clone(),
                            SourceSeen::Address(a) => a.to_string(),
                        }),
                        "difference": probe.difference,
                        "outcome": p.outcome.kind.name(),
                        "detail": p.outcome.detail,
                        "evidence": p.outcome.evidence.name(),
                        "retried": p.outcome.retried,
                        "answered_by": p.outcome.answered_by,
                        "seen_source": p.outcome.source_seen.map(|s| s.to_string()),
                        "delivered_to": p.outcome.delivered_to,
                        "elapsed_us": p.outcome.elapsed.as_micros() as u64,
                        "pass": p.verdict.pass(),
                        "problems": p.verdict.problems,
                        "deciding_rule": p.deciding,
                        "trace": p.trace,
                        "path": p.path.as_ref().map(|steps| steps.iter().map(|s| json!({
                            "chain": s.chain, "position": s.position, "rule": s.text, "packets": s.packets,
                        })).collect::<Vec<_>>()),
                    })
                })
                .collect();
            v["counters"] = rep
                .counters
                .iter()
                .map(|c| {
                    let exp = &scn.counters[c.counter];
                    json!({
                        "family": exp.family,
                        "table": exp.table,
                        "chain": exp.chain,
                        "rule": exp.rule.to_string(),
                        "line": exp.location.line,
                        "column": exp.location.column,
                        "expected_packets": match exp.packets {
                            Count::Exactly(n) => json!({"exactly": n}),
                            Count::AtLeast(n) => json!({"at_least": n}),
                        },
                        "packets": c.delta.as_ref().ok().map(|d| d.packets),
                        "bytes": c.delta.as_ref().ok().map(|d| d.bytes),
                        "pass": c.verdict.pass(),
                        "problems": c.verdict.problems,
                    })
                })
                .collect();
            v["teardown_problems"] = json!(rep.teardown_problems);
        }
    }
    v
}

fn cell_status(s: CellStatus) -> &'static str {
    match s {
        CellStatus::Pass => "pass",
        CellStatus::Fail => "fail",
        CellStatus::ExpectedDifference => "expected-difference",
        CellStatus::NotApplicable => "not-applicable",
        CellStatus::NotRun => "not-run",
    }
}

/// `--format json`.
pub struct Json;

impl super::Reporter for Json {
    fn finish(&mut self, record: &super::Record<'_>) -> Result<String, super::ReportError> {
        let mut doc = document(record.entries, record.elapsed);
        doc["invalid"] = record
            .invalid
            .iter()
            .flat_map(|e| &e.diagnostics)
            .map(|d| {
                json!({
                    "file": d.path.display().to_string(),
                    "line": d.location.map(|l| l.line),
                    "column": d.location.map(|l| l.column),
                    "key": d.key,
                    "message": d.message,
                })
            })
            .collect();
        Ok(format!("{doc}\n"))
    }
}

/// The document for a whole run.
pub fn document(entries: &[(&Scenario, Entry)], elapsed: std::time::Duration) -> Value {
    let mut summary = super::Summary::default();
    for (_, e) in entries {
        summary.add_entry(e);
    }
    let matrices: Vec<Value> = matrix::build(entries)
        .iter()
        .map(|m| {
            json!({
                "contract": m.contract,
                "producers": m.producers.iter().map(|(p, t)| json!({"name": p, "title": t})).collect::<Vec<_>>(),
                "statements": m.statements.iter().map(|(s, t)| json!({"statement": s, "title": t})).collect::<Vec<_>>(),
                "cells": m.cells.iter().map(|((s, p), c)| json!({
                    "statement": s, "producer": p, "status": cell_status(c.status), "notes": c.notes,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "schema": SCHEMA,
        "netconform": env!("CARGO_PKG_VERSION"),
        "elapsed_ms": elapsed.as_millis() as u64,
        "summary": {"passed": summary.passed, "failed": summary.failed, "ignored": summary.ignored},
        "runs": entries.iter().map(|(s, e)| run(s, e)).collect::<Vec<_>>(),
        "matrices": matrices,
    })
}
