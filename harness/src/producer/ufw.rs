//! `ufw`: the real ufw in the lab host, configured by the scenario's own `ufw` command
//! lines (`rules.live.commands`), then `ufw --force enable`.
//!
//! ufw keeps its state in /etc/ufw, /lib/ufw and /etc/default/ufw, and runs
//! /usr/sbin/iptables and /usr/sbin/iptables-restore by their full paths (ufw-init
//! even resets PATH), so a PATH shim cannot choose its back end. Inside the sandbox's
//! private mount namespace each of those folders and files is therefore a bind mount
//! of a copy under the sandbox's /run, and so is /etc/alternatives, whose `iptables*`
//! names point at the back end under test: what `update-alternatives --set` does on a
//! real host, for the sandbox only. The machine's own files are never written.
//!
//! The copy of /etc/default/ufw says `IPV6=yes` in a lab with IPv6 and `IPV6=no`
//! without (or what the scenario's `ipv6` says),
//! `IPT_MODULES=""` (loading kernel modules would change the machine, not the lab) and
//! names ufw's own sysctl file, whose copy keeps only `net` keys: those belong to the
//! lab host's network namespace, and ufw writes them when it starts, as on a real host.
//!

use std::path::PathBuf;

use futures::future::BoxFuture;

use super::support::{alternatives, alternatives_script, command_lines, indent, inside, make_dir, read, write_file};
use super::{run_logged, Log, Producer, ProducerError};
use crate::lab::sandbox::{Invocation, IptablesFlavour, Sandbox};
use crate::lab::Lab;
use crate::scenario::{Backend, Scenario};

/// The copies, inside the sandbox.
const STATE: &str = "/run/netconform/ufw";

#[derive(Default)]
pub struct Ufw {
    /// Kept until teardown: the bind mounts and anything ufw left live in it.
    sandbox: Option<Sandbox>,
}

impl Producer for Ufw {
    fn programs(&self) -> Vec<&'static str> {
        vec!["ufw", "unshare", "nsenter", "sh", "cp", "ln", "mount"]
    }

    fn reads(&self) -> Vec<&'static str> {
        vec!["/etc/ufw", "/etc/default/ufw", "/lib/ufw"]
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
            let sandbox = self.sandbox.insert(super::sandbox(scn, lab, backend).await?);
            let ipv6 = match &live.program {
                crate::scenario::Program::Ufw { ipv6: Some(v), .. } => *v,
                _ => scn.ipv6,
            };
            configure(sandbox, live.commands(), backend, ipv6, live.timeout, log).await
        })
    }

    fn teardown<'a>(&'a mut self, _log: &'a mut Log) -> BoxFuture<'a, Vec<String>> {
        // ufw's rules go with the lab host; its mounts and lock go with the sandbox.
        self.sandbox = None;
        Box::pin(async { Vec::new() })
    }
}

/// Sets up and enables the real ufw in `sandbox`, from copies of its configuration,
/// with the scenario's ufw command lines; each step may take `step_timeout`. The
/// `dockerd` producer uses it too, for a host where ufw came up before Docker.
pub(super) async fn configure(
    sandbox: &Sandbox,
    commands: &[String],
    backend: Backend,
    ipv6: bool,
    step_timeout: std::time::Duration,
    log: &mut Log,
) -> Result<(), ProducerError> {
    let flavour = match backend.iptables_flavour() {
        IptablesFlavour::System => {
            return Err(ProducerError::Input(
                "ufw writes iptables rules: run it under iptables-nft or iptables-legacy".into(),
            ))
        }
        f => f,
    };
    let commands = command_lines(commands, "ufw")?;
    let links = alternatives(flavour)?;
    let defaults = read("/etc/default/ufw")?;
    let sysctl = read("/etc/ufw/sysctl.conf")?;
    let state = inside(sandbox, STATE);
    make_dir(&state)?;
    write_file(&state.join("default-ufw"), &defaults_text(&defaults, ipv6))?;
    write_file(&state.join("sysctl.conf"), &sysctl_text(&sysctl))?;

    let script = setup_script(&links);
    let mut setup = Invocation::new("sh", ["-euc", script.as_str()]);
    setup.timeout = step_timeout;
    log.push(format!("ufw's configuration, copied and bind-mounted in the sandbox:\n{}", indent(&script)));
    run_logged(sandbox, &setup, "sh -euc SETUP", log).await?;

    for line in commands.iter().map(String::as_str).chain(["ufw --force enable"]) {
        let mut inv = Invocation::new("sh", ["-c", line]);
        inv.timeout = step_timeout;
        run_logged(sandbox, &inv, line, log).await?;
    }
    Ok(())
}

