//! The bad-input corpus: one trial per case under tests/data/bad-input/, each running
//! the `netconform` binary on a copy of the case and checking what the case's header
//! says must happen.
//!
//! A case is a file `NAME.yaml`, or a folder `NAME/` whose scenario is `case.yaml`
//! (with its rule files, producers file and scripts beside it). Single-file cases share
//! the folder `bad-input/rules/`. The header is the comment lines at the top of the
//! scenario, `# KEY: VALUE`; a line `#   more` (three spaces) continues the value above.
//!
//! - `what:` what the case is (for people).
//! - `expect: exit N` (required): the exit status of every command.
//! - `commands:` which subcommands to run, default `check run` when N is 2, else `run`.
//! - `diag: [FILE:]L:C KEY: TEXT`: a line of standard error must start with
//!   `PATH:L:C: KEY: ` and contain TEXT after it. PATH is the scenario's, or FILE's
//!   (relative to the case). `L` may be `@NAME`, the line that ends with the comment
//!   `# @NAME`; `C` may be `*`; `L:C` may be `-` (no position); KEY `-` means no key is
//!   required.
//! - `stdout:` / `stderr:` TEXT: that stream contains TEXT.
//! - `needs:` programs that must be on PATH (else the case is ignored).
//! - `max-seconds:` N: each command must end within N seconds (default 60); it is
//!   killed after that.
//! - `leftovers:` TEXT: after a `run`, no process whose command line contains TEXT may
//!   be left.
//! - `expand: yes`: the scenario is made from a template: `{{N*TEXT}}` is TEXT N times,
//!   and the lines between `# repeat-begin: N` and `# repeat-end` are written N times,
//!   with `{i}` counting from 1.
//! - `mkfifo:` NAME: make a named pipe NAME in the case's copy (git keeps none).
//! - `target:` NAME: give netconform this path (relative to the case; `.` is the case's
//!   folder) instead of the scenario.
//! - `nofile:` N: run with a soft limit of N open files.
//! - `others-run: yes`: the case's folder holds valid scenarios beside the bad one;
//!   `run` runs them (so it may print and build labs) and still exits 2.
//! - `known-bug:` TEXT: the current program gets this case wrong. The expectations
//!   above say what is right; the trial fails while they do not hold, with TEXT, and
//!   fails too once they do, so that the marker is removed.
//!
//! Every command is also checked for what no input may cause: a panic, death by a
//! signal, a hang. For exit status 2, nothing may have run (standard output empty, no
//! "cannot run") and, as root, `run` must not have made a network namespace. As root,
//! after every `run`, nothing of it may be left: no process in its process group, and
//! no orphan holding a network namespace it used.
//!
//! Cases whose `run` builds a lab (exit status other than 2) need root; without it they
//! are reported ignored, with the reason.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed, Trial};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad-input")
}

/// A position in a `diag:` line.
#[derive(Debug, Clone)]
enum Pos {
    Num(usize),
    Marker(String),
    Any,
}

#[derive(Debug, Clone)]
struct Diag {
    /// Relative to the case folder; None: the scenario (or target) itself.
    file: Option<String>,
    /// None: no position.
    at: Option<(Pos, Pos)>,
    key: Option<String>,
    text: String,
    raw: String,
}

#[derive(Debug, Clone, Default)]
struct Header {
    exit: Option<i32>,
    commands: Vec<String>,
    diags: Vec<Diag>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    needs: Vec<String>,
    max_seconds: u64,
    leftovers: Vec<String>,
    expand: bool,
    mkfifo: Vec<String>,
    target: Option<String>,
    nofile: Option<u64>,
    known_bug: Option<String>,
    others_run: bool,
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    /// The file or folder in the corpus.
    source: PathBuf,
    /// The scenario's file name inside the case folder.
    entry: String,
}

const KEYS: [&str; 15] = [
    "what",
    "expect",
    "commands",
    "diag",
    "stdout",
    "stderr",
    "needs",
    "max-seconds",
    "leftovers",
    "expand",
    "mkfifo",
    "target",
    "nofile",
    "known-bug",
    "others-run",
];

fn parse_pos(s: &str) -> Result<Pos, String> {
    if s == "*" {
        Ok(Pos::Any)
    } else if let Some(m) = s.strip_prefix('@') {
        Ok(Pos::Marker(m.to_string()))
    } else {
        s.parse().map(Pos::Num).map_err(|_| format!("`{s}` is not a line or column"))
    }
}

