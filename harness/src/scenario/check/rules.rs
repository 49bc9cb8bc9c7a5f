//! The rule set: back ends, rule files and ipset files next to the scenario, or a live
//! program with the settings that program takes.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::Checker;
use crate::scenario::diagnostic::names;
use crate::scenario::file::{LiveFile, RulesFile};
use crate::scenario::model::*;
use crate::scenario::yaml::{item, join};

/// The rule set, and the rule format when the back ends agree on one.
/// `prefix` is the key path of the `rules` mapping; files are found relative to `folder`.
pub(crate) fn rules(
    c: &mut Checker,
    prefix: &str,
    folder: &Path,
    file: Option<&RulesFile>,
) -> (RuleSet, Option<RuleFormat>) {
    let Some(file) = file else {
        c.missing(prefix, "a mapping with `backends` and `files`");
        let set = RuleSet { backends: Vec::new(), files: Vec::new(), ipsets: Vec::new(), live: None };
        return (set, None);
    };

    let mut backends: Vec<Backend> = Vec::new();
    let list = c.list(
        &join(prefix, "backends"),
        &file.backends,
        "a non-empty list of back ends (iptables-nft, iptables-legacy, nft)",
    );
    let mut complete = true;
    for (i, b) in list.iter().enumerate() {
        let key = item(&join(prefix, "backends"), i);
        match crate::backend::by_name(b) {
            None => {
                complete = false;
                c.value(
                    &key,
                    format!(
                        "expected a back end (one of {}), found `{b}`",
                        names(crate::backend::ALL.iter().map(|b| b.name()))
                    ),
                );
            }
            Some(be) if backends.contains(&be) => {
                c.value(&key, format!("back end `{be}` is listed twice"));
            }
            Some(be) => backends.push(be),
        }
    }
    let format = match backends.first() {
        Some(first) if backends.iter().all(|b| b.format() == first.format()) => complete.then_some(first.format()),
        Some(_) => {
            c.value(
                &join(prefix, "backends"),
                "expected back ends that share one rule format, found nft (which loads nft \
                 scripts) together with iptables (which loads iptables-save files); split \
                 the scenario into one per format",
            );
            None
        }
        None => None,
    };

    let live = file.live.as_ref().and_then(|l| live(c, &join(prefix, "live"), l));
    let mut files = Vec::new();
    let list: &[String] = match (&file.files, &file.live) {
        (Some(_), Some(_)) => {
            c.key(&join(prefix, "live"), "expected either `files` or `live`: rules come from files or from a program");
            &[]
        }
        (None, Some(_)) => &[],
        _ => c.list(&join(prefix, "files"), &file.files, "a non-empty list of rule file paths (or `live`)"),
    };
    for (i, f) in list.iter().enumerate() {
        if let Some(path) = c.existing_file(&item(&join(prefix, "files"), i), folder, f, "rule file") {
            files.push(RuleFile { path, format: format.unwrap_or(RuleFormat::Iptables), text: None });
        }
    }
    if let Some(list) = &file.files6 {
        let key = join(prefix, "files6");
        if file.live.is_some() {
            c.key(&key, "expected either `files6` or `live`: rules come from files or from a program");
        } else if format == Some(RuleFormat::Nft) {
            c.key(
                &key,
                "expected no `files6` under the nft back end: an nft file holds ip6 and inet tables \
                 itself; put the IPv6 rules into it",
            );
        } else {
            for (i, f) in list.iter().enumerate() {
                if let Some(path) = c.existing_file(&item(&key, i), folder, f, "ip6tables-save file") {
                    files.push(RuleFile { path, format: RuleFormat::Ip6tables, text: None });
                }
            }
        }
    }
    let mut ipsets = Vec::new();
    for (i, f) in file.ipsets.iter().flatten().enumerate() {
        ipsets.extend(c.existing_file(&item(&join(prefix, "ipsets"), i), folder, f, "ipset restore file"));
    }
    (RuleSet { backends, files, ipsets, live }, format)
}

