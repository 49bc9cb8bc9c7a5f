//! The YAML shape of a scenario file.
//!
//! Only the shape is checked here: which keys exist and what kind of value each holds.
//! Almost every key is optional at this level, and addresses, durations, names and
//! numbers stay as written, so that `load` can check them all and report every problem
//! of a file at once, each at its own position.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with the keys of a scenario")]
pub struct ScenarioFile {
    pub description: Option<String>,
    pub skip: Option<String>,
    pub ipv6: Option<bool>,
    pub timeout: Option<DurationText>,
    pub sequential: Option<bool>,
    pub host: Option<HostFile>,
    pub nodes: Option<IndexMap<String, Option<NodeFile>>>,
    pub rules: Option<RulesFile>,
    pub probes: Option<Vec<ProbeFile>>,
    pub counters: Option<Vec<CounterFile>>,
    pub contract: Option<ContractFile>,
    pub producers: Option<String>,
    pub not_applicable: Option<IndexMap<String, String>>,
    pub extra_rules: Option<Vec<ExtraRuleFile>>,
    pub networks: Option<IndexMap<String, Option<NetworkFile>>>,
    pub containers: Option<IndexMap<String, Option<ContainerFile>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `bridge`, `subnet`, `gateway`, `subnet6`, `gateway6` and `internal`"
)]
pub struct NetworkFile {
    pub bridge: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    pub internal: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `network`, `address`, `address6`, `publish`, `sysctls` and `services`"
)]
pub struct ContainerFile {
    pub network: Option<String>,
    pub address: Option<String>,
    pub address6: Option<String>,
    pub publish: Option<Vec<String>>,
    pub sysctls: Option<IndexMap<String, SysctlValue>>,
    pub services: Option<ServicesFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `program` and its settings")]
pub struct LiveFile {
    pub program: Option<String>,
    pub run: Option<Vec<String>>,
    pub commands: Option<Vec<String>>,
    pub driver: Option<String>,
    pub daemon: Option<IndexMap<String, serde_json::Value>>,
    pub timeout: Option<DurationText>,
    pub reads: Option<Vec<String>>,
    /// ufw: what /etc/default/ufw's IPV6 says.
    pub ipv6: Option<bool>,
}

/// A rule file added after a producer's own: a path, or a path limited to some
/// producers.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a rule file path, or a mapping with `file` and `only`")]
pub enum ExtraRuleFile {
    Path(String),
    Entry(ExtraRuleEntry),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraRuleEntry {
    pub file: String,
    pub only: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `name` and `statements`")]
pub struct ContractFile {
    pub name: Option<String>,
    pub statements: Option<Vec<Word>>,
    pub title: Option<String>,
}

/// A producers file: rule sets with the lab variables each assumes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `vars` and `producers`")]
pub struct ProducersFile {
    pub vars: Option<IndexMap<String, Word>>,
    pub producers: Option<IndexMap<String, Option<ProducerFile>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `title`, `rules` and `vars`")]
pub struct ProducerFile {
    pub title: Option<String>,
    pub rules: Option<RulesFile>,
    pub vars: Option<IndexMap<String, Word>>,
}

/// How one producer is expected to differ from the contract at one probe.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `why` and the expectation keys that differ")]
pub struct DiffersFile {
    pub expect: Option<String>,
    pub served_by: Option<String>,
    pub source_seen: Option<String>,
    pub why: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `port` and `to`")]
pub struct ForwardFile {
    pub port: Option<Integer>,
    pub to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of host settings")]
pub struct HostFile {
    pub name: Option<String>,
    pub forwarding: Option<bool>,
    pub sysctls: Option<IndexMap<String, SysctlValue>>,
    pub bridges: Option<IndexMap<String, Option<BridgeFile>>>,
    pub uplinks: Option<IndexMap<String, Option<UplinkFile>>>,
    pub services: Option<ServicesFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of bridge settings")]
pub struct BridgeFile {
    pub address: Option<Addresses>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of uplink settings")]
pub struct UplinkFile {
    pub address: Option<Addresses>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `tcp` and/or `udp` port lists and `forward`")]
pub struct ServicesFile {
    pub tcp: Option<Vec<Integer>>,
    pub udp: Option<Vec<Integer>>,
    pub forward: Option<Vec<ForwardFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of node settings")]
pub struct NodeFile {
    pub interfaces: Option<Vec<InterfaceFile>>,
    pub loopback: Option<bool>,
    pub sysctls: Option<IndexMap<String, SysctlValue>>,
    pub services: Option<ServicesFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of interface settings")]
pub struct InterfaceFile {
    pub bridge: Option<String>,
    pub uplink: Option<String>,
    pub name: Option<String>,
    pub address: Option<Addresses>,
    pub gateway: Option<Addresses>,
}

/// One address, or a list of them (one of each family, or several):
/// `address: 10.0.0.2/24`, `address: [10.0.0.2/24, fd00::2/64]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "an address, or a list of addresses such as [10.0.0.2/24, fd00::2/64]")]
pub enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    /// Each address as written, with its index when it was given in a list.
    pub fn items(&self) -> Vec<(Option<usize>, &str)> {
        match self {
            Addresses::One(a) => vec![(None, a.as_str())],
            Addresses::Many(list) => list.iter().enumerate().map(|(i, a)| (Some(i), a.as_str())).collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `backends` and `files`")]
pub struct RulesFile {
    pub backends: Option<Vec<String>>,
    pub files: Option<Vec<String>>,
    /// ip6tables-save files, for the iptables back ends.
    pub files6: Option<Vec<String>>,
    pub ipsets: Option<Vec<String>>,
    pub live: Option<LiveFile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of probe settings")]
pub struct ProbeFile {
    pub name: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub family: Option<String>,
    pub proto: Option<String>,
    pub port: Option<Integer>,
    pub expect: Option<String>,
    pub served_by: Option<String>,
    pub source_seen: Option<String>,
    pub timeout: Option<DurationText>,
    pub differs: Option<IndexMap<String, DiffersFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of counter settings")]
pub struct CounterFile {
    pub family: Option<String>,
    pub table: Option<String>,
    pub chain: Option<String>,
    pub rule: Option<String>,
    pub position: Option<Integer>,
    pub comment: Option<String>,
    pub packets: Option<CountText>,
    pub bytes: Option<CountText>,
    pub only: Option<Vec<String>>,
}

/// A whole number as written; range checks happen in `load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integer(pub i128);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Integer;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Integer, E> {
                Ok(Integer(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Integer, E> {
                Ok(Integer(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Integer, E> {
                Ok(Integer(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Integer, E> {
                Ok(Integer(i128::try_from(v).unwrap_or(i128::MAX)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration as written (`200ms`); parsed in `load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"200ms\" or \"1s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// A sysctl value: a string, an integer, or a boolean (stored as "1" / "0").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlValue(pub String);

impl<'de> Deserialize<'de> for SysctlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SysctlValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sysctl value (a string, an integer or true/false)")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<SysctlValue, E> {
                Ok(SysctlValue(if v { "1" } else { "0" }.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SysctlValue, E> {
                Ok(SysctlValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A packet or byte count as written: an integer, or a string such as ">= 10".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountText {
    Integer(i128),
    Text(String),
}

impl<'de> Deserialize<'de> for CountText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = CountText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a count: an integer (exactly) or a string such as \">= 10\" (at least)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CountText, E> {
                Ok(CountText::Integer(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CountText, E> {
                Ok(CountText::Integer(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CountText, E> {
                Ok(CountText::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A scalar written as a string, an integer or a boolean, kept as text: a statement
/// number, a template variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word(pub String);

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Word;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Word, E> {
                Ok(Word(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
