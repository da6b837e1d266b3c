//! What the proxy knows of one request while it is served: [`RequestCtx`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use augur_model::Arm;

use super::mirroring::MirrorPlan;
use super::replay::{BodyCopy, Outcome};
use crate::response_flag::ResponseFlag;
use crate::route::breakers::Admission;
use crate::route::cluster::EndpointGuard;
use crate::route::{Cluster, RetryPolicy, Route};

/// Per-request state.
pub struct RequestCtx {
    /// When the request arrived.
    pub start: Instant,
    /// The matched route.
    pub route: Option<Arc<Route>>,
    /// The chosen destination cluster.
    pub cluster: Option<Arc<Cluster>>,
    /// The endpoint of the current attempt.
    pub endpoint: Option<SocketAddr>,
    /// Upstream attempts made so far (1 on the first try).
    pub attempts: u32,
    /// When the current attempt's request was sent upstream.
    pub attempt_start: Option<Instant>,
    /// Envoy's response flags.
    pub flag: ResponseFlag,
    /// The request id (`x-request-id`).
    pub request_id: Option<String>,
    /// The rollout arm of the chosen destination.
    pub arm: Option<Arm>,
    /// Request body bytes received.
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// The response body, kept (up to a limit) when the route reads predictions from it.
    pub response_body: Option<Vec<u8>>,
    /// The copies this request makes, while its body streams.
    pub(super) mirror: Option<Box<MirrorPlan>>,
    /// A captured request no route covers: forwarded to where it was going.
    pub(super) passthrough: Option<SocketAddr>,
    /// Counts the request as active until the context is dropped.
    pub(super) active: ActiveRequest,
    /// `x-envoy-upstream-service-time` of the answer, in ms.
    pub(super) upstream_ms: Option<u128>,
    /// The consistent-hash key's hash, for sticky routes.
    pub(super) sticky: Option<u64>,
    /// The current attempt's claim on its endpoint (least-request balancing).
    pub(super) endpoint_claim: Option<EndpointGuard>,
    /// The request arrived on the inbound capture listener.
    pub(super) inbound: bool,
    /// The current attempt's hold on the cluster's circuit breakers.
    pub(super) admission: Option<Admission>,
    /// Whether the client spoke HTTP/2 (kept for the attempts sent as subrequests).
    pub(super) client_h2: bool,
    /// The request body, kept for a retry pingora cannot replay from its own buffer.
    pub(super) body_copy: Option<BodyCopy>,
    /// A retry is due that augur sends itself ([`super::replay`]).
    pub(super) replay: bool,
    /// Set when this request is an attempt sent again as a subrequest: where it reports.
    pub(super) outcome: Option<Arc<Mutex<Outcome>>>,
    /// The index of the chosen destination in the route's split.
    pub(super) destination: usize,
    /// The path and query forwarded when the route rewrites the path.
    pub(super) rewritten_path: Option<String>,
    /// The local address of the upstream connection (for the access log).
    pub(super) upstream_local: Option<SocketAddr>,
    /// The CanaryPolicy whose rollout this request is part of (its samples and evidence).
    pub(super) rollout: Option<Arc<str>>,
}

impl RequestCtx {
    /// The state of a request that just arrived, counted in `active`.
    pub(super) fn new(active: &prometheus::IntGauge) -> Self {
        Self {
            start: crate::clock::now(),
            route: None,
            cluster: None,
            endpoint: None,
            attempts: 0,
            attempt_start: None,
            flag: ResponseFlag::None,
            request_id: None,
            arm: None,
            request_bytes: 0,
            response_bytes: 0,
            response_body: None,
            mirror: None,
            passthrough: None,
            active: ActiveRequest::new(active),
            upstream_ms: None,
            sticky: None,
            endpoint_claim: None,
            inbound: false,
            admission: None,
            client_h2: false,
            body_copy: None,
            replay: false,
            outcome: None,
            destination: 0,
            rewritten_path: None,
            upstream_local: None,
            rollout: None,
        }
    }

    /// Whether the route's retry policy and the cluster's retry budget allow another attempt.
    pub(super) fn retries_left(&self) -> bool {
        let allowed = self.route.as_ref().map_or(0, |r| r.retry.attempts);
        let budget = self
            .cluster
            .as_ref()
            .and_then(|c| c.breakers.as_ref())
            .is_none_or(|b| b.retry_allowed());
        self.attempts <= allowed && budget
    }

    /// The route's retry policy.
    pub(super) fn retry(&self) -> Option<&RetryPolicy> {
        self.route.as_ref().map(|r| &r.retry)
    }

    /// How pingora's error lines name this request: the route, the response flag and the
    /// x-request-id, which find it in the access log. Never the path, query string or Host
    /// (pingora's own summary), which can carry patient identifiers.
    pub(super) fn summary(&self) -> String {
        let route = self.route.as_deref().map_or("-", |r| r.name.as_str());
        let id = self.request_id.as_deref().unwrap_or("-");
        format!(
            "route: {route}, flag: {}, x-request-id: {id}",
            self.flag.as_str()
        )
    }
}

/// Holds one count of the active-requests gauge for the life of a request.
pub(super) struct ActiveRequest(Option<prometheus::IntGauge>);

impl ActiveRequest {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(Some(gauge.clone()))
    }

    /// Stops counting (an attempt sent again is part of a request already counted).
    pub(super) fn release(&mut self) {
        if let Some(gauge) = self.0.take() {
            gauge.dec();
        }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_request_without_its_path() {
        let active = prometheus::IntGauge::new("active", "test").expect("gauge");
        let mut ctx = RequestCtx::new(&active);
        ctx.rewritten_path = Some("/predict?patient=PHI-MARK".to_owned());
        ctx.request_id = Some("5f0c".to_owned());
        ctx.flag = ResponseFlag::UpstreamOverflow;
        assert_eq!(ctx.summary(), "route: -, flag: UO, x-request-id: 5f0c");
    }
}
