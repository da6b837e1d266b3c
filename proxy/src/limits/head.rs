//! Watches an HTTP/1 request head as pingora reads it, so that a head past pingora's own
//! ceiling is answered `431`, as Envoy answers it, and not pingora's `400`.
//!
//! augur checks the parsed head against `--max-request-headers` and
//! `--max-request-headers-bytes` in `request_filter` (with an access-log line and metrics), but
//! pingora parses only up to 256 headers and reads only up to 1 MiB of head, and fails the rest
//! with `400` before augur sees a request. The watch counts the head's lines and bytes in what
//! the connection reads and reports a head that pingora would refuse.

use super::HEADERS_TOO_LARGE;

/// pingora's HTTP/1 header slots (`MAX_HEADERS`): a head with more fails to parse.
pub const PARSER_MAX_HEADERS: usize = 256;
/// pingora's HTTP/1 head size (`MAX_HEADER_SIZE`): it reads no further for one head.
pub const PARSER_MAX_HEAD_BYTES: usize = 1_048_575;

/// The head of the request being read on one HTTP/1 connection, so far.
#[derive(Debug, Default)]
pub struct HeadWatch {
    /// The request ([`super::conn::ConnState`]'s epoch) these counts are for.
    epoch: u32,
    /// Bytes of the head read so far.
    bytes: usize,
    /// Non-empty lines ended so far: the request line, then one per header.
    lines: usize,
    /// Bytes of the line being read, and its first byte.
    line_len: usize,
    line_first: u8,
    /// The blank line that ends the head was seen: the parser takes over.
    done: bool,
}

impl HeadWatch {
    /// Takes in bytes read for request `epoch`; `true` once the head has more headers than
    /// [`PARSER_MAX_HEADERS`], or is unfinished past [`PARSER_MAX_HEAD_BYTES`]. Bytes after
    /// the head are not looked at.
    pub fn over_parser_limits(&mut self, epoch: u32, read: &[u8]) -> bool {
        self.over(epoch, read, PARSER_MAX_HEADERS, PARSER_MAX_HEAD_BYTES)
    }

    fn over(&mut self, epoch: u32, mut read: &[u8], max_headers: usize, max_bytes: usize) -> bool {
        if epoch != self.epoch {
            *self = Self {
                epoch,
                ..Self::default()
            };
        }
        if self.done {
            return false;
        }
        while let Some(at) = memchr::memchr(b'\n', read) {
            self.line(read.get(..at).unwrap_or_default());
            self.bytes += at + 1;
            let empty = self.line_len == 0 || (self.line_len == 1 && self.line_first == b'\r');
            self.line_len = 0;
            read = read.get(at + 1..).unwrap_or_default();
            if !empty {
                self.lines += 1;
            } else if self.lines > 0 {
                // The end of the head (blank lines before the request line are skipped).
                self.done = true;
                break;
            }
        }
        let headers = self.lines.saturating_sub(1);
        if self.done {
            return headers > max_headers;
        }
        self.line(read);
        self.bytes += read.len();
        headers > max_headers || self.bytes > max_bytes
    }

    fn line(&mut self, part: &[u8]) {
        if self.line_len == 0 {
            if let Some(&first) = part.first() {
                self.line_first = first;
            }
        }
        self.line_len += part.len();
    }
}

