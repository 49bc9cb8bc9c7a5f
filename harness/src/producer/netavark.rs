//! `netavark`: Podman's network stack, driven as Podman drives it. For every container
//! of the scenario the producer writes netavark's options JSON (the container, its
//! published ports, its network and that network's bridge, subnet and gateway) and
//! runs `netavark --config DIR setup NETNS` in the lab host's sandbox, with the
//! container's own lab namespace as NETNS. netavark then creates the bridge, the veth
//! pair, the addresses and routes, and its firewall rules, through the driver the
//! scenario names in `rules.live.driver` (`NETAVARK_FW`: iptables by default;
//! nftables, which netavark 1.4.0 refuses as not available and later releases have;
//! or firewalld, for which a private D-Bus and firewalld are started in the sandbox
//! first). At the end, `netavark teardown` runs for every container set up.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::support::{container_id, containers, hex_id, netns_path};
use super::{run_logged, Log, Producer, ProducerError};
use crate::lab::sandbox::{Invocation, Sandbox};
use crate::lab::Lab;
use crate::scenario::{NodeId, Scenario};

/// Where distributions install netavark (it is not on PATH: Podman runs it by path).
const LOCATIONS: [&str; 3] =
    ["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark", "/usr/local/libexec/podman/netavark"];

/// netavark's `--config` directory, inside the sandbox's private /run.
const CONFIG_DIR: &str = "/run/netconform/netavark";

/// The installed netavark, or the Debian path (so that a missing one is named).
fn program() -> &'static str {
    LOCATIONS.iter().copied().find(|p| std::path::Path::new(p).is_file()).unwrap_or(LOCATIONS[0])
}

/// The firewall driver netavark uses when the scenario names none.
pub const DEFAULT_DRIVER: &str = "iptables";

pub struct Netavark {
    /// Kept until teardown: firewalld and D-Bus, if started, end with it.
    sandbox: Option<Sandbox>,
    /// Containers whose setup succeeded, in setup order, for teardown.
    done: Vec<SetUp>,
    driver: String,
    timeout: Duration,
    /// firewalld's output, read into the log at teardown.
    firewalld: Option<daemons::Daemons>,
}

impl Netavark {
    pub fn new(scn: &Scenario) -> Netavark {
        let live = scn.rules.live.as_ref();
        Netavark {
            sandbox: None,
            done: Vec::new(),
            driver: live.and_then(|l| l.driver().map(str::to_string)).unwrap_or_else(|| DEFAULT_DRIVER.to_string()),
            timeout: live.map(|l| l.timeout).unwrap_or(crate::lab::sandbox::DEFAULT_TIMEOUT),
            firewalld: None,
        }
    }
}

struct SetUp {
    name: String,
    netns: String,
    options: String,
}

/// netavark's options for the container `id`: what Podman passes to
/// `netavark setup` and `netavark teardown` on standard input.
pub fn options(scn: &Scenario, id: NodeId) -> Value {
    let node = scn.node(id);
    let c = node.container.as_ref().expect("a container");
    let net = &scn.networks[c.network];
    let ports: Vec<Value> = c
        .publish
        .iter()
        .map(|p| {
            json!({
                "host_ip": p.host_ip.map(|a| a.to_string()).unwrap_or_default(),
                "container_port": p.container_port,
                "host_port": p.host_port,
                "range": 1,
                "protocol": if p.udp { "udp" } else { "tcp" },
            })
        })
        .collect();
    json!({
        "container_id": container_id(&node.name),
        "container_name": node.name,
        "port_mappings": ports,
        "networks": {
            net.name.clone(): {
                "static_ips": std::iter::once(c.address.to_string())
                    .chain(c.address6.map(|a| a.to_string()))
                    .collect::<Vec<_>>(),
                "aliases": [node.name],
                "interface_name": "eth0",
            }
        },
        "network_info": {
            net.name.clone(): network_info(scn, c.network),
        },
    })
}

/// One network as `podman network inspect` describes it to netavark.
fn network_info(scn: &Scenario, index: usize) -> Value {
    let net = &scn.networks[index];
    json!({
        "name": net.name,
        "id": hex_id(&format!("network {}", net.name)),
        "driver": "bridge",
        "network_interface": net.bridge,
        "subnets": subnets(net),
        "ipv6_enabled": net.subnet6.is_some(),
        "internal": net.internal,
        "dns_enabled": false,
        "ipam_options": { "driver": "host-local" },
    })
}

/// A network's subnets with their gateways, IPv4 first.
fn subnets(net: &crate::scenario::Network) -> Vec<Value> {
    let mut subnets = vec![json!({ "subnet": net.subnet.to_string(), "gateway": net.gateway.to_string() })];
    if let (Some(subnet), Some(gateway)) = (net.subnet6, net.gateway6) {
        subnets.push(json!({ "subnet": subnet.to_string(), "gateway": gateway.to_string() }));
    }
    subnets
}

