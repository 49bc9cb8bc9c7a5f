//! netconform's library: scenario model and validation, the lab on the real kernel,
//! rule back ends, producers, in-process probes and services, and the judge.

pub mod counters;
pub mod scenario;
