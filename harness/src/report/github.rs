//! GitHub Actions annotations: when running there, every failing probe and counter
//! becomes an `::error` pointing at its line in the scenario file.

use crate::report::matrix::Entry;
use crate::run::Status;
use crate::scenario::Scenario;

/// Whether this process runs in a GitHub Actions job.
pub fn enabled() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Workflow commands take their data and properties escaped.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

fn annotation(file: &str, line: usize, col: usize, title: &str, message: &str) -> String {
    format!(
        "::error file={},line={line},col={col},title={}::{}",
        escape_property(file),
        escape_property(title),
        escape_data(message)
    )
}

/// Annotations for a GitHub Actions job, printed beside the chosen format.
pub struct Github;

impl super::Reporter for Github {
    fn finish(&mut self, record: &super::Record<'_>) -> Result<String, super::ReportError> {
        let mut out = String::new();
        for (scn, entry) in record.entries {
            for line in annotations(scn, entry) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        for d in record.invalid.iter().flat_map(|e| &e.diagnostics) {
            let (line, col) = d.location.map_or((1, 1), |l| (l.line, l.column));
            out.push_str(&annotation(&d.path.display().to_string(), line, col, "scenario file", &d.message));
            out.push('\n');
        }
        Ok(out)
    }
}

/// The annotation lines for one run.
pub fn annotations(scn: &Scenario, entry: &Entry) -> Vec<String> {
    let Entry::Ran(rep) = entry else { return Vec::new() };
    let file = scn.path.display().to_string();
    let title = format!("{} [{}]", scn.name, rep.backend);
    let mut out = Vec::new();
    if let Status::Error(why) = &rep.status {
        out.push(annotation(&file, 1, 1, &title, &why.to_string()));
    }
    for p in rep.probes.iter().filter(|p| !p.verdict.pass()) {
        let probe = &scn.probes[p.probe];
        let message = format!("{}: {}", probe.name, p.verdict.problems.join("\n"));
        out.push(annotation(&file, probe.location.line, probe.location.column, &title, &message));
    }
    for c in rep.counters.iter().filter(|c| !c.verdict.pass()) {
        let exp = &scn.counters[c.counter];
        let message = format!("counter {} {}: {}", exp.chain, exp.rule, c.verdict.problems.join("\n"));
        out.push(annotation(&file, exp.location.line, exp.location.column, &title, &message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_the_runner_expects() {
        let a = annotation("s.yaml", 3, 5, "a, b: c", "50% done\nnext");
        assert_eq!(a, "::error file=s.yaml,line=3,col=5,title=a%2C b%3A c::50%25 done%0Anext");
    }
}
