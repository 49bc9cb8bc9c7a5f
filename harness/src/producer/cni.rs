//! `cni`: the reference CNI plugins (containernetworking-plugins), driven as a
//! container runtime drives a network configuration list. For each network of the
//! scenario the producer builds a list of three plugins: `bridge` (the network's
//! bridge as gateway, masquerade, hairpin mode, `host-local` addresses from the
//! network's subnet), `firewall` (its iptables back end) and `portmap` (published
//! ports, with SNAT for hairpin and localhost traffic). For every container it runs
//! ADD through the list in the lab host's sandbox, each plugin getting the previous
//! plugin's result as `prevResult`, as libcni does; the container asks for its own
//! address through the `ips` capability. At the end DEL runs in reverse order, last
//! container first, each plugin getting the list's final result.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::run_logged;
use super::support::{container_id, containers, netns_path};
use super::{Log, Producer, ProducerError};
use crate::lab::sandbox::{Invocation, Sandbox};
use crate::lab::Lab;
use crate::scenario::{Backend, NodeId, Scenario};

/// Where distributions install the plugins: Debian, then upstream's tarball.
const PLUGIN_DIRS: [&str; 3] = ["/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"];

/// The plugins of every network's list, in order.
pub const PLUGINS: [&str; 3] = ["bridge", "firewall", "portmap"];

/// The specification version the configurations are written for.
const CNI_VERSION: &str = "1.0.0";

/// host-local's allocations, inside the sandbox's private /run.
const IPAM_DIR: &str = "/run/netconform/cni/networks";

/// The container's interface name (`CNI_IFNAME`).
const IFNAME: &str = "eth0";

/// The folder holding the installed plugins, or Debian's (so that a missing one is
/// named).
fn plugin_dir() -> &'static str {
    PLUGIN_DIRS.iter().copied().find(|d| std::path::Path::new(d).join("bridge").is_file()).unwrap_or(PLUGIN_DIRS[0])
}

/// The network configuration list of network `index`, as a runtime reads it from
/// its configuration folder.
pub fn conflist(scn: &Scenario, index: usize) -> Value {
    let net = &scn.networks[index];
    // An internal network keeps its gateway address (the bridge is still the
    // containers' neighbour) but gives them no way out: no default route and no
    // masquerade. Nothing in these plugins stops forwarding itself.
    let mut routes = if net.internal { json!([]) } else { json!([{ "dst": "0.0.0.0/0" }]) };
    // A dual-stack network: a second range, and its default route.
    let mut ranges = vec![json!([{ "subnet": net.subnet.to_string(), "gateway": net.gateway.to_string() }])];
    if let (Some(subnet), Some(gateway)) = (net.subnet6, net.gateway6) {
        ranges.push(json!([{ "subnet": subnet.to_string(), "gateway": gateway.to_string() }]));
        if !net.internal {
            routes.as_array_mut().expect("a list").push(json!({ "dst": "::/0" }));
        }
    }
    json!({
        "cniVersion": CNI_VERSION,
        "name": net.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": true,
                "ipMasq": !net.internal,
                "hairpinMode": true,
                "capabilities": { "ips": true },
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "routes": routes,
                    "dataDir": IPAM_DIR,
                },
            },
            { "type": "firewall", "backend": "iptables" },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true },
        ],
    })
}

/// The runtime configuration of container `id`, by capability name: its address
/// (`ips`) and its published ports (`portMappings`).
pub fn runtime_config(scn: &Scenario, id: NodeId) -> Value {
    let c = scn.node(id).container.as_ref().expect("a container");
    let net = &scn.networks[c.network];
    let prefix = net.subnet.prefix_len();
    let ports: Vec<Value> = c
        .publish
        .iter()
        .map(|p| {
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": if p.udp { "udp" } else { "tcp" },
            });
            if let Some(ip) = p.host_ip {
                m["hostIP"] = json!(ip.to_string());
            }
            m
        })
        .collect();
    let mut ips = vec![format!("{}/{prefix}", c.address)];
    if let (Some(a), Some(subnet)) = (c.address6, net.subnet6) {
        ips.push(format!("{a}/{}", subnet.prefix_len()));
    }
    json!({ "ips": ips, "portMappings": ports })
}

/// What plugin `plugin` of `list` reads on standard input for one container: its
/// own configuration with the list's name and version, the runtime values of the
/// capabilities it declares, and the previous result, if any.
pub fn plugin_input(list: &Value, plugin: usize, runtime: &Value, prev: Option<&Value>) -> Value {
    let mut conf = list["plugins"][plugin].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    if let Some(caps) = conf.get("capabilities").and_then(Value::as_object) {
        let wanted: serde_json::Map<String, Value> = caps
            .iter()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .filter_map(|(cap, _)| runtime.get(cap).map(|v| (cap.clone(), v.clone())))
            .collect();
        if !wanted.is_empty() {
            conf["runtimeConfig"] = Value::Object(wanted);
        }
    }
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    conf
}

