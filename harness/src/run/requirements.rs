//! What this machine must have to run a scenario under a back end: root (or a user
//! namespace), network namespaces, the back end's programs, br_netfilter for bridges
//! and ipset for sets. Found before anything is built, so a run never fails half-way
//! for want of them.

use crate::backend;
use crate::scenario::{Backend, Scenario};

/// What must be true of this machine to run `scn` under `backend`; the reason if not.
pub fn requirements(scn: &Scenario, backend: Backend) -> Result<(), String> {
    machine_requirements(backend)?;
    if !scn.host.bridges.is_empty() {
        namespace_probe().bridge_netfilter.clone()?;
    }
    if !scn.rules.ipsets.is_empty() && crate::lab::sandbox::which("ipset").is_none() {
        return Err("the rule set needs ipset on PATH; install with ci/install-deps".into());
    }
    Ok(())
}

/// What must be true of this machine to run anything under `backend`.
pub fn machine_requirements(backend: Backend) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "needs root: building network namespaces and loading rules take CAP_SYS_ADMIN and CAP_NET_ADMIN".into()
        );
    }
    namespace_probe().create.clone()?;
    let missing = backend::missing_programs(backend);
    if !missing.is_empty() {
        return Err(format!(
            "the {backend} back end needs {} on PATH; install with ci/install-deps",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// What one throwaway namespace showed about this machine, found once per process.
struct NamespaceProbe {
    create: Result<(), String>,
    bridge_netfilter: Result<(), String>,
}

fn namespace_probe() -> &'static NamespaceProbe {
    static PROBE: std::sync::OnceLock<NamespaceProbe> = std::sync::OnceLock::new();
    PROBE.get_or_init(|| match crate::lab::netns::NetNs::create("probe") {
        Err(e) => {
            let why = format!(
                "cannot create a network namespace ({e}): run as root with CAP_SYS_ADMIN and CAP_NET_ADMIN \
                 (in a container: --privileged)"
            );
            NamespaceProbe { create: Err(why.clone()), bridge_netfilter: Err(why) }
        }
        Ok(ns) => {
            let present = ns.run(|| std::path::Path::new("/proc/sys/net/bridge").is_dir()).unwrap_or(false);
            NamespaceProbe {
                create: Ok(()),
                bridge_netfilter: if present {
                    Ok(())
                } else {
                    Err("scenarios with bridges need br_netfilter, so that bridged packets can pass \
                         iptables: run `modprobe br_netfilter`"
                        .into())
                },
            }
        }
    })
}
