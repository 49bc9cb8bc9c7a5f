//! Checking a file's shape against the model: a [`Checker`] collects every problem of
//! a file, each placed at its key with the file's positions, and the submodules check
//! one part of a scenario each, in the order `load` calls them: the lab (`topology`),
//! the rule set (`rules`), the probes and the counters. `fields` checks the values that
//! many parts share: addresses, names, ports, durations, counts, files.

use std::path::Path;

use super::diagnostic::Diagnostic;
use super::model::Location;
use super::yaml::Positions;

pub mod containers;
pub mod counters;
mod fields;
pub mod probes;
pub mod rules;
pub mod topology;

/// Collects diagnostics, placing each with the position index.
pub(crate) struct Checker<'a> {
    pub(crate) path: &'a Path,
    pub(crate) pos: &'a Positions,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Forwarder targets (key, address), checked once the lab's addresses are known.
    pub(crate) forward_targets: Vec<(String, std::net::SocketAddrV4)>,
}

impl Checker<'_> {
    pub(crate) fn push(&mut self, location: Option<Location>, key: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            path: self.path.to_path_buf(),
            location,
            key: (!key.is_empty()).then(|| key.to_string()),
            message: message.into(),
        });
    }

    /// A problem with the value at `key`; for a missing key, placed at the mapping
    /// that should hold it.
    pub(crate) fn value(&mut self, key: &str, message: impl Into<String>) {
        self.push(self.pos.value(key), key, message);
    }

    /// A problem with the key itself (a name that is wrong, or a key that must go).
    pub(crate) fn key(&mut self, key: &str, message: impl Into<String>) {
        self.push(self.pos.key(key), key, message);
    }

    /// A required value is absent (or written but empty).
    pub(crate) fn missing(&mut self, key: &str, expected: &str) {
        if self.pos.contains(key) {
            self.value(key, format!("expected {expected}, found an empty value"));
        } else {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            self.value(key, format!("missing required key `{leaf}`: expected {expected}"));
        }
    }

    /// A required, non-empty list.
    pub(crate) fn list<'l, T>(&mut self, key: &str, list: &'l Option<Vec<T>>, expected: &str) -> &'l [T] {
        match list {
            None => {
                self.missing(key, expected);
                &[]
            }
            Some(v) if v.is_empty() => {
                self.value(key, format!("expected {expected}, found an empty list"));
                &[]
            }
            Some(v) => v,
        }
    }

    /// The location of the value at `key`, for the model.
    pub(crate) fn location(&self, key: &str) -> Location {
        self.pos.value(key).unwrap_or_default()
    }
}
