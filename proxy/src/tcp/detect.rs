//! Protocol detection on the capture listeners, as Envoy's `http_inspector` does for Istio:
//! the first bytes a client sends say whether the connection carries HTTP (routed) or
//! something else (passed through as opaque TCP).

/// What a captured connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x (a request line starts with a method) or HTTP/2 (the connection preface).
    Http,
    /// Anything else: TLS, a database protocol, a server-first protocol that sent nothing.
    Opaque,
}

/// The prefixes an HTTP connection starts with: the methods of RFC 9110 and RFC 5789, each
/// followed by a space, and the start of the HTTP/2 connection preface.
const HTTP_PREFIXES: [&[u8]; 10] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
    b"PRI * HTTP/2.0",
];

/// Bytes enough to decide: the longest prefix.
pub const DECISIVE_BYTES: usize = 14;

/// Classifies the bytes received so far; `None` while they could still start either.
pub fn classify(received: &[u8]) -> Option<Protocol> {
    let mut undecided = false;
    for prefix in HTTP_PREFIXES {
        if received.len() >= prefix.len() {
            if received.starts_with(prefix) {
                return Some(Protocol::Http);
            }
        } else if prefix.starts_with(received) {
            undecided = true;
        }
    }
    (!undecided).then_some(Protocol::Opaque)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_and_the_h2_preface_are_http() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http));
        assert_eq!(classify(b"OPTIONS * HTTP/1.1"), Some(Protocol::Http));
        assert_eq!(
            classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Protocol::Http)
        );
    }

    #[test]
    fn a_prefix_of_a_method_waits_for_more() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"G"), None);
        assert_eq!(classify(b"PO"), None);
        assert_eq!(classify(b"PRI * HTTP"), None);
    }

    #[test]
    fn tls_binary_and_lowercase_methods_are_opaque() {
        // A TLS ClientHello record starts with 0x16 0x03.
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02]), Some(Protocol::Opaque));
        assert_eq!(classify(b"\0\0\0\x08"), Some(Protocol::Opaque));
        assert_eq!(classify(b"get / HTTP/1.1"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GETX"), Some(Protocol::Opaque));
        assert_eq!(classify(b"PING\r\n"), Some(Protocol::Opaque));
    }
}
