//! Rule back ends: the system tools that load a rule set into the lab's host namespace
//! and dump it with counters, and all that is known of each back end. One folder per
//! implementation, each with its own text reader and mutations; [`for_backend`] picks
//! one. Nothing outside this folder matches on [`Backend`]: what other stages need to
//! know of a back end is a method here.
//!
//! Each file is loaded with one tool invocation (one `iptables-restore`, one `nft -f`),
//! so the kernel takes it whole or not at all.

pub mod counters;
pub mod iptables;
pub mod mutation;
pub mod nft;
pub mod trace;

use std::os::fd::AsFd;
use std::path::Path;

use crate::backend::counters::{Dump, ParseError};
use crate::lab::netns::NetNs;
use crate::lab::sandbox::{self, ExecError, Invocation, IptablesFlavour};
use crate::scenario::{Backend, RuleFile, RuleFormat};

pub use mutation::{mutations, Mutation, MutationKind};

pub trait RuleBackend: Send + Sync {
    fn backend(&self) -> Backend;
    /// The programs this back end runs; all must be on PATH.
    fn programs(&self) -> &'static [&'static str];
    /// Loads one file, or standard input when `file` is None. `first` replaces what
    /// the tables hold; later files add to it.
    fn load(&self, file: Option<&Path>, first: bool) -> Invocation;
    /// Prints the whole rule set with counters.
    fn dump(&self) -> Invocation;
    fn parse_dump(&self, text: &str) -> Result<Dump, ParseError>;
    /// Loads one ip6tables-save file, for a back end that keeps IPv6 rules apart
    /// (iptables); None where one file holds both families (nft).
    fn load6(&self, _file: Option<&Path>, _first: bool) -> Option<Invocation> {
        None
    }
    /// Prints the IPv6 rule set with counters, where it is apart; its rules come back
    /// with the family `ip6`.
    fn dump6(&self) -> Option<Invocation> {
        None
    }
}

/// Every back end, in the order they are listed.
pub const ALL: [Backend; 3] = [Backend::IptablesNft, Backend::IptablesLegacy, Backend::Nft];

/// The back end of that name (`iptables-nft`, `iptables-legacy`, `nft`).
pub fn by_name(name: &str) -> Option<Backend> {
    ALL.into_iter().find(|b| b.name() == name)
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::IptablesNft => "iptables-nft",
            Backend::IptablesLegacy => "iptables-legacy",
            Backend::Nft => "nft",
        }
    }

    /// The rule file format this back end loads.
    pub fn format(self) -> RuleFormat {
        match self {
            Backend::IptablesNft | Backend::IptablesLegacy => RuleFormat::Iptables,
            Backend::Nft => RuleFormat::Nft,
        }
    }

    /// Which `iptables` a live program should find under this back end.
    pub fn iptables_flavour(self) -> IptablesFlavour {
        match self {
            Backend::IptablesNft => IptablesFlavour::Nft,
            Backend::IptablesLegacy => IptablesFlavour::Legacy,
            Backend::Nft => IptablesFlavour::System,
        }
    }

    /// firewalld's `FirewallBackend` setting for this back end.
    pub fn firewalld_setting(self) -> &'static str {
        match self {
            Backend::Nft => "nftables",
            Backend::IptablesNft | Backend::IptablesLegacy => "iptables",
        }
    }

    /// Prints the rule set without counters, as a fixture keeps it.
    pub fn save(self) -> Invocation {
        match self {
            Backend::IptablesNft => Invocation::new("iptables-nft-save", Vec::<&str>::new()),
            Backend::IptablesLegacy => Invocation::new("iptables-legacy-save", Vec::<&str>::new()),
            Backend::Nft => Invocation::new("nft", ["list", "ruleset"]),
        }
    }

    /// Prints the IPv6 rule set without counters, where it is apart (ip6tables).
    pub fn save6(self) -> Option<Invocation> {
        match self {
            Backend::IptablesNft => Some(Invocation::new("ip6tables-nft-save", Vec::<&str>::new())),
            Backend::IptablesLegacy => Some(Invocation::new("ip6tables-legacy-save", Vec::<&str>::new())),
            Backend::Nft => None,
        }
    }

    /// The kernel reports this back end's trace as x_tables TRACE log lines (through
    /// nfnetlink_log), not as nf_tables trace events.
    pub fn traces_by_log(self) -> bool {
        self == Backend::IptablesLegacy
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub fn for_backend(backend: Backend) -> Box<dyn RuleBackend> {
    match backend {
        Backend::IptablesNft => Box::new(iptables::Iptables::NFT),
        Backend::IptablesLegacy => Box::new(iptables::Iptables::LEGACY),
        Backend::Nft => Box::new(nft::Nft),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("loading {file}: {source}")]
    Load { file: String, source: ExecError },
    #[error("loading {file}: {backend} loads no ip6tables-save files (its files hold both families)")]
    NoIp6tables { file: String, backend: Backend },
    #[error("dumping the rule set: {0}")]
    Dump(ExecError),
    #[error("reading the {backend} dump: {source}")]
    Parse { backend: Backend, source: ParseError },
}

/// Programs of `backend` that are not on PATH.
pub fn missing_programs(backend: Backend) -> Vec<&'static str> {
    for_backend(backend).programs().iter().copied().filter(|p| sandbox::which(p).is_none()).collect()
}

