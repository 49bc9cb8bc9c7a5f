//! Contracts: a scenario with `producers: FILE` runs once per producer of that file.
//! This module reads the producers file, finds the `producers` line before the rest of
//! the scenario is YAML, and checks the keys that only a contract scenario has
//! (`contract`, `not_applicable`, `extra_rules`, producer names under `only` and
//! `differs`).

use std::fs;
use std::path::Path;

use super::check::rules::rules;
use super::check::Checker;
use super::diagnostic::{names, one_line, InputError};
use super::file::{ContractFile, ExtraRuleFile, ProducersFile, ScenarioFile};
use super::load::read_text;
use super::model::*;
use super::vars::substitute;
use super::yaml::{self, item, join};

/// A top-level `producers: FILE` line: its line number and the file. Found in the text
/// because the rest of the file may not be YAML before its variables are put in.
pub(crate) fn producers_key(text: &str) -> Option<(usize, String)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let value = line.strip_prefix("producers:")?.trim();
        let value = value.split(" #").next().unwrap_or(value).trim().trim_matches(['"', '\'']);
        Some((i + 1, value.to_string()))
    })
}

/// One producer of a producers file, checked.
#[derive(Debug)]
pub(crate) struct ProducerDef {
    pub(crate) name: String,
    pub(crate) title: Option<String>,
    pub(crate) rules: RuleSet,
    pub(crate) format: Option<RuleFormat>,
    /// The file's `vars`, overridden by the producer's own.
    pub(crate) vars: indexmap::IndexMap<String, String>,
}

pub(crate) fn load_producers(path: &Path) -> Result<Vec<ProducerDef>, InputError> {
    let text = read_text(path, "producers file")?;
    let (file, positions) = yaml::read::<ProducersFile>(path, &text)?;
    let mut c = Checker { path, pos: &positions, diagnostics: Vec::new(), forward_targets: Vec::new() };
    let folder = path.parent().unwrap_or(Path::new(""));
    let defaults: indexmap::IndexMap<String, String> =
        file.vars.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    // Values go into the scenario's text as they are: a line break would move every
    // later line, and with it every position reported.
    let mut single_line = |key: String, value: &str| {
        if value.contains(['\n', '\r']) {
            c.value(&key, "expected a value of one line (it is put into the scenario's text), found a line break");
        }
    };
    for (k, v) in file.vars.iter().flatten() {
        single_line(join("vars", k), &v.0);
    }
    for (name, p) in file.producers.iter().flatten() {
        for (k, v) in p.as_ref().and_then(|p| p.vars.as_ref()).into_iter().flatten() {
            single_line(join(&join(&join("producers", name), "vars"), k), &v.0);
        }
    }
    let mut out = Vec::new();
    match &file.producers {
        None => c.missing("producers", "a mapping of producer names to their rules and variables"),
        Some(map) if map.is_empty() => c.value("producers", "expected at least one producer, found none"),
        Some(map) => {
            for (name, p) in map {
                let key = join("producers", name);
                if name.is_empty() || name.contains(char::is_whitespace) || name.contains(['[', ']', '@']) {
                    c.key(&key, format!("a producer name has no white space, '[', ']' or '@'; found `{name}`"));
                }
                let default = super::file::ProducerFile::default();
                let p = p.as_ref().unwrap_or(&default);
                let (rules, format) = rules(&mut c, &join(&key, "rules"), folder, p.rules.as_ref());
                let mut vars = defaults.clone();
                vars.extend(p.vars.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
                out.push(ProducerDef { name: name.clone(), title: p.title.clone(), rules, format, vars });
            }
        }
    }
    if c.diagnostics.is_empty() {
        Ok(out)
    } else {
        Err(c.diagnostics.into())
    }
}

/// The producer a contract scenario is being expanded for.
pub(crate) struct ProducerCtx<'p> {
    pub(crate) producer: &'p ProducerDef,
    /// Every producer of the producers file, for checking names.
    pub(crate) all: &'p [ProducerDef],
    /// Where the producers file is, for messages.
    pub(crate) file: &'p Path,
}

impl ProducerCtx<'_> {
    /// Checks that `name`, written at `key`, names a producer.
    pub(crate) fn check_name(&self, c: &mut Checker, key: &str, name: &str) {
        if !self.all.iter().any(|p| p.name == name) {
            c.key(
                key,
                format!(
                    "no producer named `{name}` in {}; producers: {}",
                    self.file.display(),
                    names(self.all.iter().map(|p| p.name.as_str()))
                ),
            );
        }
    }
}

