//! iptables-restore / iptables-save, with the nf_tables or the legacy x_tables back end.

pub mod mutate;
pub mod save;

use std::path::Path;

use super::RuleBackend;
use crate::backend::counters::{Dump, ParseError};
use crate::lab::sandbox::Invocation;
use crate::scenario::Backend;

pub struct Iptables {
    backend: Backend,
    /// restore and save, for IPv4 then for IPv6.
    programs: &'static [&'static str],
}

impl Iptables {
    pub const NFT: Iptables = Iptables {
        backend: Backend::IptablesNft,
        programs: &["iptables-nft-restore", "iptables-nft-save", "ip6tables-nft-restore", "ip6tables-nft-save"],
    };
    pub const LEGACY: Iptables = Iptables {
        backend: Backend::IptablesLegacy,
        programs: &[
            "iptables-legacy-restore",
            "iptables-legacy-save",
            "ip6tables-legacy-restore",
            "ip6tables-legacy-save",
        ],
    };
}

/// One restore of `file` (or standard input) with `program`; after the first file,
/// `--noflush` adds to the tables.
fn restore(program: &str, file: Option<&Path>, first: bool) -> Invocation {
    let mut args = vec![];
    if !first {
        args.push("--noflush".to_string());
    }
    args.extend(file.map(|f| f.display().to_string()));
    Invocation::new(program, args)
}

impl RuleBackend for Iptables {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn programs(&self) -> &'static [&'static str] {
        self.programs
    }

    fn load(&self, file: Option<&Path>, first: bool) -> Invocation {
        restore(self.programs[0], file, first)
    }

    fn load6(&self, file: Option<&Path>, first: bool) -> Option<Invocation> {
        Some(restore(self.programs[2], file, first))
    }

    fn dump6(&self) -> Option<Invocation> {
        Some(Invocation::new(self.programs[3], ["-c"]))
    }

    fn dump(&self) -> Invocation {
        Invocation::new(self.programs[1], ["-c"])
    }

    fn parse_dump(&self, text: &str) -> Result<Dump, ParseError> {
        save::parse_iptables_save(text)
    }
}
