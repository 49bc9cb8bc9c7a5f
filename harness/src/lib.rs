//! netconform's library, one folder per stage of a run, in the order a run goes:
//!
//! - [`scenario`]: the YAML files, read and checked into a typed [`scenario::Scenario`];
//! - [`lab`]: namespaces, bridges and veth pairs on the real kernel, and the sandbox that
//!   runs rule tools inside them;
//! - [`backend`]: the rule back ends (iptables-nft, iptables-legacy, nft): loading,
//!   counters and trace;
//! - [`producer`]: what writes the rules, a file or a live program;
//! - [`traffic`]: in-process probes, services and arrival sockets;
//! - [`judge`]: outcomes against expectations, with no side effects;
//! - [`run`]: one scenario run from build to verdict, and its record;
//! - [`report`]: the run records rendered for people and machines;
//! - [`tools`]: commands built on the stages: mutate, capture, and a scenario from a
//!   Docker host.

pub mod backend;
pub mod judge;
pub mod lab;
pub mod producer;
pub mod report;
pub mod run;
pub mod scenario;
pub mod tools;
pub mod traffic;
