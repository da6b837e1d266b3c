//! Istio's standard HTTP metrics with the same names, label set and Envoy's
//! default histogram buckets, so Flagger's, Kiali's and Grafana's queries work unchanged.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::identity::Workload;
use crate::route::Cluster;

/// Envoy's default histogram buckets (ms for durations, bytes for sizes).
pub const ENVOY_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's HTTP label names (the exposition sorts them; scrapers do not care about order).
pub const LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// Which proxy reported a request: `source` for outbound (client side), `destination` for
/// inbound (server side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    /// The client-side sidecar.
    Source,
    /// The server-side sidecar.
    Destination,
}

impl Reporter {
    fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// One finished request, as the metrics see it.
pub struct RequestRecord<'a> {
    /// Who reports it.
    pub reporter: Reporter,
    /// Where it went (`None` for local replies such as 404 NR).
    pub cluster: Option<&'a Cluster>,
    /// Status sent to the client (0 when none was sent).
    pub status: u16,
    /// Envoy response flags, `-` when none.
    pub flags: &'a str,
    /// Request duration in milliseconds.
    pub duration_ms: f64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
}

/// The handles of Istio's HTTP metrics.
pub struct IstioMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: HistogramVec,
    response_bytes: HistogramVec,
    source: Workload,
}

impl IstioMetrics {
    /// Creates the handles and registers them.
    pub fn register(registry: &Registry, source: Workload) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "istio_requests_total",
                "Requests, as Istio's standard metric.",
            ),
            &LABELS,
        )?;
        let histogram = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(ENVOY_BUCKETS.to_vec()),
                &LABELS,
            )
        };
        let duration = histogram(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds, as Istio's standard metric.",
        )?;
        let request_bytes = histogram(
            "istio_request_bytes",
            "Request body sizes, as Istio's standard metric.",
        )?;
        let response_bytes = histogram(
            "istio_response_bytes",
            "Response body sizes, as Istio's standard metric.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(request_bytes.clone()))?;
        registry.register(Box::new(response_bytes.clone()))?;
        Ok(Self {
            requests,
            duration,
            request_bytes,
            response_bytes,
            source,
        })
    }

    /// Counts one finished request.
    pub fn record(&self, r: &RequestRecord<'_>) {
        let status = http::StatusCode::from_u16(r.status).ok();
        let code = status.as_ref().map_or("0", http::StatusCode::as_str);
        let dest = r.cluster.map(DestinationLabels::of).unwrap_or_default();
        let s = &self.source;
        let values: [&str; 25] = [
            r.reporter.as_str(),
            &s.name,
            &s.app,
            &s.version,
            &s.namespace,
            "unknown",
            &s.app,
            &s.version,
            &s.cluster,
            dest.workload,
            dest.namespace,
            "unknown",
            dest.app,
            dest.version,
            dest.service,
            dest.canonical_service,
            dest.version,
            dest.service_name,
            dest.namespace,
            &s.cluster,
            "http",
            code,
            "",
            r.flags,
            "unknown",
        ];
        self.requests.with_label_values(&values).inc();
        self.duration
            .with_label_values(&values)
            .observe(r.duration_ms);
        self.request_bytes
            .with_label_values(&values)
            .observe(r.request_bytes as f64);
        self.response_bytes
            .with_label_values(&values)
            .observe(r.response_bytes as f64);
    }
}

/// Destination label values derived from a cluster.
struct DestinationLabels<'a> {
    workload: &'a str,
    namespace: &'a str,
    app: &'a str,
    version: &'a str,
    service: &'a str,
    canonical_service: &'a str,
    service_name: &'a str,
}

impl Default for DestinationLabels<'_> {
    fn default() -> Self {
        Self {
            workload: "unknown",
            namespace: "unknown",
            app: "unknown",
            version: "unknown",
            service: "unknown",
            canonical_service: "unknown",
            service_name: "unknown",
        }
    }
}

impl<'a> DestinationLabels<'a> {
    fn of(c: &'a Cluster) -> Self {
        let label = |k: &str| c.labels.get(k).map(String::as_str);
        let mut parts = c.host.split('.');
        let service_name = parts.next().unwrap_or("unknown");
        let namespace = if c.host.ends_with(augur_policies::defaults::CLUSTER_DOMAIN) {
            parts.next().unwrap_or("unknown")
        } else {
            "unknown"
        };
        let app = label("app").unwrap_or("unknown");
        Self {
            workload: label("service.istio.io/workload-name").unwrap_or("unknown"),
            namespace,
            app,
            version: c.version(),
            service: &c.host,
            canonical_service: label("service.istio.io/canonical-name")
                .or(label("app"))
                .unwrap_or(service_name),
            service_name,
        }
    }
}