/// Rule files the scenario adds after the producer's, with the producer's variables
/// put in.
pub(crate) fn extra_rules(
    c: &mut Checker,
    path: &Path,
    list: &[ExtraRuleFile],
    ctx: &ProducerCtx,
    scenario: &mut Scenario,
) {
    let folder = path.parent().unwrap_or(Path::new(""));
    for (i, entry) in list.iter().enumerate() {
        let key = item("extra_rules", i);
        let (file, only) = match entry {
            ExtraRuleFile::Path(f) => (f, None),
            ExtraRuleFile::Entry(e) => (&e.file, e.only.as_ref()),
        };
        for (j, name) in only.into_iter().flatten().enumerate() {
            ctx.check_name(c, &item(&join(&key, "only"), j), name);
        }
        if only.is_some_and(|o| !o.contains(&ctx.producer.name)) {
            continue;
        }
        let Some(resolved) = c.existing_file(&key, folder, file, "rule file") else { continue };
        let format =
            if resolved.extension().is_some_and(|e| e == "nft") { RuleFormat::Nft } else { RuleFormat::Iptables };
        if Some(format) != ctx.producer.format {
            if scenario.not_applicable.is_none() {
                c.value(
                    &key,
                    format!(
                        "`{file}` is an {} file, but producer `{}` loads {} rules; limit it with \
                         `only:` or mark the producer `not_applicable`",
                        if format == RuleFormat::Nft { "nft" } else { "iptables-save" },
                        ctx.producer.name,
                        if format == RuleFormat::Nft { "iptables-save" } else { "nft" },
                    ),
                );
            }
            continue;
        }
        let text = match fs::read_to_string(&resolved) {
            Ok(t) => t,
            Err(e) => {
                c.value(&key, format!("cannot read `{}`: {e}", resolved.display()));
                continue;
            }
        };
        match substitute(&resolved, &text, ctx.producer) {
            Ok(text) => scenario.rules.files.push(RuleFile { path: resolved, format, text: Some(text) }),
            Err(e) => c.diagnostics.extend(e.diagnostics),
        }
    }
}

pub(crate) fn contract(c: &mut Checker, f: &ContractFile) -> Option<Contract> {
    let name = match f.name.as_deref() {
        None | Some("") => {
            c.missing("contract.name", "the contract's name, e.g. docker-bridge");
            None
        }
        Some(n) => Some(n.to_string()),
    };
    let statements: Vec<String> = c
        .list("contract.statements", &f.statements, "a non-empty list of statement numbers")
        .iter()
        .map(|w| w.0.clone())
        .collect();
    Some(Contract { name: name?, statements, title: f.title.clone() })
}

/// The rules of a contract scenario for one producer: the producer's, then the
/// scenario's `extra_rules`; also the keys that say how this producer is judged.
pub(crate) fn producer_rules(
    c: &mut Checker,
    path: &Path,
    file: &ScenarioFile,
    ctx: &ProducerCtx,
    scenario: &mut Scenario,
) -> Option<RuleFormat> {
    if file.rules.is_some() {
        c.key(
            "rules",
            format!("expected no `rules`: a scenario with `producers` takes its rules from {}", ctx.file.display()),
        );
    }
    for (producer, reason) in file.not_applicable.iter().flatten() {
        ctx.check_name(c, &join("not_applicable", producer), producer);
        if producer == &ctx.producer.name {
            scenario.not_applicable = Some(one_line(reason));
        }
    }
    scenario.contract = file.contract.as_ref().and_then(|f| contract(c, f));
    scenario.producer = Some(Producer { name: ctx.producer.name.clone(), title: ctx.producer.title.clone() });
    scenario.rules = ctx.producer.rules.clone();
    extra_rules(c, path, file.extra_rules.as_deref().unwrap_or_default(), ctx, scenario);
    ctx.producer.format
}

