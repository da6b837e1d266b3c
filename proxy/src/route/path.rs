//! Request path normalization, as Istio's `meshConfig.pathNormalization` programs Envoy.
//!
//! A route or an ApiProtection on `/admin` must see `/public/../admin/x`, `/./admin/x`,
//! `/public/%2e%2e/admin/x` and `/%61dmin/x` as the `/admin/x` that the backend will resolve them
//! to; otherwise they pass the check and reach the backend (CVE-2021-31920). So the path is
//! normalized before routing and the normalized path is what goes upstream, as in Envoy.
//!
//! [`normalize`] follows what Envoy 1.40 does with Istio's settings (checked against the real
//! Envoy in `tests/tests/envoy_parity.rs`):
//! - percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) are decoded once; other
//!   escapes are kept as written (`%2F`, `%5C`, `%25`, `%c3`), and so is a `%` that starts no
//!   valid escape; `%00` rejects the request (`400`);
//! - a backslash becomes a slash;
//! - `"`, `<`, `>`, `` ` ``, `{`, `}`, `|`, `^` and other bytes outside the path's alphabet are
//!   percent-encoded;
//! - dot segments are removed as RFC 3986 §5.2.4 says (`..` never climbs above the root);
//! - adjacent slashes are merged only in the `MERGE_SLASHES` modes, and `%2F`/`%5C` are decoded
//!   (before everything else) only in `DECODE_AND_MERGE_SLASHES`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// Istio's `meshConfig.pathNormalization.normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathNormalization {
    /// Forwarded as received: no protection against `..` or escapes (not recommended).
    None,
    /// Istio's default: RFC 3986 normalization, unreserved escapes decoded, `\` as `/`.
    #[default]
    Base,
    /// `Base`, then `//` merged into `/`.
    MergeSlashes,
    /// `%2F` and `%5C` decoded first, then `Base`, then slashes merged (the strictest; it can
    /// break applications that use encoded slashes in a path segment).
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    /// Istio's name for the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Base => "BASE",
            Self::MergeSlashes => "MERGE_SLASHES",
            Self::DecodeAndMergeSlashes => "DECODE_AND_MERGE_SLASHES",
        }
    }
}

impl fmt::Display for PathNormalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PathNormalization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "NONE" => Ok(Self::None),
            "BASE" | "DEFAULT" => Ok(Self::Base),
            "MERGE_SLASHES" => Ok(Self::MergeSlashes),
            "DECODE_AND_MERGE_SLASHES" => Ok(Self::DecodeAndMergeSlashes),
            other => Err(format!(
                "unknown path normalization {other:?}: expected NONE, BASE, MERGE_SLASHES or \
                 DECODE_AND_MERGE_SLASHES"
            )),
        }
    }
}

/// A path that normalization refuses: Envoy answers `400` (`path_normalization_failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%00`: a NUL byte would end the path early on many origins.
    #[error("the path holds an encoded NUL byte (%00)")]
    EncodedNul,
}

/// Normalizes a request path (without its query) in `mode`. Borrows when nothing changes,
/// which is the common case, so a clean path costs no allocation.
pub fn normalize(path: &str, mode: PathNormalization) -> Result<Cow<'_, str>, PathError> {
    if mode == PathNormalization::None {
        return Ok(Cow::Borrowed(path));
    }
    let input = if mode == PathNormalization::DecodeAndMergeSlashes {
        decode_slashes(path)
    } else {
        Cow::Borrowed(path)
    };
    let canonical = canonical_chars(&input)?;
    let without_dots = remove_dot_segments(&canonical);
    let normalized = if mode == PathNormalization::Base {
        without_dots
    } else {
        merge_slashes(without_dots)
    };
    // Every step borrows when it changes nothing: a clean path allocates nothing.
    Ok(if normalized == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normalized.into_owned())
    })
}

