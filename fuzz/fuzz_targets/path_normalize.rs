//! Request path normalization (Istio's `pathNormalization`) on untrusted paths.
//!
//! The input is the bytes of a path. For every mode augur offers besides `NONE`:
//! normalizing twice changes nothing, and routing on the normalized path is routing on what an
//! origin that resolves paths per RFC 3986 serves for the raw one (the normalized path,
//! decoded once, is the origin's resolution of the raw one). `BASE` and `MERGE_SLASHES` keep
//! `%2F`/`%5C` encoded by design, so the second check skips paths with them there, and paths
//! with a `%` that starts no escape (Envoy keeps it, and decoding after it can spell a new
//! escape, in Envoy as in augur).
#![no_main]

use augur_proxy::route::path::{decode_all, normalize, resolve_like_origin, PathNormalization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if !path.starts_with('/') || path.contains('?') {
        return;
    }
    let lower = path.to_ascii_lowercase();
    let escaped_slash = lower.contains("%2f") || lower.contains("%5c");
    let bytes = path.as_bytes();
    let bare_percent = path.match_indices('%').any(|(i, _)| {
        let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
        !(hex(i + 1) && hex(i + 2))
    });
    for mode in [
        PathNormalization::Base,
        PathNormalization::MergeSlashes,
        PathNormalization::DecodeAndMergeSlashes,
    ] {
        let Ok(normalized) = normalize(path, mode) else {
            continue;
        };
        let again = normalize(&normalized, mode).expect("a normalized path normalizes");
        assert_eq!(again, normalized, "normalizing twice changed {path:?} in {mode}");
        if bare_percent || (escaped_slash && mode != PathNormalization::DecodeAndMergeSlashes) {
            continue;
        }
        assert_eq!(
            resolve_like_origin(normalized.as_bytes()),
            resolve_like_origin(bytes),
            "{path:?} in {mode}: the origin serves something else for {normalized:?}"
        );
        if mode != PathNormalization::Base {
            assert_eq!(
                decode_all(normalized.as_bytes()),
                resolve_like_origin(bytes),
                "{path:?} in {mode}: the route saw {normalized:?}"
            );
        }
    }
});
