//! netconform's library: scenario model and validation, the lab on the real kernel,
//! rule back ends, producers, in-process probes and services, and the judge.

pub mod counters;
pub mod scenario;
pub mod exec;
pub mod lab;
pub mod netns;
pub mod backend;
pub mod service;
pub mod probe;
pub mod judge;
pub mod run;
pub mod report;