/// `netavark ... setup|teardown NETNS` with the driver in its environment.
fn invocation(driver: &str, verb: &str, netns: &str, options: &str, timeout: Duration) -> Invocation {
    let fw = format!("NETAVARK_FW={driver}");
    let mut inv = Invocation::new("env", [fw.as_str(), program(), "--config", CONFIG_DIR, verb, netns]);
    inv.stdin = Some(options.as_bytes().to_vec());
    inv.timeout = timeout;
    inv
}

/// How a command line is shown in the log: what it was given on standard input too.
fn shown(inv: &Invocation, what: &str) -> String {
    format!("{} < options({what})", inv.display().trim_start_matches("env "))
}

impl Producer for Netavark {
    fn programs(&self) -> Vec<&'static str> {
        let mut programs = vec!["unshare", "nsenter", "env", program()];
        if self.driver == "firewalld" {
            programs.extend(["dbus-daemon", "firewalld", "firewall-cmd"]);
        }
        programs
    }

    fn reads(&self) -> Vec<&'static str> {
        if self.driver == "firewalld" {
            vec!["/etc/firewalld"]
        } else {
            Vec::new()
        }
    }

    fn produce<'a>(
        &'a mut self,
        scn: &'a Scenario,
        lab: &'a mut Lab,
        backend: crate::scenario::Backend,
        log: &'a mut Log,
    ) -> BoxFuture<'a, Result<(), ProducerError>> {
        Box::pin(async move {
            let sandbox = self.sandbox.insert(super::sandbox(scn, lab, backend).await?);
            let mkdir = Invocation::new("mkdir", ["-p", CONFIG_DIR]);
            run_logged(sandbox, &mkdir, &mkdir.display(), log).await?;
            if self.driver == "firewalld" {
                // netavark talks to firewalld over the system bus: both must run in the
                // sandbox, where /run/dbus is the sandbox's own.
                self.firewalld = Some(daemons::start(sandbox, self.timeout, log).await?);
            }
            for id in containers(scn) {
                let name = scn.node(id).name.clone();
                let netns = netns_path(lab, id);
                let options = serde_json::to_string_pretty(&options(scn, id)).expect("JSON");
                log.push(format!("options({name}):\n{options}"));
                let inv = invocation(&self.driver, "setup", &netns, &options, self.timeout);
                run_logged(sandbox, &inv, &shown(&inv, &name), log).await?;
                self.done.push(SetUp { name, netns, options });
            }
            Ok(())
        })
    }

    fn teardown<'a>(&'a mut self, log: &'a mut Log) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut problems = Vec::new();
            if let Some(sandbox) = &self.sandbox {
                while let Some(s) = self.done.pop() {
                    let inv = invocation(&self.driver, "teardown", &s.netns, &s.options, self.timeout);
                    if let Err(e) = run_logged(sandbox, &inv, &shown(&inv, &s.name), log).await {
                        problems.push(e);
                    }
                }
            }
            if let Some(daemons) = self.firewalld.take() {
                daemons.finish(log);
            }
            // Ends firewalld and D-Bus, if they ran, with everything else in it.
            self.sandbox = None;
            problems
        })
    }
}

/// firewalld for netavark's firewalld driver, with a D-Bus system bus of its own,
/// both in the sandbox: the bus socket is under the sandbox's /run, firewalld's
/// configuration a copy under it, its log its standard output. Nothing reaches the
/// machine's own bus or firewalld.
mod daemons {
    use std::io::{Read, Seek};
    use std::time::{Duration, Instant};

    use crate::lab::sandbox::{Invocation, Sandbox};
    use crate::producer::run_logged;
    use crate::producer::Log;

    const DIR: &str = "/run/netconform/firewalld";
    // The bus of the firewalld producer, whose configuration is the same.
    use crate::producer::support::{BUS_CONFIG, BUS_SOCKET};

    /// The running daemons' output, shown in the log when they are done.
    pub struct Daemons {
        outputs: Vec<(&'static str, std::fs::File)>,
    }

    impl Daemons {
        pub fn finish(self, log: &mut Log) {
            for (name, mut file) in self.outputs {
                let mut text = String::new();
                if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() && !text.trim().is_empty() {
                    log.command(&format!("({name} output)"), &text, "");
                }
            }
        }
    }

