//! Policy files are untrusted input (they are hot-reloaded from disk): any bytes given to the
//! loader must give a policy set or diagnostics. The checks live in
//! `fuzz/common/policy_load.rs`, which `cargo test` replays too
//! (`policies/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/policy_load.rs"]
mod policy_load;

fuzz_target!(|data: &[u8]| {
    policy_load::check(data);
});
