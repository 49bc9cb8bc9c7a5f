//! What is wrong with an input file: one [`Diagnostic`] per problem, at its file, line
//! and column and key, and [`InputError`], every problem found in one or more files.

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::Location;

/// One problem in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub location: Option<Location>,
    /// Dotted key path, e.g. `probes[2].to` or `nodes.c1.interfaces[0].address`.
    pub key: Option<String>,
    /// What was expected and what was found.
    pub message: String,
}

impl Diagnostic {
    pub fn new(path: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic { path: path.to_path_buf(), location: None, key: None, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.location {
            write!(f, ":{}:{}", l.line, l.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found in one or more files; Display prints one Diagnostic per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for InputError {
    fn from(d: Diagnostic) -> InputError {
        InputError { diagnostics: vec![d] }
    }
}

impl From<Vec<Diagnostic>> for InputError {
    fn from(diagnostics: Vec<Diagnostic>) -> InputError {
        InputError { diagnostics }
    }
}

/// `a, b, c`, or `none` when empty.
pub(crate) fn names<'n>(names: impl IntoIterator<Item = &'n str>) -> String {
    let list: Vec<&str> = names.into_iter().collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

/// A reason as one line: runs of white space, line breaks included, become one space.
pub(crate) fn one_line(reason: &str) -> String {
    reason.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::testing::*;

    #[test]
    fn display() {
        let text = edit("expect: dropped", "expect: nothing");
        let (_dir, path) = write(&text);
        let e = load(&path, "x").unwrap_err();
        let l = loc(&text, "expect: |nothing");
        assert_eq!(
            e.to_string(),
            format!(
                "{}:{}:{}: probes[0].expect: expected reached, refused or dropped, found `nothing`",
                path.display(),
                l.line,
                l.column
            )
        );
        let two = InputError::from(vec![
            Diagnostic::new(Path::new("a.yaml"), "one"),
            Diagnostic { path: "b.yaml".into(), location: None, key: Some("k".into()), message: "two".into() },
        ]);
        assert_eq!(two.to_string(), "a.yaml: one\nb.yaml: k: two");
    }
}
