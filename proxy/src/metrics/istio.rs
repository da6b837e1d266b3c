//! Istio's standard HTTP metrics with the same names, label set and Envoy's
//! default histogram buckets, so Flagger's, Kiali's and Grafana's queries work unchanged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

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

/// Where a request or connection went, for the `destination_*` labels.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// A cluster of the routes.
    Cluster(&'a Cluster),
    /// This workload: traffic the inbound listener delivered to the local app.
    Local,
    /// A destination no policy covers, passed through to its original address (Istio's
    /// `PassthroughCluster`).
    Passthrough,
    /// Nowhere: answered locally (404 NR, a direct response).
    Nowhere,
}

/// One finished request, as the metrics see it.
pub struct RequestRecord<'a> {
    /// Who reports it.
    pub reporter: Reporter,
    /// Where it went.
    pub destination: Destination<'a>,
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

/// One opaque TCP connection, as the metrics see it.
pub struct TcpRecord<'a> {
    /// Who reports it.
    pub reporter: Reporter,
    /// Where it went.
    pub destination: Destination<'a>,
    /// Envoy response flags, `-` when none (`UF` when the upstream could not be reached).
    pub flags: &'a str,
}

/// Istio's TCP label names: the HTTP set without `response_code` and `grpc_response_status`.
const TCP_LABELS: [&str; 23] = [
    LABELS[0], LABELS[1], LABELS[2], LABELS[3], LABELS[4], LABELS[5], LABELS[6], LABELS[7],
    LABELS[8], LABELS[9], LABELS[10], LABELS[11], LABELS[12], LABELS[13], LABELS[14], LABELS[15],
    LABELS[16], LABELS[17], LABELS[18], LABELS[19], LABELS[20], LABELS[23], LABELS[24],
];

/// Label sets a [`HandleCache`] keeps at most; beyond them requests resolve their labels
/// every time (still correct, only slower), so odd flag combinations cannot grow memory.
const CACHED_LABEL_SETS: usize = 64;

/// Tells registries apart, so a cache filled for one never serves another (tests make many).
static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(1);

/// The four HTTP metric handles of one complete label set, resolved once.
struct Handles {
    requests: IntCounter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// What identifies a label set within one destination: the registry, who reports, the
/// destination kind, the status and the flags (every other label is fixed by the destination
/// and this workload).
#[derive(Clone, Copy, PartialEq, Eq)]
struct HandleKey<'a> {
    registry: u64,
    reporter: Reporter,
    destination: u8,
    status: u16,
    flags: &'a str,
}

/// A [`HandleKey`] kept in a cache (it owns its flags).
struct OwnedKey {
    registry: u64,
    reporter: Reporter,
    destination: u8,
    status: u16,
    flags: Box<str>,
}

impl OwnedKey {
    fn is(&self, k: &HandleKey<'_>) -> bool {
        self.registry == k.registry
            && self.reporter == k.reporter
            && self.destination == k.destination
            && self.status == k.status
            && *self.flags == *k.flags
    }
}

/// Resolved metric handles per label set, kept beside what the labels derive from (a
/// [`Cluster`], or the metrics themselves for the other destinations). Resolving Istio's 25
/// labels hashes every value under a lock, four times per request; a hit here is a short scan
/// of a few entries under an uncontended mutex. A cache lives as long as its cluster, so a
/// reload that replaces clusters starts afresh.
#[derive(Default)]
pub struct HandleCache {
    entries: Mutex<Vec<(OwnedKey, Arc<Handles>)>>,
}

impl std::fmt::Debug for HandleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map_or(0, |e| e.len());
        f.debug_struct("HandleCache")
            .field("label_sets", &n)
            .finish()
    }
}

impl HandleCache {
    fn get(&self, key: &HandleKey<'_>) -> Option<Arc<Handles>> {
        let entries = self.entries.lock().ok()?;
        entries
            .iter()
            .find(|(k, _)| k.is(key))
            .map(|(_, h)| Arc::clone(h))
    }

    fn put(&self, key: &HandleKey<'_>, handles: &Arc<Handles>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() < CACHED_LABEL_SETS && !entries.iter().any(|(k, _)| k.is(key)) {
                let owned = OwnedKey {
                    registry: key.registry,
                    reporter: key.reporter,
                    destination: key.destination,
                    status: key.status,
                    flags: key.flags.into(),
                };
                entries.push((owned, Arc::clone(handles)));
            }
        }
    }
}

/// The handles of Istio's HTTP and TCP metrics.
pub struct IstioMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: HistogramVec,
    response_bytes: HistogramVec,
    tcp_opened: IntCounterVec,
    tcp_closed: IntCounterVec,
    tcp_sent: IntCounterVec,
    tcp_received: IntCounterVec,
    local: Workload,
    unknown: Workload,
    /// This registry's id in [`HandleKey`]s.
    id: u64,
    /// Handles of the destinations that are not clusters (local app, passthrough, nowhere).
    other: HandleCache,
}