/// Longest a live program's step may be given.
pub(crate) const MAX_LIVE_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) const DEFAULT_LIVE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn live(c: &mut Checker, key: &str, f: &LiveFile) -> Option<Live> {
    let kind = live_kind(c, key, f)?;
    let run = live_run(c, key, f, kind);
    live_commands(c, key, f, kind);
    let driver = live_driver(c, key, f, kind);
    let daemon = live_daemon(c, key, f, kind);
    let timeout = live_timeout(c, key, f);
    let reads = live_reads(c, key, f, kind);
    if f.ipv6.is_some() && kind != LiveProgram::Ufw {
        c.key(
            &join(key, "ipv6"),
            format!("expected `ipv6` only with program `ufw` (its IPV6= setting), not `{}`", kind.name()),
        );
    }
    let commands = f.commands.clone().unwrap_or_default();
    let program = match kind {
        LiveProgram::Command => Program::Command { run, reads },
        LiveProgram::Netavark => Program::Netavark { driver },
        LiveProgram::Cni => Program::Cni,
        LiveProgram::Dockerd => Program::Dockerd { daemon, commands },
        LiveProgram::Ufw => Program::Ufw { commands, ipv6: f.ipv6 },
        LiveProgram::Firewalld => Program::Firewalld { commands },
    };
    Some(Live { timeout, program })
}

/// `program`: which program, by name.
fn live_kind(c: &mut Checker, key: &str, f: &LiveFile) -> Option<LiveProgram> {
    match f.program.as_deref() {
        None => {
            c.missing(&join(key, "program"), "the program that writes the rules");
            None
        }
        Some(p) => {
            let found = LiveProgram::ALL.into_iter().find(|l| l.name() == p);
            if found.is_none() {
                let all = names(LiveProgram::ALL.iter().map(|l| l.name()));
                c.value(&join(key, "program"), format!("expected one of {all}, found `{p}`"));
            }
            found
        }
    }
}

/// `run`: required by `command`, refused by the others.
fn live_run(c: &mut Checker, key: &str, f: &LiveFile, program: LiveProgram) -> Vec<String> {
    let run = f.run.clone().unwrap_or_default();
    match program {
        LiveProgram::Command if run.is_empty() => {
            c.missing(&join(key, "run"), "the command to run, as a list: [program, arguments...]");
        }
        LiveProgram::Command => {}
        _ if f.run.is_some() => {
            c.key(&join(key, "run"), format!("expected `run` only with program `command`, not `{}`", program.name()))
        }
        _ => {}
    }
    run
}

/// `commands`: only programs configured by command lines take them.
fn live_commands(c: &mut Checker, key: &str, f: &LiveFile, program: LiveProgram) {
    if f.commands.is_some() && !matches!(program, LiveProgram::Ufw | LiveProgram::Firewalld | LiveProgram::Dockerd) {
        c.key(
            &join(key, "commands"),
            "expected `commands` only with program `ufw`, `firewalld` or `dockerd` (ufw command lines run before dockerd)",
        );
    }
}

/// `driver`: netavark's firewall driver.
fn live_driver(c: &mut Checker, key: &str, f: &LiveFile, program: LiveProgram) -> Option<String> {
    match (&f.driver, program) {
        (None, _) => None,
        (Some(d), LiveProgram::Netavark) if ["iptables", "nftables", "firewalld"].contains(&d.as_str()) => {
            Some(d.clone())
        }
        (Some(d), LiveProgram::Netavark) => {
            c.value(&join(key, "driver"), format!("expected iptables, nftables or firewalld, found `{d}`"));
            None
        }
        (Some(_), _) => {
            c.key(&join(key, "driver"), "expected `driver` only with program `netavark`");
            None
        }
    }
}

/// `daemon`: dockerd's daemon.json keys, but not those netconform sets itself.
fn live_daemon(c: &mut Checker, key: &str, f: &LiveFile, program: LiveProgram) -> Vec<(String, serde_json::Value)> {
    let mut daemon = Vec::new();
    match (&f.daemon, program) {
        (None, _) => {}
        (Some(options), LiveProgram::Dockerd) => {
            for (name, value) in options {
                let at = join(&join(key, "daemon"), name);
                if let Some(why) = reserved_daemon_option(name) {
                    c.key(&at, format!("`{name}` is netconform's to set: {why}; expected any other daemon.json key"));
                } else if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-.".contains(ch)) {
                    c.key(&at, "expected a daemon.json key: letters, digits, `-` and `.`");
                } else {
                    daemon.push((name.clone(), value.clone()));
                }
            }
        }
        (Some(_), _) => c.key(&join(key, "daemon"), "expected `daemon` only with program `dockerd`"),
    }
    daemon
}

