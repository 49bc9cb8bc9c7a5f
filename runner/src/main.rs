//! The `netconform` command.

mod cli;
mod commands;
mod exit;

mod rootless;

fn main() -> std::process::ExitCode {
    // Piped into `head`, the command should end quietly, as other commands do.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    // Commands that build labs run as root, or as root of a user namespace.
    let builds_labs =
        std::env::args().nth(1).is_some_and(|c| ["run", "diff", "mutate", "capture"].contains(&c.as_str()));
    if builds_labs {
        if let Some(code) = rootless::reexec_if_needed() {
            return code;
        }
    }
    raise_open_file_limit();
    cli::main()
}

/// Probes are sent all at once, a few descriptors each; the soft limit of a login
/// shell (often 1024) is far below what the hard limit allows.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
