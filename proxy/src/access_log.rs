//! The access log: Istio's default text format (or JSON with Istio's keys), off by default as in
//! Istio, written by its own thread so the request path never waits on the disk.
//!
//! Opaque TCP connections of the capture listeners are logged too, as Envoy's `tcp_proxy` logs
//! them with Istio's format: `"- - -" 0`, no request fields, the bytes each way, the upstream
//! and its cluster (`PassthroughCluster`, `inbound|<port>||`, or a ServiceEntry's).
//!
//! Differences from Istio's format, for patient data: the path is logged without its query
//! string, and no body is ever logged. A full queue drops the line and counts it.

use crate::response_flag::ResponseFlag;
use crate::service::RequestCtx;
use pingora::proxy::Session;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::{Duration, SystemTime};

use augur_rollout::audit::rfc3339;
use prometheus::IntCounter;

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 4096;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Istio's `EnvoyTextLogFormat`.
    Text,
    /// One JSON object per line, with Istio's JSON keys.
    Json,
}

/// The method, path and protocol of an opaque TCP connection (Envoy's `"- - -"`).
pub const TCP: &str = "-";

/// One finished request, as the access log sees it (borrowed; nothing is copied unless logged).
pub struct Entry<'a> {
    /// When the request arrived.
    pub start: SystemTime,
    /// Method ([`TCP`] for a TCP connection).
    pub method: &'a str,
    /// Path without the query string ([`TCP`] for a TCP connection).
    pub path: &'a str,
    /// `HTTP/1.1` or `HTTP/2` ([`TCP`] for a TCP connection).
    pub protocol: &'a str,
    /// Status sent (0 when none).
    pub status: u16,
    /// Envoy response flags.
    pub flags: ResponseFlag,
    /// Request body bytes.
    pub bytes_received: u64,
    /// Response body bytes.
    pub bytes_sent: u64,
    /// Whole request, in ms.
    pub duration_ms: u128,
    /// Upstream service time, in ms, when an upstream answered.
    pub upstream_ms: Option<u128>,
    /// `x-forwarded-for`.
    pub forwarded_for: Option<&'a str>,
    /// `user-agent`.
    pub user_agent: Option<&'a str>,
    /// `x-request-id`.
    pub request_id: Option<&'a str>,
    /// `:authority`/`Host`.
    pub authority: &'a str,
    /// The upstream endpoint.
    pub upstream_host: Option<SocketAddr>,
    /// The upstream cluster name.
    pub upstream_cluster: Option<&'a str>,
    /// The local address of the upstream connection (127.0.0.6:port for inbound traffic).
    pub upstream_local: Option<SocketAddr>,
    /// Why the upstream connection failed (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`).
    pub upstream_failure: Option<&'a str>,
    /// The address the client connected to: the original destination of a captured
    /// connection, else the listener's.
    pub local: Option<SocketAddr>,
    /// The client address.
    pub remote: Option<SocketAddr>,
    /// The route name.
    pub route: Option<&'a str>,
}

/// What the access log reads of a request that only the service can see: the fields of
/// [`RequestCtx`] it keeps to itself, and the names its capture gives captured traffic.
pub struct Served<'a> {
    /// `x-envoy-upstream-service-time` of the answer, in ms.
    pub upstream_ms: Option<u128>,
    /// The local address of the upstream connection.
    pub upstream_local: Option<SocketAddr>,
    /// `%UPSTREAM_CLUSTER_RAW%`: the capture's cluster, else the route's.
    pub upstream_cluster: Option<&'a str>,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`: the original destination, else the listener's address.
    pub local: Option<SocketAddr>,
    /// `%ROUTE_NAME%`: the capture's route, else the matched route's.
    pub route: Option<&'a str>,
}