/// `timeout`: how long one step of the program may take.
fn live_timeout(c: &mut Checker, key: &str, f: &LiveFile) -> Duration {
    match &f.timeout {
        None => DEFAULT_LIVE_TIMEOUT,
        Some(t) => match humantime::parse_duration(t.0.trim()) {
            Ok(d) if !d.is_zero() && d <= MAX_LIVE_TIMEOUT => d,
            _ => {
                c.value(
                    &join(key, "timeout"),
                    format!("expected a duration greater than 0 and at most 10m, found `{}`", t.0),
                );
                DEFAULT_LIVE_TIMEOUT
            }
        },
    }
}

/// `reads`: absolute paths a `command` reads; the other programs know their own.
fn live_reads(c: &mut Checker, key: &str, f: &LiveFile, program: LiveProgram) -> Vec<String> {
    let mut reads = Vec::new();
    match (&f.reads, program) {
        (None, _) => {}
        (Some(paths), LiveProgram::Command) => {
            for (i, path) in paths.iter().enumerate() {
                if path.starts_with('/') {
                    reads.push(path.clone());
                } else {
                    c.value(
                        &format!("{}[{i}]", join(key, "reads")),
                        format!("expected an absolute path, found `{path}`"),
                    );
                }
            }
        }
        (Some(_), _) => c.key(
            &join(key, "reads"),
            format!("expected `reads` only with program `command`; `{}` knows what it reads", program.name()),
        ),
    }
    reads
}

/// Why a daemon.json key is not the scenario's to set, if it is not.
pub(crate) fn reserved_daemon_option(name: &str) -> Option<&'static str> {
    match name {
        "data-root" | "exec-root" | "pidfile" | "hosts" | "deprecated-key-path" => {
            Some("the private daemon keeps everything under the sandbox's /run")
        }
        "storage-driver" | "exec-opts" | "cgroup-parent" => {
            Some("the private daemon's containers run on vfs, under a cgroup that netconform removes")
        }
        "bip" => Some("docker0's address comes from the network whose bridge is docker0, under `networks`"),
        _ => None,
    }
}

/// The program of a `command` producer: a path (with a '/') is the scenario's own and
/// must be an executable file; a bare name is looked up on PATH when the scenario runs.
pub(crate) fn live_program(c: &mut Checker, key: &str, folder: &Path, program: &str) {
    use std::os::unix::fs::PermissionsExt;
    if program.is_empty() {
        c.value(key, "expected a program, found an empty string");
    } else if program.contains('/') {
        if let Some(p) = c.existing_file(key, folder, program, "program") {
            let executable = fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
            if !executable {
                c.value(key, format!("expected an executable program, but `{}` is not executable", p.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::testing::*;
    use rstest::rstest;

    #[rstest]
    // Rules.
    #[case::backends_empty(
        "backends: [iptables-nft, iptables-legacy]",
        "backends: []",
        "rules.backends",
        "backends: |[]",
        "found an empty list"
    )]
    #[case::backend_unknown(
        "backends: [iptables-nft, iptables-legacy]",
        "backends: [iptables-nft, iptables]",
        "rules.backends[1]",
        "iptables-nft, |iptables]",
        "expected a back end (one of iptables-nft, iptables-legacy, nft), found `iptables`"
    )]
    #[case::backend_twice(
        "backends: [iptables-nft, iptables-legacy]",
        "backends: [iptables-nft, iptables-nft]",
        "rules.backends[1]",
        "iptables-nft, |iptables-nft]",
        "listed twice"
    )]
    #[case::backends_mixed(
        "backends: [iptables-nft, iptables-legacy]",
        "backends: [iptables-nft, nft]",
        "rules.backends",
        "backends: |[",
        "split the scenario"
    )]
    #[case::backends_missing(
        "  backends: [iptables-nft, iptables-legacy]\n",
        "",
        "rules.backends",
        "  |files: [rules",
        "missing required key `backends`"
    )]
    #[case::rule_file_missing(
        "files: [rules/base.rules, rules/extra.rules]",
        "files: [rules/base.rules, rules/gone.rules]",
        "rules.files[1]",
        "|rules/gone.rules",
        "does not exist"
    )]
    #[case::rule_file_folder(
        "files: [rules/base.rules, rules/extra.rules]",
        "files: [rules/base.rules, rules]",
        "rules.files[1]",
        "rules/base.rules, |rules]",
        "is a folder"
    )]
    #[case::rule_files_empty(
        "files: [rules/base.rules, rules/extra.rules]",
        "files: []",
        "rules.files",
        "files: |[]",
        "found an empty list"
    )]
    fn invalid(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str, #[case] says: &str) {
        let text = edit(from, to);
        assert_one(&text, key, needle, says);
    }
}
