//! The proxy itself: where a request enters (`request_filter`), is routed to a weighted
//! destination (`upstream_peer`), is retried or answered locally on failure, and leaves
//! (`logging`).

pub mod capture;
pub mod failure;
pub mod headers;
mod mirroring;
pub mod replay;
pub mod sanitize;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::{Error, ErrorType, Result};

use augur_model::{Arm, Sample};

use crate::access_log::{self, AccessLog};
use crate::limits::conn::{RefusalLog, RefusedHead};
use crate::local_reply::{self, LocalReply, NO_HEALTHY_UPSTREAM, NO_ROUTE};
use crate::metrics::istio::{Destination, Reporter, RequestRecord};
use crate::metrics::Metrics;
use crate::mirror::MirrorQueue;
use crate::policy_store::{PolicyStore, Snapshot};
use crate::rollout::weights::RolloutWeights;
use crate::route::breakers::{Admission, Overflow};
use crate::route::cluster::EndpointGuard;
use crate::route::outlier::Outcome;
use crate::route::path::PathNormalization;
use crate::route::sticky::{self, KeySource};
use crate::route::{Action, Cluster, RequestView, RetryPolicy, Route};
use crate::sample::{self as samples, RoutedSample, SampleSink};
use capture::{CapturePorts, Listener};
use failure::{Failure, CIRCUIT_OPEN};
use pingora::connectors::l4::BindTo;
use replay::{BodyCopy, Ticket};
use sanitize::Refusal;

/// A response status the route's retry policy retries; raised from the response filter so
/// that pingora's retry loop sends the request again.
const RETRIABLE_STATUS: ErrorType = ErrorType::new("augur: retriable upstream status");

/// The pingora proxy application.
pub struct AugurProxy {
    store: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    samples: SampleSink,
    weights: Arc<RolloutWeights>,
    reporter: Reporter,
    mirror: MirrorQueue,
    mirror_max_body: usize,
    capture: CapturePorts,
    access_log: Option<AccessLog>,
    draining: crate::drain::Draining,
    limiter: Arc<crate::protect::Limiter>,
    gate: crate::limits::Gate,
    path_normalization: PathNormalization,
    retry_buffer_limit: u64,
}

impl AugurProxy {
    /// A proxy that routes by the store's serving policy, counts into `metrics` and records
    /// one sample per forwarded request into `samples`.
    /// Routes driven by a CanaryPolicy use the weights its rollout sets in `weights`.
    /// Mirror copies go to `mirror`, with bodies up to `mirror_max_body`.
    pub fn new(
        store: Arc<PolicyStore>,
        metrics: Arc<Metrics>,
        samples: SampleSink,
        weights: Arc<RolloutWeights>,
        mirror: MirrorQueue,
        mirror_max_body: usize,
    ) -> Self {
        Self {
            store,
            metrics,
            samples,
            weights,
            reporter: Reporter::Source,
            mirror,
            mirror_max_body,
            capture: CapturePorts::default(),
            access_log: None,
            draining: crate::drain::Draining::default(),
            limiter: Arc::default(),
            gate: crate::limits::Gate::default(),
            path_normalization: PathNormalization::default(),
            retry_buffer_limit: replay::DEFAULT_RETRY_BUFFER_LIMIT,
        }
    }

    /// Normalizes request paths this way before routing (Istio's default: `BASE`).
    pub fn with_path_normalization(mut self, mode: PathNormalization) -> Self {
        self.path_normalization = mode;
        self
    }

    /// Keeps request bodies up to this size for retries (Envoy's
    /// `per_connection_buffer_limit_bytes`); larger ones are not retried.
    pub fn with_retry_buffer_limit(mut self, bytes: u64) -> Self {
        self.retry_buffer_limit = bytes;
        self
    }

    /// Checks every request against these limits (defaults: [`crate::limits::Limits`]).
    pub fn with_gate(mut self, gate: crate::limits::Gate) -> Self {
        self.gate = gate;
        self
    }

    /// Writes Istio's access log to `log`.
    pub fn with_access_log(mut self, log: Option<AccessLog>) -> Self {
        self.access_log = log;
        self
    }

