//! Finding scenario files: files and folders given on the command line become sorted
//! (path, display name) pairs, named by their place under the suite's `scenarios`
//! folder so that a scenario has one name however it was reached.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::diagnostic::{Diagnostic, InputError};

/// Expand files and folders into (path, display name) pairs sorted by name.
///
/// Folders are searched recursively for `*.yaml` and `*.yml`, skipping folders named
/// `rules`. A scenario's display name is its path relative to the nearest folder named
/// `scenarios` that holds it (the argument itself included), so the same file gets the
/// same name whether `scenarios/`, `scenarios/seed` or the file itself is given.
/// Outside any `scenarios` folder, a folder argument F names its files relative to F's
/// parent and a file argument is named by its file name. A path that does not exist is
/// an error; finding nothing is not.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, InputError> {
    let mut diagnostics = Vec::new();
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    for arg in paths {
        let meta = match fs::metadata(arg) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                diagnostics.push(Diagnostic::new(arg, "no such file or folder"));
                continue;
            }
            Err(e) => {
                diagnostics.push(Diagnostic::new(arg, format!("cannot read: {e}")));
                continue;
            }
        };
        let real = fs::canonicalize(arg).unwrap_or_else(|_| arg.clone());
        if meta.is_dir() {
            let prefix = match suite_root(&real) {
                Some(root) => real.strip_prefix(root).unwrap_or(Path::new("")).to_path_buf(),
                None => real.file_name().map(PathBuf::from).unwrap_or_default(),
            };
            walk(arg, Path::new(""), &prefix, &mut found, &mut diagnostics);
        } else {
            let name = real
                .parent()
                .and_then(suite_root)
                .and_then(|root| real.strip_prefix(root).ok())
                .map(Path::to_path_buf)
                .or_else(|| real.file_name().map(PathBuf::from))
                .unwrap_or_else(|| arg.clone());
            found.push((arg.clone(), name.to_string_lossy().into_owned()));
        }
    }
    if !diagnostics.is_empty() {
        return Err(diagnostics.into());
    }
    // The same file given twice (a folder and a file in it) is run once.
    let mut seen = HashSet::new();
    found.retain(|(p, _)| seen.insert(fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    found.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    Ok(found)
}

/// The nearest folder named `scenarios` that holds `path` (or is `path`).
pub(crate) fn suite_root(path: &Path) -> Option<&Path> {
    path.ancestors().find(|a| a.file_name().is_some_and(|n| n == "scenarios"))
}

pub(crate) fn walk(
    root: &Path,
    rel: &Path,
    prefix: &Path,
    found: &mut Vec<(PathBuf, String)>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let dir = root.join(rel);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            diagnostics.push(Diagnostic::new(&dir, format!("cannot read the folder: {e}")));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                diagnostics.push(Diagnostic::new(&dir, format!("cannot read the folder: {e}")));
                continue;
            }
        };
        let rel = rel.join(entry.file_name());
        let path = root.join(&rel);
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            if entry.file_name() != "rules" {
                walk(root, &rel, prefix, found, diagnostics);
            }
            continue;
        }
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            let name = prefix.join(&rel).to_string_lossy().into_owned();
            found.push((path, name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    // discover()

    fn tree(root: &Path, files: &[&str]) {
        for f in files {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "").unwrap();
        }
    }

    const TREE: &[&str] = &[
        "scenarios/seed/isolation.yaml",
        "scenarios/seed/masquerade.yml",
        "scenarios/seed/rules/not-a-scenario.yaml",
        "scenarios/seed/rules/docker.rules",
        "scenarios/seed/notes.txt",
        "scenarios/nat/deep/a.yaml",
        "scenarios/b.yaml",
        "other/z.yaml",
        "other/sub/y.yaml",
    ];

    fn names_of(found: &[(PathBuf, String)]) -> Vec<&str> {
        found.iter().map(|(_, n)| n.as_str()).collect()
    }

    #[rstest]
    #[case::suite(&["scenarios"], &["b.yaml", "nat/deep/a.yaml", "seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::suite_slash(&["scenarios/"], &["b.yaml", "nat/deep/a.yaml", "seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::area(&["scenarios/seed"], &["seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::file_under_suite(&["scenarios/seed/isolation.yaml"], &["seed/isolation.yaml"])]
    #[case::other_folder(&["other"], &["other/sub/y.yaml", "other/z.yaml"])]
    #[case::other_file(&["other/sub/y.yaml"], &["y.yaml"])]
    #[case::deeper_folder(&["scenarios/nat/deep"], &["nat/deep/a.yaml"])]
    #[case::rules_folder_itself(&["scenarios/seed/rules"], &["seed/rules/not-a-scenario.yaml"])]
    #[case::rules_folder_outside(&["other/sub"], &["sub/y.yaml"])]
    #[case::sorted_across_arguments(&["scenarios/seed", "other", "scenarios/b.yaml"], &["b.yaml", "other/sub/y.yaml", "other/z.yaml", "seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::given_twice(&["scenarios/seed", "scenarios/seed/isolation.yaml"], &["seed/isolation.yaml", "seed/masquerade.yml"])]
    #[case::nothing(&[], &[])]
    fn discover_names(#[case] args: &[&str], #[case] expected: &[&str]) {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), TREE);
        let args: Vec<PathBuf> = args.iter().map(|a| dir.path().join(a)).collect();
        let found = discover(&args).unwrap();
        assert_eq!(names_of(&found), expected);
        for (path, _) in &found {
            assert!(path.is_file(), "{}", path.display());
        }
    }

    #[test]
    fn discover_keeps_paths_as_given() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), TREE);
        let arg = dir.path().join("scenarios/seed");
        let found = discover(std::slice::from_ref(&arg)).unwrap();
        assert_eq!(found[0].0, arg.join("isolation.yaml"));
    }

    #[test]
    fn discover_empty_folder_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discover(&[dir.path().to_path_buf()]).unwrap(), []);
    }

    #[test]
    fn discover_missing_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), TREE);
        let args = [dir.path().join("scenarios/nope.yaml"), dir.path().join("scenarios/seed"), dir.path().join("gone")];
        let e = discover(&args).unwrap_err();
        let paths: Vec<_> = e.diagnostics.iter().map(|d| d.path.clone()).collect();
        assert_eq!(paths, [args[0].clone(), args[2].clone()]);
        assert!(e.diagnostics.iter().all(|d| d.message == "no such file or folder"));
    }
}
