//! `--junit FILE`: one test case per scenario and back end, as CI systems read JUnit
//! XML. Failures carry the failing probes; ignored runs are skipped with the reason;
//! a scenario file that did not load is one error case named by its path.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::report::matrix::Entry;
use crate::run::Status;
use crate::scenario::{InputError, Scenario};

/// `seed/isolation.yaml` → `seed`: the folder groups test cases in CI views.
fn classname(scn: &Scenario) -> String {
    match scn.name.rsplit_once('/') {
        Some((folder, _)) => folder.replace('/', "."),
        None => "scenarios".to_string(),
    }
}

/// `--junit FILE`.
pub struct Junit;

impl super::Reporter for Junit {
    fn finish(&mut self, record: &super::Record<'_>) -> Result<String, super::ReportError> {
        report(record.entries, record.invalid, record.elapsed).map_err(super::ReportError::Junit)
    }
}

pub fn report(
    entries: &[(&Scenario, Entry)],
    invalid: &[InputError],
    elapsed: std::time::Duration,
) -> Result<String, String> {
    let mut suite = TestSuite::new("netconform");
    for (scn, entry) in entries {
        let mut case = match entry {
            Entry::Ignored { backend, reason } => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(reason.as_str());
                TestCase::new(format!("{} [{backend}]", scn.name), status)
            }
            Entry::Ran(rep) => {
                let name = format!("{} [{}]", scn.name, rep.backend);
                let status = match &rep.status {
                    Status::Passed => TestCaseStatus::success(),
                    Status::Error(why) => {
                        let why = why.to_string();
                        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                        s.set_message(why.lines().next().unwrap_or_default());
                        s.set_type("error");
                        s.set_description(why);
                        s
                    }
                    Status::Failed => {
                        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        let first = rep
                            .probes
                            .iter()
                            .find(|p| !p.verdict.pass())
                            .map(|p| format!("{}: {}", scn.probes[p.probe].name, p.verdict.problems[0]))
                            .or_else(|| {
                                rep.counters.iter().find(|c| !c.verdict.pass()).map(|c| {
                                    let problem = c.verdict.problems[0].lines().next().unwrap_or_default();
                                    format!("counter {}: {problem}", scn.counters[c.counter].chain)
                                })
                            })
                            .unwrap_or_default();
                        s.set_message(first);
                        s.set_type("failure");
                        s.set_description(super::scenario(scn, rep));
                        s
                    }
                };
                let mut case = TestCase::new(name, status);
                case.set_time(rep.elapsed);
                case
            }
        };
        case.set_classname(classname(scn));
        suite.add_test_case(case);
    }
    for error in invalid {
        suite.add_test_case(did_not_load(error));
    }
    suite.set_time(elapsed);
    let mut report = Report::new("netconform");
    report.set_time(elapsed);
    report.add_test_suite(suite);
    report.to_string().map_err(|e| e.to_string())
}

/// A file that did not load: one error case, named by its path, whose message is its
/// first problem and whose description holds them all.
fn did_not_load(error: &InputError) -> TestCase {
    let first = error.diagnostics.first();
    let path = first.map(|d| d.path.display().to_string()).unwrap_or_default();
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_type("invalid");
    status.set_message(first.map(|d| d.to_string()).unwrap_or_default());
    status.set_description(error.to_string());
    let mut case = TestCase::new(path, status);
    case.set_classname("invalid");
    case
}
