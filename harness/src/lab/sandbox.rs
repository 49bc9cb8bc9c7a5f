//! Running a rule tool (or any program) inside a lab namespace.
//!
//! The child enters the lab's network namespace and a private mount namespace with a
//! fresh tmpfs on /run, so /run/xtables.lock, /run/netns and any state a tool keeps
//! under /run are its own, never the machine's. It dies with us (PR_SET_PDEATHSIG) and
//! is killed when its time is up.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{program} not found on PATH")]
    NotFound { program: String },
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{command} did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration, stdout: String, stderr: String },
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
    // SAFETY: the closure runs in the forked child of a multi-threaded process, where
    // only async-signal-safe calls are allowed. It makes system calls only (prctl,
    // getppid, setns, unshare, mount); their paths are short literals that nix copies
    // to the stack, and its errors are plain errno values, so it does not allocate.
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
        Err(_) => {
            return Err(ExecError::Timeout {
                command: inv.display(),
                timeout: inv.timeout,
                stdout: String::new(),
                stderr: String::new(),
            })
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(ExecError::Failed { command: inv.display(), status: output.status.to_string(), stdout, stderr });
    }
    Ok(Output { stdout, stderr })
}

/// In a forked child: die with `parent`, and fail if it is gone already. Allocates
/// nothing (see the callers' SAFETY notes); a pre_exec error reaches the parent as
/// its errno only.
fn die_with(parent: nix::unistd::Pid) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // The parent may have died before the line above took effect.
    if nix::unistd::getppid() != parent {
        return Err(nix::errno::Errno::ESRCH.into());
    }
    Ok(())
}

fn enter_sandbox(netns_fd: i32, parent: nix::unistd::Pid) -> std::io::Result<()> {
    // SAFETY: the descriptor stays open in the parent for the whole spawn, and the
    // child has its own copy of it.
    let ns = unsafe { BorrowedFd::borrow_raw(netns_fd) };
    die_with(parent)?;
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

/// Where a sandbox keeps the programs that stand for `iptables` and friends.
const SHIM_DIR: &str = "/run/netconform/bin";

/// The names a PATH shim points at the legacy or nf_tables iptables programs.
const IPTABLES_NAMES: [&str; 8] = [
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
    "iptables-restore-translate",
    "ip6tables-restore-translate",
];

/// Which programs `iptables` means inside a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesFlavour {
    /// Whatever the system's alternatives say.
    System,
    Nft,
    Legacy,
}

impl IptablesFlavour {
    /// The program an iptables name stands for: `iptables-save` →
    /// `iptables-legacy-save`; None for the system's own choice.
    pub fn program(self, name: &str) -> Option<String> {
        let suffix = match self {
            IptablesFlavour::System => return None,
            IptablesFlavour::Nft => "nft",
            IptablesFlavour::Legacy => "legacy",
        };
        Some(match name.split_once('-') {
            Some((base, rest)) => format!("{base}-{suffix}-{rest}"),
            None => format!("{name}-{suffix}"),
        })
    }
}

/// A long-lived place to run a live producer: the lab host's network namespace, a
/// private mount namespace with its own /run (and /sys, and a cgroup2 file system),
/// and a PID namespace. Every program run in it sees the same /run, so a daemon's
/// socket or state is there for the commands that follow. When the sandbox is
/// dropped, or this process dies however it dies, the PID namespace's first process
/// is killed and the kernel kills everything else in it.
#[derive(Debug)]
pub struct Sandbox {
    /// `unshare ... sleep infinity`: its child is PID 1 of the sandbox. Kept so that
    /// tokio reaps it once it exits.
    _holder: tokio::process::Child,
    /// PID 1 of the sandbox, as seen from here.
    init: u32,
    flavour: IptablesFlavour,
    env: Vec<(String, String)>,
}

impl Sandbox {
    /// A sandbox in the host namespace `netns`. `env` is added to every program's
    /// environment.
    pub async fn start(
        netns: BorrowedFd<'_>,
        flavour: IptablesFlavour,
        env: Vec<(String, String)>,
    ) -> Result<Sandbox, ExecError> {
        Sandbox::start_with_namespaces(netns, flavour, env, &[]).await
    }

