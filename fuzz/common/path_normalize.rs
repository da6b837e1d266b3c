//! The `path_normalize` fuzz target's checks, shared by the target
//! (`fuzz/fuzz_targets/path_normalize.rs`) and its replay under `cargo test`
//! (`proxy/tests/fuzz_corpus.rs`), which both include this file with `#[path]`.
//!
//! Request path normalization (Istio's `pathNormalization`) on untrusted paths.
//!
//! The input is the bytes of a path. For every mode augur offers besides `NONE`:
//! normalizing twice changes nothing, and routing on the normalized path is routing on what an
//! origin that resolves paths per RFC 3986 serves for the raw one (the normalized path,
//! decoded once, is the origin's resolution of the raw one). `BASE` and `MERGE_SLASHES` keep
//! `%2F`/`%5C` encoded by design, so the second check skips paths with them there, and paths
//! with a `%` that starts no escape (Envoy keeps it, and decoding after it can spell a new
//! escape, in Envoy as in augur).

use augur_proxy::route::path::{decode_all, normalize, resolve_like_origin, PathNormalization};

/// Normalizes the path `data` in every mode and checks the results; returns whether the checks
/// ran: only a UTF-8 path that starts with `/` and has no query is a path the router sees
/// (`http::Uri` hands the proxy a `&str`).
pub(crate) fn check(data: &[u8]) -> bool {
    let Ok(path) = std::str::from_utf8(data) else {
        return false;
    };
    if !path.starts_with('/') || path.contains('?') {
        return false;
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
        assert_eq!(
            again, normalized,
            "normalizing twice changed {path:?} in {mode}"
        );
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
    true
}
