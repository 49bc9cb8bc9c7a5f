//! What several producers share: a sandbox in the lab host with the lab in its
//! environment, a logged run in it, the iptables a program finds on PATH or (run by
//! path) through the alternatives, shell quoting and the scenario's command lines,
//! files under the sandbox's /run, container IDs and namespace paths, and the D-Bus
//! system bus that firewalld needs. Each producer's own file then holds only its
//! program.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Log, ProducerError};
use crate::lab::sandbox::{IptablesFlavour, Sandbox};
use crate::lab::Lab;
use crate::scenario::{Backend, NodeId, Scenario};

/// A system bus that runs as root, activates nothing (no polkit, no service files, so
/// firewalld authorizes callers by their uid, root here) and lets everyone talk.
pub(super) const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"#;

/// Where the sandbox's own system bus listens, as [`BUS_CONFIG`] says.
pub(super) const BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// The names the alternatives system gives the iptables programs; programs that run
/// them by full path (/usr/sbin/iptables) reach them through /etc/alternatives.
const ALTERNATIVES: [&str; 6] =
    ["iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore", "ip6tables-save"];

/// The program an alternatives name stands for under `flavour`:
/// `iptables-save` → `iptables-legacy-save`.
pub(super) fn alternative_target(name: &str, flavour: IptablesFlavour) -> Option<String> {
    flavour.program(name)
}

/// Each alternatives name with the installed program it must point at for `flavour`;
/// empty for the system's own choice. An error when this machine does not run
/// /usr/sbin/iptables through /etc/alternatives, or a program is missing.
pub(super) fn alternatives(flavour: IptablesFlavour) -> Result<Vec<(&'static str, PathBuf)>, String> {
    if flavour == IptablesFlavour::System {
        return Ok(Vec::new());
    }
    let via = std::fs::read_link("/usr/sbin/iptables").ok();
    if !via.as_deref().is_some_and(|p| p.starts_with("/etc/alternatives")) {
        return Err("/usr/sbin/iptables does not lead through /etc/alternatives on this machine, so a program \
                    that runs it by path cannot be given the back end under test"
            .into());
    }
    ALTERNATIVES
        .iter()
        .map(|name| {
            let target = alternative_target(name, flavour).expect("not the system's");
            let path = crate::lab::sandbox::which(&target).ok_or_else(|| format!("{target} not installed"))?;
            Ok((*name, path))
        })
        .collect()
}

/// Shell lines that copy /etc/alternatives to `dir`/alternatives, point the iptables
/// names at `links`, and mount the copy over /etc/alternatives. Nothing for no links.
pub(super) fn alternatives_script(dir: &str, links: &[(&'static str, PathBuf)]) -> String {
    if links.is_empty() {
        return String::new();
    }
    let copy = format!("{dir}/alternatives");
    let mut s = format!("cp -a /etc/alternatives {}\n", quote(&copy));
    for (name, target) in links {
        s.push_str(&format!("ln -sfn {} {}\n", quote(&target.display().to_string()), quote(&format!("{copy}/{name}"))));
    }
    s.push_str(&format!("mount --bind {} /etc/alternatives\n", quote(&copy)));
    s
}

/// `s` as one word for sh.
pub(super) fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The scenario's command lines, each checked to run `program`.
pub(super) fn command_lines(lines: &[String], program: &str) -> Result<Vec<String>, ProducerError> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let line = line.trim();
            if line.split_whitespace().next() != Some(program) {
                return Err(ProducerError::Input(format!(
                    "rules.live.commands[{i}]: expected a `{program}` command line, found `{line}`"
                )));
            }
            Ok(line.to_string())
        })
        .collect()
}

/// `path` inside the sandbox, as this process reaches it.
pub(super) fn inside(sandbox: &Sandbox, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root{path}", sandbox.init_pid()))
}

pub(super) fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
}

/// A folder readable by all, as the programs' own checks want their configuration.
pub(super) fn make_dir(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("creating {}: {e}", path.display()))
}

