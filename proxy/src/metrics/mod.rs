//! Every metric the proxy exports, declared once as a struct of handles.

pub mod istio;

use std::sync::LazyLock;

use prometheus::proto::MetricType;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::identity::Workload;
use istio::IstioMetrics;

/// Failed client TLS handshakes in this process (Envoy's `ssl.connection_error`). pingora
/// reports them only as log records, so the log bridge counts them here (`crate::logging`), and
/// every [`Metrics`] exports the count.
pub static TLS_HANDSHAKE_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "augur_downstream_tls_handshake_failures_total",
        "Client TLS handshakes that failed (no or an untrusted client certificate, an old \
         protocol, no common cipher suite).",
    )
    .expect("a valid metric name and help")
});

/// The proxy's metric handles and the registry that exports them.
pub struct Metrics {
    registry: Registry,
    /// Policy reloads attempted (file changes and SIGHUP), whatever their outcome.
    pub config_reloads: IntCounter,
    /// Policy reloads rejected because the new files were invalid; the last good set kept serving.
    pub config_reload_failures: IntCounter,
    /// 1 when the last reload attempt succeeded (or changed nothing), 0 when it was rejected.
    pub config_last_reload_successful: IntGauge,
    /// Unix time of the last policy set that was swapped in.
    pub config_last_reload_success_timestamp: IntGauge,
    /// Istio's standard request metrics.
    pub istio: IstioMetrics,
    /// Requests per rollout arm (`stable`, `canary`), by route.
    pub arm_requests: IntCounterVec,
    /// Samples the analyzer could not take because its queue was full.
    pub samples_dropped: IntCounter,
    /// Requests being served now (what `augur drain` waits on).
    pub active_requests: IntGauge,
    /// Client connections open now (what `--max-connections` limits; Envoy's
    /// `downstream_cx_active`).
    pub active_connections: IntGauge,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// Endpoints ejected by outlier detection.
    pub outlier_ejections: IntCounter,
    /// Model answers by version and outcome (`success` with a readable prediction, else
    /// `error`), as the seeds' model service exports them.
    pub predictions: IntCounterVec,
    /// The score read from model answers, by version.
    pub confidence: prometheus::HistogramVec,
    /// Rollout metrics.
    pub rollout: augur_rollout::RolloutMetrics,
    /// Mirror copies sent, by outcome (`answered`, `failed`).
    pub mirror_requests: IntCounterVec,
    /// Following `augur controller` (`--controller`).
    pub follow: crate::follow::FollowMetrics,
    /// The per-policy, per-arm evidence the fleet's controller reads through Prometheus.
    pub evidence: crate::evidence::EvidenceMetrics,
    /// Mirror copies not sent, by reason (`queue_full`, `body_too_large`), shadow model included.
    pub mirror_dropped: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every handle; `source` labels Istio's metrics.
    pub fn new(source: Workload) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let istio = IstioMetrics::register(&registry, source)?;
        let arm_requests = IntCounterVec::new(
            Opts::new(
                "augur_requests_total",
                "Requests routed to each rollout arm.",
            ),
            &["route", "arm"],
        )?;
        let samples_dropped = IntCounter::new(
            "augur_samples_dropped_total",
            "Per-request samples dropped because the analyzer's queue was full.",
        )?;
        let rollout = augur_rollout::RolloutMetrics::register(&registry)?;
        let mirror_requests = IntCounterVec::new(
            Opts::new(
                "augur_mirror_requests_total",
                "Mirror copies sent, by outcome.",
            ),
            &["outcome"],
        )?;
        let mirror_dropped = IntCounterVec::new(
            Opts::new(
                "augur_mirror_dropped_total",
                "Mirror copies dropped (queue full or body too large); the primary is unaffected.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(mirror_requests.clone()))?;
        registry.register(Box::new(mirror_dropped.clone()))?;
        registry.register(Box::new(arm_requests.clone()))?;
        registry.register(Box::new(samples_dropped.clone()))?;
        let active_requests = IntGauge::new(
            "augur_downstream_requests_active",
            "Requests being served now.",
        )?;
        registry.register(Box::new(active_requests.clone()))?;
        let active_connections = IntGauge::new(
            "augur_downstream_connections_active",
            "Client connections open now.",
        )?;
        registry.register(Box::new(active_connections.clone()))?;
        registry.register(Box::new(TLS_HANDSHAKE_FAILURES.clone()))?;
        let access_log_dropped = IntCounter::new(
            "augur_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind.",
        )?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        let outlier_ejections = IntCounter::new(
            "augur_outlier_ejections_total",
            "Endpoints ejected by outlier detection.",
        )?;
        registry.register(Box::new(outlier_ejections.clone()))?;
        let predictions = IntCounterVec::new(
            Opts::new(
                "predictions_total",
                "Model answers by model version and outcome.",
            ),
            &["model_version", "status"],
        )?;
        let confidence = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "prediction_confidence",
                "Score read from model answers, by model version.",
            )
            .buckets(vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
            &["model_version"],
        )?;
        registry.register(Box::new(predictions.clone()))?;
        registry.register(Box::new(confidence.clone()))?;
        let config_reloads = IntCounter::new(
            "augur_config_reloads_total",
            "Policy reloads attempted (file changes and SIGHUP).",
        )?;
        let config_reload_failures = IntCounter::new(
            "augur_config_reload_failures_total",
            "Policy reloads rejected as invalid; the last good policy set kept serving.",
        )?;
        let config_last_reload_successful = IntGauge::new(
            "augur_config_last_reload_successful",
            "Whether the last policy reload attempt succeeded (1) or was rejected (0).",
        )?;
        let config_last_reload_success_timestamp = IntGauge::new(
            "augur_config_last_reload_success_timestamp_seconds",
            "Unix time at which the serving policy set was loaded.",
        )?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_reload_failures.clone()))?;
        registry.register(Box::new(config_last_reload_successful.clone()))?;
        registry.register(Box::new(config_last_reload_success_timestamp.clone()))?;
        config_last_reload_successful.set(1);
        let follow = crate::follow::FollowMetrics::register(&registry)?;
        let evidence = crate::evidence::EvidenceMetrics::register(&registry)?;
        Ok(Self {
            registry,
            istio,
            follow,
            evidence,
            arm_requests,
            samples_dropped,
            active_requests,
            active_connections,
            access_log_dropped,
            outlier_ejections,
            predictions,
            confidence,
            rollout,
            mirror_requests,
            mirror_dropped,
            config_reloads,
            config_reload_failures,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
        })
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(4096);
        // Encoding into a Vec only fails on inconsistent metric families, which the
        // registry rules out at registration.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    /// The metrics as Envoy's `/stats` text: `name: value` per line, labels folded into the name.
    pub fn render_envoy_stats(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for family in self.registry.gather() {
            for m in family.get_metric() {
                let mut name = family.name().to_owned();
                for label in m.get_label() {
                    let _ = write!(name, ".{}.{}", label.name(), label.value());
                }
                let value = match family.get_field_type() {
                    MetricType::COUNTER => m.get_counter().get_value(),
                    MetricType::GAUGE => m.get_gauge().get_value(),
                    _ => continue,
                };
                let _ = writeln!(out, "{name}: {value}");
            }
        }
        out
    }
}
