//! `firewalld`: the real firewalld, with a D-Bus system bus of its own, in the lab
//! host, configured by the scenario's `firewall-cmd` lines (`rules.live.commands`).
//!
//! Both daemons run in the sandbox: the bus socket is the sandbox's
//! /run/dbus/system_bus_socket (its /run is private, so `firewall-cmd` finds it at the
//! usual place and never the machine's bus), and /etc/firewalld is a bind mount of a
//! copy under that /run, so even a `--permanent` change stays in the sandbox. Under
//! the `nft` back end firewalld writes nftables itself (`FirewallBackend=nftables`, its
//! default); under `iptables-nft` and `iptables-legacy` the copy says
//! `FirewallBackend=iptables`, and /etc/alternatives is a copy whose `iptables*` names
//! point at the back end under test, since firewalld runs /usr/sbin/iptables-restore by
//! its full path. The copy also says `CleanupModulesOnExit=no`: unloading kernel
//! modules would change the machine, not the lab.
//!
//! At teardown firewalld, then the bus, get SIGTERM and are waited for; whatever is
//! left ends with the sandbox's PID namespace, also when this process is killed.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::support::{
    alternatives, alternatives_script, command_lines, indent, inside, make_dir, read, write_file, BUS_CONFIG,
    BUS_SOCKET,
};
use super::{run_logged, Log, Producer, ProducerError};
use crate::lab::sandbox::{Invocation, Sandbox};
use crate::lab::Lab;
use crate::scenario::{Backend, Scenario};

/// The copies and the bus configuration, inside the sandbox.
const STATE: &str = "/run/netconform/firewalld";

/// How long a daemon may take to end after SIGTERM before the sandbox kills it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Firewalld {
    /// Kept until teardown: the daemons end with it at the latest.
    sandbox: Option<Sandbox>,
    /// In start order; stopped in reverse.
    daemons: Vec<Daemon>,
}

/// A daemon started in the sandbox, with its output.
struct Daemon {
    name: &'static str,
    /// `nsenter`, whose only child is the daemon (nsenter forks into the PID namespace
    /// and waits).
    nsenter: tokio::process::Child,
    /// An unlinked file: nothing is left of it when it is closed.
    output: std::fs::File,
}

impl Daemon {
    fn start(sandbox: &Sandbox, inv: &Invocation, name: &'static str, log: &mut Log) -> Result<Daemon, String> {
        let output = tempfile::tempfile().map_err(|e| format!("a file for {name}'s output: {e}"))?;
        let copy = output.try_clone().map_err(|e| format!("a file for {name}'s output: {e}"))?;
        let nsenter = sandbox.spawn_logged(inv, copy).map_err(|e| format!("starting {name}: {e}"))?;
        log.push(format!("$ {} &", inv.display()));
        Ok(Daemon { name, nsenter, output })
    }

    /// What it printed so far.
    fn output(&self) -> String {
        use std::io::{Read, Seek};
        let mut file = &self.output;
        let mut text = String::new();
        if file.rewind().is_ok() {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Why it is not running any more, if it is not.
    fn exited(&mut self) -> Option<String> {
        let status = self.nsenter.try_wait().ok().flatten()?;
        Some(format!("{} exited ({status}):\n{}", self.name, self.output()))
    }

    /// SIGTERM to the daemon itself (by its PID, as this process sees it), then wait
    /// for it to end.
    async fn stop(&mut self) -> Result<String, String> {
        if let Some(why) = self.exited() {
            return Err(format!("{why}\n(before it was stopped)"));
        }
        let nsenter = self.nsenter.id().ok_or_else(|| format!("{} is gone", self.name))?;
        let pid = std::fs::read_to_string(format!("/proc/{nsenter}/task/{nsenter}/children"))
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()))
            .ok_or_else(|| format!("{}: no process under nsenter {nsenter}", self.name))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
            .map_err(|e| format!("stopping {} ({pid}): {e}", self.name))?;
        match tokio::time::timeout(STOP_TIMEOUT, self.nsenter.wait()).await {
            Ok(Ok(status)) => Ok(format!("{} stopped ({status})", self.name)),
            Ok(Err(e)) => Err(format!("waiting for {}: {e}", self.name)),
            Err(_) => {
                Err(format!("{} did not stop within {STOP_TIMEOUT:?} of SIGTERM (killed with its sandbox)", self.name))
            }
        }
    }
}

