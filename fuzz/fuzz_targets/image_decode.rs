//! Prediction bodies are untrusted: any body with any `Content-Type` must decode to an image
//! within the limits or give a `DecodeError`, never panic, hang or allocate past the limits.
//!
//! The input layout (a two-byte prefix, so that seeds stay plain files) and the checks beyond
//! "no panic" live in `fuzz/common/image_decode.rs`, which `cargo test` replays too.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/image_decode.rs"]
mod image_decode;

fuzz_target!(|data: &[u8]| {
    image_decode::replay(data);
});
