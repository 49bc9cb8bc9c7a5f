//! nft: scripts loaded with `nft -f`, dumped with `nft list ruleset`.

use std::path::Path;

use super::RuleBackend;
use crate::backend::counters::{self, Dump, ParseError};
use crate::lab::sandbox::Invocation;
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
        counters::parse_nft_ruleset(text)
    }
}
