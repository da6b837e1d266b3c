//! What Envoy's HTTP connection manager does to a request before it is routed, with the
//! settings Istio gives a sidecar: refuse HTTP/1.0 (`426`) and requests without a host (`400`),
//! turn an absolute-form target into origin form, normalize the path
//! ([`crate::route::path`]), and drop the `x-envoy-*` control headers a client may not set.
//!
//! Everything later (routing, ApiProtection, faults, the upstream request, the access log) sees
//! the sanitized request, so a policy on `/admin` cannot be bypassed with `/./admin`.

use http::{uri::PathAndQuery, Uri, Version};
use pingora::http::RequestHeader;

use crate::local_reply::{LocalReply, NO_ROUTE};
use crate::response_flag::ResponseFlag;
use crate::route::path::{self, PathNormalization};

/// HTTP/1.0 without Istio's `accept_http_10`: Envoy's `426 Upgrade Required`.
pub const UPGRADE_REQUIRED: LocalReply = LocalReply {
    status: 426,
    flag: ResponseFlag::None,
    body: "Upgrade Required",
};

/// A request Envoy's codec or path normalization refuses: `400` with an empty body.
pub const MALFORMED: LocalReply = LocalReply {
    status: 400,
    flag: ResponseFlag::DownstreamProtocolError,
    body: "",
};

/// The `x-envoy-*` request headers that steer Envoy itself (retries, timeouts, tracing, the
/// internal marker). Envoy 1.40 drops them from requests it does not trust (all of them, with
/// Istio's sidecar settings), so a client cannot raise its own retries or timeouts; the set is
/// what the real Envoy dropped in `tests/tests/envoy_parity.rs`. Other `x-envoy-*` headers
/// pass, as in Envoy.
pub const ENVOY_CONTROL_HEADERS: [&str; 13] = [
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-max-retries",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-retry-grpc-on",
    "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-ms",
];

/// What the sanitizer decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer and keep the connection (a request that routes nowhere, such as `OPTIONS *`).
    Reply(LocalReply),
    /// Answer and close the connection, as Envoy's codec does.
    ReplyAndClose(LocalReply),
}

/// Sanitizes `req` in place, or says how to refuse it. `http2` tells whether it came over
/// HTTP/2 (where the target is always origin form and the authority a pseudo-header).
pub fn sanitize(
    req: &mut RequestHeader,
    http2: bool,
    mode: PathNormalization,
) -> Result<(), Refusal> {
    if !http2 && req.version < Version::HTTP_11 {
        return Err(Refusal::ReplyAndClose(UPGRADE_REQUIRED));
    }
    if !http2 && !req.raw_path().starts_with(b"/") && req.raw_path() != b"*" {
        origin_form(req).map_err(|()| Refusal::ReplyAndClose(MALFORMED))?;
    }
    let has_host = req.uri.authority().is_some() || req.headers.contains_key(http::header::HOST);
    if !has_host {
        return Err(Refusal::ReplyAndClose(MALFORMED));
    }
    if !req.uri.path().starts_with('/') {
        // `OPTIONS *` and the like: no route of Istio's (all of them match `/...`) takes it.
        return Err(Refusal::Reply(NO_ROUTE));
    }
    normalize_path(req, mode)?;
    for name in ENVOY_CONTROL_HEADERS {
        req.remove_header(name);
    }
    Ok(())
}

/// `GET http://model/predict` becomes `GET /predict` with `Host: model`: the target's
/// authority wins over a `Host` header (RFC 9112 §3.2.2), and the upstream gets origin form.
/// (pingora keeps the raw absolute-form target and would forward it as it came.)
fn origin_form(req: &mut RequestHeader) -> Result<(), ()> {
    let target = Uri::try_from(req.raw_path()).map_err(|_| ())?;
    let authority = target.authority().ok_or(())?.as_str().to_owned();
    let origin = target
        .path_and_query()
        .map_or("/", PathAndQuery::as_str)
        .parse::<Uri>()
        .map_err(|_| ())?;
    req.insert_header(http::header::HOST, authority)
        .map_err(|_| ())?;
    req.set_uri(origin);
    Ok(())
}

/// Rewrites the path as `mode` says; the query string is left as it came.
fn normalize_path(req: &mut RequestHeader, mode: PathNormalization) -> Result<(), Refusal> {
    let normalized = match path::normalize(req.uri.path(), mode) {
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
        Ok(std::borrow::Cow::Owned(p)) => p,
        Err(_) => return Err(Refusal::ReplyAndClose(MALFORMED)),
    };
    let target = match req.uri.query() {
        Some(q) => format!("{normalized}?{q}"),
        None => normalized,
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(
        target
            .parse::<PathAndQuery>()
            .map_err(|_| Refusal::ReplyAndClose(MALFORMED))?,
    );
    let uri = Uri::from_parts(parts).map_err(|_| Refusal::ReplyAndClose(MALFORMED))?;
    req.set_uri(uri);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, version: Version) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).expect("request");
        req.set_version(version);
        req
    }

    fn with_host(target: &str) -> RequestHeader {
        let mut req = request(target, Version::HTTP_11);
        req.insert_header("host", "model").expect("host");
        req
    }

    #[test]
    fn http_10_is_refused_with_426() {
        let mut req = request("/predict", Version::HTTP_10);
        req.insert_header("host", "model").expect("host");
        assert_eq!(
            sanitize(&mut req, false, PathNormalization::Base),
            Err(Refusal::ReplyAndClose(UPGRADE_REQUIRED))
        );
    }

    #[test]
    fn a_request_without_host_is_a_400() {
        let mut req = request("/predict", Version::HTTP_11);
        assert_eq!(
            sanitize(&mut req, false, PathNormalization::Base),
            Err(Refusal::ReplyAndClose(MALFORMED))
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form_and_sets_host() {
        let mut req = request("http://model:8080/a/../predict?x=1", Version::HTTP_11);
        req.insert_header("host", "other").expect("host");
        sanitize(&mut req, false, PathNormalization::Base).expect("sanitized");
        assert_eq!(req.uri.to_string(), "/predict?x=1");
        assert_eq!(req.headers["host"], "model:8080");
    }

    #[test]
    fn options_star_routes_nowhere() {
        let mut req = with_host("*");
        assert_eq!(
            sanitize(&mut req, false, PathNormalization::Base),
            Err(Refusal::Reply(NO_ROUTE))
        );
    }

    #[test]
    fn path_is_normalized_and_query_kept() {
        let mut req = with_host("/public/%2e%2e/%61dmin/x?next=/../y");
        sanitize(&mut req, false, PathNormalization::Base).expect("sanitized");
        assert_eq!(req.uri.to_string(), "/admin/x?next=/../y");
        let mut nul = with_host("/a/%00");
        assert_eq!(
            sanitize(&mut nul, false, PathNormalization::Base),
            Err(Refusal::ReplyAndClose(MALFORMED))
        );
    }

    #[test]
    fn envoy_control_headers_are_dropped_and_others_kept() {
        let mut req = with_host("/");
        req.insert_header("x-envoy-retry-on", "5xx").expect("h");
        req.insert_header("x-envoy-upstream-rq-timeout-ms", "1")
            .expect("h");
        req.insert_header("x-envoy-foo", "bar").expect("h");
        sanitize(&mut req, false, PathNormalization::Base).expect("sanitized");
        assert!(req.headers.get("x-envoy-retry-on").is_none());
        assert!(req.headers.get("x-envoy-upstream-rq-timeout-ms").is_none());
        assert_eq!(req.headers["x-envoy-foo"], "bar");
    }
}
