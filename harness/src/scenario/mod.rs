//! Scenario files, loaded in the order of the flow: found (`discover`), read once as
//! YAML with the position of every key (`yaml`, into the shapes of `file`), expanded
//! per producer when they state a contract (`contract`, `vars`), and checked part by
//! part (`check`) into the typed [`Scenario`] of `model`. Every problem becomes a
//! [`Diagnostic`] (`diagnostic`). Nothing here touches the kernel, so
//! `netconform check` runs without root.

mod check;
mod contract;
mod diagnostic;
mod discover;
mod file;
mod load;
pub mod model;
mod vars;
pub(crate) mod yaml;

#[cfg(test)]
mod testing;

pub use diagnostic::{Diagnostic, InputError};
pub use discover::discover;
pub use load::{load, load_file};
pub use model::*;

/// `text` as a scenario file of its own, loaded; a scenario that does not load is a
/// bug in the test that wrote it.
#[cfg(test)]
pub fn load_text(text: &str) -> Scenario {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("s.yaml");
    std::fs::write(&path, text).expect("writing the scenario");
    load(&path, "s.yaml").unwrap_or_else(|e| panic!("{e}"))
}
