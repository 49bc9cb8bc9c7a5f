//! Rule files, loaded with the back end's own tool: ipsets first, then each file in
//! one restore (or one `nft -f`).

use std::os::fd::AsFd;

use futures::future::BoxFuture;

use super::{Log, Producer, ProducerError};
use crate::backend;
use crate::lab::netns::NetNs;
use crate::lab::sandbox::{self, Invocation};
use crate::lab::Lab;
use crate::scenario::{Backend, Scenario};

pub struct Files;

impl Producer for Files {
    fn programs(&self) -> Vec<&'static str> {
        vec![]
    }

    fn produce<'a>(
        &'a mut self,
        scn: &'a Scenario,
        lab: &'a mut Lab,
        backend: Backend,
        log: &'a mut Log,
    ) -> BoxFuture<'a, Result<(), ProducerError>> {
        Box::pin(load(scn, lab.host(), backend, log))
    }

    fn host_only(&self) -> bool {
        true
    }

    fn produce_in_host<'a>(
        &'a mut self,
        scn: &'a Scenario,
        host: &'a NetNs,
        backend: Backend,
        log: &'a mut Log,
    ) -> BoxFuture<'a, Result<(), ProducerError>> {
        Box::pin(load(scn, host, backend, log))
    }
}

/// Loads `scn`'s ipsets and rule files into `host`. Needs no interface of the lab, so
/// it can run while the lab's links are made.
async fn load(scn: &Scenario, host: &NetNs, backend: Backend, log: &mut Log) -> Result<(), ProducerError> {
    for set in &scn.rules.ipsets {
        let inv =
            Invocation::new("ipset", [std::ffi::OsStr::new("restore"), std::ffi::OsStr::new("-f"), set.as_os_str()]);
        sandbox::run_in(host.as_fd(), &inv).await.map_err(|e| format!("loading ipsets from {}: {e}", set.display()))?;
        log.push(format!("$ {}", inv.display()));
    }
    let rb = backend::for_backend(backend);
    backend::load(rb.as_ref(), host, &scn.rules.files).await.map_err(|e| match &e {
        backend::BackendError::Load { file, .. } => {
            ProducerError::Rejected { file: file.into(), message: e.to_string() }
        }
        _ => ProducerError::Failed(e.to_string()),
    })?;
    for (file, inv) in
        scn.rules.files.iter().zip(backend::load_invocations(rb.as_ref(), &scn.rules.files).map_err(|e| e.to_string())?)
    {
        let input = if file.text.is_some() { format!(" < {}", file.path.display()) } else { String::new() };
        log.push(format!("$ {}{input}", inv.display()));
    }
    Ok(())
}