/// The CNI environment of one call.
pub fn environment(command: &str, container: &str, netns: &str) -> Vec<String> {
    vec![
        format!("CNI_COMMAND={command}"),
        format!("CNI_CONTAINERID={container}"),
        format!("CNI_NETNS={netns}"),
        format!("CNI_IFNAME={IFNAME}"),
        format!("CNI_PATH={}", plugin_dir()),
    ]
}

/// The descriptor through which a plugin finds the container's namespace.
const NETNS_FD: u32 = 9;

/// A plugin call in the sandbox. The plugins find their own namespace at
/// `/proc/PID/task/TID/ns/net` with their PID as their PID namespace sees it, so they
/// get a /proc of the sandbox's PID namespace (in a mount namespace of their own); the
/// sandbox's /proc is the machine's, where those numbers name other processes. The
/// container's namespace, a path in the machine's /proc, is opened before that and
/// handed over as a descriptor.
pub fn plugin_invocation(command: &str, container: &str, netns: &str, program: &str) -> Invocation {
    let script = format!("exec {NETNS_FD}<\"$1\" && shift && exec unshare --mount --mount-proc \"$@\"");
    let env = environment(command, container, &format!("/proc/self/fd/{NETNS_FD}"));
    let args =
        ["-c", script.as_str(), "sh", netns, "env"].into_iter().chain(env.iter().map(String::as_str)).chain([program]);
    Invocation::new("sh", args)
}

/// One container on its network.
struct Attachment {
    name: String,
    container: String,
    netns: String,
    list: Value,
    runtime: Value,
    /// The last result the list gave (each plugin's result includes the previous
    /// one): the whole list's once ADD went through.
    result: Option<Value>,
}

#[derive(Default)]
pub struct Cni {
    sandbox: Option<Sandbox>,
    /// Containers whose ADD was begun, in order; DEL undoes them in reverse.
    attached: Vec<Attachment>,
    timeout: Duration,
}

impl Cni {
    /// Run `plugin` of the attachment's list for `command`, with `prev` as the
    /// previous result; its standard output.
    async fn call(
        &self,
        a: &Attachment,
        command: &str,
        plugin: usize,
        prev: Option<&Value>,
        log: &mut Log,
    ) -> Result<String, String> {
        let sandbox = self.sandbox.as_ref().ok_or("no sandbox")?;
        let input = plugin_input(&a.list, plugin, &a.runtime, prev);
        let text = serde_json::to_string(&input).expect("JSON");
        let program = format!("{}/{}", plugin_dir(), PLUGINS[plugin]);
        let mut inv = plugin_invocation(command, &a.container, &a.netns, &program);
        inv.stdin = Some(text.into_bytes());
        inv.timeout = self.timeout;
        let env = environment(command, &a.container, &format!("<{}'s namespace>", a.name));
        let shown = format!("{} {program} < config({}, {})", env.join(" "), a.name, PLUGINS[plugin]);
        log.push(format!(
            "config({}, {}): {}",
            a.name,
            PLUGINS[plugin],
            serde_json::to_string_pretty(&input).expect("JSON")
        ));
        run_logged(sandbox, &inv, &shown, log).await
    }
}

impl Producer for Cni {
    fn programs(&self) -> Vec<&'static str> {
        static PLUGIN_PATHS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
        let paths = PLUGIN_PATHS.get_or_init(|| {
            // Made once per process: a handful of short paths that live as long as it.
            PLUGINS
                .iter()
                .chain(&["host-local"])
                .map(|p| &*Box::leak(format!("{}/{p}", plugin_dir()).into_boxed_str()))
                .collect()
        });
        let mut programs = vec!["unshare", "nsenter", "env", "sh"];
        programs.extend(paths);
        programs
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
            self.timeout = live.timeout;
            let sandbox = self.sandbox.insert(super::sandbox(scn, lab, backend).await?);
            let mkdir = Invocation::new("mkdir", ["-p", IPAM_DIR]);
            run_logged(sandbox, &mkdir, &mkdir.display(), log).await?;
            for id in containers(scn) {
                let node = scn.node(id);
                let c = node.container.as_ref().expect("a container");
                let mut a = Attachment {
                    name: node.name.clone(),
                    container: container_id(&node.name),
                    netns: netns_path(lab, id),
                    list: conflist(scn, c.network),
                    runtime: runtime_config(scn, id),
                    result: None,
                };
                let mut outcome = Ok(());
                for (plugin, plugin_name) in PLUGINS.iter().enumerate() {
                    let added = self.call(&a, "ADD", plugin, a.result.as_ref(), log).await.and_then(|out| {
                        serde_json::from_str::<Value>(&out)
                            .map_err(|e| format!("{plugin_name} ADD for {}: not a CNI result ({e}):\n{out}", a.name))
                    });
                    match added {
                        Ok(result) => a.result = Some(result),
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                }
                // Kept even when a plugin failed: DEL undoes what the others did.
                self.attached.push(a);
                outcome?;
            }
            Ok(())
        })
    }

    fn teardown<'a>(&'a mut self, log: &'a mut Log) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut problems = Vec::new();
            let attached = std::mem::take(&mut self.attached);
            for a in attached.iter().rev() {
                for plugin in (0..PLUGINS.len()).rev() {
                    if let Err(e) = self.call(a, "DEL", plugin, a.result.as_ref(), log).await {
                        problems.push(e);
                    }
                }
            }
            self.sandbox = None;
            problems
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_text;
    use rstest::rstest;

    const SCENARIO: &str = r#"
