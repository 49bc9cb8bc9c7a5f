//! The YAML shape of a scenario file.
