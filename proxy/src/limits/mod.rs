//! Limits on what a client may send and hold: header count and size, URI length, body size,
//! connections, requests in flight, and the timeouts that close slow or idle clients.
//!
//! pingora's own HTTP/1 limits are loose (256 headers, 1 MiB of headers, no header-read
//! deadline), so augur enforces Envoy's edge values itself and answers with Envoy's local
//! replies: `431` for too many or too large headers, `413` for a body over the limit, `400`
//! for a request that sets both `Content-Length` and `Transfer-Encoding`, and a fast `503`
//! with flag `OM` when it sheds load. The defaults are in one place, [`Limits::default`], and
//! every one is a flag of `augur proxy` (see `docs/hardening.md`).

pub mod conn;
pub mod h2_frames;
pub mod head;

use std::sync::Arc;
use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::protocols::http::v2::server::H2Options;
use pingora::proxy::Session;
use pingora::ErrorType;

use crate::local_reply::LocalReply;
use crate::response_flag::ResponseFlag;

/// Envoy's `max_headers_count` default.
pub const DEFAULT_MAX_REQUEST_HEADERS: usize = 100;
/// Envoy's `max_request_headers_kb` default (60 KiB), request line included.
pub const DEFAULT_MAX_REQUEST_HEADERS_BYTES: usize = 60 * 1024;
/// Longest request target: none of its own (0), as in Envoy, which counts the request line in
/// the 60 KiB of headers; `--max-request-uri-bytes` sets one (nginx's is 8 KiB).
pub const DEFAULT_MAX_REQUEST_URI_BYTES: usize = 0;
/// Largest request body: none (0), as in Envoy, which streams bodies of any size; a DICOM study
/// can pass 64 MiB. `--max-request-body-bytes` (or an ApiProtection's `maxRequestBodyBytes`
/// per route) sets one.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 0;
/// Envoy's edge listener `connection_limit`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Requests in flight (all connections) before new ones are shed with `503 OM`.
pub const DEFAULT_MAX_ACTIVE_REQUESTS: usize = 5_000;
/// Envoy's edge `request_headers_timeout` recommendation (off in Envoy's own default).
pub const DEFAULT_REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Envoy's `stream_idle_timeout` default (5 minutes).
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy's connection `idle_timeout` default (1 hour).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's edge `max_concurrent_streams`.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Envoy's `max_inbound_priority_frames_per_stream` default.
pub const DEFAULT_HTTP2_MAX_INBOUND_PRIORITY_FRAMES_PER_STREAM: u64 = 100;
/// Envoy's `max_inbound_window_update_frames_per_data_frame_sent` default.
pub const DEFAULT_HTTP2_MAX_INBOUND_WINDOW_UPDATE_FRAMES_PER_DATA_FRAME_SENT: u64 = 10;
/// Envoy's edge `initial_stream_window_size` (64 KiB).
pub const HTTP2_STREAM_WINDOW: u32 = 64 * 1024;
/// Envoy's edge `initial_connection_window_size` (1 MiB).
pub const HTTP2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Streams a client may reset before augur accepts them (rapid reset, CVE-2023-44487);
/// h2's default.
pub const HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams augur may reset for a client's protocol errors before it closes the connection
/// (MadeYouReset, CVE-2025-8671); hyper's value.
pub const HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
/// Response bytes buffered per HTTP/2 stream; Envoy's edge `per_connection_buffer_limit_bytes`.
pub const HTTP2_MAX_SEND_BUFFER: usize = 32 * 1024;

/// A request body grew past `--max-request-body-bytes` while streaming (answered `413`).
pub const BODY_TOO_LARGE: ErrorType = ErrorType::new("augur: request body too large");

/// Too many or too large request headers (Envoy: `http1.too_many_headers`,
/// `http1.headers_too_large`).
pub const HEADERS_TOO_LARGE: LocalReply = LocalReply {
    status: 431,
    flag: ResponseFlag::DownstreamProtocolError,
    body: "Request Header Fields Too Large",
};

/// The request target is longer than `--max-request-uri-bytes`.
pub const URI_TOO_LONG: LocalReply = LocalReply {
    status: 414,
    flag: ResponseFlag::DownstreamProtocolError,
    body: "URI Too Long",
};

/// The body is over `--max-request-body-bytes` (Envoy's buffer filter:
/// `request_payload_too_large`, no flag).
pub const PAYLOAD_TOO_LARGE: LocalReply = LocalReply {
    status: 413,
    flag: ResponseFlag::None,
    body: "Payload Too Large",
};

/// A request with ambiguous framing (Envoy: `http1.content_length_and_chunked_not_allowed`).
pub const BAD_REQUEST: LocalReply = LocalReply {
    status: 400,
    flag: ResponseFlag::DownstreamProtocolError,
    body: "Bad Request",
};

/// Load shed: too many connections or requests in flight (Envoy's overload manager).
pub const OVERLOADED: LocalReply = LocalReply {
    status: 503,
    flag: ResponseFlag::OverloadManager,
    body: "envoy overloaded",
};