/// The shell script that makes the copies and mounts them over the originals. The
/// rewritten /etc/default/ufw and sysctl file are already in [`STATE`].
fn setup_script(links: &[(&'static str, PathBuf)]) -> String {
    let mut s = String::new();
    s.push_str(&format!("S={STATE}\n"));
    s.push_str("cp -a /etc/ufw \"$S/etc-ufw\"\n");
    s.push_str("cp -a /lib/ufw \"$S/lib-ufw\"\n");
    s.push_str("cp \"$S/sysctl.conf\" \"$S/etc-ufw/sysctl.conf\"\n");
    s.push_str(&alternatives_script(STATE, links));
    s.push_str("mount --bind \"$S/etc-ufw\" /etc/ufw\n");
    s.push_str("mount --bind \"$S/lib-ufw\" /lib/ufw\n");
    s.push_str("mount --bind \"$S/default-ufw\" /etc/default/ufw\n");
    s
}

/// /etc/default/ufw for the lab: the three settings the module documentation names,
/// replaced where they are and added where they are missing; everything else as is.
pub(super) fn defaults_text(original: &str, ipv6: bool) -> String {
    let v6 = if ipv6 { ("IPV6", "yes", "the lab has IPv6") } else { ("IPV6", "no", "IPv6 is off in the lab") };
    let set: [(&str, &str, &str); 3] = [
        v6,
        ("IPT_MODULES", "\"\"", "loading kernel modules would change the machine"),
        ("IPT_SYSCTL", "/etc/ufw/sysctl.conf", "a copy that keeps only network namespace settings"),
    ];
    let mut seen = [false; 3];
    let mut out = String::new();
    for line in original.lines() {
        let key = line.trim_start().split('=').next().unwrap_or("").trim();
        match set.iter().position(|(k, _, _)| *k == key && line.contains('=')) {
            Some(i) => {
                let (k, v, why) = set[i];
                if !seen[i] {
                    out.push_str(&format!("# set for the lab: {why}\n{k}={v}\n"));
                }
                seen[i] = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (k, v, why)) in set.iter().enumerate() {
        if !seen[i] {
            out.push_str(&format!("# set for the lab: {why}\n{k}={v}\n"));
        }
    }
    out
}

/// ufw's sysctl file for the lab: `net` keys as they are (each network namespace has
/// its own), any other key commented out, since it would be the whole machine's.
pub(super) fn sysctl_text(original: &str) -> String {
    let mut out = String::new();
    for line in original.lines() {
        let t = line.trim_start();
        let key = t.trim_start_matches('-').split('=').next().unwrap_or("").trim();
        let keep = t.is_empty()
            || t.starts_with('#')
            || t.starts_with(';')
            || key.starts_with("net/")
            || key.starts_with("net.");
        if keep {
            out.push_str(line);
        } else {
            out.push_str("# left out in the lab, not a network namespace setting: ");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_DEFAULTS: &str = "# /etc/default/ufw\n#\n\n# Set to yes to apply rules to support IPv6\nIPV6=yes\n\
        DEFAULT_INPUT_POLICY=\"DROP\"\nMANAGE_BUILTINS=no\nIPT_SYSCTL=/etc/ufw/sysctl.conf\n\
        # Extra connection tracking modules to load.\nIPT_MODULES=\"\"\n";

    #[test]
    fn defaults_turn_ipv6_and_modules_off_in_place() {
        let text = defaults_text(DEBIAN_DEFAULTS, false);
        assert!(text.contains("\nIPV6=no\n"), "{text}");
        assert!(!text.contains("IPV6=yes"), "{text}");
        assert!(text.contains("\nIPT_MODULES=\"\"\n"), "{text}");
        assert!(text.contains("\nIPT_SYSCTL=/etc/ufw/sysctl.conf\n"), "{text}");
        assert!(text.contains("DEFAULT_INPUT_POLICY=\"DROP\"\nMANAGE_BUILTINS=no\n"), "{text}");
        // In place: IPV6 still comes right after its own comment.
        assert!(text.contains("# Set to yes to apply rules to support IPv6\n# set for the lab"), "{text}");
        assert_eq!(text.matches("IPV6=").count(), 1);
    }

    #[test]
    fn a_lab_with_ipv6_keeps_ipv6_on() {
        let text = defaults_text(DEBIAN_DEFAULTS, true);
        assert!(text.contains("# set for the lab: the lab has IPv6\nIPV6=yes\n"), "{text}");
        assert_eq!(text.matches("IPV6=").count(), 1);
    }

    #[test]
    fn defaults_missing_settings_are_added_and_others_replaced() {
        let text = defaults_text("IPT_MODULES=\"nf_conntrack_ftp nf_nat_ftp\"\nIPT_SYSCTL=/etc/sysctl.conf\n", false);
        assert!(text.contains("IPT_MODULES=\"\"\n"), "{text}");
        assert!(!text.contains("nf_conntrack_ftp"), "{text}");
        assert!(text.contains("IPT_SYSCTL=/etc/ufw/sysctl.conf\n"), "{text}");
        assert!(text.contains("IPV6=no\n"), "{text}");
        // A comment that mentions a key is no setting.
        let text = defaults_text("# IPV6=yes is the default\n", false);
        assert!(text.starts_with("# IPV6=yes is the default\n"), "{text}");
        assert!(text.contains("\nIPV6=no\n"), "{text}");
    }

    #[test]
    fn sysctl_keeps_only_network_keys() {
        let text = sysctl_text(
            "# comment\n\nnet/ipv4/conf/all/accept_redirects=0\nnet.ipv4.icmp_echo_ignore_all = 0\n\
             -net/ipv4/tcp_sack=1\nkernel/printk=3 4 1 3\nvm.swappiness=10\n",
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# comment");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], "net/ipv4/conf/all/accept_redirects=0");
        assert_eq!(lines[3], "net.ipv4.icmp_echo_ignore_all = 0");
        assert_eq!(lines[4], "-net/ipv4/tcp_sack=1");
        assert!(lines[5].starts_with("# left out") && lines[5].ends_with("kernel/printk=3 4 1 3"), "{text}");
        assert!(lines[6].starts_with("# left out") && lines[6].ends_with("vm.swappiness=10"), "{text}");
        // "network" is not "net".
        assert!(sysctl_text("network/x=1\n").starts_with("# left out"));
    }

    #[test]
    fn setup_mounts_every_copy_over_its_original() {
        let s = setup_script(&[("iptables", PathBuf::from("/usr/sbin/iptables-nft"))]);
        for (copy, original) in [("etc-ufw", "/etc/ufw"), ("lib-ufw", "/lib/ufw"), ("default-ufw", "/etc/default/ufw")]
        {
            assert!(s.contains(&format!("mount --bind \"$S/{copy}\" {original}\n")), "{s}");
        }
        assert!(s.contains("mount --bind /run/netconform/ufw/alternatives /etc/alternatives\n"), "{s}");
        // The copies exist before anything is mounted over the originals.
        let first_mount = s.find("mount --bind").unwrap();
        assert!(s.find("cp -a /etc/ufw").unwrap() < first_mount);
        assert!(s.find("cp \"$S/sysctl.conf\"").unwrap() < first_mount);
    }
}