fn parse_diag(value: &str) -> Result<Diag, String> {
    let (spec, rest) = value.split_once(' ').unwrap_or((value, ""));
    let (file, at) = if spec == "-" {
        (None, None)
    } else {
        let mut parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        parts.reverse();
        match parts.as_slice() {
            [file, line, col] => (Some(file.to_string()), Some((parse_pos(line)?, parse_pos(col)?))),
            [line, col] => (None, Some((parse_pos(line)?, parse_pos(col)?))),
            _ => return Err(format!("diag `{value}`: expected [FILE:]L:C or - first")),
        }
    };
    let rest = rest.trim_start();
    let (key, text) = match rest.split_once(": ") {
        Some((k, t)) => (k, t),
        None => (rest.strip_suffix(':').unwrap_or(rest), ""),
    };
    let key = (key != "-").then(|| key.to_string());
    Ok(Diag { file, at, key, text: text.to_string(), raw: value.to_string() })
}

fn parse_header(text: &str) -> Result<Header, String> {
    let mut h = Header { max_seconds: 60, ..Header::default() };
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let Some(comment) = line.strip_prefix('#') else { break };
        if let Some(more) = comment.strip_prefix("   ") {
            match entries.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(more.trim());
                }
                None => return Err(format!("a continuation line with nothing to continue: {line}")),
            }
            continue;
        }
        let comment = comment.trim();
        let Some((key, value)) = comment.split_once(':') else {
            return Err(format!("a header line that is not `# KEY: VALUE`: {line}"));
        };
        if !KEYS.contains(&key) {
            return Err(format!("unknown header key `{key}` (known: {})", KEYS.join(", ")));
        }
        entries.push((key.to_string(), value.trim().to_string()));
    }
    for (key, value) in entries {
        match key.as_str() {
            "what" => {}
            "expect" => {
                let n = value.strip_prefix("exit ").and_then(|n| n.trim().parse().ok());
                h.exit = Some(n.ok_or_else(|| format!("`expect: {value}`: expected `exit N`"))?);
            }
            "commands" => h.commands = value.split_whitespace().map(String::from).collect(),
            "diag" => h.diags.push(parse_diag(&value)?),
            "stdout" => h.stdout.push(value),
            "stderr" => h.stderr.push(value),
            "needs" => h.needs.extend(value.split_whitespace().map(String::from)),
            "max-seconds" => h.max_seconds = value.parse().map_err(|_| format!("max-seconds: `{value}`"))?,
            "leftovers" => h.leftovers.push(value),
            "expand" => h.expand = value == "yes",
            "mkfifo" => h.mkfifo.push(value),
            "target" => h.target = Some(value),
            "nofile" => h.nofile = Some(value.parse().map_err(|_| format!("nofile: `{value}`"))?),
            "known-bug" => h.known_bug = Some(value),
            "others-run" => h.others_run = value == "yes",
            _ => unreachable!("checked against KEYS"),
        }
    }
    let exit = h.exit.ok_or("the header has no `expect: exit N`")?;
    if h.commands.is_empty() {
        h.commands = if exit == 2 { vec!["check".into(), "run".into()] } else { vec!["run".into()] };
    }
    if let Some(c) = h.commands.iter().find(|c| !["check", "run"].contains(&c.as_str())) {
        return Err(format!("commands: `{c}` is not check or run"));
    }
    Ok(h)
}

/// The template with its `{{N*TEXT}}` and repeat blocks written out.
fn expand(template: &str) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut block: Option<(usize, Vec<&str>)> = None;
    for line in template.lines() {
        if let Some(n) = line.strip_prefix("# repeat-begin:") {
            let n = n.trim().parse().map_err(|_| format!("bad repeat count in `{line}`"))?;
            block = Some((n, Vec::new()));
            continue;
        }
        if line.trim() == "# repeat-end" {
            let (n, lines) = block.take().ok_or("`# repeat-end` without `# repeat-begin`")?;
            for i in 1..=n {
                for l in &lines {
                    out.push_str(&l.replace("{i}", &i.to_string()));
                    out.push('\n');
                }
            }
            continue;
        }
        match &mut block {
            Some((_, lines)) => lines.push(line),
            None => {
                out.push_str(&expand_inline(line)?);
                out.push('\n');
            }
        }
    }
    if block.is_some() {
        return Err("`# repeat-begin` without `# repeat-end`".into());
    }
    Ok(out)
}