    /// [`Sandbox::start`], with network namespaces of ours made available inside at
    /// `/run/netns/NAME` (as `ip netns` names them). They are bind mounts in the
    /// sandbox's own mount namespace, gone with it.
    ///
    /// The sandbox has a /proc of its own PID namespace: programs that find their own
    /// namespaces at `/proc/PID/task/TID/ns/net` (Go's netns library, CNI plugins,
    /// dockerd) must find theirs, never another process's on the machine.
    pub async fn start_with_namespaces(
        netns: BorrowedFd<'_>,
        flavour: IptablesFlavour,
        env: Vec<(String, String)>,
        namespaces: &[(&str, RawFd)],
    ) -> Result<Sandbox, ExecError> {
        let unshare = which("unshare").ok_or_else(|| ExecError::NotFound { program: "unshare".into() })?;
        let mut cmd = tokio::process::Command::new(unshare);
        cmd.args(["--fork", "--pid", "--mount-proc", "--kill-child=SIGKILL", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Ended through its PID 1 (see Drop), so that it reaps it first.
            .kill_on_drop(false);
        let shim = shim_links(flavour);
        let binds = netns_binds(namespaces)?;
        let fd = netns.as_raw_fd();
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs in the forked child of a multi-threaded process, where
        // only async-signal-safe calls are allowed. It makes system calls only (see
        // `enter_sandbox`), on C strings prepared before the fork and moved in; nix
        // passes a `CStr` through and copies a short `&str` to the stack, and its
        // errors are errno values, so nothing allocates.
        unsafe {
            cmd.pre_exec(move || {
                enter_sandbox(fd, parent)?;
                // Not allowed in a user namespace; only container engines need it,
                // and they cannot run there anyway.
                let _ = mount_cgroup2();
                make_netns_binds(&binds)?;
                make_shim(&shim)
            });
        }
        let holder = cmd.spawn().map_err(|source| ExecError::Spawn { program: "unshare".into(), source })?;
        let unshare_pid = holder.id().ok_or_else(|| ExecError::Spawn {
            program: "unshare".into(),
            source: std::io::Error::other("exited at once"),
        })?;
        let init = wait_for_child(unshare_pid).await.ok_or_else(|| ExecError::Spawn {
            program: "unshare".into(),
            source: std::io::Error::other("its PID namespace did not start"),
        })?;
        // PID 1 mounts the sandbox's /proc just before it becomes `sleep`: until then
        // programs started in the sandbox would see the machine's.
        let mut ready = false;
        for _ in 0..2500 {
            if std::fs::read_to_string(format!("/proc/{init}/comm")).is_ok_and(|c| c.trim() == "sleep") {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if !ready {
            return Err(ExecError::Spawn {
                program: "unshare".into(),
                source: std::io::Error::other("the sandbox's first process did not start"),
            });
        }
        Ok(Sandbox { _holder: holder, init, flavour, env })
    }

    /// PID 1 of the sandbox; /proc/PID/ns/* are its namespaces.
    pub fn init_pid(&self) -> u32 {
        self.init
    }

    fn command(&self, inv: &Invocation) -> Result<tokio::process::Command, ExecError> {
        let nsenter = which("nsenter").ok_or_else(|| ExecError::NotFound { program: "nsenter".into() })?;
        let mut cmd = tokio::process::Command::new(nsenter);
        cmd.arg(format!("--target={}", self.init))
            .args(["--net", "--mount", "--pid", "--"])
            .arg(&inv.program)
            .args(&inv.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(if inv.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if self.flavour != IptablesFlavour::System {
            let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
            cmd.env("PATH", format!("{SHIM_DIR}:{path}"));
        }
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs in the forked child of a multi-threaded process, where
        // only async-signal-safe calls are allowed: it makes two system calls (prctl,
        // getppid) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || die_with(parent));
        }
        Ok(cmd)
    }

    /// Run `inv` in the sandbox and wait for it; fail unless it exits 0.
    pub async fn run(&self, inv: &Invocation) -> Result<Output, ExecError> {
        let mut child =
            self.command(inv)?.spawn().map_err(|source| ExecError::Spawn { program: inv.program.clone(), source })?;
        finish(&mut child, inv).await
    }

    /// Start `inv` in the sandbox and leave it running (a daemon). Its output is
    /// discarded; the sandbox ends it.
    pub fn spawn(&self, inv: &Invocation) -> Result<tokio::process::Child, ExecError> {
        let mut cmd = self.command(inv)?;
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(false);
        cmd.spawn().map_err(|source| ExecError::Spawn { program: inv.program.clone(), source })
    }

    /// Run `inv` in the sandbox, its output going to `log` (a file path inside the
    /// sandbox's view is not needed: the file is ours).
    pub fn spawn_logged(&self, inv: &Invocation, log: std::fs::File) -> Result<tokio::process::Child, ExecError> {
        let mut cmd = self.command(inv)?;
        let err = log.try_clone().map_err(|source| ExecError::Spawn { program: inv.program.clone(), source })?;
        cmd.stdout(log).stderr(err).kill_on_drop(false);
        cmd.spawn().map_err(|source| ExecError::Spawn { program: inv.program.clone(), source })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // PID 1 first: the kernel kills the rest of its namespace, and unshare, its
        // parent, reaps it and exits, so no orphan is left for the machine to reap.
        if let Ok(pid) = i32::try_from(self.init) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        // unshare then exits by itself; tokio reaps the dropped child in the background.
    }
}

/// Waits for an invocation started by [`Sandbox`] to end, within its timeout. Output
/// is read while it runs; once it has exited, what its background children still
/// hold open is not waited for.
async fn finish(child: &mut tokio::process::Child, inv: &Invocation) -> Result<Output, ExecError> {
    use tokio::io::AsyncReadExt;
    if let Some(input) = &inv.stdin {
        if let Some(mut stdin) = child.stdin.take() {
            let input = input.clone();
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
    }
    let collect = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let task = tokio::spawn(async move {
            let Some(mut pipe) = pipe else { return };
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
            }
        });
        (buf, task)
    };
    let (out, out_task) = collect(child.stdout.take().map(|p| Box::new(p) as _));
    let (err, err_task) = collect(child.stderr.take().map(|p| Box::new(p) as _));
    let status = match tokio::time::timeout(inv.timeout, child.wait()).await {
        Ok(status) => status.map_err(|source| ExecError::Spawn { program: inv.program.clone(), source })?,
        Err(_) => {
            out_task.abort();
            err_task.abort();
            // What it printed before it hung is often why it hung.
            let text = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
                String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
            };
            return Err(ExecError::Timeout {
                command: inv.display(),
                timeout: inv.timeout,
                stdout: text(&out),
                stderr: text(&err),
            });
        }
    };
    // The rest of the output, unless a child it left behind keeps the pipe open.
    let grace = Duration::from_millis(200);
    let _ = tokio::time::timeout(grace, async {
        let _ = (&mut { out_task }).await;
        let _ = (&mut { err_task }).await;
    })
    .await;
    let text = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    };
    let (stdout, stderr) = (text(&out), text(&err));
    if !status.success() {
        return Err(ExecError::Failed { command: inv.display(), status: status.to_string(), stdout, stderr });
    }
    Ok(Output { stdout, stderr })
}

/// The first child of `pid`, once it exists (PID 1 of the sandbox).
async fn wait_for_child(pid: u32) -> Option<u32> {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            if let Some(child) = text.split_whitespace().next().and_then(|c| c.parse().ok()) {
                return Some(child);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// (link, target) pairs for the shim, prepared before fork.
fn shim_links(flavour: IptablesFlavour) -> Vec<(CString, CString)> {
    IPTABLES_NAMES
        .iter()
        .filter_map(|name| {
            let target = which(&flavour.program(name)?)?;
            let link = CString::new(format!("{SHIM_DIR}/{name}")).ok()?;
            let target = CString::new(target.into_os_string().into_encoded_bytes()).ok()?;
            Some((link, target))
        })
        .collect()
}

/// In the forked child: the shim's folders and links, from C strings made before.
fn make_shim(links: &[(CString, CString)]) -> std::io::Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    for dir in ["/run/netconform", SHIM_DIR] {
        nix::unistd::mkdir(dir, Mode::from_bits_truncate(0o755))?;
    }
    for (link, target) in links {
        nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, link.as_c_str())?;
    }
    Ok(())
}

/// (source, target) C strings for the namespace bind mounts, prepared before fork.
fn netns_binds(namespaces: &[(&str, RawFd)]) -> Result<Vec<(CString, CString)>, ExecError> {
    namespaces
        .iter()
        .map(|(name, fd)| {
            let bad = |_| ExecError::Spawn {
                program: "unshare".into(),
                source: std::io::Error::other(format!("namespace name {name:?} is not a file name")),
            };
            if name.contains('/') || name.is_empty() {
                return Err(bad(()));
            }
            let source = CString::new(format!("/proc/self/fd/{fd}")).map_err(|_| bad(()))?;
            let target = CString::new(format!("/run/netns/{name}")).map_err(|_| bad(()))?;
            Ok((source, target))
        })
        .collect()
}

/// In the forked child: each namespace bind-mounted on an empty file under
/// /run/netns, from C strings made before.
fn make_netns_binds(binds: &[(CString, CString)]) -> std::io::Result<()> {
    use nix::fcntl::OFlag;
    if binds.is_empty() {
        return Ok(());
    }
    nix::unistd::mkdir("/run/netns", Mode::from_bits_truncate(0o755))?;
    for (source, target) in binds {
        let file = nix::fcntl::open(
            target.as_c_str(),
            OFlag::O_CREAT | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o444),
        )?;
        drop(file);
        mount(Some(source.as_c_str()), target.as_c_str(), None::<&CStr>, MsFlags::MS_BIND, None::<&CStr>)?;
    }
    Ok(())
}

/// A cgroup2 file system at /sys/fs/cgroup of the sandbox's fresh /sys, for daemons
/// that manage cgroups (dockerd, containerd).
fn mount_cgroup2() -> std::io::Result<()> {
    mount(
        Some("cgroup2"),
        "/sys/fs/cgroup",
        Some("cgroup2"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )?;
    Ok(())
}