/// The limits of one `augur proxy`. `None` timeouts and zero counts are off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Request headers per request (HTTP/1 and HTTP/2).
    pub max_request_headers: usize,
    /// Bytes of request line and headers (HTTP/1), or of decoded headers (HTTP/2).
    pub max_request_headers_bytes: usize,
    /// Bytes of the request target (path and query); 0: no limit of its own.
    pub max_request_uri_bytes: usize,
    /// Bytes of request body, by `Content-Length` up front or counted as it streams; 0: none.
    pub max_request_body_bytes: u64,
    /// Open client connections; the ones beyond are answered `503 OM` and closed.
    pub max_connections: usize,
    /// Requests in flight over all connections; new ones beyond are answered `503 OM`.
    pub max_active_requests: usize,
    /// Time from the first byte of a request to the end of its headers (HTTP/1).
    pub request_headers_timeout: Option<Duration>,
    /// Longest wait for the client to send or accept bytes once a request started.
    pub stream_idle_timeout: Option<Duration>,
    /// Longest idle time of a kept-alive client connection.
    pub idle_timeout: Option<Duration>,
    /// Age after which a client connection is closed after its current request.
    pub max_connection_duration: Option<Duration>,
    /// HTTP/2 streams a client may have open on one connection.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 PRIORITY frames a client may send per stream it opened (0: no limit).
    pub http2_max_inbound_priority_frames_per_stream: u64,
    /// HTTP/2 WINDOW_UPDATE frames a client may send per DATA frame augur sent (0: no limit).
    pub http2_max_inbound_window_update_frames_per_data_frame_sent: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS,
            max_request_headers_bytes: DEFAULT_MAX_REQUEST_HEADERS_BYTES,
            max_request_uri_bytes: DEFAULT_MAX_REQUEST_URI_BYTES,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_active_requests: DEFAULT_MAX_ACTIVE_REQUESTS,
            request_headers_timeout: Some(DEFAULT_REQUEST_HEADERS_TIMEOUT),
            stream_idle_timeout: Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_connection_duration: None,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            http2_max_inbound_priority_frames_per_stream:
                DEFAULT_HTTP2_MAX_INBOUND_PRIORITY_FRAMES_PER_STREAM,
            http2_max_inbound_window_update_frames_per_data_frame_sent:
                DEFAULT_HTTP2_MAX_INBOUND_WINDOW_UPDATE_FRAMES_PER_DATA_FRAME_SENT,
        }
    }
}

impl Limits {
    /// HTTP/2 settings: Envoy's edge stream limit and windows, bounded reset budgets.
    pub fn h2_options(&self) -> H2Options {
        let mut options = H2Options::default();
        options
            .max_concurrent_streams(self.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.max_request_headers_bytes).unwrap_or(u32::MAX))
            .initial_window_size(HTTP2_STREAM_WINDOW)
            .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
            .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(Some(HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS))
            .max_send_buffer_size(HTTP2_MAX_SEND_BUFFER);
        options
    }

    /// Server options of the cleartext listeners: h2c beside HTTP/1.1, and the idle timeout
    /// for HTTP/2 connections.
    pub fn server_options(&self, h2c: bool) -> HttpServerOptions {
        let mut options = HttpServerOptions::default();
        options.h2c = h2c;
        options.h2_idle_timeout = self.idle_timeout;
        options
    }

    /// The reply for a request over a header, URI or body limit, or with ambiguous framing.
    pub fn check_request(&self, session: &Session) -> Option<LocalReply> {
        let req = session.req_header();
        if req.headers.len() > self.max_request_headers {
            return Some(HEADERS_TOO_LARGE);
        }
        let raw = session
            .as_downstream()
            .as_http1()
            .map(|h1| h1.get_headers_raw_bytes());
        let header_bytes = match &raw {
            Some(raw) => raw.len(),
            None => decoded_size(req),
        };
        if header_bytes > self.max_request_headers_bytes {
            return Some(HEADERS_TOO_LARGE);
        }
        let target = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if self.max_request_uri_bytes > 0 && target > self.max_request_uri_bytes {
            return Some(URI_TOO_LONG);
        }
        // pingora lets Transfer-Encoding win over Content-Length (RFC 9112) and drops the
        // latter; Envoy rejects the pair, and so does augur.
        if req.headers.contains_key(http::header::TRANSFER_ENCODING)
            && raw.as_deref().is_some_and(has_content_length)
        {
            return Some(BAD_REQUEST);
        }
        // pingora accepts `Content-Length: 5, 5` (RFC 9110 allows identical values) and
        // forwards the list as is; Envoy rejects it, and strict origins would too.
        let mut lengths = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
        let declared = lengths.next();
        if lengths.next().is_some() || declared.is_some_and(|v| v.as_bytes().contains(&b',')) {
            return Some(BAD_REQUEST);
        }
        if declared_body_bytes(req).is_some_and(|n| self.body_over_limit(n, None)) {
            return Some(PAYLOAD_TOO_LARGE);
        }
        None
    }

    /// Whether `bytes` of request body pass the proxy's limit or the route's (`route`, an
    /// ApiProtection's `maxRequestBodyBytes`); a limit of 0 is none.
    pub fn body_over_limit(&self, bytes: u64, route: Option<u64>) -> bool {
        let proxy = Some(self.max_request_body_bytes).filter(|&m| m > 0);
        proxy.into_iter().chain(route).any(|max| bytes > max)
    }

    /// Whether this many requests in flight (this one included) is past the limit.
    pub fn too_many_requests(&self, active: i64) -> bool {
        self.max_active_requests > 0
            && usize::try_from(active).is_ok_and(|n| n > self.max_active_requests)
    }
}

