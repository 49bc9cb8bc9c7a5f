//! `netconform diff`: the same probes against two rule files, and what behaves differently.

use std::path::Path;
use std::process::ExitCode;

use harness::run::{self, Status};
use harness::scenario::{self, Backend};

use super::{bad_input, runtime, with_rules};
use crate::exit::Exit;

pub fn main(path: &Path, old: &Path, new: &Path, only: Option<Backend>) -> ExitCode {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let scn = match scenario::load(path, &name) {
        Ok(s) => s,
        Err(e) => return bad_input(&e),
    };
    for file in [old, new] {
        if !file.is_file() {
            eprintln!("netconform: {}: no such rule file", file.display());
            return ExitCode::from(Exit::BadInput);
        }
    }
    let backend = only.unwrap_or(scn.rules.backends[0]);
    if backend.format() != scn.rules.backends[0].format() {
        eprintln!("netconform: {name} loads {} files; --backend {backend} loads another format", scn.rules.backends[0]);
        return ExitCode::from(Exit::BadInput);
    }
    if let Err(why) = run::requirements(&scn, backend) {
        eprintln!("netconform: cannot run: {why}");
        return ExitCode::from(Exit::BadInput);
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let (a, b) = (with_rules(&scn, old, "old"), with_rules(&scn, new, "new"));
    let (ra, rb) =
        runtime.block_on(async { tokio::join!(run::run_scenario(&a, backend), run::run_scenario(&b, backend)) });
    for (label, rep) in [("old", &ra), ("new", &rb)] {
        if let Status::Error(why) = &rep.status {
            eprintln!("netconform: the {label} rule set could not be run: {why}");
            return ExitCode::from(Exit::Failed);
        }
    }
    let mut differing = 0;
    for (pa, pb) in ra.probes.iter().zip(&rb.probes) {
        let probe = &scn.probes[pa.probe];
        let describe = |o: &harness::traffic::probe::Outcome| match &o.answered_by {
            Some(by) => {
                format!("{} by {by}{}", o.kind, o.source_seen.map(|s| format!(", saw {}", s.ip())).unwrap_or_default())
            }
            None => format!("{} ({})", o.kind, o.detail),
        };
        let (da, db) = (describe(&pa.outcome), describe(&pb.outcome));
        let same = pa.outcome.kind == pb.outcome.kind
            && pa.outcome.answered_by == pb.outcome.answered_by
            && pa.outcome.source_seen.map(|s| s.ip()) == pb.outcome.source_seen.map(|s| s.ip())
            && pa.outcome.delivered_to == pb.outcome.delivered_to;
        if same {
            println!("  same    {}: {da}", probe.name);
        } else {
            differing += 1;
            println!("  DIFFERS {}: old {da}; new {db}", probe.name);
            println!("          at {}:{}:{}", scn.path.display(), probe.location.line, probe.location.column);
        }
    }
    println!("\n{differing} of {} probes differ [{backend}]", scn.probes.len());
    if differing > 0 {
        ExitCode::from(Exit::Failed)
    } else {
        ExitCode::SUCCESS
    }
}
