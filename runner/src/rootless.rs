//! Rootless runs: a user who is not root gets the same `netconform run` inside a new
//! user namespace where their uid is mapped to root. There they may create network
//! and mount namespaces and load rules (iptables-nft, iptables-legacy and nft all work
//! per network namespace), and every rule tool still gets a private /run, so the
//! legacy back end has its own xtables lock. Nothing outside the user namespace can be
//! touched from inside it.
//!
//! Needs unprivileged user namespaces: `user.max_user_namespaces` above 0 and, on
//! kernels that have them, `kernel.unprivileged_userns_clone=1` (Debian) or
//! `kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu 24.04).

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

/// Set in the re-executed process, so it never tries again.
const MARK: &str = "NETCONFORM_ROOTLESS";

/// If not root, re-run this command in a new user namespace as its root, and return
/// its exit status; None when the command should go on here.
pub fn reexec_if_needed() -> Option<ExitCode> {
    if nix::unistd::geteuid().is_root() || std::env::var_os(MARK).is_some() {
        return None;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("netconform: not root, and cannot find this program to re-run it in a user namespace: {e}");
            return Some(ExitCode::from(crate::cli::BAD_INPUT));
        }
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
    match cmd.status() {
        Ok(status) => {
            Some(ExitCode::from(status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(crate::cli::FAILED)))
        }
        Err(e) => {
            eprintln!(
                "netconform: not root, and a user namespace could not be made ({e}). Run as root, or allow \
                 unprivileged user namespaces (user.max_user_namespaces > 0; on Debian \
                 kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 \
                 kernel.apparmor_restrict_unprivileged_userns=0)"
            );
            Some(ExitCode::from(crate::cli::BAD_INPUT))
        }
    }
}