impl<'a> Entry<'a> {
    /// The entry of the HTTP request of `ctx` on `session`, answered with `status` (0 when
    /// none was sent). The request fields Istio's format logs are read from its header (path
    /// without query, `x-forwarded-for`, `user-agent`, authority), the outcome from `ctx`.
    pub fn request(
        session: &'a Session,
        ctx: &'a RequestCtx,
        status: u16,
        served: Served<'a>,
    ) -> Self {
        let req = session.req_header();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let elapsed = ctx.start.elapsed();
        Self {
            start: SystemTime::now() - elapsed,
            method: req.method.as_str(),
            path: req.uri.path(),
            protocol: if session.is_http2() {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
            status,
            flags: ctx.flag,
            bytes_received: ctx.request_bytes,
            bytes_sent: ctx.response_bytes,
            duration_ms: elapsed.as_millis(),
            upstream_ms: served.upstream_ms,
            forwarded_for: header("x-forwarded-for"),
            user_agent: header("user-agent"),
            request_id: ctx.request_id.as_deref(),
            authority: req
                .uri
                .authority()
                .map(|a| a.as_str())
                .or(header("host"))
                .unwrap_or("-"),
            upstream_host: ctx.endpoint,
            upstream_cluster: served.upstream_cluster,
            upstream_local: served.upstream_local,
            upstream_failure: None,
            local: served.local,
            remote: session.client_addr().and_then(|a| a.as_inet()).copied(),
            route: served.route,
        }
    }

    /// The entry of a request head the connection refused before it became a request
    /// (`431` past pingora's ceiling): no method, path or route is known.
    pub fn refused(head: &crate::limits::conn::RefusedHead) -> Self {
        let elapsed = head.started.map_or(Duration::ZERO, |t| t.elapsed());
        Self {
            start: SystemTime::now() - elapsed,
            method: "-",
            path: "-",
            protocol: "HTTP/1.1",
            status: head.reply.status,
            flags: head.reply.flag,
            bytes_received: 0,
            bytes_sent: head.reply.body.len() as u64,
            duration_ms: elapsed.as_millis(),
            upstream_ms: None,
            forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: "-",
            upstream_host: None,
            upstream_cluster: None,
            upstream_local: None,
            upstream_failure: None,
            local: head.local,
            remote: head.remote,
            route: None,
        }
    }
}

/// The access log's sender; cloning shares the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<String>,
    format: Format,
    dropped: IntCounter,
}

