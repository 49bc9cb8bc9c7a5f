//! `${var}` substitution: a contract scenario's text, and its extra rule files, with one
//! producer's variables put in. Values are single words, so every line keeps its number
//! and every position reported stays true.

use std::path::Path;

use super::contract::ProducerDef;
use super::diagnostic::{names, Diagnostic, InputError};
use super::model::Location;

/// The text with each `${var}` replaced by the producer's value. Values are single
/// words, so every line keeps its number.
pub(crate) fn substitute(path: &Path, text: &str, producer: &ProducerDef) -> Result<String, InputError> {
    let mut out = String::with_capacity(text.len());
    let mut diagnostics = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let var = &after[..end];
            match producer.vars.get(var) {
                Some(value) => out.push_str(value),
                None => {
                    let column = line.len() - rest.len() + start + 1;
                    diagnostics.push(Diagnostic {
                        path: path.to_path_buf(),
                        location: Some(Location { line: i + 1, column }),
                        key: None,
                        message: format!(
                            "no variable `{var}` for producer `{}`; its variables: {}",
                            producer.name,
                            names(producer.vars.keys().map(String::as_str))
                        ),
                    });
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    if diagnostics.is_empty() {
        Ok(out)
    } else {
        Err(diagnostics.into())
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::testing::*;

    #[test]
    fn an_unknown_variable_names_its_line_and_column() {
        let text = CONTRACT.replacen("${br}: {", "${nope}: {", 1);
        let (_dir, path) = contract_dir(&text, PRODUCERS);
        let d = load_file(&path, "c.yaml").expect_err("an error").diagnostics;
        // Reported once, not once per producer.
        assert_eq!(d.len(), 1, "{d:#?}");
        assert_eq!(d[0].location, Some(at(5, 14)));
    }
}
