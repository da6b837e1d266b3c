//! Where a request leaves a trace once it is over: the access log line, Istio's metrics, the
//! per-arm counters and prediction metrics, and the sample the rollout judges.

use augur_model::Sample;
use pingora::proxy::Session;

use super::capture::{self, Listener};
use super::ctx::RequestCtx;
use super::AugurProxy;
use crate::access_log;
use crate::limits::conn::{RefusalLog, RefusedHead};
use crate::metrics::istio::{Destination, Reporter, RequestRecord};
use crate::route::Cluster;
use crate::sample::{self as samples, RoutedSample};

impl AugurProxy {
    /// Records a finished request: access log, Istio's metrics, the arm and prediction
    /// metrics, and its sample when a CanaryPolicy drives its route.
    pub(super) fn record(&self, session: &Session, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        self.log_access(session, ctx, status);
        let latency_ms = ctx.start.elapsed().as_secs_f64() * 1000.0;
        let flags = ctx.flag;
        self.metrics.istio.record(&RequestRecord {
            reporter: self.reporter_at(ctx.inbound),
            destination: match (&ctx.cluster, ctx.passthrough) {
                (Some(c), _) => Destination::Service(c.metric_labels()),
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
        // Only a rollout reads samples: requests of none make none (no allocation).
        let Some(policy) = ctx.rollout.clone() else {
            return;
        };
        let sample = Sample {
            t: samples::now(),
            request_id: ctx.request_id.take(),
            route: Some(route.name.clone()),
            arm,
            upstream: ctx.endpoint.map(|e| e.to_string()),
            status,
            response_flags: ctx.flag.is_set().then(|| ctx.flag.as_str().to_owned()),
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

    fn log_access(&self, session: &Session, ctx: &RequestCtx, status: u16) {
        let Some(log) = &self.access_log else { return };
        let captured = capture::LogNames::of(session, ctx);
        let served = access_log::Served {
            upstream_ms: ctx.upstream_ms,
            upstream_local: ctx.upstream_local,
            upstream_cluster: captured.cluster(ctx),
            local: captured.local(session),
            route: captured.route(ctx),
        };
        log.record(&access_log::Entry::request(session, ctx, status, served));
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
}

impl RefusalLog for AugurProxy {
    /// A head the connection refused is logged and counted like the `431`s of the admit phase,
    /// with what is known before a request exists: no method, path or route.
    fn refused(&self, head: &RefusedHead) {
        let inbound = self.capture.listener_on(head.local.map(|a| a.port())) == Listener::Inbound;
        let entry = access_log::Entry::refused(head);
        if let Some(log) = &self.access_log {
            log.record(&entry);
        }
        self.metrics.istio.record(&RequestRecord {
            reporter: self.reporter_at(inbound),
            destination: Destination::Nowhere,
            status: entry.status,
            flags: entry.flags,
            duration_ms: head
                .started
                .map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0),
            request_bytes: 0,
            response_bytes: entry.bytes_sent,
        });
    }
}
