//! The `image_decode` fuzz target's committed inputs, replayed under `cargo test` on stable:
//! the seeds in `fuzz/corpus/image_decode/` and every crash found so far in
//! `fuzz/regressions/image_decode/` (see docs/fuzzing.md), through the same input layout,
//! limits and checks as the fuzz target (`fuzz/common/image_decode.rs`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

#[path = "../../fuzz/common/image_decode.rs"]
mod image_decode;

use image_decode::replay;

fn inputs(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join("image_decode");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"));
    files.sort();
    files
}

#[test]
fn fuzz_seed_corpus_decodes_or_fails_cleanly() {
    let seeds = inputs("corpus");
    assert!(!seeds.is_empty(), "fuzz/corpus/image_decode is empty");
    let decoded = seeds
        .iter()
        .filter(|p| replay(&std::fs::read(p).unwrap()))
        .count();
    // The seeds include valid PNG, JPEG, DICOM, multipart and JSON bodies.
    assert!(
        decoded >= 8,
        "only {decoded} of {} seeds decode",
        seeds.len()
    );
}

#[test]
fn fuzz_regressions_decode_or_fail_cleanly() {
    for path in inputs("regressions") {
        replay(&std::fs::read(&path).unwrap());
    }
}
