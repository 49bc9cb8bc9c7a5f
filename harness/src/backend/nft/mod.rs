//! nft: scripts loaded with `nft -f`, dumped with `nft list ruleset`.

pub mod listing;
pub mod mutate;

use std::os::fd::AsFd;
use std::path::Path;

use super::RuleBackend;
use crate::backend::counters::{Dump, ParseError};
use crate::lab::netns::NetNs;
use crate::lab::sandbox::{self, ExecError, Invocation};
use crate::scenario::Backend;

pub struct Nft;

impl RuleBackend for Nft {
    fn backend(&self) -> Backend {
        Backend::Nft
    }

    fn programs(&self) -> &'static [&'static str] {
        &["nft"]
    }

    fn load(&self, file: Option<&Path>, _first: bool) -> Invocation {
        // An nft script says itself whether it flushes; a fresh lab holds nothing,
        // so the first file needs no flush of ours either.
        let file = file.map(Path::as_os_str).unwrap_or(std::ffi::OsStr::new("-"));
        Invocation::new("nft", [std::ffi::OsStr::new("-f"), file])
    }

    fn dump(&self) -> Invocation {
        Invocation::new("nft", ["list", "ruleset"])
    }

    fn parse_dump(&self, text: &str) -> Result<Dump, ParseError> {
        listing::parse_nft_ruleset(text)
    }
}

/// Loads `script` into `host` in one transaction (`nft -f -`).
pub async fn apply(host: &NetNs, script: &str) -> Result<(), ExecError> {
    let inv = Invocation { stdin: Some(script.as_bytes().to_vec()), ..Invocation::new("nft", ["-f", "-"]) };
    sandbox::run_in(host.as_fd(), &inv).await.map(drop)
}

/// Removes the table `family name` from `host`.
pub async fn delete_table(host: &NetNs, family: &str, name: &str) -> Result<(), ExecError> {
    sandbox::run_in(host.as_fd(), &Invocation::new("nft", ["delete", "table", family, name])).await.map(drop)
}

/// `nft -a list ruleset` of `host`: the rule set with each rule's handle.
pub async fn list_with_handles(host: &NetNs) -> Result<String, ExecError> {
    sandbox::run_in(host.as_fd(), &Invocation::new("nft", ["-a", "list", "ruleset"])).await.map(|o| o.stdout)
}