/// `%2F`, `%2f` → `/` and `%5C`, `%5c` → `\` (Envoy's `UNESCAPE_AND_FORWARD`).
fn decode_slashes(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            match b[i + 1..i + 3].to_ascii_uppercase().as_slice() {
                b"2F" => {
                    out.push('/');
                    i += 3;
                    continue;
                }
                b"5C" => {
                    out.push('\\');
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        let ch_len = utf8_len(b[i]);
        out.push_str(&path[i..i + ch_len]);
        i += ch_len;
    }
    Cow::Owned(out)
}

/// The length of the UTF-8 character starting with `first` (1 for a continuation byte, which a
/// `str` never starts a character with).
fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Whether a byte is RFC 3986 unreserved: decoded when percent-encoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether a byte is kept as is in a path: unreserved, sub-delims, `:`, `@`, `/`, `%` and `'`
/// (Chromium's path alphabet, which Envoy uses).
fn is_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'['
                | b']'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes unreserved escapes, turns `\` into `/` and escapes bytes outside the path alphabet.
fn canonical_chars(path: &str) -> Result<Cow<'_, str>, PathError> {
    let b = path.as_bytes();
    let clean = |i: usize| b[i] != b'%' && b[i] != b'\\' && is_path_char(b[i]);
    let Some(first) = (0..b.len()).find(|&i| !clean(i)) else {
        return Ok(Cow::Borrowed(path));
    };
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out: Vec<u8> = Vec::with_capacity(path.len() + 8);
    out.extend_from_slice(&b[..first]);
    let mut i = first;
    while i < b.len() {
        let c = b[i];
        match c {
            b'%' => {
                let hex = |at: usize| b.get(at).copied().and_then(hex_value);
                let escape = hex(i + 1).zip(hex(i + 2));
                match escape {
                    Some((hi, lo)) => {
                        let v = hi * 16 + lo;
                        if v == 0 {
                            return Err(PathError::EncodedNul);
                        }
                        if is_unreserved(v) {
                            out.push(v);
                        } else {
                            out.extend_from_slice(&b[i..i + 3]);
                        }
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'\\' => {
                out.push(b'/');
                i += 1;
            }
            c if is_path_char(c) => {
                out.push(c);
                i += 1;
            }
            c => {
                out.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
                i += 1;
            }
        }
    }
    // Only ASCII was written: every byte outside the alphabet (non-ASCII included) was escaped.
    Ok(Cow::Owned(String::from_utf8(out).unwrap_or_default()))
}

/// RFC 3986 §5.2.4 `remove_dot_segments` for an absolute path.
fn remove_dot_segments(path: &str) -> Cow<'_, str> {
    let has_dot_segment = path
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    if !has_dot_segment {
        return Cow::Borrowed(path);
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    // The first piece is what precedes the leading slash ("" for an absolute path).
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate().skip(1) {
        match *segment {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut normalized = String::with_capacity(path.len());
    normalized.push_str(segments[0]);
    for segment in out {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() {
        normalized.push('/');
    }
    Cow::Owned(normalized)
}

/// Merges runs of `/` into one.
fn merge_slashes(path: Cow<'_, str>) -> Cow<'_, str> {
    if !path.contains("//") {
        return path;
    }
    let mut out = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' && previous_slash {
            continue;
        }
        previous_slash = c == '/';
        out.push(c);
    }
    Cow::Owned(out)
}

/// What an origin that resolves paths as RFC 3986 says serves for a path: every escape decoded
/// once, `\\` as `/`, dot segments removed, then adjacent slashes merged. [`normalize`] is right
/// when routing on its output is routing on what such an origin will serve:
/// `decoded(normalize(p)) == resolve_like_origin(p)`, which the tests and the `path_normalize`
/// fuzz target check (in `BASE` and `MERGE_SLASHES` only for paths without encoded slashes,
/// the known limit of those modes). An origin that merges slashes *before* resolving `..`
/// (nginx's `merge_slashes`) can still differ on `/a//../b`, as it does behind Envoy.
pub fn resolve_like_origin(path: &[u8]) -> Vec<u8> {
    let decoded: Vec<u8> = decode_all(path)
        .into_iter()
        .map(|b| if b == b'\\' { b'/' } else { b })
        .collect();
    let mut out: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = decoded.split(|&b| b == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            b"." => {
                if i == last {
                    out.push(b"");
                }
            }
            b".." => {
                out.pop();
                if i == last {
                    out.push(b"");
                }
            }
            s => out.push(s),
        }
    }
    let mut resolved: Vec<u8> = Vec::with_capacity(decoded.len());
    for segment in out {
        if resolved.last() != Some(&b'/') {
            resolved.push(b'/');
        }
        resolved.extend_from_slice(segment);
    }
    if resolved.is_empty() {
        resolved.push(b'/');
    }
    resolved
}