/// A file owned by root and writable only by it: ufw refuses anything else.
pub(super) fn write_file(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// `text` indented by two spaces, for the log.
pub(super) fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// The path, inside the sandbox, of the lab namespace of `id`, as
/// [`super::lab_environment`] gives it (see [`crate::lab::sandbox::Sandbox::start_with_namespaces`]).
pub(super) fn netns_path(lab: &Lab, id: NodeId) -> String {
    format!("/run/netns/{}", lab.ns(id).name())
}

/// A container ID as container engines give them: the container's name when it is
/// one that IDs may be (letters, digits, `_`, `.`, `-`, not starting with a
/// punctuation mark), else 64 hexadecimal digits derived from the name.
pub(super) fn container_id(name: &str) -> String {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        name.to_string()
    } else {
        hex_id(name)
    }
}

/// 64 hexadecimal digits that depend only on `text` (FNV-1a, four seeds): stable IDs,
/// so chain names derived from them are the same on every run.
pub(super) fn hex_id(text: &str) -> String {
    (0u64..4)
        .map(|seed| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for b in text.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

/// The containers of the scenario, in file order.
pub(super) fn containers(scn: &Scenario) -> Vec<NodeId> {
    (0..scn.nodes.len()).map(NodeId).filter(|&id| scn.node(id).container.is_some()).collect()
}

/// Run `inv` in the sandbox, logged as `shown` with its output; on failure the error
/// carries the program's own words.
pub(super) async fn run_logged(
    sandbox: &Sandbox,
    inv: &crate::lab::sandbox::Invocation,
    shown: &str,
    log: &mut Log,
) -> Result<String, String> {
    match sandbox.run(inv).await {
        Ok(out) => {
            log.command(shown, &out.stdout, &out.stderr);
            Ok(out.stdout)
        }
        Err(crate::lab::sandbox::ExecError::Failed { status, stdout, stderr, .. }) => {
            log.command(shown, &stdout, &stderr);
            Err(format!("{shown} failed ({status}):\n{stdout}{stderr}"))
        }
        Err(e) => {
            log.push(format!("$ {shown}\n  {e}"));
            Err(format!("{shown}: {e}"))
        }
    }
}

/// `NAME` as part of an environment variable name: upper case, `_` for the rest.
fn env_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// The lab as environment variables, for programs run in it:
/// - `NETCONFORM_NODES`: node names, the host first;
/// - `NETCONFORM_NETNS_<NODE>`: `/run/netns/<node>`, the node's network namespace
///   (`nsenter --net=PATH`, or `ip netns exec <node>`), inside the sandbox;
/// - `NETCONFORM_ADDRESS_<NODE>`: its first address;
/// - `NETCONFORM_BRIDGES`: the host's bridges; `NETCONFORM_NETWORKS`: container
///   networks, with `NETCONFORM_NETWORK_<NAME>_{BRIDGE,SUBNET,GATEWAY}`;
/// - `NETCONFORM_CONTAINER_<NAME>_{NETWORK,ADDRESS}` for each container;
/// - `NETCONFORM_BACKEND`, `NETCONFORM_SCENARIO_DIR`.
pub(super) fn lab_environment(scn: &Scenario, backend: Backend) -> Vec<(String, String)> {
    let mut env = BTreeMap::new();
    let names: Vec<&str> = scn.nodes.iter().map(|n| n.name.as_str()).collect();
    env.insert("NETCONFORM_NODES".to_string(), names.join(" "));
    for (i, node) in scn.nodes.iter().enumerate() {
        let id = NodeId(i);
        let key = env_name(&node.name);
        env.insert(format!("NETCONFORM_NETNS_{key}"), format!("/run/netns/{}", node.name));
        if let Some(addr) = scn.addresses_of(id).first() {
            env.insert(format!("NETCONFORM_ADDRESS_{key}"), addr.to_string());
        }
        if let Some(c) = &node.container {
            env.insert(format!("NETCONFORM_CONTAINER_{key}_NETWORK"), scn.networks[c.network].name.clone());
            env.insert(format!("NETCONFORM_CONTAINER_{key}_ADDRESS"), c.address.to_string());
        }
    }
    let bridges: Vec<&str> = scn.host.bridges.iter().map(|b| b.name.as_str()).collect();
    env.insert("NETCONFORM_BRIDGES".to_string(), bridges.join(" "));
    let networks: Vec<&str> = scn.networks.iter().map(|n| n.name.as_str()).collect();
    env.insert("NETCONFORM_NETWORKS".to_string(), networks.join(" "));
    for n in &scn.networks {
        let key = env_name(&n.name);
        env.insert(format!("NETCONFORM_NETWORK_{key}_BRIDGE"), n.bridge.clone());
        env.insert(format!("NETCONFORM_NETWORK_{key}_SUBNET"), n.subnet.to_string());
        env.insert(format!("NETCONFORM_NETWORK_{key}_GATEWAY"), n.gateway.to_string());
    }
    env.insert("NETCONFORM_BACKEND".to_string(), backend.name().to_string());
    let dir = scn.path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    env.insert("NETCONFORM_SCENARIO_DIR".to_string(), dir.display().to_string());
    env.into_iter().collect()
}

/// A sandbox in the lab host for `scn` under `backend`, with the lab's environment.
pub(super) async fn sandbox(scn: &Scenario, lab: &Lab, backend: Backend) -> Result<Sandbox, String> {
    use std::os::fd::AsFd;
    let namespaces: Vec<(&str, std::os::fd::RawFd)> =
        (0..scn.nodes.len()).map(|i| (scn.nodes[i].name.as_str(), lab.ns(NodeId(i)).raw_fd())).collect();
    Sandbox::start_with_namespaces(
        lab.host().as_fd(),
        backend.iptables_flavour(),
        lab_environment(scn, backend),
        &namespaces,
    )
    .await
    .map_err(|e| format!("starting the sandbox: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn alternatives_names_map_to_the_flavour() {
        assert_eq!(alternative_target("iptables", IptablesFlavour::Legacy).unwrap(), "iptables-legacy");
        assert_eq!(alternative_target("iptables-save", IptablesFlavour::Legacy).unwrap(), "iptables-legacy-save");
        assert_eq!(alternative_target("ip6tables-restore", IptablesFlavour::Nft).unwrap(), "ip6tables-nft-restore");
        assert_eq!(alternative_target("iptables", IptablesFlavour::System), None);
    }

    #[test]
    fn alternatives_script_copies_links_and_mounts() {
        let links =
            [("iptables", PathBuf::from("/usr/sbin/iptables-legacy")), ("iptables-save", PathBuf::from("/x y"))];
        let s = alternatives_script("/run/a", &links);
        assert_eq!(
            s,
            "cp -a /etc/alternatives /run/a/alternatives\n\
             ln -sfn /usr/sbin/iptables-legacy /run/a/alternatives/iptables\n\
             ln -sfn '/x y' /run/a/alternatives/iptables-save\n\
             mount --bind /run/a/alternatives /etc/alternatives\n"
        );
        assert_eq!(alternatives_script("/run/a", &[]), "");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("/usr/sbin/iptables"), "/usr/sbin/iptables");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn command_lines_must_run_the_program() {
        let ok = command_lines(&["  ufw allow 22/tcp ".into(), "ufw deny 9091/tcp".into()], "ufw").unwrap();
        assert_eq!(ok, ["ufw allow 22/tcp", "ufw deny 9091/tcp"]);
        let err = command_lines(&["ufw allow 22/tcp".into(), "iptables -F".into()], "ufw").unwrap_err();
        assert!(matches!(err, ProducerError::Input(_)), "{err:?}");
        let err = err.to_string();
        assert!(err.starts_with("rules.live.commands[1]: expected a `ufw` command line"), "{err}");
        assert!(command_lines(&["ufwx enable".into()], "ufw").is_err());
        assert!(command_lines(&["".into()], "ufw").is_err());
    }

    #[rstest]
    #[case("web", "web")]
    #[case("c-1.a_b", "c-1.a_b")]
    fn readable_names_are_their_own_id(#[case] name: &str, #[case] id: &str) {
        assert_eq!(container_id(name), id);
    }

    #[rstest]
    #[case("-web")]
    #[case("wëb")]
    #[case("a+b")]
    fn other_names_get_a_hex_id(#[case] name: &str) {
        let id = container_id(name);
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, container_id(name), "stable");
        assert_ne!(id, container_id("other"));
    }

    #[test]
    fn bus_listens_in_the_sandbox_run() {
        assert!(BUS_CONFIG.contains(&format!("<listen>unix:path={BUS_SOCKET}</listen>")));
        assert!(BUS_SOCKET.starts_with("/run/"));
        // No activation: a bus that started services could start the machine's.
        assert!(!BUS_CONFIG.contains("servicedir"));
        assert!(!BUS_CONFIG.contains("includedir"));
    }
}