/// The `431` Envoy sends for a head over its limits, as raw HTTP/1 bytes: the stream writes it
/// itself, before pingora has a request to answer.
pub fn too_large_reply() -> Vec<u8> {
    let reply = HEADERS_TOO_LARGE;
    format!(
        "HTTP/1.1 {} Request Header Fields Too Large\r\nserver: envoy\r\ncontent-length: {}\r\n\
         content-type: text/plain\r\nconnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    )
    .into_bytes()
}

/// The field pingora writes into the replies it makes itself (`400` for a head it cannot
/// parse), and what Envoy writes in its place.
const PINGORA_SERVER: &[u8] = b"\r\nServer: Pingora\r\n";
const ENVOY_SERVER: &[u8] = b"\r\nserver: envoy\r\n";

/// pingora's own reply (`Server: Pingora`) as Envoy's: its `400` for a head it cannot parse
/// becomes Envoy's codec error (`400 Bad Request` with that text), any other keeps its bytes
/// with `server: envoy`, so that no answer of the proxy names pingora. `None` for any other
/// bytes: augur's own replies and upstream answers already say `server: envoy`.
pub fn as_envoys_reply(written: &[u8]) -> Option<Vec<u8>> {
    if !written.starts_with(b"HTTP/1.") {
        return None;
    }
    let head = written.get(..written.len().min(512))?;
    let at = memchr::memmem::find(head, PINGORA_SERVER)?;
    if written.get(8..13) == Some(b" 400 ".as_slice()) {
        let reply = super::BAD_REQUEST;
        return Some(
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n\
                 server: envoy\r\nconnection: close\r\n\r\n{}",
                reply.body.len(),
                reply.body
            )
            .into_bytes(),
        );
    }
    let mut out = Vec::with_capacity(written.len());
    out.extend_from_slice(written.get(..at)?);
    out.extend_from_slice(ENVOY_SERVER);
    out.extend_from_slice(written.get(at + PINGORA_SERVER.len()..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingoras_own_reply_names_envoy() {
        let pingora = b"HTTP/1.1 400 Bad Request\r\nServer: Pingora\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let envoy = String::from_utf8(as_envoys_reply(pingora).expect("rewritten")).expect("text");
        assert!(envoy.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{envoy}");
        assert!(
            envoy.contains("\r\nserver: envoy\r\n") && envoy.ends_with("\r\n\r\nBad Request"),
            "{envoy}"
        );
        let other = b"HTTP/1.1 502 Bad Gateway\r\nServer: Pingora\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            as_envoys_reply(other).expect("rewritten"),
            b"HTTP/1.1 502 Bad Gateway\r\nserver: envoy\r\nContent-Length: 0\r\n\r\n"
        );
        assert!(as_envoys_reply(b"HTTP/1.1 200 OK\r\nserver: envoy\r\n\r\n").is_none());
        assert!(as_envoys_reply(b"body bytes that say \r\nServer: Pingora\r\n").is_none());
    }

    fn head(headers: usize) -> Vec<u8> {
        let mut h = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..headers {
            h.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        h
    }

    #[test]
    fn counts_headers_across_reads_of_any_size() {
        for chunk in [1, 2, 5, 1000] {
            let mut w = HeadWatch::default();
            let over = head(4).chunks(chunk).any(|c| w.over(0, c, 3, 1 << 20));
            assert!(over, "four headers in chunks of {chunk}");
            let mut w = HeadWatch::default();
            let mut three = head(3);
            three.extend_from_slice(b"\r\n");
            assert!(
                !three.chunks(chunk).any(|c| w.over(0, c, 3, 1 << 20)),
                "three headers in chunks of {chunk}"
            );
        }
        // A whole head in one read is judged too: the parser would refuse it.
        let mut w = HeadWatch::default();
        let mut four = head(4);
        four.extend_from_slice(b"\r\n");
        assert!(w.over(0, &four, 3, 1 << 20));
    }

    #[test]
    fn the_blank_line_hands_over_to_the_parser() {
        let mut w = HeadWatch::default();
        let mut req = head(1);
        req.extend_from_slice(b"\n");
        // A body after the head is never counted, whatever it holds.
        req.extend_from_slice(&[b'a'; 200]);
        req.extend_from_slice(b"\r\nx: y\r\nx: y\r\nx: y\r\n");
        assert!(!w.over(0, &req, 2, 64));
        assert!(!w.over(0, &[b'b'; 500], 2, 64));
    }

    #[test]
    fn an_unfinished_head_past_the_bytes_is_reported() {
        let mut w = HeadWatch::default();
        assert!(!w.over(0, b"GET /", 10, 100));
        assert!(w.over(0, &[b'a'; 100], 10, 100));
        // Leading blank lines are skipped, not taken for the end of the head.
        let mut w = HeadWatch::default();
        assert!(!w.over(0, b"\r\n\r\nGET / HTTP/1.1\r\n", 10, 100));
        assert!(w.over(0, &[b'a'; 100], 10, 100));
    }

    #[test]
    fn a_new_request_starts_a_new_count() {
        let mut w = HeadWatch::default();
        assert!(!w.over(0, &head(2), 2, 1 << 20));
        assert!(!w.over(1, &head(2), 2, 1 << 20));
        assert!(w.over(1, b"x: y\r\n", 2, 1 << 20));
    }

    #[test]
    fn pingoras_ceiling_is_the_default() {
        let mut w = HeadWatch::default();
        assert!(!w.over_parser_limits(0, &head(PARSER_MAX_HEADERS)));
        assert!(w.over_parser_limits(0, b"x: y\r\n"));
    }

    #[test]
    fn the_reply_is_envoys_431() {
        let reply = String::from_utf8(too_large_reply()).expect("ascii");
        assert!(reply.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(reply.contains("content-length: 31\r\n"));
        assert!(reply.ends_with("\r\n\r\nRequest Header Fields Too Large"));
    }
}
