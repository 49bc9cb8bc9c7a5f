//! Scenario files: the YAML shape (`file`), where each key sits in the text
//! (`position`), and loading plus validation into the typed [`Scenario`] (`load`).
//! Nothing here touches the kernel, so `netconform check` runs without root.

mod file;
mod load;
pub mod model;
mod position;

pub use load::{discover, load, load_file, Diagnostic, InputError};
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