/// The invocation that loads each of `files`, in order. The first file of each
/// family replaces what that family's tables hold; a file with its own text (a
/// producer's, with its variables filled in) goes on standard input.
pub fn load_invocations(rb: &dyn RuleBackend, files: &[RuleFile]) -> Result<Vec<Invocation>, BackendError> {
    let (mut first4, mut first6) = (true, true);
    let mut invocations = Vec::with_capacity(files.len());
    for file in files {
        let path = file.text.is_none().then_some(file.path.as_path());
        let inv = match file.format {
            RuleFormat::Ip6tables => {
                let first = std::mem::replace(&mut first6, false);
                rb.load6(path, first).ok_or_else(|| BackendError::NoIp6tables {
                    file: file.path.display().to_string(),
                    backend: rb.backend(),
                })?
            }
            _ => rb.load(path, std::mem::replace(&mut first4, false)),
        };
        invocations.push(match &file.text {
            Some(text) => Invocation { stdin: Some(text.clone().into_bytes()), ..inv },
            None => inv,
        });
    }
    Ok(invocations)
}

/// Load `files` in order into `host`.
pub async fn load(rb: &dyn RuleBackend, host: &NetNs, files: &[RuleFile]) -> Result<(), BackendError> {
    for (file, inv) in files.iter().zip(load_invocations(rb, files)?) {
        sandbox::run_in(host.as_fd(), &inv)
            .await
            .map_err(|source| BackendError::Load { file: file.path.display().to_string(), source })?;
    }
    Ok(())
}

/// The host's rule set with counters, and the dump's text. With `ipv6`, a back end
/// that keeps IPv6 apart dumps it too, into the same dump under the family `ip6`.
pub async fn dump(rb: &dyn RuleBackend, host: &NetNs, ipv6: bool) -> Result<(Dump, String), BackendError> {
    let inv = rb.dump();
    let out = sandbox::run_in(host.as_fd(), &inv).await.map_err(BackendError::Dump)?;
    let mut dump =
        rb.parse_dump(&out.stdout).map_err(|source| BackendError::Parse { backend: rb.backend(), source })?;
    let mut text = out.stdout;
    if let (true, Some(inv)) = (ipv6, rb.dump6()) {
        let out = sandbox::run_in(host.as_fd(), &inv).await.map_err(BackendError::Dump)?;
        let six = rb.parse_dump(&out.stdout).map_err(|source| BackendError::Parse { backend: rb.backend(), source })?;
        dump.merge_family("ip6", six);
        text.push_str(&out.stdout);
    }
    Ok((dump, text))
}
