//! Running a rule tool (or any program) inside a lab namespace.
//!
//! The child enters the lab's network namespace and a private mount namespace with a
//! fresh tmpfs on /run, so /run/xtables.lock, /run/netns and any state a tool keeps
//! under /run are its own, never the machine's. It dies with us (PR_SET_PDEATHSIG) and
//! is killed when its time is up.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{program} not found on PATH")]
    NotFound { program: String },
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{command} did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("{command} failed ({status}):\n{stderr}")]
    Failed { command: String, status: String, stdout: String, stderr: String },
}

/// What a finished program printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// How long a program may run before it is killed, unless its caller says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A program to run in a lab namespace.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Invocation {
    pub fn new(program: &str, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        Invocation {
            program: program.to_string(),
            args: args.into_iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }
}

/// The first `program` found on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Run `inv` inside `netns` and a private mount namespace; fail unless it exits 0.
pub async fn run_in(netns: BorrowedFd<'_>, inv: &Invocation) -> Result<Output, ExecError> {
    let program = which(&inv.program).ok_or_else(|| ExecError::NotFound { program: inv.program.clone() })?;
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&inv.args)
        .stdin(if inv.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let fd = netns.as_raw_fd();
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes system
    // calls (setns, unshare, mount, prctl, getppid), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || enter_sandbox(fd, parent));
    }
    let mut child = cmd.spawn().map_err(|source| ExecError::Spawn { program: inv.program.clone(), source })?;
    if let Some(input) = &inv.stdin {
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let input = input.clone();
        tokio::spawn(async move {
            // A tool that exits early closes its end; its exit status tells why.
            let _ = stdin.write_all(&input).await;
        });
    }
    let output = match tokio::time::timeout(inv.timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|source| ExecError::Spawn { program: inv.program.clone(), source })?,
        // Dropping the future drops the child, and kill_on_drop ends it.
        Err(_) => return Err(ExecError::Timeout { command: inv.display(), timeout: inv.timeout }),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(ExecError::Failed { command: inv.display(), status: output.status.to_string(), stdout, stderr });
    }
    Ok(Output { stdout, stderr })
}

fn enter_sandbox(netns_fd: i32, parent: nix::unistd::Pid) -> std::io::Result<()> {
    // SAFETY: the descriptor stays open in the parent for the whole spawn.
    let ns = unsafe { BorrowedFd::borrow_raw(netns_fd) };
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // The parent may have died before the line above took effect.
    if nix::unistd::getppid() != parent {
        return Err(std::io::Error::other("the runner is gone"));
    }
    setns(ns, CloneFlags::CLONE_NEWNET)?;
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
    mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))?;
    // /sys shows the network devices of the namespace that mounted it; tools that read
    // /sys/class/net must see the lab's, not the machine's.
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )?;
    Ok(())
}
