//! VirtualService: ordered HTTP routes with matches, weighted destinations,
//! mirrors, retries, timeouts, faults and header edits — validated domain
//! types. The raw serde shape is in [`raw`], the raw → domain step in
//! `convert`.

use std::time::Duration;

use serde::Serialize;

use crate::istio::common::{Destination, Headers, ObjectMeta, Percent, StringMatch};

mod convert;
pub(crate) mod raw;

/// A validated VirtualService.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualService {
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// Hosts the routes apply to.
    pub hosts: Vec<String>,
    /// HTTP routes, first match wins.
    pub http: Vec<HttpRoute>,
}

/// One HTTP route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRoute {
    /// Route name (CanaryPolicy refers to routes by name).
    pub name: Option<String>,
    /// Match blocks, ORed; empty means "match everything".
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    pub route: Vec<HttpRouteDestination>,
    /// Redirect instead of forwarding.
    pub redirect: Option<HttpRedirect>,
    /// Answer directly instead of forwarding.
    pub direct_response: Option<HttpDirectResponse>,
    /// Rewrite before forwarding.
    pub rewrite: Option<HttpRewrite>,
    /// Route timeout; `None` = disabled (Istio's default).
    pub timeout: Option<Duration>,
    /// Retry policy; `None` = Istio's default policy (see [`HttpRetry::istio_default`]).
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    pub fault: Option<HttpFaultInjection>,
    /// Mirrors (`mirror` + `mirrorPercentage` normalised into this list).
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Header edits for the route.
    pub headers: Headers,
}

impl HttpRoute {
    /// Sum of the destination weights.
    pub fn total_weight(&self) -> u32 {
        self.route.iter().map(|d| d.weight).sum()
    }
}

/// One match block: all its conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HttpMatchRequest {
    /// Name of the match (for logs).
    pub name: Option<String>,
    /// URI (path) match.
    pub uri: Option<StringMatch>,
    /// Scheme match.
    pub scheme: Option<StringMatch>,
    /// Method match.
    pub method: Option<StringMatch>,
    /// Authority (Host) match.
    pub authority: Option<StringMatch>,
    /// Header matches, lowercase keys.
    pub headers: Vec<(String, StringMatch)>,
    /// Headers that must not match, lowercase keys.
    pub without_headers: Vec<(String, StringMatch)>,
    /// Query parameter matches.
    pub query_params: Vec<(String, StringMatch)>,
    /// Destination port match.
    pub port: Option<u32>,
    /// Case-insensitive URI exact/prefix matching.
    pub ignore_uri_case: bool,
}

impl HttpMatchRequest {
    /// One-line summary such as `uri prefix:"/api" & header x-model-version=exact:"v2"`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let one = |label: &str, m: &Option<StringMatch>, parts: &mut Vec<String>| {
            if let Some(m) = m {
                parts.push(format!("{label} {}", m.summary()));
            }
        };
        one("uri", &self.uri, &mut parts);
        one("scheme", &self.scheme, &mut parts);
        one("method", &self.method, &mut parts);
        one("authority", &self.authority, &mut parts);
        for (k, m) in &self.headers {
            parts.push(format!("header {k}={}", m.summary()));
        }
        for (k, m) in &self.without_headers {
            parts.push(format!("!header {k}={}", m.summary()));
        }
        for (k, m) in &self.query_params {
            parts.push(format!("query {k}={}", m.summary()));
        }
        if let Some(p) = self.port {
            parts.push(format!("port {p}"));
        }
        if self.ignore_uri_case {
            parts.push("ignoreUriCase".to_owned());
        }
        parts.join(" & ")
    }
}

/// A weighted destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRouteDestination {
    /// Where to send.
    pub destination: Destination,
    /// Relative weight (share = weight / sum of weights).
    pub weight: u32,
    /// Header edits for this destination.
    pub headers: Headers,
}

/// A mirror: a copy of a share of the requests, response discarded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpMirrorPolicy {
    /// Where to send the copy.
    pub destination: Destination,
    /// Share of requests mirrored (100 when absent).
    pub percentage: Percent,
}

/// Redirect response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRedirect {
    /// Replacement path; a query in it replaces the request's, else the request's is kept.
    pub uri: Option<String>,
    /// Replacement authority (the request's port is dropped unless `port` sets one).
    pub authority: Option<String>,
    /// Status code: 301 (the default), 302, 303, 307 or 308, as Istio supports.
    pub redirect_code: u16,
    /// Replacement scheme (else the scheme the request came in with).
    pub scheme: Option<String>,
    /// Replacement port (`port`, or the request's with `derivePort: FROM_REQUEST_PORT`).
    pub port: Option<RedirectPort>,
}

/// Where a redirect's port comes from (`port` or `derivePort`, which Istio makes a oneof).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RedirectPort {
    /// This port.
    Fixed(u16),
    /// The port the request came in on (`derivePort: FROM_REQUEST_PORT`).
    FromRequest,
}

/// Direct response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpDirectResponse {
    /// HTTP status.
    pub status: u16,
    /// Body, if any.
    pub body: Option<DirectResponseBody>,
}

/// Body of a direct response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DirectResponseBody {
    /// Text body.
    String(String),
    /// Base64-encoded binary body, as written.
    Bytes(String),
}

/// Rewrite before forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRewrite {
    /// Replacement for the matched path prefix (the whole path after an exact or regex match;
    /// the leading `/` when the route matched no uri, as Istio's catch-all is `prefix: /`).
    pub uri: Option<String>,
    /// Replacement authority.
    pub authority: Option<String>,
    /// `uriRegexRewrite`: every match of the expression in the path is replaced.
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `uriRegexRewrite`: a regular expression over the path and its replacement, where `\1`
/// names a capture group (RE2's syntax, as Envoy's `regex_rewrite` takes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegexRewrite {
    /// The expression.
    pub pattern: String,
    /// The replacement.
    pub rewrite: String,
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRetry {
    /// Retries (max requests = 1 + attempts); 0 disables.
    pub attempts: u32,
    /// Timeout per attempt; `None` = the route timeout.
    pub per_try_timeout: Option<Duration>,
    /// Envoy retry-on tokens and status codes.
    pub retry_on: Vec<String>,
    /// Retry in other localities.
    pub retry_remote_localities: bool,
}

impl HttpRetry {
    /// The policy Istio applies when a route has no `retries`.
    pub fn istio_default() -> HttpRetry {
        HttpRetry {
            attempts: crate::defaults::RETRY_ATTEMPTS,
            per_try_timeout: None,
            retry_on: crate::defaults::RETRY_ON
                .split(',')
                .map(str::to_owned)
                .collect(),
            retry_remote_localities: false,
        }
    }
}

/// Fault injection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpFaultInjection {
    /// Delay some requests.
    pub delay: Option<FaultDelay>,
    /// Abort some requests.
    pub abort: Option<FaultAbort>,
}

/// Injected delay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultDelay {
    /// How long.
    pub fixed_delay: Duration,
    /// Share of requests delayed.
    pub percentage: Percent,
}

/// Injected abort.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultAbort {
    /// Status returned.
    pub http_status: u16,
    /// Share of requests aborted.
    pub percentage: Percent,
}
