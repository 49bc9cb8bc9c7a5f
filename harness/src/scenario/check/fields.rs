//! Checks of single values that many parts of a scenario share: durations, addresses,
//! interface and node names, sysctls, services and ports, counts, and files next to the
//! scenario.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use super::Checker;
use crate::scenario::file::{CountText, DurationText, Integer, ServicesFile, SysctlValue};
use crate::scenario::model::*;
use crate::scenario::yaml::{item, join};

pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// IFNAMSIZ minus the terminating NUL.
pub(crate) const MAX_IFNAME: usize = 15;

impl Checker<'_> {
    pub(crate) fn duration(&mut self, key: &str, text: &DurationText) -> Option<Duration> {
        let text = text.0.trim();
        match humantime::parse_duration(text) {
            Err(e) => {
                self.value(key, format!("expected a duration such as \"200ms\" or \"1s\", found `{text}` ({e})"));
                None
            }
            Ok(d) if d.is_zero() || d > MAX_TIMEOUT => {
                self.value(key, format!("expected a duration greater than 0 and at most 60s, found `{text}`"));
                None
            }
            Ok(d) => Some(d),
        }
    }

    /// `text` as an address with a prefix length (`N`); an address of the same family
    /// without one (`A`) is told apart.
    fn with_prefix<N: std::str::FromStr, A: std::str::FromStr>(
        &mut self,
        key: &str,
        text: &str,
        expected: &str,
    ) -> Option<N> {
        match text.parse::<N>() {
            Ok(net) => Some(net),
            Err(_) if text.parse::<A>().is_ok() => {
                self.value(key, format!("expected {expected}, found `{text}` without a prefix length"));
                None
            }
            Err(_) => {
                self.value(key, format!("expected {expected}, found `{text}`"));
                None
            }
        }
    }

    /// An interface address: IPv4 with a prefix length, not the network or broadcast
    /// address of its subnet.
    pub(crate) fn cidr(&mut self, key: &str, text: &str) -> Option<Ipv4Net> {
        let expected = "an IPv4 address with a prefix length such as 192.168.0.2/20";
        let net = self.with_prefix::<Ipv4Net, Ipv4Addr>(key, text, expected)?;
        if net.prefix_len() < 31 {
            let what = if net.addr() == net.network() {
                Some("network")
            } else if net.addr() == net.broadcast() {
                Some("broadcast")
            } else {
                None
            };
            if let Some(what) = what {
                self.value(
                    key,
                    format!("expected a host address, found `{text}`, the {what} address of {}", net.trunc()),
                );
                return None;
            }
        }
        Some(net)
    }

    /// An IPv6 address with its prefix length, for an interface: a unicast address,
    /// not the subnet-router anycast address of its prefix.
    pub(crate) fn cidr6(&mut self, key: &str, text: &str) -> Option<Ipv6Net> {
        let expected = "an IPv6 address with a prefix length such as fd00::2/64";
        let net = self.with_prefix::<Ipv6Net, Ipv6Addr>(key, text, expected)?;
        let a = net.addr();
        let why = if a.is_unspecified() {
            Some("the unspecified address")
        } else if a.is_loopback() {
            Some("the loopback address")
        } else if a.is_multicast() {
            Some("a multicast address")
        } else if a.to_ipv4_mapped().is_some() {
            Some("an IPv4-mapped address")
        } else if net.prefix_len() < 127 && a == net.network() {
            Some("the subnet-router anycast address of its prefix")
        } else {
            None
        };
        if let Some(why) = why {
            self.value(key, format!("expected a unicast host address, found `{text}`, {why}"));
            return None;
        }
        Some(net)
    }

    /// An IPv6 address without a prefix, such as a gateway.
    pub(crate) fn address6(&mut self, key: &str, text: &str) -> Option<Ipv6Addr> {
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.value(key, format!("expected an IPv6 address such as fd00::1, found `{text}`"));
                None
            }
        }
    }

    pub(crate) fn address(&mut self, key: &str, text: &str) -> Option<Ipv4Addr> {
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.value(key, format!("expected an IPv4 address such as 192.168.0.1, found `{text}`"));
                None
            }
        }
    }

    /// A Linux interface name. `at_key`: the name is a mapping key rather than a value.
    pub(crate) fn ifname(&mut self, key: &str, name: &str, at_key: bool) {
        let problem = if name.is_empty() {
            Some("expected an interface name, found an empty string".to_string())
        } else if name.len() > MAX_IFNAME {
            Some(format!("interface names are at most {MAX_IFNAME} bytes; `{name}` is {} bytes", name.len()))
        } else if name == "." || name == ".." {
            Some(format!("`{name}` is not a valid interface name"))
        } else if name.contains(['/', ':']) || name.contains(char::is_whitespace) {
            Some(format!("an interface name has no '/', ':' or white space; found `{name}`"))
        } else if name == "lo" {
            Some("`lo` is the loopback interface that every namespace has; pick another name".to_string())
        } else {
            None
        };
        self.name_problem(key, at_key, problem);
    }

    /// A node name (the host's or a mapping key under `nodes`).
    pub(crate) fn node_name(&mut self, key: &str, name: &str, at_key: bool) {
        let problem = if name.is_empty() {
            Some("expected a node name, found an empty string".to_string())
        } else if name == "." || name == ".." {
            Some(format!("`{name}` is not a valid node name"))
        } else if name.contains(['/', ':']) || name.contains(char::is_whitespace) {
            Some(format!("a node name has no '/', ':' or white space; found `{name}`"))
        } else if name.parse::<Ipv4Addr>().is_ok() {
            Some(format!(
                "`{name}` reads as an IPv4 address, and probes take node names and addresses \
                 in the same places; pick a name that is not an address"
            ))
        } else {
            None
        };
        self.name_problem(key, at_key, problem);
    }

    /// A problem with a name, placed at the key when the name is one.
    fn name_problem(&mut self, key: &str, at_key: bool, problem: Option<String>) {
        match problem {
            Some(p) if at_key => self.key(key, p),
            Some(p) => self.value(key, p),
            None => {}
        }
    }

    pub(crate) fn sysctls(
        &mut self,
        key: &str,
        map: Option<&indexmap::IndexMap<String, SysctlValue>>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in map.into_iter().flatten() {
            let k = join(key, name);
            let well_formed = name.split('.').all(|part| {
                !part.is_empty() && part.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
            });
            if !well_formed {
                self.key(
                    &k,
                    format!(
                        "expected a sysctl key of lowercase letters, digits, '_' and '-' joined \
                         by dots, such as net.ipv4.conf.all.rp_filter; found `{name}`"
                    ),
                );
            } else if !name.starts_with("net.") {
                self.key(
                    &k,
                    format!(
                        "expected a net.* sysctl: only those belong to a network namespace, \
                         and `{name}` would change the whole machine"
                    ),
                );
            } else {
                out.push((name.clone(), value.0.clone()));
            }
        }
        out
    }

    pub(crate) fn services(&mut self, key: &str, services: Option<&ServicesFile>) -> Services {
        let mut out = Services::default();
        if let Some(s) = services {
            out.tcp = self.ports(&join(key, "tcp"), s.tcp.as_deref().unwrap_or_default());
            out.udp = self.ports(&join(key, "udp"), s.udp.as_deref().unwrap_or_default());
            for (i, f) in s.forward.iter().flatten().enumerate() {
                let fkey = item(&join(key, "forward"), i);
                let port = match f.port {
                    None => {
                        self.missing(&join(&fkey, "port"), "the port the forwarder listens on");
                        None
                    }
                    Some(n) => self.port(&join(&fkey, "port"), n),
                };
                if port.is_some_and(|p| out.tcp.contains(&p) || out.forward.iter().any(|f| f.port == p)) {
                    self.value(&join(&fkey, "port"), format!("tcp port {} is already served here", port.unwrap_or(0)));
                }
                let to = match f.to.as_deref() {
                    None => {
                        self.missing(&join(&fkey, "to"), "the address and port to forward to, e.g. 172.17.0.2:80");
                        None
                    }
                    Some(t) => match t.parse::<std::net::SocketAddrV4>() {
                        Ok(a) if a.port() != 0 => {
                            self.forward_targets.push((join(&fkey, "to"), a));
                            Some(a)
                        }
                        _ => {
                            self.value(
                                &join(&fkey, "to"),
                                format!("expected an IPv4 address and port such as 172.17.0.2:80, found `{t}`"),
                            );
                            None
                        }
                    },
                };
                if let (Some(port), Some(to)) = (port, to) {
                    out.forward.push(Forward { port, to });
                }
            }
        }
        out
    }

    pub(crate) fn ports(&mut self, key: &str, ports: &[Integer]) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::new();
        for (i, &n) in ports.iter().enumerate() {
            let k = item(key, i);
            if let Some(port) = self.port(&k, n) {
                if out.contains(&port) {
                    self.value(&k, format!("port {port} is listed twice"));
                } else {
                    out.push(port);
                }
            }
        }
        out
    }

    pub(crate) fn port(&mut self, key: &str, n: Integer) -> Option<u16> {
        match u16::try_from(n.0) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.value(key, format!("expected a port from 1 to 65535, found {}", n.0));
                None
            }
        }
    }

    pub(crate) fn count(&mut self, key: &str, count: &CountText) -> Option<Count> {
        let forms = "a non-negative integer (exactly that many) or a string such as \">= 10\" \
                     (at least that many)";
        match count {
            CountText::Integer(n) => match u64::try_from(*n) {
                Ok(n) => Some(Count::Exactly(n)),
                Err(_) => {
                    self.value(key, format!("expected {forms}, found {n}"));
                    None
                }
            },
            CountText::Text(t) => {
                let n = t
                    .trim()
                    .strip_prefix(">=")
                    .map(str::trim_start)
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u64>().ok());
                match n {
                    Some(n) => Some(Count::AtLeast(n)),
                    None => {
                        self.value(key, format!("expected {forms}, found \"{t}\""));
                        None
                    }
                }
            }
        }
    }

    /// `name` resolved against `folder`, if it is a readable file.
    pub(crate) fn existing_file(&mut self, key: &str, folder: &Path, name: &str, what: &str) -> Option<PathBuf> {
        if name.is_empty() {
            self.value(key, format!("expected the path of a {what}, found an empty string"));
            return None;
        }
        let resolved = folder.join(name);
        let problem = match fs::metadata(&resolved) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Some(format!("expected a {what}, but `{}` does not exist", resolved.display()))
            }
            Err(e) => Some(format!("cannot read `{}`: {e}", resolved.display())),
            Ok(m) if m.is_dir() => Some(format!("expected a {what}, but `{}` is a folder", resolved.display())),
            // Opening a fifo blocks until a writer comes; a device may never end.
            Ok(m) if !m.is_file() => Some(format!(
                "expected a {what}, but `{}` is not a regular file (a fifo, a device or a socket)",
                resolved.display()
            )),
            Ok(_) => fs::File::open(&resolved).err().map(|e| format!("cannot read `{}`: {e}", resolved.display())),
        };
        match problem {
            Some(p) => {
                self.value(key, p);
                None
            }
            None => Some(resolved),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::testing::*;
    use rstest::rstest;

    #[rstest]
    // Sysctls and services.
    #[case::sysctl_not_net(
        "    net.ipv4.conf.all.rp_filter: 0\n",
        "    kernel.panic: 0\n",
        "host.sysctls.kernel.panic",
        "|kernel.panic",
        "would change the whole machine"
    )]
    #[case::sysctl_upper(
        "      net.ipv4.tcp_syncookies: 1",
        "      net.IPv4.tcp_syncookies: 1",
        "nodes.ext.sysctls.net.IPv4.tcp_syncookies",
        "|net.IPv4",
        "lowercase letters"
    )]
    #[case::sysctl_empty_part(
        "      net.ipv4.tcp_syncookies: 1",
        "      net..tcp_syncookies: 1",
        "nodes.ext.sysctls.net..tcp_syncookies",
        "|net..tcp",
        "joined by dots"
    )]
    #[case::sysctl_slash(
        "      net.ipv4.tcp_syncookies: 1",
        "      net/ipv4/tcp_syncookies: 1",
        "nodes.ext.sysctls.net/ipv4/tcp_syncookies",
        "|net/ipv4",
        "joined by dots"
    )]
    #[case::port_zero(
        "tcp: [80, 8080]",
        "tcp: [80, 0]",
        "nodes.c1.services.tcp[1]",
        "tcp: [80, |0]",
        "expected a port from 1 to 65535, found 0"
    )]
    #[case::port_too_big(
        "tcp: [80, 8080]",
        "tcp: [80, 70000]",
        "nodes.c1.services.tcp[1]",
        "tcp: [80, |70000]",
        "found 70000"
    )]
    #[case::port_twice(
        "tcp: [80, 8080]",
        "tcp: [80, 80]",
        "nodes.c1.services.tcp[1]",
        "tcp: [80, |80]",
        "port 80 is listed twice"
    )]
    fn invalid(#[case] from: &str, #[case] to: &str, #[case] key: &str, #[case] needle: &str, #[case] says: &str) {
        let text = edit(from, to);
        assert_one(&text, key, needle, says);
    }
}
