//! Route matching on untrusted requests against a fuzzed VirtualService. The structured input
//! and the checks beyond "no panic" live in `fuzz/common/route_match.rs`, which `cargo test`
//! replays too (`proxy/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/route_match.rs"]
mod route_match;

fuzz_target!(|input: route_match::Input| {
    route_match::check(&input);
});
