//! Prediction bodies are untrusted: any body with any `Content-Type` must decode to an image
//! within the limits or give a `DecodeError`, never panic, hang or allocate past the limits.
//!
//! The input layout (a two-byte prefix, so that seeds stay plain files) and the checks beyond
//! "no panic" live in `fuzz/common/image_decode.rs`, which `cargo test` replays too.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/image_decode.rs"]
mod image_decode;

fuzz_target!(
    init: {
        // augur contains third-party decoder panics inside `decode` (see png_jpeg.rs), so
        // libFuzzer's abort-on-any-panic hook is replaced by a silent one: a panic that
        // escapes `decode` still aborts the run, in libfuzzer-sys's own `catch_unwind`.
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        image_decode::replay(data);
    }
);
