//! Protocol detection on the capture listeners, as Envoy's `http_inspector` does for Istio:
//! the first bytes a client sends say whether the connection carries HTTP (routed) or
//! something else (passed through as opaque TCP).
//!
//! Like `http_inspector`, HTTP needs proof: the HTTP/2 connection preface, or a whole HTTP/1.x
//! request line (`METHOD SP target SP HTTP/1.0|1.1 CRLF`). A method alone is not enough: a
//! redis inline command (`GET key\r\n`) or an SMTP verb has no version and is opaque.

/// What a captured connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x (a complete request line) or HTTP/2 (the connection preface).
    Http,
    /// Anything else: TLS, a database protocol, a server-first protocol that sent nothing.
    Opaque,
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes inspected at most: a request line still unfinished after this many is not taken for
/// HTTP (Envoy's `http_inspector` gives up at the same size).
pub const MAX_INSPECTED: usize = 8 * 1024;

/// The longest method accepted (`MKCALENDAR`, `PROPPATCH`, `UNSUBSCRIBE` and the like fit).
const MAX_METHOD: usize = 20;

/// Classifies the bytes received so far; `None` while they could still start either.
pub fn classify(received: &[u8]) -> Option<Protocol> {
    if received.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(received) {
        return None;
    }
    if received.starts_with(H2_PREFACE) {
        return Some(Protocol::Http);
    }
    match request_line(received) {
        None if received.len() >= MAX_INSPECTED => Some(Protocol::Opaque),
        verdict => verdict,
    }
}

/// Where the HTTP/1.x request-line parser is.
#[derive(Clone, Copy)]
enum State {
    Method(usize),
    Target,
    TargetMore,
    Version(usize),
    Minor,
    Cr,
    Lf,
}

/// The HTTP/1.x request-line check: `Some(Http)` once a whole line is seen, `Some(Opaque)` at
/// the first byte that cannot belong to one, `None` while the bytes are a proper prefix.
fn request_line(bytes: &[u8]) -> Option<Protocol> {
    const VERSION: &[u8] = b"HTTP/1.";
    let mut state = State::Method(0);
    for &b in bytes {
        state = match (state, b) {
            (State::Method(n), b' ') if n > 0 => State::Target,
            (State::Method(n), b'A'..=b'Z' | b'-' | b'_') if n < MAX_METHOD => State::Method(n + 1),
            (State::Target, b) if is_target_byte(b) => State::TargetMore,
            (State::TargetMore, b' ') => State::Version(0),
            (State::TargetMore, b) if is_target_byte(b) => State::TargetMore,
            (State::Version(n), b) if VERSION.get(n) == Some(&b) => {
                if n + 1 == VERSION.len() {
                    State::Minor
                } else {
                    State::Version(n + 1)
                }
            }
            (State::Minor, b'0' | b'1') => State::Cr,
            (State::Cr, b'\r') => State::Lf,
            (State::Cr | State::Lf, b'\n') => return Some(Protocol::Http),
            _ => return Some(Protocol::Opaque),
        };
    }
    None
}

/// A byte of a request target: visible ASCII, or a byte of a UTF-8 sequence some clients send
/// unescaped. Spaces and control characters end or break the line.
fn is_target_byte(b: u8) -> bool {
    b.is_ascii_graphic() || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_and_the_h2_preface_are_http() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http));
        assert_eq!(classify(b"GET / HTTP/1.0\n"), Some(Protocol::Http));
        assert_eq!(
            classify(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n"),
            Some(Protocol::Http)
        );
        assert_eq!(
            classify(b"M-SEARCH * HTTP/1.1\r\n"),
            Some(Protocol::Http),
            "methods beyond RFC 9110 (llhttp knows them) are HTTP too"
        );
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Protocol::Http)
        );
    }

    #[test]
    fn an_unfinished_request_line_waits_for_more() {
        for prefix in [
            &b""[..],
            b"G",
            b"GET",
            b"GET ",
            b"GET /a",
            b"GET /a HTTP/1.",
            b"GET /a HTTP/1.1",
            b"GET /a HTTP/1.1\r",
            b"PRI * HTTP/2.0\r\n",
        ] {
            assert_eq!(
                classify(prefix),
                None,
                "{:?}",
                String::from_utf8_lossy(prefix)
            );
        }
    }

    #[test]
    fn commands_without_an_http_version_are_opaque() {
        // redis inline commands: a method-like verb, but no HTTP version.
        assert_eq!(classify(b"GET key\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"SET key value\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"PING\r\n"), Some(Protocol::Opaque));
        // SMTP / FTP style verbs, HTTP/0.9 and versions other than 1.x.
        assert_eq!(classify(b"EHLO example.com\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GET /\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GET / HTTP/2.0\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GET / HTTP/1.1 x\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GET  / HTTP/1.1\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GET / HTTP/1.1\r\r\n"), Some(Protocol::Opaque));
    }

    #[test]
    fn tls_binary_and_lowercase_methods_are_opaque() {
        // A TLS ClientHello record starts with 0x16 0x03.
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02]), Some(Protocol::Opaque));
        assert_eq!(classify(b"\0\0\0\x08"), Some(Protocol::Opaque));
        assert_eq!(classify(b"get / HTTP/1.1\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GETX"), None, "could still be a longer method");
        assert_eq!(classify(b"GETX / HTTP/1.1\r\n"), Some(Protocol::Http));
    }

    #[test]
    fn a_line_longer_than_the_inspection_limit_is_opaque() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_INSPECTED, b'a');
        assert_eq!(classify(&long), Some(Protocol::Opaque));
        assert_eq!(classify(&long[..MAX_INSPECTED - 1]), None);
    }
}
