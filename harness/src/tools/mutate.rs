//! Mutation testing of a rule set: every rule of a rule file deleted in turn, every
//! verdict and base chain policy flipped, and each such mutation run against the
//! scenarios that load the file. A mutation that some scenario notices is *killed*; one
//! that no scenario notices *survived*: the rule set behaves differently and nothing in
//! the suite says so. The share of mutations killed measures how much of a rule set the
//! suite pins down.
//!
//! What is mutated, and how, is told in [`crate::backend::mutation`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;

pub use crate::backend::mutation::{mutations, Mutation, MutationKind};
use crate::report::first_failure;
use crate::run::{self, RunError, ScenarioReport, Status};
use crate::scenario::{Backend, Scenario};

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
