//! Rootless runs of the commands that build labs: see [`harness::run::rootless`].

use crate::exit::Exit;
use std::process::ExitCode;

/// If not root, re-run this command in a new user namespace as its root, and return
/// its exit status; None when the command should go on here.
pub fn reexec_if_needed() -> Option<ExitCode> {
    match harness::run::rootless::reexec_if_needed(i32::from(Exit::Failed.status()))? {
        Ok(code) => Some(ExitCode::from(u8::try_from(code).unwrap_or(Exit::Failed.status()))),
        Err(e) => {
            eprintln!("netconform: {e}");
            Some(ExitCode::from(Exit::Machine))
        }
    }
}
