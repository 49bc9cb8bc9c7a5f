//! The CI examples in ci/ as tests: each workflow matches its CI system's schema
//! (check-jsonschema's copies of the GitHub workflow and GitLab CI schemas), and
//! each keeps the settings without which a CI run could fail at its first step or
//! pass with nothing run.

use std::path::PathBuf;
use std::process::Command;

use libtest_mimic::{Completion, Failed, Trial};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const GITHUB: &str = "ci/github/netconform.yml";
const GITLAB: &str = "ci/gitlab/netconform.gitlab-ci.yml";

/// check-jsonschema as ci/install-deps installs it, or from PATH.
fn check_jsonschema() -> Option<PathBuf> {
    std::env::var_os("NETCONFORM_CHECK_JSONSCHEMA")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| harness::lab::sandbox::which("check-jsonschema"))
}

pub fn trials() -> Vec<Trial> {
    let schema = |name: &str, file: &'static str, schema: &'static str| {
        let ignored = check_jsonschema().is_none();
        let name = format!("ci::{name}");
        if ignored {
            crate::note_ignored(&name, "check-jsonschema is not installed; run ci/install-deps");
        }
        Trial::ignorable_test(name, move || {
            let Some(tool) = check_jsonschema() else {
                return Ok(Completion::ignored_with("check-jsonschema is not installed; run ci/install-deps"));
            };
            let out = Command::new(tool).arg("--builtin-schema").arg(schema).arg(repo().join(file)).output()?;
            if !out.status.success() {
                return Err(format!(
                    "{file} does not match {schema}:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            Ok(Completion::Completed)
        })
        .with_kind("ci")
        .with_ignored_flag(ignored)
    };
    vec![
        schema("github_workflow_matches_the_schema", GITHUB, "vendor.github-workflows"),
        schema("gitlab_ci_matches_the_schema", GITLAB, "vendor.gitlab-ci"),
        Trial::test("ci::github_workflow_keeps_cargo_on_path_loads_br_netfilter_and_fails_on_ignored", github_settings)
            .with_kind("ci"),
        Trial::test("ci::gitlab_ci_checks_its_privileges_and_fails_on_ignored", gitlab_settings).with_kind("ci"),
    ]
}

fn read(file: &str) -> Result<String, Failed> {
    std::fs::read_to_string(repo().join(file)).map_err(|e| format!("{file}: {e}").into())
}

/// Every command line of the file's `run:` and `script:` entries, continuation lines
/// joined.
fn commands(text: &str) -> Result<Vec<String>, Failed> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text)?;
    let mut found = Vec::new();
    fn walk(v: &serde_yaml::Value, found: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m {
                    let key = k.as_str().unwrap_or("");
                    match (key, v) {
                        ("run", serde_yaml::Value::String(s)) => found.push(s.clone()),
                        ("script" | "before_script", serde_yaml::Value::Sequence(items)) => {
                            found.extend(items.iter().filter_map(|i| i.as_str().map(str::to_string)))
                        }
                        _ => walk(v, found),
                    }
                }
            }
            serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| walk(i, found)),
            _ => {}
        }
    }
    walk(&doc, &mut found);
    Ok(found)
}

fn github_settings() -> Result<(), Failed> {
    let commands = commands(&read(GITHUB)?)?;
    let mut problems = Vec::new();
    for c in &commands {
        let needs_cargo = c.contains("ci/install-deps") || c.contains("ci/test");
        if c.starts_with("sudo") && needs_cargo && !c.contains("env \"PATH=$PATH\"") {
            problems.push(format!("`{c}`: sudo resets PATH to secure_path, so cargo is not found; pass PATH with env"));
        }
    }
    for (what, needle) in
        [("loads br_netfilter", "modprobe br_netfilter"), ("fails when scenarios are ignored", "--fail-on-ignored")]
    {
        if !commands.iter().any(|c| c.contains(needle)) {
            problems.push(format!("no step {what} (`{needle}`)"));
        }
    }
    let runs_suite = commands.iter().filter(|c| c.contains("netconform run")).count();
    let fails_on_ignored =
        commands.iter().filter(|c| c.contains("netconform run") && c.contains("--fail-on-ignored")).count();
    if runs_suite != fails_on_ignored {
        problems.push(format!("{} of {runs_suite} suite runs lack --fail-on-ignored", runs_suite - fails_on_ignored));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{GITHUB}:\n  {}", problems.join("\n  ")).into())
    }
}

fn gitlab_settings() -> Result<(), Failed> {
    let text = read(GITLAB)?;
    let commands = commands(&text)?;
    let mut problems = Vec::new();
    if text.contains("DOCKER_PRIVILEGED") {
        problems.push("DOCKER_PRIVILEGED is no GitLab setting: privilege is the runner's (config.toml)".to_string());
    }
    for (what, needle) in [
        ("checks that the job may make namespaces", "unshare --net true"),
        ("checks for br_netfilter", "/proc/sys/net/bridge"),
        ("fails when scenarios are ignored", "--fail-on-ignored"),
    ] {
        if !commands.iter().any(|c| c.contains(needle)) {
            problems.push(format!("no step {what} (`{needle}`)"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{GITLAB}:\n  {}", problems.join("\n  ")).into())
    }
}