impl IstioMetrics {
    /// Creates the handles and registers them.
    pub fn register(registry: &Registry, local: Workload) -> prometheus::Result<Self> {
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
        let tcp = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &TCP_LABELS);
        let tcp_opened = tcp(
            "istio_tcp_connections_opened_total",
            "Opaque TCP connections opened, as Istio's standard metric.",
        )?;
        let tcp_closed = tcp(
            "istio_tcp_connections_closed_total",
            "Opaque TCP connections closed, as Istio's standard metric.",
        )?;
        let tcp_sent = tcp(
            "istio_tcp_sent_bytes_total",
            "Bytes sent back to the client on opaque TCP connections, as Istio's standard metric.",
        )?;
        let tcp_received = tcp(
            "istio_tcp_received_bytes_total",
            "Bytes received from the client on opaque TCP connections, as Istio's standard metric.",
        )?;
        for c in [
            &requests,
            &tcp_opened,
            &tcp_closed,
            &tcp_sent,
            &tcp_received,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        for h in [&duration, &request_bytes, &response_bytes] {
            registry.register(Box::new(h.clone()))?;
        }
        Ok(Self {
            requests,
            duration,
            request_bytes,
            response_bytes,
            tcp_opened,
            tcp_closed,
            tcp_sent,
            tcp_received,
            unknown: Workload {
                cluster: local.cluster.clone(),
                ..Workload::unknown()
            },
            local,
            id: NEXT_REGISTRY_ID.fetch_add(1, Ordering::Relaxed),
            other: HandleCache::default(),
        })
    }

    /// The label values Istio's metrics share, in [`LABELS`] order, with `protocol` and
    /// without the status labels (filled in by the caller).
    fn values<'a>(
        &'a self,
        reporter: Reporter,
        destination: Destination<'a>,
        protocol: &'static str,
        code: &'a str,
        flags: &'a str,
    ) -> [&'a str; 25] {
        // The client side knows itself and not its peer; the server side the reverse (augur
        // has no peer-metadata exchange, so the other side is `unknown`, as Istio reports it
        // without one).
        let source = match reporter {
            Reporter::Source => &self.local,
            Reporter::Destination => &self.unknown,
        };
        let dest = match destination {
            Destination::Cluster(c) => DestinationLabels::of(c),
            Destination::Local => DestinationLabels::local(&self.local),
            Destination::Passthrough => DestinationLabels {
                service_name: "PassthroughCluster",
                ..DestinationLabels::default()
            },
            Destination::Nowhere => DestinationLabels::default(),
        };
        let s = source;
        [
            reporter.as_str(),
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
            &self.local.cluster,
            protocol,
            code,
            "",
            flags,
            "unknown",
        ]
    }

    /// Counts one finished request.
    pub fn record(&self, r: &RequestRecord<'_>) {
        let (cache, kind) = match r.destination {
            Destination::Cluster(c) => (&c.metric_handles, 0),
            Destination::Local => (&self.other, 1),
            Destination::Passthrough => (&self.other, 2),
            Destination::Nowhere => (&self.other, 3),
        };
        let key = HandleKey {
            registry: self.id,
            reporter: r.reporter,
            destination: kind,
            status: r.status,
            flags: r.flags,
        };
        let handles = match cache.get(&key) {
            Some(h) => h,
            None => {
                let h = Arc::new(self.resolve(r));
                cache.put(&key, &h);
                h
            }
        };
        handles.requests.inc();
        handles.duration.observe(r.duration_ms);
        handles.request_bytes.observe(r.request_bytes as f64);
        handles.response_bytes.observe(r.response_bytes as f64);
    }

    /// Resolves the four HTTP metrics' handles for a request's labels.
    fn resolve(&self, r: &RequestRecord<'_>) -> Handles {
        let status = http::StatusCode::from_u16(r.status).ok();
        let code = status.as_ref().map_or("0", http::StatusCode::as_str);
        let values = self.values(r.reporter, r.destination, "http", code, r.flags);
        Handles {
            requests: self.requests.with_label_values(&values),
            duration: self.duration.with_label_values(&values),
            request_bytes: self.request_bytes.with_label_values(&values),
            response_bytes: self.response_bytes.with_label_values(&values),
        }
    }

    fn tcp_values<'a>(&'a self, r: &TcpRecord<'a>) -> [&'a str; 23] {
        let v = self.values(r.reporter, r.destination, "tcp", "", r.flags);
        [
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13],
            v[14], v[15], v[16], v[17], v[18], v[19], v[20], v[23], v[24],
        ]
    }

    /// Counts an opaque TCP connection opened.
    pub fn tcp_opened(&self, r: &TcpRecord<'_>) {
        self.tcp_opened.with_label_values(&self.tcp_values(r)).inc();
    }

    /// Counts an opaque TCP connection closed, with the bytes it carried each way.
    pub fn tcp_closed(&self, r: &TcpRecord<'_>, received: u64, sent: u64) {
        let values = self.tcp_values(r);
        self.tcp_closed.with_label_values(&values).inc();
        self.tcp_received
            .with_label_values(&values)
            .inc_by(received);
        self.tcp_sent.with_label_values(&values).inc_by(sent);
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
    fn local(w: &'a Workload) -> Self {
        Self {
            workload: &w.name,
            namespace: &w.namespace,
            app: &w.app,
            version: &w.version,
            canonical_service: &w.app,
            ..Self::default()
        }
    }

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
