//! Scenario files: the YAML shape (`file`), where each key sits in the text
//! (`position`), and loading plus validation into the typed [`Scenario`] (`load`).
//! Nothing here touches the kernel, so `netconform check` runs without root.

mod file;
mod load;
pub mod model;
mod position;

pub use load::{discover, load, load_file, Diagnostic, InputError};
pub use model::*;
