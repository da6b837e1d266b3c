//! The proxy itself, as a pingora [`ProxyHttp`] application. A request goes through:
//! - [`request`]: the phases before it leaves, in order admit ([`sanitize`]), route
//!   ([`decide`]), protect, inject faults, plan mirrors ([`mirroring`]);
//! - [`upstream`]: each attempt's endpoint, the request as it leaves and the response as it
//!   comes back;
//! - [`failure`]: whether a failed attempt is tried again (by pingora, or by [`replay`] when
//!   the body outgrew pingora's buffer) and the answer once none is left;
//! - [`record`]: the access log, metrics and sample once it is over.
//!
//! The hooks below only hand each step to the module that owns it; [`ctx::RequestCtx`] is what
//! they share about the request.

pub mod capture;
pub mod ctx;
mod decide;
pub mod failure;
pub mod headers;
mod mirroring;
mod record;
pub mod replay;
mod request;
pub mod sanitize;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::{Error, Result};

use crate::access_log::AccessLog;
use crate::metrics::istio::Reporter;
use crate::metrics::Metrics;
use crate::mirror::MirrorQueue;
use crate::policy_store::PolicyStore;
use crate::route::outlier::Outcome;
use crate::route::path::PathNormalization;
use crate::sample::{SampleSink, MAX_PREDICTION_BODY};
use crate::weights::RolloutWeights;
use capture::CapturePorts;
pub use ctx::RequestCtx;
pub use request::SPLIT_HEADER;

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

    /// A chunk of the request body (`None` at its end): counted against the limits, kept for
    /// the mirrors and for a retry.
    fn filter_request_body(
        &self,
        body: Option<&Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
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
}

#[async_trait]
impl ProxyHttp for AugurProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::new(&self.metrics.active_requests)
    }

    fn allow_spawning_subrequest(&self, _session: &Session, _ctx: &Self::CTX) -> bool {
        // Retries of bodies past pingora's buffer are sent as subrequests (`replay`).
        true
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        self.filter_request(session, ctx).await
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.filter_request_body(body.as_ref(), end_of_stream, ctx)
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
                if kept.len() + b.len() <= MAX_PREDICTION_BODY {
                    kept.extend_from_slice(b);
                } else {
                    ctx.response_body = None;
                }
            }
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Self::CTX) {
        if replay::report(ctx) {
            return;
        }
        crate::limits::Gate::finished(session);
        // A request whose body never reached the body filter (none at all) is mirrored now.
        self.dispatch_mirrors(ctx);
        self.record(session, ctx);
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        self.choose_peer(ctx).await
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
        self.edit_upstream_request(session, upstream, ctx)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.edit_upstream_response(session, upstream, ctx)
    }

    fn request_summary(&self, _session: &Session, ctx: &Self::CTX) -> String {
        ctx.summary()
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &Self::CTX, error: &Error) -> bool {
        // Failures are answered like Envoy's and recorded in the access log and metrics;
        // pingora's per-request error line would only repeat them.
        let expected = failure::expected(error);
        if expected {
            tracing::debug!(flag = %ctx.flag, error = %error, "request failed");
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
        e: Box<Error>,
    ) -> Box<Error> {
        self.on_connect_failure(ctx, e)
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        _client_reused: bool,
    ) -> Box<Error> {
        self.on_proxy_error(session, ctx, e)
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
        self.answer_failure(session, e, ctx).await
    }
}