fn expand_inline(line: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("unclosed {{{{ in `{line}`"))?;
        let (n, text) = after[..end].split_once('*').ok_or_else(|| format!("expected {{{{N*TEXT}}}} in `{line}`"))?;
        let n: usize = n.parse().map_err(|_| format!("bad count in `{line}`"))?;
        out.push_str(&text.repeat(n));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn discover() -> Result<Vec<Case>, String> {
    let dir = corpus_dir();
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            if file_name == "rules" {
                continue;
            }
            cases.push(Case { name: file_name, source: path, entry: "case.yaml".into() });
        } else if let Some(stem) = file_name.strip_suffix(".yaml") {
            cases.push(Case { name: stem.to_string(), source: path, entry: file_name.clone() });
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

pub fn trials() -> Vec<Trial> {
    match discover() {
        Ok(cases) => cases
            .into_iter()
            .map(|case| {
                let name = format!("corpus::{}", case.name);
                // Decided while listing, as for the scenarios; a header that does not
                // parse is the case's failure when it runs.
                let ignored = header_of(&case).ok().and_then(|h| unavailable(&h));
                if let Some(why) = &ignored {
                    crate::note_ignored(&name, why);
                }
                Trial::ignorable_test(name, move || run_case(&case))
                    .with_kind("corpus")
                    .with_ignored_flag(ignored.is_some())
            })
            .collect(),
        Err(e) => vec![Trial::test("corpus::(discovery)", move || Err(e.clone().into()))],
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            // Keeps the mode: scripts stay executable.
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Why the case cannot run here, if it cannot.
fn unavailable(h: &Header) -> Option<String> {
    let builds = (h.exit != Some(2) || h.others_run) && h.commands.iter().any(|c| c == "run");
    if builds && !is_root() {
        return Some("needs root: `run` builds a lab for this case".into());
    }
    h.needs
        .iter()
        .find(|p| harness::lab::sandbox::which(p).is_none())
        .map(|p| format!("{p} is not installed; run ci/install-deps"))
}

fn header_of(case: &Case) -> Result<Header, String> {
    let source_entry = if case.source.is_dir() { case.source.join(&case.entry) } else { case.source.clone() };
    let bytes = std::fs::read(&source_entry).map_err(|e| format!("{}: {e}", source_entry.display()))?;
    parse_header(&String::from_utf8_lossy(&bytes)).map_err(|e| format!("{}: {e}", case.name))
}

fn run_case(case: &Case) -> Result<Completion, Failed> {
    let source_entry = if case.source.is_dir() { case.source.join(&case.entry) } else { case.source.clone() };
    let bytes = std::fs::read(&source_entry).map_err(|e| format!("{}: {e}", source_entry.display()))?;
    let header = parse_header(&String::from_utf8_lossy(&bytes)).map_err(|e| format!("{}: {e}", case.name))?;
    if let Some(why) = unavailable(&header) {
        return Ok(Completion::ignored_with(why));
    }

    // A copy of the case: tmp/NAME/ holds the scenario and what it refers to.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join(&case.name);
    if case.source.is_dir() {
        copy_tree(&case.source, &dir)?;
    } else {
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(&case.source, dir.join(&case.entry))?;
        let shared = corpus_dir().join("rules");
        if shared.is_dir() {
            copy_tree(&shared, &dir.join("rules"))?;
        }
    }
    let scenario = dir.join(&case.entry);
    if header.expand {
        let text = expand(&String::from_utf8_lossy(&bytes)).map_err(|e| format!("{}: {e}", case.name))?;
        std::fs::write(&scenario, text)?;
    }
    for fifo in &header.mkfifo {
        nix::unistd::mkfifo(&dir.join(fifo), nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    }
    let target = match header.target.as_deref() {
        None => scenario.clone(),
        Some(".") => dir.clone(),
        Some(t) => dir.join(t),
    };
    let scenario_text = String::from_utf8_lossy(&std::fs::read(&scenario)?).into_owned();

    let mut problems = Vec::new();
    for command in &header.commands {
        match run_command(command, &target, &dir, &header, &scenario, &scenario_text, tmp.path()) {
            Ok(Outcome::Checked(mut p)) => problems.append(&mut p),
            Ok(Outcome::Ignored(why)) => return Ok(Completion::ignored_with(why)),
            Err(e) => problems.push(format!("`netconform {command}`: {}", e.message().unwrap_or("failed"))),
        }
    }
    match (&header.known_bug, problems.is_empty()) {
        (None, true) => Ok(Completion::Completed),
        (None, false) => Err(problems.join("\n").into()),
        (Some(bug), false) => Err(format!("KNOWN BUG: {bug}\nwhat did not hold:\n{}", problems.join("\n")).into()),
        (Some(_), true) => Err(format!(
            "marked `known-bug`, but every expectation holds now: remove the `known-bug` lines from {}",
            source_entry.display()
        )
        .into()),
    }
}

enum Outcome {
    Checked(Vec<String>),
    Ignored(String),
}

/// At most `n` characters of `text`, for messages.
fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_string()
    } else {
        let head: String = text.chars().take(n).collect();
        format!("{head}\n[... {} more characters]", text.chars().count() - n)
    }
}

fn run_command(
    command: &str,
    target: &Path,
    dir: &Path,
    h: &Header,
    scenario: &Path,
    scenario_text: &str,
    tmp: &Path,
) -> Result<Outcome, Failed> {
    let out_path = tmp.join(format!("{command}.stdout"));
    let err_path = tmp.join(format!("{command}.stderr"));
    let bin = env!("CARGO_BIN_EXE_netconform");
    let mut cmd = match h.nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("ulimit -S -n {n} && exec \"$0\" \"$@\"")).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg(command)
        .arg(target)
        .process_group(0)
        .current_dir(tmp)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?);
    let watch = command == "run" && is_root();
    let own_ns = std::fs::read_link("/proc/self/ns/net")?.to_string_lossy().into_owned();
    let start = Instant::now();
    let limit = Duration::from_secs(h.max_seconds);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let since = proc_stat(pid).map_or(0, |s| s.start);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if watch {
            seen.extend(netns_of(pid));
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        let pause = if start.elapsed() < Duration::from_secs(2) { 5 } else { 100 };
        std::thread::sleep(Duration::from_millis(pause));
    };
    let elapsed = start.elapsed();
    seen.remove(&own_ns);
    let stdout = String::from_utf8_lossy(&std::fs::read(&out_path)?).into_owned();
    let stderr = String::from_utf8_lossy(&std::fs::read(&err_path)?).into_owned();

    if !is_root() && command == "run" && stderr.contains("a user namespace could not be made") {
        return Ok(Outcome::Ignored("not root, and this machine allows no user namespaces for a rootless run".into()));
    }

    let mut p = Vec::new();
    let expected = h.exit.unwrap_or(2);
    if timed_out {
        p.push(format!("did not finish within {} s (killed)", h.max_seconds));
    } else if let Some(sig) = status.signal() {
        p.push(format!("died of signal {sig}{}", if sig == 6 { " (abort: a stack overflow?)" } else { "" }));
    } else if status.code() != Some(expected) {
        p.push(format!("exit status {:?}, expected {expected}", status.code()));
    }
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for bad in ["panicked", "stack overflow", "RUST_BACKTRACE"] {
            if text.contains(bad) {
                p.push(format!("{name} says `{bad}`"));
            }
        }
    }
    // Beside valid files a bad one is an error run: the valid ones run, and exit
    // status 2 still says the input is bad.
    let others_ran = h.others_run && command == "run";
    if expected == 2 && !timed_out && !others_ran {
        if !stdout.trim().is_empty() {
            p.push("standard output is not empty: something ran, though the input is bad".into());
        }
        if stderr.contains("cannot run") {
            p.push("the exit status 2 is for a missing requirement, not for the bad input".into());
        }
        if !seen.is_empty() {
            p.push(format!("a network namespace was made though the input is bad: {seen:?}"));
        }
    }
    for d in &h.diags {
        if let Err(e) = check_diag(d, &stderr, dir, scenario, target, scenario_text) {
            p.push(e);
        }
    }
    for want in &h.stdout {
        if !stdout.contains(want.as_str()) {
            p.push(format!("standard output lacks `{want}`"));
        }
    }
    for want in &h.stderr {
        if !stderr.contains(want.as_str()) {
            p.push(format!("standard error lacks `{want}`"));
        }
    }
    if command == "run" && is_root() {
        p.extend(leftovers(&seen, &h.leftovers, pid, since));
    }
    if !p.is_empty() {
        let mut msg = format!("`netconform {command} {}` ({} ms):\n", target.display(), elapsed.as_millis());
        for line in &p {
            let _ = writeln!(msg, "  - {line}");
        }
        let _ = write!(msg, "  stdout:\n{}\n  stderr:\n{}", clip(&stdout, 3000), clip(&stderr, 3000));
        return Ok(Outcome::Checked(vec![msg]));
    }
    Ok(Outcome::Checked(Vec::new()))
}