/// In a scenario that is no contract, the keys only a contract scenario has.
pub(crate) fn refuse_contract_keys(c: &mut Checker, file: &ScenarioFile) {
    if file.producers.is_some() {
        c.key("producers", "write `producers: FILE` as a line of its own at the start of a line");
    }
    if file.extra_rules.is_some() {
        c.key(
            "extra_rules",
            "expected `extra_rules` only in a scenario with `producers`; list rule files under `rules.files`",
        );
    }
    if file.not_applicable.is_some() {
        c.key("not_applicable", "expected `not_applicable` only in a scenario with `producers`");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scenario::testing::*;

    use rstest::rstest;

    #[test]
    fn a_contract_expands_per_producer() {
        let (_dir, path) = contract_dir(CONTRACT, PRODUCERS);
        let all = load_file(&path, "c.yaml").unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["c.yaml @one", "c.yaml @two", "c.yaml @three"]);
        let (one, two, three) = (&all[0], &all[1], &all[2]);
        assert_eq!(one.host.bridges[0].name, "br0");
        assert_eq!(two.host.bridges[0].name, "br9");
        assert_eq!(one.producer.as_ref().unwrap().title.as_deref(), Some("first"));
        assert_eq!(one.contract.as_ref().unwrap().statements, ["7", "3"]);
        assert_eq!(one.probes[0].expect, Expect::Refused);
        assert_eq!(one.probes[0].difference, None);
        assert_eq!(two.probes[0].expect, Expect::Dropped);
        assert_eq!(two.probes[0].difference.as_deref(), Some("because"));
        assert_eq!(one.counters.len(), 1);
        assert_eq!(two.counters.len(), 0);
        assert_eq!(one.rules.files.len(), 1);
        assert_eq!(two.rules.files.len(), 2);
        assert_eq!(two.rules.files[1].text.as_deref(), Some("*filter\n-A INPUT -i br9 -j DROP\nCOMMIT\n"));
        assert_eq!(two.rules.backends, [Backend::IptablesNft, Backend::IptablesLegacy]);
        assert_eq!(three.not_applicable.as_deref(), Some("no such chain in nft"));
        assert_eq!(three.rules.backends, [Backend::Nft]);
        assert!(load(&path, "c.yaml").is_err(), "load() takes one scenario only");
    }

    #[rstest]
    #[case::unknown_variable(("${br}: {", "${nope}: {"), "", "no variable `nope` for producer `one`")]
    #[case::unknown_producer_in_differs(("two: { expect", "six: { expect"), "probes[0].differs.six", "no producer named `six`")]
    #[case::differs_without_why(("expect: dropped, why: because", "expect: dropped"), "probes[0].differs.two.why", "missing required key `why`")]
    #[case::unknown_in_not_applicable(("{ three:", "{ thre:"), "not_applicable.thre", "no producer named `thre`")]
    #[case::unknown_in_only(("only: [one]", "only: [uno]"), "counters[0].only[0]", "no producer named `uno`")]
    #[case::rules_in_a_contract(("host:\n", "rules: { backends: [nft], files: [x] }\nhost:\n"), "rules", "takes its rules from")]
    #[case::missing_contract_name(("{ name: c, statements", "{ statements"), "contract.name", "missing required key `name`")]
    #[case::extra_rules_wrong_format(("{ file: extra.rules, only: [two] }", "extra.rules"), "extra_rules[0]", "producer `three` loads nft rules")]
    fn contract_errors(#[case] edit: (&str, &str), #[case] key: &str, #[case] says: &str) {
        assert!(CONTRACT.contains(edit.0), "{edit:?}");
        let text = CONTRACT.replacen(edit.0, edit.1, 1);
        let text = if key == "extra_rules[0]" {
            text.replace("not_applicable: { three: \"no such chain in nft\" }\n", "")
        } else {
            text
        };
        let (_dir, path) = contract_dir(&text, PRODUCERS);
        let d = load_file(&path, "c.yaml").expect_err("an error").diagnostics;
        assert!(
            d.iter().any(|d| d.key.as_deref().unwrap_or("") == key && d.message.contains(says) && d.location.is_some()),
            "wanted {key}: {says}; got {d:#?}"
        );
    }

    #[test]
    fn producers_file_errors_point_into_it() {
        let producers = PRODUCERS.replacen("files: [two.rules]", "files: [missing.rules]", 1);
        let (_dir, path) = contract_dir(CONTRACT, &producers);
        let d = load_file(&path, "c.yaml").expect_err("an error").diagnostics;
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].path.ends_with("rules/producers.yaml"));
        assert_eq!(d[0].key.as_deref(), Some("producers.two.rules.files[0]"));
        assert!(d[0].message.contains("does not exist"));
    }
}
