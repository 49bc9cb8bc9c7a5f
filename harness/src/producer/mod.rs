//! Producers: whatever puts the rule set into the lab host. One file per
//! implementation: rule files loaded with the back end's restore tool (`files`), a
//! command of the scenario's (`command`), and adapters that drive real programs
//! inside the lab (netavark, CNI plugins, dockerd, ufw, firewalld); what several of
//! them share is in `support`. Adding one is its own file and one line in
//! [`for_scenario`].
//!
//! A live producer runs its programs in a [`Sandbox`](crate::lab::sandbox::Sandbox): the lab host's network
//! namespace, a private /run, and a PID namespace that dies with this process.

mod cni;
mod command;
mod dockerd;
mod files;
mod firewalld;
mod netavark;
mod support;
mod ufw;

pub use dockerd::DOCKER_CLI;

use futures::future::BoxFuture;
use support::{lab_environment, run_logged, sandbox};

use crate::lab::netns::NetNs;
use crate::lab::Lab;
use crate::scenario::{Backend, LiveProgram, Scenario};

/// What a producer left for the report: each program it ran and what it printed.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub entries: Vec<String>,
}

impl Log {
    pub fn push(&mut self, what: impl Into<String>) {
        self.entries.push(what.into());
    }

    /// One entry per command: the command line, then its output, indented.
    pub fn command(&mut self, command: &str, stdout: &str, stderr: &str) {
        let mut entry = format!("$ {command}");
        for line in stdout.lines().chain(stderr.lines()) {
            entry.push_str("\n  ");
            entry.push_str(line);
        }
        self.entries.push(entry);
    }
}

impl std::fmt::Display for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Why a producer could not put the rules in place.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The scenario asks the producer for something it cannot do: the input is wrong.
    #[error("{0}")]
    Input(String),
    /// A program, or its setup in the lab, failed; the message has the program's own
    /// words.
    #[error("{0}")]
    Failed(String),
    /// The back end's tool refused a rule file; the message names the file.
    #[error("{message}")]
    Rejected { file: std::path::PathBuf, message: String },
}

impl From<String> for ProducerError {
    fn from(why: String) -> ProducerError {
        ProducerError::Failed(why)
    }
}

impl From<&str> for ProducerError {
    fn from(why: &str) -> ProducerError {
        ProducerError::Failed(why.to_string())
    }
}

pub trait Producer: Send {
    /// Programs that must be on PATH; without them the scenario is ignored.
    fn programs(&self) -> Vec<&'static str>;

    /// Files and folders of the machine the program reads (its configuration); where
    /// one cannot be read, as in a rootless run against Debian's 0640 and 0750
    /// modes, the scenario is ignored with the path.
    fn reads(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Why this producer cannot run on this machine although its programs are there
    /// (a daemon that needs real root, in a user namespace), if so.
    fn unavailable_here(&self) -> Option<String> {
        None
    }

    /// Whether the producer needs nothing of the lab but the host's namespace (no
    /// interface, no other node), so that [`Producer::produce_in_host`] may run while
    /// the lab's links are made.
    fn host_only(&self) -> bool {
        false
    }

    /// For a [`Producer::host_only`] producer: put the rules into `host`, the lab
    /// host's namespace, which may not have its links yet.
    fn produce_in_host<'a>(
        &'a mut self,
        _scn: &'a Scenario,
        _host: &'a NetNs,
        _backend: Backend,
        _log: &'a mut Log,
    ) -> BoxFuture<'a, Result<(), ProducerError>> {
        Box::pin(async { Err("this producer needs the whole lab, not only its host".into()) })
    }

    /// Put the rules (and, for a container engine, its bridges and container links)
    /// into the lab. On error the message says what failed, with the program's own
    /// words.
    fn produce<'a>(
        &'a mut self,
        scn: &'a Scenario,
        lab: &'a mut Lab,
        backend: Backend,
        log: &'a mut Log,
    ) -> BoxFuture<'a, Result<(), ProducerError>>;

    /// Undo what dropping the lab does not undo (a program's own teardown), collecting
    /// every error instead of stopping at the first.
    fn teardown<'a>(&'a mut self, _log: &'a mut Log) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { Vec::new() })
    }
}

/// The producer of `scn`'s rules: rule files, or the live program the scenario names.
/// A producer is registered here, by one line, and nowhere else.
pub fn for_scenario(scn: &Scenario) -> Box<dyn Producer> {
    match scn.rules.live.as_ref().map(|l| l.kind()) {
        None => Box::new(files::Files),
        Some(LiveProgram::Command) => Box::new(command::Command::default()),
        Some(LiveProgram::Netavark) => Box::new(netavark::Netavark::new(scn)),
        Some(LiveProgram::Cni) => Box::new(cni::Cni::default()),
        Some(LiveProgram::Dockerd) => Box::new(dockerd::Dockerd::new(scn)),
        Some(LiveProgram::Ufw) => Box::new(ufw::Ufw::default()),
        Some(LiveProgram::Firewalld) => Box::new(firewalld::Firewalld::default()),
    }
}

/// Why `scn` cannot run here because its producer's programs are missing, if so.
pub fn unavailable(scn: &Scenario) -> Option<String> {
    let producer = for_scenario(scn);
    if let Some(why) = producer.unavailable_here() {
        return Some(why);
    }
    let missing: Vec<&str> =
        producer.programs().into_iter().filter(|p| crate::lab::sandbox::which(p).is_none()).collect();
    if !missing.is_empty() {
        return Some(format!("{} not installed (ci/install-deps installs it)", missing.join(", ")));
    }
    let own = scn.rules.live.iter().flat_map(|l| l.reads().iter().map(String::as_str));
    producer
        .reads()
        .into_iter()
        .chain(own)
        .find_map(|path| unreadable(std::path::Path::new(path), 2))
        .map(|(path, e)| format!("{} cannot be read here ({e}); run as root", path.display()))
}

/// The first file or folder under `path`, `depth` levels down, that this process
/// cannot read, with the error. A path that does not exist is the program's own
/// business.
fn unreadable(path: &std::path::Path, depth: usize) -> Option<(std::path::PathBuf, std::io::Error)> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => return Some((path.to_path_buf(), e)),
        };
        if depth == 0 {
            return None;
        }
        entries.flatten().find_map(|entry| unreadable(&entry.path(), depth - 1))
    } else {
        std::fs::File::open(path).err().map(|e| (path.to_path_buf(), e))
    }
}

/// Whether this process runs in a user namespace other than the machine's (a
/// rootless run): its uid map is not the whole range.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
        .unwrap_or(false)
}