host:
  forwarding: true
  uplinks:
    ext0: { address: 192.0.2.1/24 }
nodes:
  lan:
    interfaces: [{ uplink: ext0, address: 192.0.2.2/24, gateway: 192.0.2.1 }]
networks:
  cninet: { bridge: cni0, subnet: 10.22.0.0/16 }
  closed: { bridge: cni1, subnet: 10.23.0.0/24, internal: true }
containers:
  web:
    network: cninet
    address: 10.22.0.2
    publish: ["8080:80", "192.0.2.1:5353:53/udp"]
  db:
    network: closed
    address: 10.23.0.9
rules:
  backends: [iptables-nft]
  live: { program: cni }
"#;

    #[test]
    fn the_list_is_bridge_firewall_portmap() {
        let scn = load_text(SCENARIO);
        let list = conflist(&scn, 0);
        assert_eq!(list["name"], "cninet");
        assert_eq!(list["cniVersion"], CNI_VERSION);
        let types: Vec<&str> =
            list["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, PLUGINS);
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["bridge"], "cni0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["hairpinMode"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"], json!([[{ "subnet": "10.22.0.0/16", "gateway": "10.22.0.1" }]]));
        assert_eq!(bridge["ipam"]["routes"], json!([{ "dst": "0.0.0.0/0" }]));
        assert!(bridge["ipam"]["dataDir"].as_str().unwrap().starts_with("/run/"));
        assert_eq!(list["plugins"][1]["backend"], "iptables");
        assert_eq!(list["plugins"][2]["snat"], true);
    }

    #[test]
    fn an_internal_network_has_no_way_out() {
        let scn = load_text(SCENARIO);
        let bridge = &conflist(&scn, 1)["plugins"][0];
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["ipam"]["routes"], json!([]));
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.23.0.1");
    }

    #[test]
    fn runtime_config_asks_for_the_address_and_the_ports() {
        let scn = load_text(SCENARIO);
        let web = containers(&scn)[0];
        assert_eq!(
            runtime_config(&scn, web),
            json!({
                "ips": ["10.22.0.2/16"],
                "portMappings": [
                    { "hostPort": 8080, "containerPort": 80, "protocol": "tcp" },
                    { "hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.1" },
                ],
            })
        );
    }

    #[rstest]
    #[case(0, Some("ips"), None)]
    #[case(1, None, None)]
    #[case(2, Some("portMappings"), Some("ips"))]
    fn each_plugin_gets_only_its_capabilities(
        #[case] plugin: usize,
        #[case] has: Option<&str>,
        #[case] lacks: Option<&str>,
    ) {
        let scn = load_text(SCENARIO);
        let web = containers(&scn)[0];
        let input = plugin_input(&conflist(&scn, 0), plugin, &runtime_config(&scn, web), None);
        assert_eq!(input["name"], "cninet");
        assert_eq!(input["cniVersion"], CNI_VERSION);
        assert_eq!(input["type"], PLUGINS[plugin]);
        match has {
            Some(cap) => assert!(input["runtimeConfig"].get(cap).is_some(), "{input}"),
            None => assert!(input.get("runtimeConfig").is_none(), "{input}"),
        }
        if let Some(cap) = lacks {
            assert!(input["runtimeConfig"].get(cap).is_none(), "{input}");
        }
        assert!(input.get("prevResult").is_none());
    }

    #[test]
    fn the_previous_result_is_passed_on() {
        let scn = load_text(SCENARIO);
        let web = containers(&scn)[0];
        let prev = json!({ "cniVersion": "1.0.0", "ips": [{ "address": "10.22.0.2/16" }] });
        let input = plugin_input(&conflist(&scn, 0), 1, &runtime_config(&scn, web), Some(&prev));
        assert_eq!(input["prevResult"], prev);
    }

    #[test]
    fn plugins_get_the_namespace_as_a_descriptor_and_a_proc_of_their_own() {
        let inv = plugin_invocation("ADD", "web", "/proc/7/fd/9", "/usr/lib/cni/bridge");
        assert_eq!(inv.program, "sh");
        assert_eq!(inv.args[0], "-c");
        assert!(inv.args[1].contains("unshare --mount --mount-proc"), "{}", inv.args[1]);
        assert_eq!(inv.args[3], "/proc/7/fd/9");
        assert_eq!(inv.args[4], "env");
        assert!(inv.args.contains(&"CNI_NETNS=/proc/self/fd/9".to_string()));
        assert_eq!(inv.args.last().unwrap(), "/usr/lib/cni/bridge");
    }

    #[test]
    fn the_environment_names_the_call() {
        let env = environment("DEL", "web", "/proc/7/fd/9");
        assert_eq!(&env[..4], ["CNI_COMMAND=DEL", "CNI_CONTAINERID=web", "CNI_NETNS=/proc/7/fd/9", "CNI_IFNAME=eth0"]);
        assert!(env[4].starts_with("CNI_PATH=/"));
    }
}