    /// Start dbus-daemon, then firewalld, and wait until firewalld answers.
    pub async fn start(sandbox: &Sandbox, timeout: Duration, log: &mut Log) -> Result<Daemons, String> {
        let prepare = format!(
            "mkdir -p /run/dbus {DIR} && cp -a /etc/firewalld {DIR}/etc && cat > {DIR}/bus.conf <<'EOF'\n{BUS_CONFIG}EOF\n"
        );
        let inv = Invocation::new("sh", ["-c", prepare.as_str()]);
        run_logged(sandbox, &inv, "sh -c 'mkdir /run/dbus; copy /etc/firewalld; write bus.conf'", log).await?;
        let mut daemons = Daemons { outputs: Vec::new() };

        let bus_conf = format!("--config-file={DIR}/bus.conf");
        let bus = Invocation::new("dbus-daemon", [bus_conf.as_str(), "--nofork", "--nopidfile", "--nosyslog"]);
        spawn(sandbox, &bus, "dbus-daemon", &mut daemons, log)?;
        let socket = format!("/proc/{}/root{BUS_SOCKET}", sandbox.init_pid());
        let deadline = Instant::now() + timeout;
        while !std::path::Path::new(&socket).exists() {
            if Instant::now() > deadline {
                daemons.finish(log);
                return Err(format!("dbus-daemon did not create {BUS_SOCKET} within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let etc = format!("{DIR}/etc");
        let firewalld = Invocation::new(
            "firewalld",
            ["--nofork", "--nopid", "--system-config", etc.as_str(), "--log-target", "console"],
        );
        spawn(sandbox, &firewalld, "firewalld", &mut daemons, log)?;
        let mut state = Invocation::new("firewall-cmd", ["--state"]);
        state.timeout = Duration::from_secs(5);
        loop {
            match sandbox.run(&state).await {
                Ok(out) => {
                    log.command(&state.display(), &out.stdout, &out.stderr);
                    return Ok(daemons);
                }
                Err(e) if Instant::now() > deadline => {
                    log.push(format!("$ {}\n  {e}", state.display()));
                    daemons.finish(log);
                    return Err(format!("firewalld did not start within {timeout:?}: {e}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    fn spawn(
        sandbox: &Sandbox,
        inv: &Invocation,
        name: &'static str,
        daemons: &mut Daemons,
        log: &mut Log,
    ) -> Result<(), String> {
        let file = tempfile::tempfile().map_err(|e| format!("a file for {name}'s output: {e}"))?;
        let copy = file.try_clone().map_err(|e| format!("a file for {name}'s output: {e}"))?;
        // The sandbox ends the daemon; the handle only reaps nsenter afterwards.
        let child = sandbox.spawn_logged(inv, copy).map_err(|e| format!("starting {name}: {e}"))?;
        drop(child);
        log.push(format!("$ {} &", inv.display()));
        daemons.outputs.push((name, file));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_text;

    const SCENARIO: &str = r#"
host:
  forwarding: true
  uplinks:
    ext0: { address: 192.0.2.1/24 }
nodes:
  lan:
    interfaces: [{ uplink: ext0, address: 192.0.2.2/24, gateway: 192.0.2.1 }]
networks:
  podman: { bridge: podman0, subnet: 10.88.0.0/16 }
  other: { bridge: podman1, subnet: 10.89.0.0/24, gateway: 10.89.0.254, internal: true }
containers:
  web:
    network: podman
    address: 10.88.0.14
    publish: ["8080:80", "192.0.2.1:5353:53/udp"]
  db:
    network: other
    address: 10.89.0.2
rules:
  backends: [iptables-nft]
  live: { program: netavark }
"#;

    #[test]
    fn options_describe_the_container_and_its_network() {
        let scn = load_text(SCENARIO);
        let web = containers(&scn)[0];
        let o = options(&scn, web);
        assert_eq!(o["container_id"], "web");
        assert_eq!(o["container_name"], "web");
        assert_eq!(o["networks"]["podman"]["static_ips"], json!(["10.88.0.14"]));
        assert_eq!(o["networks"]["podman"]["interface_name"], "eth0");
        let info = &o["network_info"]["podman"];
        assert_eq!(info["name"], "podman");
        assert_eq!(info["driver"], "bridge");
        assert_eq!(info["network_interface"], "podman0");
        assert_eq!(info["subnets"], json!([{ "subnet": "10.88.0.0/16", "gateway": "10.88.0.1" }]));
        assert_eq!(info["internal"], false);
        assert_eq!(info["dns_enabled"], false);
        assert_eq!(info["id"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn published_ports_become_port_mappings() {
        let scn = load_text(SCENARIO);
        let o = options(&scn, containers(&scn)[0]);
        assert_eq!(
            o["port_mappings"],
            json!([
                { "host_ip": "", "container_port": 80, "host_port": 8080, "range": 1, "protocol": "tcp" },
                { "host_ip": "192.0.2.1", "container_port": 53, "host_port": 5353, "range": 1, "protocol": "udp" },
            ])
        );
    }

    #[test]
    fn an_internal_network_with_its_own_gateway() {
        let scn = load_text(SCENARIO);
        let o = options(&scn, containers(&scn)[1]);
        assert_eq!(o["port_mappings"], json!([]));
        let info = &o["network_info"]["other"];
        assert_eq!(info["internal"], true);
        assert_eq!(info["subnets"][0]["gateway"], "10.89.0.254");
        assert_eq!(o["networks"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn the_driver_goes_into_the_environment() {
        let inv = invocation("firewalld", "setup", "/proc/1/fd/3", "{}", Duration::from_secs(5));
        assert_eq!(inv.program, "env");
        assert_eq!(inv.args[0], "NETAVARK_FW=firewalld");
        assert_eq!(&inv.args[2..], ["--config", CONFIG_DIR, "setup", "/proc/1/fd/3"]);
        assert_eq!(inv.stdin.as_deref(), Some(&b"{}"[..]));
    }
}
