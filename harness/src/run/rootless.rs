//! Rootless runs: a process that is not root re-runs itself in a new user namespace
//! where its uid is mapped to root. There it may create network and mount namespaces
//! and load rules (iptables-nft, iptables-legacy and nft all work per network
//! namespace), and every rule tool still gets a private /run, so the legacy back end
//! has its own xtables lock. Nothing outside the user namespace can be touched from
//! inside it. The `netconform` command and the test target over scenarios/ both use
//! it, so `cargo test` runs as much of the suite rootless as `netconform run` does.
//!
//! Needs unprivileged user namespaces: `user.max_user_namespaces` above 0 and, on
//! kernels that have them, `kernel.unprivileged_userns_clone=1` (Debian) or
//! `kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu 24.04).

use std::os::unix::process::CommandExt;

/// Set in the re-executed process, so it never tries again.
const MARK: &str = "NETCONFORM_ROOTLESS";

/// Why a rootless re-run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error("not root, and cannot find this program to re-run it in a user namespace: {0}")]
    NoProgram(std::io::Error),
    #[error(
        "not root, and a user namespace could not be made ({0}). Run as root, or allow unprivileged user \
         namespaces (user.max_user_namespaces > 0; on Debian kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 \
         kernel.apparmor_restrict_unprivileged_userns=0)"
    )]
    NoUserNamespace(std::io::Error),
}

/// If not root, re-run this program with the same arguments in a new user namespace
/// as its root and return its exit code (a signal counts as `on_signal`); None when
/// the program should go on here. Call it before any thread is started.
pub fn reexec_if_needed(on_signal: i32) -> Option<Result<i32, RootlessError>> {
    if nix::unistd::geteuid().is_root() || std::env::var_os(MARK).is_some() {
        return None;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return Some(Err(RootlessError::NoProgram(e))),
    };
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let maps = [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("0 {uid} 1")),
        ("/proc/self/gid_map", format!("0 {gid} 1")),
    ];
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(MARK, "1");
    // SAFETY: this runs before any thread is started, so the forked child may allocate.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)?;
            for (file, text) in &maps {
                std::fs::write(file, text)?;
            }
            Ok(())
        });
    }
    Some(cmd.status().map(|s| s.code().unwrap_or(on_signal)).map_err(RootlessError::NoUserNamespace))
}
