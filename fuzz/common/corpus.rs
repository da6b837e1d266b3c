//! The committed inputs of a fuzz target, for the tests that replay them under `cargo test`
//! (`policies/`, `inference/` and `proxy/tests/fuzz_corpus.rs` include this file with
//! `#[path]`): the seeds in `fuzz/corpus/<target>/` and the crashes found so far in
//! `fuzz/regressions/<target>/`. A missing folder fails the test, so a moved or renamed
//! corpus cannot make the replay pass by reading nothing.

#![allow(dead_code)] // each replay test uses part of it

use std::path::{Path, PathBuf};

/// The fuzz package's folder.
pub(crate) fn fuzz_dir() -> PathBuf {
    // Every including crate sits beside `fuzz/` in the repository.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<kind>/<target>/` (`kind`: `corpus` or `regressions`), sorted, without
/// the `.gitkeep` that keeps an empty folder in git; panics if the folder is missing.
pub(crate) fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (every fuzz target has this folder)", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    files
}

/// The seeds of `target`; panics if there are none.
pub(crate) fn seeds(target: &str) -> Vec<PathBuf> {
    let seeds = inputs("corpus", target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} has no seed");
    seeds
}

/// Every committed input of `target`: its seeds, then its regressions.
pub(crate) fn all(target: &str) -> Vec<PathBuf> {
    let mut all = seeds(target);
    all.extend(inputs("regressions", target));
    all
}

/// The bytes of `path`.
pub(crate) fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names of the targets in `fuzz/fuzz_targets/`.
pub(crate) fn targets() -> Vec<String> {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_owned())
        })
        .collect();
    names.sort();
    names
}