impl AccessLog {
    /// Opens `path` for appending (`/dev/stdout` works) and starts the writer thread.
    pub fn open(path: &Path, format: Format, dropped: IntCounter) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("augur-access-log".into())
            .spawn(move || {
                for line in rx {
                    if file.write_all(line.as_bytes()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            tx,
            format,
            dropped,
        })
    }

    /// Queues one line; a full queue drops it and counts it.
    pub fn record(&self, e: &Entry<'_>) {
        let line = match self.format {
            Format::Text => text(e),
            Format::Json => json(e),
        };
        if self.tx.try_send(line).is_err() {
            self.dropped.inc();
        }
    }
}

/// `%RESPONSE_CODE_DETAILS%` from the flag.
fn details(e: &Entry<'_>) -> &'static str {
    if e.protocol == TCP {
        return "-";
    }
    match e.flags.code_details() {
        Some(details) => details,
        None if e.upstream_host.is_none() => "direct_response",
        None => "via_upstream",
    }
}

fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Istio's default text format (`EnvoyTextLogFormat`), field for field.
pub fn text(e: &Entry<'_>) -> String {
    let mut out = String::with_capacity(256);
    let _ = writeln!(
        out,
        "[{}] \"{} {} {}\" {} {} {} - \"{}\" {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} {} {} {} - {}",
        rfc3339(e.start),
        e.method,
        e.path,
        e.protocol,
        e.status,
        e.flags,
        details(e),
        e.upstream_failure.unwrap_or("-"),
        e.bytes_received,
        e.bytes_sent,
        e.duration_ms,
        or_dash(e.upstream_ms),
        e.forwarded_for.unwrap_or("-"),
        e.user_agent.unwrap_or("-"),
        e.request_id.unwrap_or("-"),
        e.authority,
        or_dash(e.upstream_host),
        e.upstream_cluster.unwrap_or("-"),
        or_dash(e.upstream_local),
        or_dash(e.local),
        or_dash(e.remote),
        e.route.unwrap_or("-"),
    );
    out
}

/// The same fields as JSON, with the keys of Istio's JSON access log.
pub fn json(e: &Entry<'_>) -> String {
    let mut line = serde_json::json!({
        "start_time": rfc3339(e.start),
        "method": unless_tcp(e.method),
        "path": unless_tcp(e.path),
        "protocol": unless_tcp(e.protocol),
        "response_code": e.status,
        "response_flags": e.flags.as_str(),
        "response_code_details": details(e),
        "bytes_received": e.bytes_received,
        "bytes_sent": e.bytes_sent,
        "duration": e.duration_ms as u64,
        "upstream_service_time": e.upstream_ms.map(|m| m.to_string()),
        "x_forwarded_for": e.forwarded_for,
        "user_agent": e.user_agent,
        "request_id": e.request_id,
        "authority": e.authority,
        "upstream_host": e.upstream_host.map(|a| a.to_string()),
        "upstream_cluster": e.upstream_cluster,
        "upstream_local_address": e.upstream_local.map(|a| a.to_string()),
        "upstream_transport_failure_reason": e.upstream_failure,
        "downstream_local_address": e.local.map(|a| a.to_string()),
        "downstream_remote_address": e.remote.map(|a| a.to_string()),
        "route_name": e.route,
    })
    .to_string();
    line.push('\n');
    line
}

/// JSON has no value (null) where the text format has [`TCP`]'s dash.
fn unless_tcp(field: &str) -> Option<&str> {
    (field != TCP).then_some(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn json_lines_use_istios_keys() {
        let e = Entry {
            start: UNIX_EPOCH,
            method: "POST",
            path: "/predict",
            protocol: "HTTP/1.1",
            status: 504,
            flags: ResponseFlag::UpstreamRequestTimeout,
            bytes_received: 10,
            bytes_sent: 24,
            duration_ms: 300,
            upstream_ms: None,
            forwarded_for: None,
            user_agent: Some("ua"),
            request_id: Some("r"),
            authority: "model",
            upstream_host: Some("127.0.0.1:9".parse().unwrap()),
            upstream_cluster: Some("outbound|80|v1|model"),
            upstream_local: None,
            upstream_failure: None,
            local: None,
            remote: None,
            route: Some("main"),
        };
        let v: serde_json::Value = serde_json::from_str(&json(&e)).unwrap();
        assert_eq!(v["response_code"], 504);
        assert_eq!(v["response_code_details"], "response_timeout");
        assert_eq!(v["route_name"], "main");
        assert_eq!(v["upstream_host"], "127.0.0.1:9");
        assert!(text(&e).contains("\"POST /predict HTTP/1.1\" 504 UT response_timeout"));
    }

    #[test]
    fn tcp_connections_look_like_envoys_tcp_proxy_lines() {
        let e = Entry {
            start: UNIX_EPOCH,
            method: TCP,
            path: TCP,
            protocol: TCP,
            status: 0,
            flags: ResponseFlag::None,
            bytes_received: 79,
            bytes_sent: 557,
            duration_ms: 7,
            upstream_ms: None,
            forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: "-",
            upstream_host: Some("127.0.0.1:7002".parse().unwrap()),
            upstream_cluster: Some("inbound|7002||"),
            upstream_local: Some("127.0.0.6:52992".parse().unwrap()),
            upstream_failure: None,
            local: Some("10.0.0.2:7002".parse().unwrap()),
            remote: Some("10.0.0.1:40916".parse().unwrap()),
            route: None,
        };
        // The line Envoy 1.40 wrote for the same connection through a tcp_proxy to
        // `inbound|7002||` with Istio's format, but for the addresses.
        assert_eq!(
            text(&e),
            "[1970-01-01T00:00:00.000Z] \"- - -\" 0 - - - \"-\" 79 557 7 - \"-\" \"-\" \"-\" \"-\" \
             \"127.0.0.1:7002\" inbound|7002|| 127.0.0.6:52992 10.0.0.2:7002 10.0.0.1:40916 - -\n"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&e)).unwrap();
        assert_eq!(v["method"], serde_json::Value::Null);
        assert_eq!(v["response_code_details"], "-");
        assert_eq!(v["upstream_local_address"], "127.0.0.6:52992");
        let failed = Entry {
            flags: ResponseFlag::TcpConnectionFailure,
            upstream_failure: Some("delayed_connect_error:_Connection_refused"),
            upstream_local: None,
            ..e
        };
        assert!(text(&failed).contains(
            "\"- - -\" 0 UF,URX - - \"delayed_connect_error:_Connection_refused\" 79 557"
        ));
    }
}
