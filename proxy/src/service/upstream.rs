//! One attempt upstream: the endpoint and connection options it gets (`upstream_peer`), the
//! request as it leaves (Envoy's headers, the route's and destination's edits, rewrites) and
//! the response as it comes back (retriable statuses, Envoy's headers, edits).

use std::net::SocketAddr;

use pingora::connectors::l4::BindTo;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use super::decide::is_tls;
use super::failure::{CIRCUIT_OPEN, RETRIABLE_STATUS};
use super::replay::BodyCopy;
use super::{capture, headers, AugurProxy};
use augur_policies::{HeaderOperations, Headers};

use crate::response_flag::ResponseFlag;
use crate::route::breakers::Overflow;
use crate::route::outlier::Outcome;
use crate::route::{RetryPolicy, Route};

impl AugurProxy {
    /// The endpoint and connection options of the next attempt, after the retry back-off and
    /// the cluster's circuit breakers.
    pub(super) async fn choose_peer(&self, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        ctx.attempts += 1;
        if ctx.attempts > 1 {
            tokio::time::sleep(RetryPolicy::backoff(ctx.attempts - 1, rand::random())).await;
        }
        if let Some(dst) = ctx.passthrough {
            ctx.endpoint = Some(dst);
            let mut peer = HttpPeer::new(dst, false, String::new());
            peer.options.connection_timeout = Some(augur_policies::defaults::CONNECT_TIMEOUT);
            if ctx.inbound {
                let mut bind = BindTo::default();
                bind.addr = Some(SocketAddr::new(capture::INBOUND_PASSTHROUGH_BIND, 0));
                peer.options.bind_to = Some(bind);
            }
            return Ok(Box::new(peer));
        }
        let Some(cluster) = ctx.cluster.clone() else {
            return Error::e_explain(ErrorType::InternalError, "no upstream chosen for request");
        };
        let client_h2 = ctx.client_h2;
        // The previous attempt's hold is released before this one asks.
        ctx.admission = None;
        if let Some(breakers) = &cluster.breakers {
            let http1 = !cluster.upstream.speaks_h2(client_h2);
            let wait = ctx.route.as_ref().and_then(|r| r.timeout);
            match breakers.admit(http1, ctx.attempts > 1, wait).await {
                Ok(admission) => ctx.admission = Some(admission),
                Err(Overflow::Requests) => {
                    return Error::e_explain(CIRCUIT_OPEN, "connection pool limits reached");
                }
                Err(Overflow::Timeout) => {
                    return Error::e_explain(
                        ErrorType::ReadTimedout,
                        "route timeout while waiting for an upstream connection",
                    );
                }
            }
        }
        let Some((endpoint, claim)) = cluster.pick(ctx.sticky) else {
            return Error::e_explain(ErrorType::ConnectNoRoute, "cluster has no endpoint");
        };
        ctx.endpoint_claim = Some(claim);
        ctx.endpoint = Some(endpoint);
        let mut peer = cluster.upstream.peer(endpoint, &cluster.host, client_h2);
        peer.options.connection_timeout = Some(cluster.connect_timeout);
        peer.options.idle_timeout = Some(cluster.idle_timeout);
        peer.options.read_timeout = expected_timeout(ctx.route.as_deref());
        Ok(Box::new(peer))
    }

