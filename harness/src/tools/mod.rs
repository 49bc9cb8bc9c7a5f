//! Commands built on the stages: mutation testing of rule files, capturing what a live
//! producer wrote, and a scenario from a Docker host.

pub mod capture;
pub mod docker_host;
pub mod mutate;