/// The body size a request declares in its (single) `Content-Length`, if any.
pub fn declared_body_bytes(req: &pingora::http::RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The limits and the connection count a proxy checks each request against.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    /// The configured limits.
    pub limits: Arc<Limits>,
    /// Open client connections, counted by [`conn::Guarded`].
    pub connections: conn::Connections,
}

impl Gate {
    /// A gate with these limits and a fresh connection count, exported as `open` (the
    /// metric `augur_downstream_connections_active`).
    pub fn new(limits: Limits, open: prometheus::IntGauge) -> Self {
        Self {
            limits: Arc::new(limits),
            connections: conn::Connections::exported(open),
        }
    }

    /// Applies the timeouts to the request's connection and decides whether it is admitted:
    /// `Some(reply)` to answer it at once (load shed or over a limit). `active` counts the
    /// requests in flight, this one included.
    pub fn admit(&self, session: &mut Session, active: i64) -> Option<LocalReply> {
        let limits = &*self.limits;
        let (shed, age) = match conn::ConnState::of(session) {
            Some(state) => {
                state.headers_read();
                (state.shed, Some(state.accepted.elapsed()))
            }
            // HTTP/2: the connection's state is out of reach; shed while over the limit.
            None => (
                limits.max_connections > 0 && self.connections.open() > limits.max_connections,
                None,
            ),
        };
        session.set_read_timeout(limits.stream_idle_timeout);
        session.set_write_timeout(limits.stream_idle_timeout);
        if let Some(idle) = limits.idle_timeout {
            session.set_keepalive(Some(idle.as_secs()));
        }
        let too_old = limits
            .max_connection_duration
            .zip(age)
            .is_some_and(|(max, age)| age >= max);
        if too_old {
            session.set_keepalive(None);
        }
        if shed || limits.too_many_requests(active) {
            return Some(OVERLOADED);
        }
        limits.check_request(session)
    }

    /// The request is over: the connection's next headers get a fresh deadline.
    pub fn finished(session: &Session) {
        if let Some(state) = conn::ConnState::of(session) {
            state.expect_headers();
        }
    }
}

/// HPACK's accounting of a decoded header list: name, value and 32 bytes per field.
fn decoded_size(req: &pingora::http::RequestHeader) -> usize {
    let fields: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum();
    fields + req.uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// Whether the raw HTTP/1 header block has a `Content-Length` field.
fn has_content_length(raw: &[u8]) -> bool {
    raw.split(|&b| b == b'\n').skip(1).any(|line| {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"content-length")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_envoys_edge_values() {
        let limits = Limits::default();
        assert_eq!(limits.max_request_headers, 100);
        assert_eq!(limits.max_request_headers_bytes, 60 * 1024);
        assert_eq!(limits.http2_max_concurrent_streams, 100);
        assert_eq!(limits.stream_idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(limits.idle_timeout, Some(Duration::from_secs(3600)));
        // Envoy limits neither the body nor the target on its own.
        assert_eq!(limits.max_request_body_bytes, 0);
        assert_eq!(limits.max_request_uri_bytes, 0);
        assert!(!limits.body_over_limit(u64::MAX, None));
        assert!(limits.body_over_limit(11, Some(10)));
        let strict = Limits {
            max_request_body_bytes: 100,
            ..Limits::default()
        };
        assert!(strict.body_over_limit(101, Some(1000)));
        assert!(strict.body_over_limit(11, Some(10)));
        assert!(!strict.body_over_limit(100, None));
    }

    #[test]
    fn finds_content_length_in_any_case_and_spacing() {
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(has_content_length(raw));
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(!has_content_length(raw));
        // The request line is not a header, whatever it holds.
        let raw = b"POST /content-length:1 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(!has_content_length(raw));
    }

    #[test]
    fn active_requests_limit_counts_this_request() {
        let limits = Limits {
            max_active_requests: 2,
            ..Limits::default()
        };
        assert!(!limits.too_many_requests(2));
        assert!(limits.too_many_requests(3));
        let off = Limits {
            max_active_requests: 0,
            ..Limits::default()
        };
        assert!(!off.too_many_requests(1_000_000));
    }
}