/// The line of `text` (1-based) that ends with the comment `# @marker`.
fn marker_line(text: &str, marker: &str) -> Option<usize> {
    let tag = format!("# @{marker}");
    text.lines().position(|l| l.trim_end().ends_with(&tag)).map(|i| i + 1)
}

fn check_diag(
    d: &Diag,
    stderr: &str,
    dir: &Path,
    scenario: &Path,
    target: &Path,
    scenario_text: &str,
) -> Result<(), String> {
    let path = match &d.file {
        Some(f) => dir.join(f),
        None if target.is_dir() => scenario.to_path_buf(),
        None => target.to_path_buf(),
    };
    let mut prefix = path.display().to_string();
    let mut column_any = false;
    if let Some((line, col)) = &d.at {
        let line = match line {
            Pos::Num(n) => n.to_string(),
            Pos::Marker(m) => marker_line(scenario_text, m)
                .ok_or_else(|| format!("diag `{}`: no line ends with `# @{m}`", d.raw))?
                .to_string(),
            Pos::Any => return Err(format!("diag `{}`: the line cannot be `*`", d.raw)),
        };
        prefix.push_str(&format!(":{line}:"));
        match col {
            Pos::Num(n) => prefix.push_str(&format!("{n}: ")),
            Pos::Any => column_any = true,
            Pos::Marker(_) => return Err(format!("diag `{}`: a column cannot be a marker", d.raw)),
        }
    } else {
        prefix.push_str(": ");
    }
    let found = stderr.lines().any(|l| {
        let Some(rest) = l.strip_prefix(prefix.as_str()) else { return false };
        let rest = if column_any {
            match rest.split_once(": ") {
                Some((col, rest)) if col.bytes().all(|b| b.is_ascii_digit()) && !col.is_empty() => rest,
                _ => return false,
            }
        } else {
            rest
        };
        let rest = match &d.key {
            Some(key) => match rest.strip_prefix(&format!("{key}: ")) {
                Some(r) => r,
                None => return false,
            },
            None => rest,
        };
        rest.contains(d.text.as_str())
    });
    if found {
        Ok(())
    } else {
        let key = d.key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default();
        let text = if d.text.is_empty() { String::new() } else { format!("{}...", d.text) };
        Err(format!(
            "standard error lacks a line `{prefix}{}{key}...{text}` (diag: {})",
            if column_any { "C: " } else { "" },
            d.raw
        ))
    }
}

