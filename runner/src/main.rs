//! The `netconform` command.

mod cli;
mod mutate;
mod run_cmd;

fn main() -> std::process::ExitCode {
    // Piped into `head`, the command should end quietly, as other commands do.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    cli::main()
}
