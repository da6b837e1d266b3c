//! The `augur proxy` flags of the limits (each also an `AUGUR_*` variable).

use std::time::Duration;

use clap::Args;

use augur_proxy::limits::*;

/// Limits on clients: headers, URI, body, connections, requests in flight and timeouts.
/// Defaults are Envoy's edge values; see docs/hardening.md.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Request headers per request; more are answered 431 (Envoy's `max_headers_count`).
    #[arg(long, env = "AUGUR_MAX_REQUEST_HEADERS", default_value_t = DEFAULT_MAX_REQUEST_HEADERS)]
    pub max_request_headers: usize,
    /// Bytes of request line and headers; more are answered 431 (Envoy's
    /// `max_request_headers_kb`, 60 KiB).
    #[arg(long, env = "AUGUR_MAX_REQUEST_HEADERS_BYTES", default_value_t = DEFAULT_MAX_REQUEST_HEADERS_BYTES)]
    pub max_request_headers_bytes: usize,
    /// Bytes of the request target (path and query); longer ones are answered 414 (0: none,
    /// as in Envoy, where the request line counts in --max-request-headers-bytes).
    #[arg(long, env = "AUGUR_MAX_REQUEST_URI_BYTES", default_value_t = DEFAULT_MAX_REQUEST_URI_BYTES)]
    pub max_request_uri_bytes: usize,
    /// Bytes of request body; larger bodies are answered 413 (by Content-Length before
    /// anything is forwarded, else when the streamed body passes the limit). 0: none, as in
    /// Envoy, which streams bodies of any size (DICOM studies can pass 64 MiB).
    #[arg(long, env = "AUGUR_MAX_REQUEST_BODY_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BODY_BYTES)]
    pub max_request_body_bytes: u64,
    /// Open client connections; requests on connections beyond it are answered `503` with
    /// flag OM and the connection is closed (0: no limit).
    #[arg(long, env = "AUGUR_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Requests in flight over all connections; new ones beyond it are shed with a fast `503`
    /// and flag OM (0: no limit).
    #[arg(long, env = "AUGUR_MAX_ACTIVE_REQUESTS", default_value_t = DEFAULT_MAX_ACTIVE_REQUESTS)]
    pub max_active_requests: usize,
    /// Time from a request's first byte to the end of its headers before the connection is
    /// closed (slowloris); e.g. `10s`, `500ms`, 0 for none.
    #[arg(long, env = "AUGUR_REQUEST_HEADERS_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub request_headers_timeout: Duration,
    /// Longest wait for a client to send body bytes or accept response bytes (Envoy's
    /// `stream_idle_timeout`); 0 for none.
    #[arg(long, env = "AUGUR_STREAM_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "300s")]
    pub stream_idle_timeout: Duration,
    /// Longest idle time of a client connection between requests (Envoy's `idle_timeout`);
    /// 0 for none.
    #[arg(long, env = "AUGUR_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "3600s")]
    pub idle_timeout: Duration,
    /// Age after which a client connection is closed after its current request (Envoy's
    /// `max_connection_duration`); 0 for none.
    #[arg(long, env = "AUGUR_MAX_CONNECTION_DURATION", value_parser = parse_duration, default_value = "0")]
    pub max_connection_duration: Duration,
    /// HTTP/2 streams a client may have open on one connection (Envoy's edge
    /// `max_concurrent_streams`).
    #[arg(long, env = "AUGUR_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS)]
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 PRIORITY frames a client may send per stream it opened, plus as many once;
    /// past that the connection is closed (Envoy's option of this name; 0: no limit).
    #[arg(long, env = "AUGUR_HTTP2_MAX_INBOUND_PRIORITY_FRAMES_PER_STREAM", default_value_t = DEFAULT_HTTP2_MAX_INBOUND_PRIORITY_FRAMES_PER_STREAM)]
    pub http2_max_inbound_priority_frames_per_stream: u64,
    /// HTTP/2 WINDOW_UPDATE frames a client may send per DATA frame augur sent (plus 2 per
    /// stream and 5); past that the connection is closed (Envoy's option; 0: no limit).
    #[arg(long, env = "AUGUR_HTTP2_MAX_INBOUND_WINDOW_UPDATE_FRAMES_PER_DATA_FRAME_SENT", default_value_t = DEFAULT_HTTP2_MAX_INBOUND_WINDOW_UPDATE_FRAMES_PER_DATA_FRAME_SENT)]
    pub http2_max_inbound_window_update_frames_per_data_frame_sent: u64,
}

impl LimitArgs {
    /// The limits these flags set.
    pub fn to_limits(&self) -> Limits {
        let on = |d: Duration| (!d.is_zero()).then_some(d);
        Limits {
            max_request_headers: self.max_request_headers,
            max_request_headers_bytes: self.max_request_headers_bytes,
            max_request_uri_bytes: self.max_request_uri_bytes,
            max_request_body_bytes: self.max_request_body_bytes,
            max_connections: self.max_connections,
            max_active_requests: self.max_active_requests,
            request_headers_timeout: on(self.request_headers_timeout),
            stream_idle_timeout: on(self.stream_idle_timeout),
            idle_timeout: on(self.idle_timeout),
            max_connection_duration: on(self.max_connection_duration),
            http2_max_concurrent_streams: self.http2_max_concurrent_streams,
            http2_max_inbound_priority_frames_per_stream: self
                .http2_max_inbound_priority_frames_per_stream,
            http2_max_inbound_window_update_frames_per_data_frame_sent: self
                .http2_max_inbound_window_update_frames_per_data_frame_sent,
        }
    }
}

/// `10s`, `10` (seconds) or `500ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 10s, 10 or 500ms)");
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().map(Duration::from_millis).map_err(|_| bad());
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse().map(Duration::from_secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
    }

    #[test]
    fn flag_defaults_are_the_limits_defaults() {
        let cli = Cli::try_parse_from(["augur"]).expect("parse");
        assert_eq!(cli.limits.to_limits(), Limits::default());
    }

    #[test]
    fn durations_take_seconds_or_milliseconds_and_zero_is_off() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("1m").is_err());
        let cli = Cli::try_parse_from(["augur", "--request-headers-timeout", "0"]).expect("parse");
        assert_eq!(cli.limits.to_limits().request_headers_timeout, None);
    }
}