    fn log_access(&self, session: &Session, ctx: &RequestCtx, status: u16) {
        let Some(log) = &self.access_log else { return };
        let req = session.req_header();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let elapsed = ctx.start.elapsed();
        let captured = capture::LogNames::of(session, ctx);
        log.record(&access_log::Entry {
            start: std::time::SystemTime::now() - elapsed,
            method: req.method.as_str(),
            path: req.uri.path(),
            protocol: if session.is_http2() {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
            status,
            flags: ctx.flag.unwrap_or("-"),
            bytes_received: ctx.request_bytes,
            bytes_sent: ctx.response_bytes,
            duration_ms: elapsed.as_millis(),
            upstream_ms: ctx.upstream_ms,
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
            upstream_cluster: captured.cluster(ctx),
            upstream_local: ctx.upstream_local,
            upstream_failure: None,
            local: captured.local(session),
            remote: session.client_addr().and_then(|a| a.as_inet()).copied(),
            route: captured.route(ctx),
        });
    }

    /// Who reports a request: the server side for one the inbound capture port took, else the
    /// proxy's own role.
    fn reporter_at(&self, inbound: bool) -> Reporter {
        if inbound {
            Reporter::Destination
        } else {
            self.reporter
        }
    }

    /// Closes kept-alive client connections after their current response once `draining` is
    /// set (the admin's `POST /drain_listeners`).
    pub fn with_draining(mut self, draining: crate::drain::Draining) -> Self {
        self.draining = draining;
        self
    }

    /// Keeps the ApiProtection rate-limit buckets in `limiter` (one per process, shared by
    /// every listener and kept across policy reloads).
    pub fn with_limiter(mut self, limiter: Arc<crate::protect::Limiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Turns on transparent mode for the capture listeners on these ports.
    pub fn with_capture(mut self, capture: CapturePorts) -> Self {
        self.capture = capture;
        self
    }

    fn report_outlier(&self, ctx: &RequestCtx, outcome: Outcome) {
        let ejected = ctx
            .endpoint_claim
            .as_ref()
            .is_some_and(|c| c.report(outcome));
        if ejected {
            self.metrics.outlier_ejections.inc();
        }
    }

    fn dispatch_mirrors(&self, ctx: &mut RequestCtx) {
        if let Some(plan) = ctx.mirror.take() {
            plan.dispatch(&self.mirror, &self.samples, &self.metrics);
        }
    }
}

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
    /// Envoy response flag for the access log, `None` = `-`.
    pub flag: Option<&'static str>,
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
    mirror: Option<Box<mirroring::MirrorPlan>>,
    /// A captured request no route covers: forwarded to where it was going.
    passthrough: Option<SocketAddr>,
    /// Counts the request as active until the context is dropped.
    _active: ActiveRequest,
    /// `x-envoy-upstream-service-time` of the answer, in ms.
    upstream_ms: Option<u128>,
    /// The consistent-hash key's hash, for sticky routes.
    sticky: Option<u64>,
    /// The current attempt's claim on its endpoint (least-request balancing).
    endpoint_claim: Option<EndpointGuard>,
    /// The request arrived on the inbound capture listener.
    inbound: bool,
    /// The current attempt's hold on the cluster's circuit breakers.
    admission: Option<Admission>,
    /// Whether the client spoke HTTP/2 (kept for the attempts sent as subrequests).
    client_h2: bool,
    /// The request body, kept for a retry pingora cannot replay from its own buffer.
    body_copy: Option<BodyCopy>,
    /// A retry is due that augur sends itself ([`replay`]).
    replay: bool,
    /// Set when this request is an attempt sent again as a subrequest: where it reports.
    outcome: Option<Arc<std::sync::Mutex<replay::Outcome>>>,
    /// The index of the chosen destination in the route's split.
    destination: usize,
    /// The path and query forwarded when the route rewrites the path.
    rewritten_path: Option<String>,
    /// The local address of the upstream connection (for the access log).
    upstream_local: Option<SocketAddr>,
}

impl RequestCtx {
    fn retries_left(&self) -> bool {
        let allowed = self.route.as_ref().map_or(0, |r| r.retry.attempts);
        let budget = self
            .cluster
            .as_ref()
            .and_then(|c| c.breakers.as_ref())
            .is_none_or(|b| b.retry_allowed());
        self.attempts <= allowed && budget
    }

