//! Traffic in the lab: probes sent from one node to another, the services that answer
//! them, and the arrival sockets that see where a request landed.

pub mod arrivals;
pub mod probe;
pub mod service;
