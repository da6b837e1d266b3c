//! The `image_decode` fuzz target's committed inputs, replayed under `cargo test` on stable:
//! the seeds in `fuzz/corpus/image_decode/` and every crash found so far in
//! `fuzz/regressions/image_decode/` (see docs/fuzzing.md), through the same input layout,
//! limits and checks as the fuzz target (`fuzz/common/image_decode.rs`).

#[path = "../../fuzz/common/corpus.rs"]
mod corpus;
#[path = "../../fuzz/common/image_decode.rs"]
mod image_decode;

#[test]
fn every_committed_input_decodes_or_fails_cleanly() {
    for path in corpus::all("image_decode") {
        image_decode::replay(&corpus::read(&path));
    }
}

#[test]
fn most_seeds_decode() {
    let seeds = corpus::seeds("image_decode");
    let decoded = seeds
        .iter()
        .filter(|p| image_decode::replay(&corpus::read(p)))
        .count();
    // The seeds include valid PNG, JPEG, DICOM, multipart and JSON bodies.
    assert!(
        decoded >= 8,
        "only {decoded} of {} seeds decode",
        seeds.len()
    );
}