    fn retry(&self) -> Option<&RetryPolicy> {
        self.route.as_ref().map(|r| &r.retry)
    }
}

/// Holds one count of the active-requests gauge for the life of a request.
struct ActiveRequest(Option<prometheus::IntGauge>);

impl ActiveRequest {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(Some(gauge.clone()))
    }

    /// Stops counting (an attempt sent again is part of a request already counted).
    fn release(&mut self) {
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

/// What the request filter decided.
enum Decision {
    /// Answer with one of Envoy's local replies.
    Reply(LocalReply),
    /// Answer with a route's `directResponse` or `redirect`.
    Local {
        status: u16,
        body: Bytes,
        location: Option<String>,
    },
    /// Send the request upstream.
    Forward(Box<Forwarding>),
}

/// Where a request goes and how.
struct Forwarding {
    route: Arc<Route>,
    cluster: Arc<Cluster>,
    arm: Arm,
    /// The consistent-hash key's hash, for sticky routes.
    sticky: Option<u64>,
    /// The index of the chosen destination in the route's split (its header edits).
    destination: usize,
    /// The path and query to forward when the route rewrites the path.
    rewritten_path: Option<String>,
}

fn decide(snapshot: &Snapshot, weights: &RolloutWeights, session: &Session) -> Decision {
    let req = session.req_header();
    let headers = &req.headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| header("host"))
        .unwrap_or("");
    let port = capture::dialled_port(session);
    let view = RequestView {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        authority,
        scheme: if is_tls(session) { "https" } else { "http" },
        port,
        header: &header,
    };
    let vip = || capture::route_by_vip(&snapshot.routes, session, &view);
    let Some(route) = snapshot.routes.find(&view).or_else(vip) else {
        return Decision::Reply(NO_ROUTE);
    };
    match &route.action {
        Action::DirectResponse { status, body } => Decision::Local {
            status: *status,
            body: body.clone(),
            location: None,
        },
        Action::Redirect(r) => {
            let from = crate::route::rewrite::RedirectFrom {
                scheme: view.scheme,
                authority,
                port,
                path: view.path,
                query: view.query,
            };
            Decision::Local {
                status: r.redirect_code,
                body: Bytes::new(),
                location: Some(crate::route::rewrite::location(r, &from)),
            }
        }
        Action::Forward(split) => {
            let sticky = route.sticky.as_ref().and_then(|policy| {
                let key = KeySource {
                    header: &header,
                    query: req.uri.query(),
                    client_ip: session
                        .client_addr()
                        .and_then(|a| a.as_inet())
                        .map(|a| a.ip()),
                };
                sticky::hash(policy, &key)
            });
            match pick(split, route, weights, sticky) {
                Some((destination, chosen)) if !chosen.cluster.endpoints.is_empty() => {
                    Decision::Forward(Box::new(Forwarding {
                        route: Arc::clone(route),
                        cluster: Arc::clone(&chosen.cluster),
                        arm: chosen.arm,
                        sticky,
                        destination,
                        rewritten_path: route.rewritten_path(&view),
                    }))
                }
                _ => Decision::Reply(NO_HEALTHY_UPSTREAM),
            }
        }
    }
}

/// Picks a destination: by the rollout's weights when a CanaryPolicy drives the route and has
/// set them, else by the VirtualService's.
fn pick<'a>(
    split: &'a crate::route::Split,
    route: &Route,
    weights: &RolloutWeights,
    sticky: Option<u64>,
) -> Option<(usize, &'a crate::route::WeightedCluster)> {
    // A sticky request's hash is its roll, so the same user lands on the same version.
    let roll = sticky.unwrap_or_else(rand::random::<u64>);
    match route.canary_policy.as_deref().and_then(|p| weights.get(p)) {
        Some(w) => split.pick_with(roll, w),
        None => split.pick(roll),
    }
}

