//! Header handling on untrusted requests: hop-by-hop stripping, `x-request-id`, a route's
//! header edits and `Host` port stripping. The structured input and the checks beyond "no
//! panic" live in `fuzz/common/headers.rs`, which `cargo test` replays too
//! (`proxy/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/headers.rs"]
mod headers;

fuzz_target!(|input: headers::Input| {
    headers::check(&input);
});