impl Producer for Firewalld {
    fn programs(&self) -> Vec<&'static str> {
        vec!["firewalld", "firewall-cmd", "dbus-daemon", "unshare", "nsenter", "sh", "cp", "mount"]
    }

    fn reads(&self) -> Vec<&'static str> {
        vec!["/etc/firewalld"]
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
            let commands = command_lines(live.commands(), "firewall-cmd")?;
            let flavour = backend.iptables_flavour();
            let links = alternatives(flavour)?;
            let conf = read("/etc/firewalld/firewalld.conf")?;

            let mut env = super::lab_environment(scn, backend);
            env.push(("DBUS_SYSTEM_BUS_ADDRESS".into(), format!("unix:path={BUS_SOCKET}")));
            let sandbox = Sandbox::start(lab.host().as_fd(), flavour, env)
                .await
                .map_err(|e| format!("starting the sandbox: {e}"))?;
            let sandbox = self.sandbox.insert(sandbox);
            let state = inside(sandbox, STATE);
            make_dir(&state)?;
            write_file(&state.join("bus.conf"), BUS_CONFIG)?;
            write_file(&state.join("firewalld.conf"), &conf_text(&conf, backend))?;

            let script = setup_script(&alternatives_script(STATE, &links));
            let mut setup = Invocation::new("sh", ["-euc", script.as_str()]);
            setup.timeout = live.timeout;
            log.push(format!(
                "firewalld's configuration, copied and bind-mounted in the sandbox:\n{}",
                indent(&script)
            ));
            run_logged(sandbox, &setup, "sh -euc SETUP", log).await?;

            let deadline = Instant::now() + live.timeout;
            let bus_conf = format!("--config-file={STATE}/bus.conf");
            let bus = Invocation::new("dbus-daemon", [bus_conf.as_str(), "--nofork", "--nopidfile", "--nosyslog"]);
            self.daemons.push(Daemon::start(sandbox, &bus, "dbus-daemon", log)?);
            let socket = inside(sandbox, BUS_SOCKET);
            while !socket.exists() {
                if let Some(why) = self.daemons[0].exited() {
                    return Err(why.into());
                }
                if Instant::now() > deadline {
                    return Err(format!("dbus-daemon did not create {BUS_SOCKET} within {:?}", live.timeout).into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }

            let firewalld = Invocation::new("firewalld", ["--nofork", "--nopid", "--log-target", "console"]);
            self.daemons.push(Daemon::start(sandbox, &firewalld, "firewalld", log)?);
            let mut state = Invocation::new("firewall-cmd", ["--state"]);
            state.timeout = Duration::from_secs(5);
            loop {
                match sandbox.run(&state).await {
                    Ok(out) => {
                        log.command(&state.display(), &out.stdout, &out.stderr);
                        break;
                    }
                    Err(e) => {
                        if let Some(why) = self.daemons[1].exited() {
                            return Err(why.into());
                        }
                        if Instant::now() > deadline {
                            log.push(format!("$ {}\n  {e}", state.display()));
                            return Err(format!(
                                "firewalld was not running within {:?}: {e}\nits output:\n{}",
                                live.timeout,
                                self.daemons[1].output()
                            )
                            .into());
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }

            for line in &commands {
                let mut inv = Invocation::new("sh", ["-c", line.as_str()]);
                inv.timeout = live.timeout;
                run_logged(sandbox, &inv, line, log).await?;
            }
            Ok(())
        })
    }

    fn teardown<'a>(&'a mut self, log: &'a mut Log) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut problems = Vec::new();
            while let Some(mut daemon) = self.daemons.pop() {
                match daemon.stop().await {
                    Ok(done) => log.push(done),
                    Err(e) => problems.push(e),
                }
                let output = daemon.output();
                if !output.trim().is_empty() {
                    log.command(&format!("({} output)", daemon.name), &output, "");
                }
            }
            self.sandbox = None;
            problems
        })
    }
}

/// The shell script that copies /etc/firewalld (with the rewritten firewalld.conf
/// already in [`STATE`]) and mounts it over the original, after `alternatives` (shell
/// lines, possibly none).
fn setup_script(alternatives: &str) -> String {
    let mut s = format!("S={STATE}\nmkdir -p /run/dbus\n");
    s.push_str("cp -a /etc/firewalld \"$S/etc\"\n");
    s.push_str("cp \"$S/firewalld.conf\" \"$S/etc/firewalld.conf\"\n");
    s.push_str(alternatives);
    s.push_str("mount --bind \"$S/etc\" /etc/firewalld\n");
    s
}

/// firewalld.conf for the lab: the back end the scenario runs under, and no module
/// unloading, replaced where they are and added where they are missing.
pub(super) fn conf_text(original: &str, backend: Backend) -> String {
    let firewall_backend = backend.firewalld_setting();
    let set = [("FirewallBackend", firewall_backend), ("CleanupModulesOnExit", "no")];
    let mut seen = [false; 2];
    let mut out = String::new();
    for line in original.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match set.iter().position(|(k, _)| *k == key && line.contains('=')) {
            Some(i) => {
                if !seen[i] {
                    out.push_str(&format!("{}={}\n", set[i].0, set[i].1));
                }
                seen[i] = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (k, v)) in set.iter().enumerate() {
        if !seen[i] {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_CONF: &str = "# firewalld config file\n\n# Default: public\nDefaultZone=public\n\
        CleanupOnExit=yes\nCleanupModulesOnExit=yes\n# FirewallBackend=iptables\nFirewallBackend=nftables\n\
        IPv6_rpfilter=yes\n";

    #[test]
    fn conf_sets_the_back_end_in_place() {
        let text = conf_text(DEBIAN_CONF, Backend::IptablesLegacy);
        assert!(text.contains("\n# FirewallBackend=iptables\nFirewallBackend=iptables\nIPv6_rpfilter=yes\n"), "{text}");
        assert!(text.contains("\nCleanupModulesOnExit=no\n"), "{text}");
        assert!(text.contains("\nDefaultZone=public\nCleanupOnExit=yes\n"), "{text}");
        assert_eq!(text.matches("\nFirewallBackend=").count(), 1, "{text}");
        let text = conf_text(DEBIAN_CONF, Backend::Nft);
        assert!(text.contains("\nFirewallBackend=nftables\n"), "{text}");
    }

    #[test]
    fn conf_adds_missing_settings() {
        let text = conf_text("DefaultZone=public\n", Backend::Nft);
        assert_eq!(text, "DefaultZone=public\nFirewallBackend=nftables\nCleanupModulesOnExit=no\n");
    }

    #[test]
    fn setup_copies_before_mounting() {
        let s = setup_script("ALTERNATIVES\n");
        let mount = s.find("mount --bind \"$S/etc\" /etc/firewalld").unwrap();
        assert!(s.find("cp -a /etc/firewalld").unwrap() < mount);
        assert!(s.find("cp \"$S/firewalld.conf\"").unwrap() < mount);
        assert!(s.find("ALTERNATIVES").unwrap() < mount);
        assert!(s.contains("mkdir -p /run/dbus\n"));
    }
}
