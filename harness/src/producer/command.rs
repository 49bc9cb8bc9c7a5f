//! `command`: any program of the scenario's, run in the lab host under a timeout.
//! It gets the lab in its environment (see [`super::lab_environment`]) and an
//! `iptables` of the scenario's back end first on PATH. What it prints is kept for the
//! report; a non-zero exit or a timeout fails the scenario with that evidence.

use std::path::Path;

use futures::future::BoxFuture;

use super::{Log, Producer, ProducerError};
use crate::lab::sandbox::{ExecError, Invocation, Sandbox};
use crate::lab::Lab;
use crate::scenario::{Backend, Scenario};

#[derive(Default)]
pub struct Command {
    /// Kept until teardown: whatever the command left running ends with it.
    sandbox: Option<Sandbox>,
}

impl Producer for Command {
    fn programs(&self) -> Vec<&'static str> {
        vec!["unshare", "nsenter"]
    }

    fn produce<'a>(
        &'a mut self,
        scn: &'a Scenario,
        lab: &'a mut Lab,
        backend: Backend,
        log: &'a mut Log,
    ) -> BoxFuture<'a, Result<(), ProducerError>> {
        Box::pin(async move {
            let live = scn.rules.live.as_ref().ok_or("no live program")?;
            let sandbox = super::sandbox(scn, lab, backend).await?;
            let dir = scn.path.parent().unwrap_or(Path::new(""));
            let mut argv = live.run().to_vec();
            if argv[0].contains('/') {
                let resolved = dir.join(&argv[0]);
                argv[0] = std::fs::canonicalize(&resolved).unwrap_or(resolved).display().to_string();
            }
            let mut inv = Invocation::new(&argv[0], &argv[1..]);
            inv.timeout = live.timeout;
            let result = sandbox.run(&inv).await;
            self.sandbox = Some(sandbox);
            match result {
                Ok(out) => {
                    log.command(&inv.display(), &out.stdout, &out.stderr);
                    Ok(())
                }
                Err(ExecError::Failed { command, status, stdout, stderr }) => {
                    log.command(&command, &stdout, &stderr);
                    Err(format!("{command} failed ({status}):\n{stdout}{stderr}").into())
                }
                Err(ExecError::Timeout { command, timeout, stdout, stderr }) => {
                    log.command(&command, &stdout, &stderr);
                    Err(format!("{command} did not finish within {timeout:?}; it printed:\n{stdout}{stderr}").into())
                }
                Err(e) => {
                    log.push(format!("$ {}\n  {e}", inv.display()));
                    Err(e.to_string().into())
                }
            }
        })
    }

    fn teardown<'a>(&'a mut self, _log: &'a mut Log) -> BoxFuture<'a, Vec<String>> {
        self.sandbox = None;
        Box::pin(async { Vec::new() })
    }
}