/// Inodes of the network namespaces `pid` refers to, by descriptor or by thread.
fn netns_of(pid: u32) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let fds =
        std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.path());
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("ns/net"));
    for link in fds.chain(tasks) {
        if let Ok(target) = std::fs::read_link(&link) {
            let t = target.to_string_lossy();
            if t.starts_with("net:[") {
                found.insert(t.into_owned());
            }
        }
    }
    found
}

/// What /proc/PID/stat says of a process.
struct ProcStat {
    state: char,
    ppid: u32,
    pgrp: u32,
    /// Clock ticks after boot.
    start: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields follow the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

fn processes() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

fn describe(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    format!("{pid} `{}`", words.join(" "))
}

/// What a finished run left behind. The run was the leader of process group `group`
/// and started at `since` (clock ticks after boot). Left behind are: a process still in
/// that group; a process that holds one of the run's `namespaces` and is in that group or
/// an orphan started since (other programs on the machine make namespaces too, and the
/// kernel reuses the numbers of freed ones); a process whose command line holds one of
/// `markers`. Waits up to 2 s for them to go.
fn leftovers(namespaces: &BTreeSet<String>, markers: &[String], group: u32, since: u64) -> Vec<String> {
    let me = std::process::id();
    let find = || -> Vec<String> {
        let mut found = Vec::new();
        for pid in processes() {
            let Some(stat) = proc_stat(pid) else { continue };
            if pid == me || stat.state == 'Z' {
                continue;
            }
            if stat.pgrp == group {
                found.push(format!("process {} of the run's process group is still running", describe(pid)));
                continue;
            }
            let orphan = stat.ppid == 1 && stat.start >= since;
            if orphan && !namespaces.is_empty() && !netns_of(pid).is_disjoint(namespaces) {
                found.push(format!("process {} holds a namespace of the run", describe(pid)));
                continue;
            }
            if !markers.is_empty() {
                let cmdline =
                    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
                        .replace('\0', " ");
                if let Some(m) = markers.iter().find(|m| cmdline.contains(m.as_str())) {
                    found.push(format!("process {} (`{m}`) is still running", describe(pid)));
                }
            }
        }
        found
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let found = find();
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
