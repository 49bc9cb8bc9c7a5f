//! netconform's library: scenario model and validation, the lab on the real kernel,
//! rule back ends, producers, in-process probes and services, and the judge.

pub mod arrivals;
pub mod backend;
pub mod capture;
pub mod counters;
pub mod exec;
pub mod init;
pub mod judge;
pub mod lab;
pub mod matrix;
pub mod mutate;
pub mod netns;
pub mod partition;
pub mod probe;
pub mod producer;
pub mod report;
pub mod rootless;
pub mod run;
pub mod scenario;
pub mod service;
pub mod trace;