    /// The request as it leaves for this attempt.
    pub(super) fn edit_upstream_request(
        &self,
        session: &Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::strip_hop_by_hop(upstream);
        if headers::wants_trailers(session.req_header()) {
            upstream.insert_header("te", "trailers")?;
        }
        // A client may nominate `x-request-id` in `Connection` (pingora then strips it): the
        // id augur logs and joins samples by must still reach the upstream.
        if let Some(id) = ctx.request_id.as_deref() {
            if upstream.headers.get("x-request-id").is_none() {
                upstream.insert_header("x-request-id", id)?;
            }
        }
        if let Some(cluster) = ctx.cluster.as_ref().filter(|c| c.close_after_request) {
            if !cluster.upstream.speaks_h2(session.is_http2()) {
                upstream.insert_header("connection", "close")?;
            }
        }
        upstream.insert_header("x-envoy-attempt-count", ctx.attempts.to_string())?;
        let forwarded_on = ctx.inbound && ctx.passthrough.is_none();
        if let Some(policy) = ctx.rollout.as_deref().filter(|_| forwarded_on) {
            // Sent on from a stable pod to the canary: the canary's sidecar must not split it.
            let snapshot = self.store.snapshot();
            if let Some(mark) = super::request::split_mark(&snapshot, policy) {
                upstream.insert_header(super::request::SPLIT_HEADER, &*mark)?;
            }
        }
        // Envoy tells the upstream how long the proxy will wait for it, so that it can give up
        // in time; nothing when no timeout applies (Istio's default).
        if let Some(timeout) = expected_timeout(ctx.route.as_deref()) {
            upstream.insert_header(
                "x-envoy-expected-rq-timeout-ms",
                timeout.as_millis().to_string(),
            )?;
        }
        if upstream.headers.get("x-forwarded-proto").is_none() {
            let proto = if is_tls(session) { "https" } else { "http" };
            upstream.insert_header("x-forwarded-proto", proto)?;
        }
        if let Some(route) = &ctx.route {
            for ops in edits_in_order(route, ctx.destination, |h| &h.request) {
                headers::edit_request(upstream, ops)?;
            }
            if let Some(authority) = route.rewrite.as_ref().and_then(|r| r.authority.as_ref()) {
                upstream.insert_header("host", authority.as_str())?;
            }
            if let Some(path) = &ctx.rewritten_path {
                let original = session
                    .req_header()
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned());
                if let Some(original) = original {
                    upstream.insert_header("x-envoy-original-path", original)?;
                }
                rewrite_path(upstream, path)?;
            }
        }
        ctx.attempt_start = Some(crate::clock::now());
        Ok(())
    }

    /// The response as it comes back: a status the route retries becomes an error that sends
    /// the request again (when its body can be sent again); otherwise Envoy's headers and the
    /// route's and destination's edits.
    pub(super) fn edit_upstream_response(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if self.draining.is_set() {
            // Clients reconnect, to another pod, for their next request.
            session.set_keepalive(None);
        }
        let status = upstream.status.as_u16();
        self.report_outlier(ctx, Outcome::Status(status));
        if ctx.retry().is_some_and(|p| p.retries_status(status)) {
            // Retried only when the body can be sent again; otherwise this answer goes to the
            // client, as Envoy does past its buffer limit.
            if ctx.retries_left() && can_resend(session, ctx) {
                let mut e = Error::explain(RETRIABLE_STATUS, format!("upstream answered {status}"));
                e.set_retry(true);
                return Err(e);
            }
            if ctx.attempts > 1 {
                ctx.flag = ResponseFlag::UpstreamRetryLimitExceeded;
            }
        }
        let service_ms = ctx.attempt_start.map_or(0, |t| t.elapsed().as_millis());
        ctx.upstream_ms = Some(service_ms);
        upstream.insert_header("x-envoy-upstream-service-time", service_ms.to_string())?;
        upstream.insert_header("server", "envoy")?;
        if let Some(route) = &ctx.route {
            for ops in edits_in_order(route, ctx.destination, |h| &h.response) {
                headers::edit_response(upstream, ops)?;
            }
        }
        Ok(())
    }
}

/// How long an attempt may wait for its answer: the per-try timeout, else the route's.
fn expected_timeout(route: Option<&Route>) -> Option<std::time::Duration> {
    route.and_then(|r| r.retry.per_try_timeout.or(r.timeout))
}

/// The route's and the chosen destination's header edits in the order Istio has Envoy apply
/// them: a lone destination's after the route's (Istio merges both lists), one of several
/// destinations' before them (Envoy evaluates a weighted cluster's edits first).
fn edits_in_order<'a>(
    route: &'a Route,
    destination: usize,
    side: impl Fn(&'a Headers) -> &'a HeaderOperations,
) -> impl Iterator<Item = &'a HeaderOperations> {
    let own = route.destination_headers(destination).map(&side);
    let shared = Some(side(&route.headers));
    let (first, then) = if route.splits() {
        (own, shared)
    } else {
        (shared, own)
    };
    first.into_iter().chain(then)
}

/// Whether a retry could send the request body again: pingora still holds it all, or augur's
/// copy does (or will, for a declared length within the limit).
pub(super) fn can_resend(session: &Session, ctx: &RequestCtx) -> bool {
    !session.as_ref().retry_buffer_truncated()
        || ctx.body_copy.as_ref().is_some_and(BodyCopy::replayable)
}

/// Sets the upstream request's path and query to the route's rewrite of them
/// ([`Route::rewritten_path`]).
fn rewrite_path(req: &mut RequestHeader, path_and_query: &str) -> Result<()> {
    let parsed = path_and_query
        .parse::<http::Uri>()
        .map_err(|_| Error::explain(ErrorType::InternalError, "invalid rewritten path"))?;
    req.set_uri(parsed);
    Ok(())
}