/// Restores the routing decision of a request whose next attempt runs as a subrequest
/// ([`replay`]), so that the attempt goes to the same cluster and reports back to it.
fn resume(ticket: &Ticket, ctx: &mut RequestCtx, retry_buffer_limit: u64, req: &RequestHeader) {
    ctx._active.release();
    ctx.route = Some(Arc::clone(&ticket.route));
    ctx.cluster = Some(Arc::clone(&ticket.cluster));
    ctx.arm = Some(ticket.arm);
    ctx.sticky = ticket.sticky;
    ctx.client_h2 = ticket.client_h2;
    ctx.request_id = ticket.request_id.clone();
    ctx.attempts = ticket.attempts_before;
    ctx.outcome = Some(Arc::clone(&ticket.outcome));
    ctx.destination = ticket.destination;
    ctx.rewritten_path = ticket.rewritten_path.clone();
    ctx.body_copy = BodyCopy::for_request(
        crate::limits::declared_body_bytes(req),
        req.headers.contains_key(http::header::TRANSFER_ENCODING),
        ticket.route.retry.attempts,
        retry_buffer_limit,
    );
}

/// Whether a retry could send the request body again: pingora still holds it all, or augur's
/// copy does (or will, for a declared length within the limit).
fn can_resend(session: &Session, ctx: &RequestCtx) -> bool {
    !session.as_ref().retry_buffer_truncated()
        || ctx.body_copy.as_ref().is_some_and(BodyCopy::replayable)
}