/// Every valid `%XX` escape decoded once (invalid ones stay as written).
pub fn decode_all(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let hex = |at: usize| path.get(at).copied().and_then(hex_value);
        match (path[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathNormalization::*;

    /// Paths built from the pieces attacks are made of, by a seeded generator.
    fn generated_paths(n: usize) -> Vec<String> {
        const PIECES: [&str; 22] = [
            "/", "a", "admin", ".", "..", "%2e", "%2E", "%2e%2e", "%2F", "%2f", "%5C", "\\", "%61",
            "%41", "%25", "%252e", "//", "%zz", "%", "~", "%7e", ";x",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..n)
            .map(|_| {
                let len = 1 + next() % 10;
                let mut p = String::from("/");
                for _ in 0..len {
                    p.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
                }
                p
            })
            .collect()
    }

    #[test]
    fn routes_see_what_the_origin_serves() {
        for path in generated_paths(20_000) {
            let escaped_slash = path.to_ascii_lowercase().contains("%2f")
                || path.to_ascii_lowercase().contains("%5c");
            // A `%` that starts no escape is kept, as Envoy keeps it; decoding the escape after
            // it (`%%61` → `%a`) can then spell a new one, in Envoy as here.
            let bare_percent = path.match_indices('%').any(|(i, _)| {
                let hex = |at: usize| path.as_bytes().get(at).is_some_and(u8::is_ascii_hexdigit);
                !(hex(i + 1) && hex(i + 2))
            });
            if bare_percent {
                continue;
            }
            for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
                let Ok(normalized) = normalize(&path, mode) else {
                    continue;
                };
                assert_eq!(
                    normalize(&normalized, mode).as_deref(),
                    Ok(&*normalized),
                    "{path} {mode}: twice"
                );
                if mode != DecodeAndMergeSlashes && escaped_slash {
                    // The documented limit of BASE and MERGE_SLASHES: an origin that decodes
                    // %2F sees a slash the proxy did not.
                    continue;
                }
                // The origin serves the same thing for the normalized path as for the raw one.
                assert_eq!(
                    resolve_like_origin(normalized.as_bytes()),
                    resolve_like_origin(path.as_bytes()),
                    "{path} in {mode}: normalized to {normalized}"
                );
                if mode != Base {
                    assert_eq!(
                        decode_all(normalized.as_bytes()),
                        resolve_like_origin(path.as_bytes()),
                        "{path} in {mode}: the route saw {normalized}"
                    );
                }
            }
        }
    }

    fn n(path: &str, mode: PathNormalization) -> String {
        normalize(path, mode).expect("normalizes").into_owned()
    }

    /// What Envoy 1.40 forwarded for each path with Istio's `BASE` (`normalize_path: true`,
    /// `merge_slashes: false`), read off the real Envoy on 2026-12-07.
    const BASE_TABLE: &[(&str, &str)] = &[
        ("/admin/x", "/admin/x"),
        ("/public/../admin/x", "/admin/x"),
        ("/./admin/x", "/admin/x"),
        ("/public/%2e%2e/admin/x", "/admin/x"),
        ("/public/%2E%2E/admin/x", "/admin/x"),
        ("/%61dmin/x", "/admin/x"),
        ("/%41dmin/x", "/Admin/x"),
        ("/a/%2e/b", "/a/b"),
        ("/a/.%2e/b", "/b"),
        ("/a/%2e./b", "/b"),
        ("/..", "/"),
        ("/../", "/"),
        ("/../../a", "/a"),
        ("/a/..", "/"),
        ("/a/../..", "/"),
        ("/a/b/../../../c", "/c"),
        ("/a//b", "/a//b"),
        ("/a//../b", "/a/b"),
        ("//admin", "//admin"),
        ("//../admin", "/admin"),
        ("/a/%2F/b", "/a/%2F/b"),
        ("/a/%2f/b", "/a/%2f/b"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a/%5C/b", "/a/%5C/b"),
        ("/a\\b", "/a/b"),
        ("/a\\..\\b", "/b"),
        ("/a/%zz/b", "/a/%zz/b"),
        ("/a/%2/b", "/a/%2/b"),
        ("/a/%", "/a/%"),
        ("/a/%7e/b", "/a/~/b"),
        ("/a/%2D%5F/b", "/a/-_/b"),
        ("/a/%20/b", "/a/%20/b"),
        ("/a/%3F/b", "/a/%3F/b"),
        ("/a/%25/b", "/a/%25/b"),
        ("/a/%252e%252e/b", "/a/%252e%252e/b"),
        ("/a/%c3%a9/b", "/a/%c3%a9/b"),
        ("/a/%41%42/b", "/a/AB/b"),
        ("/a/b/./c/.", "/a/b/c/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/.", "/"),
        ("/a/.../b", "/a/.../b"),
        ("/a/..b/c", "/a/..b/c"),
        ("/a;b/../c", "/c"),
        ("/a/%2e%2e%2fb", "/a/..%2fb"),
        ("/a/..%2f..%2fb", "/a/..%2f..%2fb"),
        ("/a/.%2E/b", "/b"),
        ("/a/%2e%2e", "/"),
        ("/a/%2E", "/a/"),
        ("/a/.%2e%2e/b", "/a/.../b"),
        ("/a/\"x\"/b", "/a/%22x%22/b"),
        ("/a/<x>/b", "/a/%3Cx%3E/b"),
        ("/a/{x}/b", "/a/%7Bx%7D/b"),
        ("/a/|/b", "/a/%7C/b"),
        ("/a/^/b", "/a/%5E/b"),
        ("/a/`/b", "/a/%60/b"),
        ("/a/'/b", "/a/'/b"),
        ("/a/!$&()*+,;=:@/b", "/a/!$&()*+,;=:@/b"),
        ("/a/%7b/b", "/a/%7b/b"),
        ("/A/%4a", "/A/J"),
    ];

    #[test]
    fn base_matches_envoy() {
        for (input, envoy) in BASE_TABLE {
            assert_eq!(n(input, Base), *envoy, "{input}");
        }
    }

    #[test]
    fn decode_and_merge_matches_envoy() {
        // Envoy with `merge_slashes: true` and `UNESCAPE_AND_FORWARD`.
        let table = [
            ("/a//b", "/a/b"),
            ("//admin", "/admin"),
            ("/a///b/", "/a/b/"),
            ("/a/%2F/b", "/a/b"),
            ("/a%2Fb", "/a/b"),
            ("/a/%5c/b", "/a/b"),
            ("/a/..%2f..%2fb", "/b"),
            ("/x/..%2Fadmin", "/admin"),
            ("/a/%252F/b", "/a/%252F/b"),
            ("/a/b//../c", "/a/b/c"),
        ];
        for (input, envoy) in table {
            assert_eq!(n(input, DecodeAndMergeSlashes), envoy, "{input}");
        }
    }

    #[test]
    fn merge_slashes_keeps_escaped_slashes() {
        assert_eq!(n("/a//b/%2F/c", MergeSlashes), "/a/b/%2F/c");
        assert_eq!(n("//../admin", MergeSlashes), "/admin");
    }

    #[test]
    fn none_forwards_as_received() {
        assert_eq!(n("/public/../admin/%61", None), "/public/../admin/%61");
        assert!(normalize("/a/%00", None).is_ok());
    }

    #[test]
    fn encoded_nul_is_refused_in_every_normalizing_mode() {
        for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
            assert_eq!(normalize("/a/%00/b", mode), Err(PathError::EncodedNul));
        }
    }

    #[test]
    fn a_clean_path_is_borrowed() {
        assert!(matches!(
            normalize("/predict/v1", Base),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(
            normalize("/a/b", MergeSlashes),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for (input, _) in BASE_TABLE {
            for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
                let once = n(input, mode);
                assert_eq!(n(&once, mode), once, "{input} in {mode}");
            }
        }
    }

    #[test]
    fn modes_parse_by_istio_name() {
        assert_eq!("BASE".parse(), Ok(Base));
        assert_eq!("merge_slashes".parse(), Ok(MergeSlashes));
        assert_eq!(
            "DECODE_AND_MERGE_SLASHES".parse(),
            Ok(DecodeAndMergeSlashes)
        );
        assert_eq!("none".parse(), Ok(None));
        assert!("sometimes".parse::<PathNormalization>().is_err());
    }
}
