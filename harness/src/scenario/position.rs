//! Where each key of a YAML document sits.