impl AugurProxy {
    /// Sends the next attempt of a request whose body pingora could not keep, when one is due
    /// (`ctx.replay`): `Some(Ok(status))` once an answer reached the client, `Some(Err)` when
    /// the attempt could not be made, `None` when no such retry was due.
    async fn send_again(&self, session: &mut Session, ctx: &mut RequestCtx) -> Option<Result<u16>> {
        if !std::mem::take(&mut ctx.replay) {
            return None;
        }
        let copy = ctx.body_copy.take()?;
        let (Some(route), Some(cluster), Some(arm)) =
            (ctx.route.clone(), ctx.cluster.clone(), ctx.arm)
        else {
            return None;
        };
        let outcome = Arc::new(std::sync::Mutex::new(replay::Outcome::default()));
        let ticket = Ticket {
            route,
            cluster,
            arm,
            sticky: ctx.sticky,
            client_h2: ctx.client_h2,
            request_id: ctx.request_id.clone(),
            attempts_before: ctx.attempts,
            outcome: Arc::clone(&outcome),
            destination: ctx.destination,
            rewritten_path: ctx.rewritten_path.clone(),
        };
        let keep = ctx
            .response_body
            .is_some()
            .then_some(samples::MAX_PREDICTION_BODY);
        let piped = match replay::send_again(session, copy, ticket, keep).await {
            Ok(piped) => piped,
            Err(e) => return Some(Err(e)),
        };
        if let Ok(o) = outcome.lock() {
            ctx.attempts = o.attempts.max(ctx.attempts);
            ctx.flag = o.flag;
            ctx.endpoint = o.endpoint.or(ctx.endpoint);
            ctx.upstream_ms = o.upstream_ms;
        }
        ctx.response_bytes += piped.response_bytes;
        if ctx.response_body.is_some() {
            ctx.response_body = piped.body;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        Some(Ok(status))
    }
}

/// Whether the client connection is TLS.
fn is_tls(session: &Session) -> bool {
    session
        .downstream_session
        .digest()
        .is_some_and(|d| d.ssl_digest.is_some())
}

/// Rolls a fault percentage.
fn roll(percentage: f64) -> bool {
    percentage > 0.0 && rand::random::<f64>() * 100.0 < percentage
}

#[async_trait]
impl ProxyHttp for AugurProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            start: Instant::now(),
            route: None,
            cluster: None,
            endpoint: None,
            attempts: 0,
            attempt_start: None,
            flag: None,
            request_id: None,
            arm: None,
            request_bytes: 0,
            response_bytes: 0,
            response_body: None,
            mirror: None,
            passthrough: None,
            inbound: false,
            _active: ActiveRequest::new(&self.metrics.active_requests),
            upstream_ms: None,
            sticky: None,
            endpoint_claim: None,
            admission: None,
            client_h2: false,
            body_copy: None,
            replay: false,
            outcome: None,
            destination: 0,
            rewritten_path: None,
            upstream_local: None,
        }
    }

    fn allow_spawning_subrequest(&self, _session: &Session, _ctx: &Self::CTX) -> bool {
        // Retries of bodies past pingora's buffer are sent as subrequests (`replay`).
        true
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        if let Some(ticket) = Ticket::of(session) {
            // An attempt sent again: the request was admitted, checked and routed already.
            resume(ticket, ctx, self.retry_buffer_limit, session.req_header());
            return Ok(false);
        }
        // HTTP/1.1 requests a client pipelined behind this one are served in order after it
        // (RFC 9112 §9.3.2), as Envoy does, instead of being dropped with the connection.
        session.set_pipelining_enabled(true);
        if let Some(reply) = self.gate.admit(session, self.metrics.active_requests.get()) {
            ctx.flag = Some(reply.flag);
            reply.send_and_close(session).await?;
            return Ok(true);
        }
        ctx.client_h2 = session.is_http2();
        let http2 = ctx.client_h2;
        if let Err(refusal) =
            sanitize::sanitize(session.req_header_mut(), http2, self.path_normalization)
        {
            let reply = match refusal {
                Refusal::Reply(reply) => {
                    reply.send(session).await?;
                    reply
                }
                Refusal::ReplyAndClose(reply) => {
                    reply.send_and_close(session).await?;
                    reply
                }
            };
            ctx.flag = (reply.flag != "-").then_some(reply.flag);
            return Ok(true);
        }
        ctx.request_id = Some(headers::ensure_request_id(session.req_header_mut())?);
        let listener = self.capture.listener(session);
        if listener == Listener::Inbound {
            // Inbound: the local app, at the address the client dialled.
            ctx.inbound = true;
            if let Some(dst) = capture::original_dst(session) {
                ctx.passthrough = Some(dst);
                return Ok(false);
            }
        }
        // One snapshot per request: routing and the shadow model come from the same policy set.
        let snapshot = self.store.snapshot();
        let (route, cluster, arm) = match decide(&snapshot, &self.weights, session) {
            Decision::Reply(reply) if reply == NO_ROUTE && listener == Listener::Outbound => {
                // ALLOW_ANY: a destination no policy covers is passed through.
                match capture::original_dst(session) {
                    Some(dst) => {
                        ctx.passthrough = Some(dst);
                        return Ok(false);
                    }
                    None => {
                        ctx.flag = Some(reply.flag);
                        reply.send(session).await?;
                        return Ok(true);
                    }
                }
            }
            Decision::Reply(reply) => {
                ctx.flag = Some(reply.flag);
                reply.send(session).await?;
                return Ok(true);
            }
            Decision::Local {
                status,
                body,
                location,
            } => {
                local_reply::send_with_location(session, status, body, location.as_deref()).await?;
                return Ok(true);
            }
            Decision::Forward(forwarding) => {
                let Forwarding {
                    route,
                    cluster,
                    arm,
                    sticky,
                    destination,
                    rewritten_path,
                } = *forwarding;
                ctx.sticky = sticky;
                ctx.destination = destination;
                ctx.rewritten_path = rewritten_path;
                (route, cluster, arm)
            }
        };
        if let Some(protection) = &route.protection {
            let client = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            if let Some(reply) = protection.check(&self.limiter, session.req_header_mut(), client) {
                ctx.flag = (reply.flag != "-").then_some(reply.flag);
                ctx.route = Some(route);
                reply.send(session).await?;
                return Ok(true);
            }
            let declared = crate::limits::declared_body_bytes(session.req_header());
            if protection
                .max_request_body_bytes
                .is_some_and(|max| declared.is_some_and(|n| n > max))
            {
                ctx.route = Some(route);
                // The body is never read: close, so it cannot be taken for the next request.
                crate::limits::PAYLOAD_TOO_LARGE
                    .send_and_close(session)
                    .await?;
                return Ok(true);
            }
        }
        if let Some(fault) = &route.fault {
            if let Some(delay) = fault.delay.as_ref().filter(|d| roll(d.percentage.value())) {
                ctx.flag = Some("DI");
                tokio::time::sleep(delay.fixed_delay).await;
            }
            if let Some(abort) = fault.abort.as_ref().filter(|a| roll(a.percentage.value())) {
                ctx.flag = Some("FI");
                local_reply::send(
                    session,
                    abort.http_status,
                    Bytes::from_static(b"fault filter abort"),
                    "text/plain",
                )
                .await?;
                return Ok(true);
            }
        }
        if route.prediction.is_some() {
            ctx.response_body = Some(Vec::new());
        }
        let req = session.req_header();
        ctx.body_copy = BodyCopy::for_request(
            crate::limits::declared_body_bytes(req),
            req.headers.contains_key(http::header::TRANSFER_ENCODING),
            route.retry.attempts,
            self.retry_buffer_limit,
        );
        ctx.arm = Some(arm);
        if !route.mirrors.is_empty() || route.shadow_percentage.is_some() {
            let shadow = route
                .canary_policy
                .as_deref()
                .and_then(|p| snapshot.shadows.get(p).cloned());
            ctx.mirror = mirroring::plan(
                &route,
                shadow,
                session.req_header(),
                ctx.request_id.as_deref(),
            );
        }
        ctx.route = Some(route);
        ctx.cluster = Some(cluster);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.request_bytes += b.len() as u64;
            let route_max = ctx
                .route
                .as_ref()
                .and_then(|r| r.protection.as_ref())
                .and_then(|p| p.max_request_body_bytes);
            if self
                .gate
                .limits
                .body_over_limit(ctx.request_bytes, route_max)
            {
                return Error::e_explain(
                    crate::limits::BODY_TOO_LARGE,
                    "request body over the route's or the proxy's limit",
                );
            }
            if let Some(plan) = ctx.mirror.as_mut() {
                if !plan.keep(b, self.mirror_max_body, &self.mirror) {
                    ctx.mirror = None;
                }
            }
            if let Some(copy) = ctx.body_copy.as_mut() {
                copy.keep(b);
            }
        }
        if end_of_stream {
            if let Some(copy) = ctx.body_copy.as_mut() {
                copy.finish();
            }
            self.dispatch_mirrors(ctx);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if let Some(b) = body {
            ctx.response_bytes += b.len() as u64;
            if let Some(kept) = ctx.response_body.as_mut() {
                if kept.len() + b.len() <= samples::MAX_PREDICTION_BODY {
                    kept.extend_from_slice(b);
                } else {
                    ctx.response_body = None;
                }
            }
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        if let Some(outcome) = ctx.outcome.take() {
            // An attempt sent again: the request that made it logs and counts the whole.
            if let Ok(mut o) = outcome.lock() {
                o.attempts = ctx.attempts;
                o.flag = ctx.flag;
                o.endpoint = ctx.endpoint;
                o.upstream_ms = ctx.upstream_ms;
            }
            return;
        }
        crate::limits::Gate::finished(session);
        // A request whose body never reached the body filter (none at all) is mirrored now.
        self.dispatch_mirrors(ctx);
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.log_access(session, ctx, status);
        let latency_ms = ctx.start.elapsed().as_secs_f64() * 1000.0;
        let flags = ctx.flag.unwrap_or("-");
        self.metrics.istio.record(&RequestRecord {
            reporter: self.reporter_at(ctx.inbound),
            destination: match (&ctx.cluster, ctx.passthrough) {
                (Some(c), _) => Destination::Cluster(c),
                (None, Some(_)) if ctx.inbound => Destination::Local,
                (None, Some(_)) => Destination::Passthrough,
                (None, None) => Destination::Nowhere,
            },
            status,
            flags,
            duration_ms: latency_ms,
            request_bytes: ctx.request_bytes,
            response_bytes: ctx.response_bytes,
        });
        let (Some(route), Some(arm)) = (ctx.route.as_ref(), ctx.arm) else {
            return;
        };
        self.metrics
            .arm_requests
            .with_label_values(&[route.name.as_str(), arm.as_str()])
            .inc();
        let (score, label) = match (&route.prediction, &ctx.response_body) {
            (Some(how), Some(body)) if (200..300).contains(&status) => {
                samples::read_prediction(body, how)
            }
            _ => (None, None),
        };
        if route.prediction.is_some() {
            let version = ctx.cluster.as_deref().map_or("unknown", Cluster::version);
            let outcome = if label.is_some() { "success" } else { "error" };
            self.metrics
                .predictions
                .with_label_values(&[version, outcome])
                .inc();
            if let Some(score) = score {
                self.metrics
                    .confidence
                    .with_label_values(&[version])
                    .observe(score);
            }
        }
        // Only a rollout reads samples: routes no CanaryPolicy drives make none (no allocation).
        let Some(policy) = route.canary_policy.clone() else {
            return;
        };
        let sample = Sample {
            t: samples::now(),
            request_id: ctx.request_id.take(),
            route: Some(route.name.clone()),
            arm,
            upstream: ctx.endpoint.map(|e| e.to_string()),
            status,
            response_flags: ctx.flag.map(str::to_owned),
            latency_ms,
            bytes: Some(ctx.response_bytes),
            score,
            label,
            truth: None,
        };
        let routed = RoutedSample {
            policy: Some(policy),
            sample,
        };
        self.samples.record(routed, &self.metrics);
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
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
        let route = ctx.route.as_ref();
        let per_try = route.and_then(|r| r.retry.per_try_timeout.or(r.timeout));
        peer.options.read_timeout = per_try;
        Ok(Box::new(peer))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.upstream_local = capture::upstream_local(digest);
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Self::CTX,
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
        // Envoy tells the upstream how long the proxy will wait for it (the per-try timeout, else
        // the route's), so that it can give up in time; none when no timeout applies.
        let expected = ctx
            .route
            .as_ref()
            .and_then(|r| r.retry.per_try_timeout.or(r.timeout));
        if let Some(timeout) = expected {
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
            // Istio puts the edits of one of several destinations on Envoy's weighted cluster,
            // which Envoy applies before the route's; a lone destination's come after them.
            let dest = route.destination_headers(ctx.destination);
            let (first, then) = match dest {
                Some(d) if route.splits() => (Some(&d.request), Some(&route.headers.request)),
                Some(d) => (Some(&route.headers.request), Some(&d.request)),
                None => (Some(&route.headers.request), None),
            };
            for ops in first.into_iter().chain(then) {
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
        ctx.attempt_start = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if self.draining.is_set() {
            // Clients reconnect, to another pod, for their next request.
            session.set_keepalive(None);
        }
        let status = upstream.status.as_u16();
        self.report_outlier(ctx, Outcome::Status(status));
        if let Some(policy) = ctx.retry() {
            if policy.retries_status(status) {
                // Retried only when the body can be sent again; otherwise this answer goes
                // to the client, as Envoy does past its buffer limit.
                if ctx.retries_left() && can_resend(session, ctx) {
                    let mut e =
                        Error::explain(RETRIABLE_STATUS, format!("upstream answered {status}"));
                    e.set_retry(true);
                    return Err(e);
                }
                if ctx.attempts > 1 {
                    ctx.flag = Some("URX");
                }
            }
        }
        let service_ms = ctx.attempt_start.map_or(0, |t| t.elapsed().as_millis());
        ctx.upstream_ms = Some(service_ms);
        upstream.insert_header("x-envoy-upstream-service-time", service_ms.to_string())?;
        upstream.insert_header("server", "envoy")?;
        if let Some(route) = &ctx.route {
            let dest = route.destination_headers(ctx.destination);
            let (first, then) = match dest {
                Some(d) if route.splits() => (Some(&d.response), Some(&route.headers.response)),
                Some(d) => (Some(&route.headers.response), Some(&d.response)),
                None => (Some(&route.headers.response), None),
            };
            for ops in first.into_iter().chain(then) {
                headers::edit_response(upstream, ops)?;
            }
        }
        Ok(())
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Self::CTX, error: &Error) -> bool {
        // Upstream failures are answered like Envoy's and recorded in the access log and
        // metrics; pingora's per-request error line would only repeat them.
        // A client that went away (flag DC) is not an error of the proxy either.
        let expected = matches!(
            error.esource(),
            pingora::ErrorSource::Upstream | pingora::ErrorSource::Downstream
        ) || error.etype() == &crate::limits::BODY_TOO_LARGE
            || error.etype() == &RETRIABLE_STATUS;
        if expected {
            tracing::debug!(flag = ctx.flag.unwrap_or("-"), error = %error, "request failed");
        }
        expected
    }

    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &Self::CTX,
        error: &Error,
        _context: ProxyWarnLogContext,
    ) -> bool {
        // Retries show in x-envoy-attempt-count, the access log and the URX flag.
        tracing::debug!(attempt = ctx.attempts, error = %error, "retrying");
        true
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.report_outlier(ctx, Outcome::Failure);
        let retry = ctx
            .retry()
            .is_some_and(RetryPolicy::retries_connect_failure);
        e.set_retry(retry && ctx.retries_left());
        e
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut Self::CTX,
        _client_reused: bool,
    ) -> Box<Error> {
        // Never retry once the response has started, nor without the whole body to send.
        let due = session.response_written().is_none() && ctx.retries_left();
        let wanted = if e.etype() == &RETRIABLE_STATUS {
            true
        } else {
            if matches!(failure::classify(&e), Failure::Reply(_)) {
                self.report_outlier(ctx, Outcome::Failure);
            }
            ctx.retry().is_some_and(RetryPolicy::retries_reset)
                && matches!(failure::classify(&e), Failure::Reply(_))
        };
        let pingora_can_resend = !session.as_ref().retry_buffer_truncated();
        e.set_retry(due && wanted && pingora_can_resend);
        // A body pingora could not keep is sent again by augur, from its own copy.
        ctx.replay = due
            && wanted
            && !pingora_can_resend
            && ctx.body_copy.as_ref().is_some_and(BodyCopy::replayable);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        let replay_error;
        let e = match self.send_again(session, ctx).await {
            Some(Ok(status)) => {
                return FailToProxy {
                    error_code: status,
                    can_reuse_downstream: false,
                }
            }
            Some(Err(failed)) => {
                replay_error = failed;
                &*replay_error
            }
            None => e,
        };
        let code = match failure::classify(e) {
            Failure::Reply(reply) if session.response_written().is_none() => {
                let reply = if ctx.attempts > 1 && reply == local_reply::CONNECT_FAILURE {
                    local_reply::RETRIED_CONNECT_FAILURE
                } else {
                    reply
                };
                ctx.flag = Some(reply.flag);
                if let Err(write) = reply.send(session).await {
                    tracing::debug!(error = %write, "could not send the local reply");
                }
                reply.status
            }
            Failure::DownstreamGone => {
                ctx.flag = Some("DC");
                0
            }
            _ => {
                ctx.flag.get_or_insert("UC");
                0
            }
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
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

impl RefusalLog for AugurProxy {
    /// A head the connection refused is logged and counted like the `431`s of
    /// `request_filter`, with what is known before a request exists: no method, path or route.
    fn refused(&self, head: &RefusedHead) {
        let elapsed = head.started.map_or(Duration::ZERO, |t| t.elapsed());
        let inbound = self.capture.listener_on(head.local.map(|a| a.port())) == Listener::Inbound;
        let reply = head.reply;
        let body = reply.body.len() as u64;
        if let Some(log) = &self.access_log {
            log.record(&access_log::Entry {
                start: std::time::SystemTime::now() - elapsed,
                method: "-",
                path: "-",
                protocol: "HTTP/1.1",
                status: reply.status,
                flags: reply.flag,
                bytes_received: 0,
                bytes_sent: body,
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
            });
        }
        self.metrics.istio.record(&RequestRecord {
            reporter: self.reporter_at(inbound),
            destination: Destination::Nowhere,
            status: reply.status,
            flags: reply.flag,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            request_bytes: 0,
            response_bytes: body,
        });
    }
}
