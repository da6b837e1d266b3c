//! Request path normalization (Istio's `pathNormalization`) on untrusted paths. The checks
//! beyond "no panic" live in `fuzz/common/path_normalize.rs`, which `cargo test` replays too
//! (`proxy/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/path_normalize.rs"]
mod path_normalize;

fuzz_target!(|data: &[u8]| {
    path_normalize::check(data);
});
