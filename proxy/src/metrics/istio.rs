//! Istio's standard HTTP and TCP metrics with the same names, label set and Envoy's default
//! histogram buckets, so Flagger's, Kiali's and Grafana's queries work unchanged.
//!
//! `HTTP_LABELS` is the one list of Istio's labels in their order (the TCP set is derived
//! from it), and `IstioLabels::value` reads each label's value by name; a service's
//! destination labels are worked out once per cluster ([`ServiceLabels`]), not per request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use crate::identity::Workload;
use crate::response_flag::ResponseFlag;

/// Envoy's default histogram buckets (ms for durations, bytes for sizes).
pub const ENVOY_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// One of Istio's labels. [`HTTP_LABELS`] puts them in Istio's order; [`IstioLabels::value`]
/// reads each one's value by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Reporter,
    SourceWorkload,
    SourceCanonicalService,
    SourceCanonicalRevision,
    SourceWorkloadNamespace,
    SourcePrincipal,
    SourceApp,
    SourceVersion,
    SourceCluster,
    DestinationWorkload,
    DestinationWorkloadNamespace,
    DestinationPrincipal,
    DestinationApp,
    DestinationVersion,
    DestinationService,
    DestinationCanonicalService,
    DestinationCanonicalRevision,
    DestinationServiceName,
    DestinationServiceNamespace,
    DestinationCluster,
    RequestProtocol,
    ResponseCode,
    GrpcResponseStatus,
    ResponseFlags,
    ConnectionSecurityPolicy,
}

impl Label {
    /// The label's name in the exposition.
    const fn name(self) -> &'static str {
        match self {
            Label::Reporter => "reporter",
            Label::SourceWorkload => "source_workload",
            Label::SourceCanonicalService => "source_canonical_service",
            Label::SourceCanonicalRevision => "source_canonical_revision",
            Label::SourceWorkloadNamespace => "source_workload_namespace",
            Label::SourcePrincipal => "source_principal",
            Label::SourceApp => "source_app",
            Label::SourceVersion => "source_version",
            Label::SourceCluster => "source_cluster",
            Label::DestinationWorkload => "destination_workload",
            Label::DestinationWorkloadNamespace => "destination_workload_namespace",
            Label::DestinationPrincipal => "destination_principal",
            Label::DestinationApp => "destination_app",
            Label::DestinationVersion => "destination_version",
            Label::DestinationService => "destination_service",
            Label::DestinationCanonicalService => "destination_canonical_service",
            Label::DestinationCanonicalRevision => "destination_canonical_revision",
            Label::DestinationServiceName => "destination_service_name",
            Label::DestinationServiceNamespace => "destination_service_namespace",
            Label::DestinationCluster => "destination_cluster",
            Label::RequestProtocol => "request_protocol",
            Label::ResponseCode => "response_code",
            Label::GrpcResponseStatus => "grpc_response_status",
            Label::ResponseFlags => "response_flags",
            Label::ConnectionSecurityPolicy => "connection_security_policy",
        }
    }

    /// Whether Istio's TCP metrics carry the label: all but the HTTP response's.
    const fn on_tcp(self) -> bool {
        !matches!(self, Label::ResponseCode | Label::GrpcResponseStatus)
    }
}

/// Istio's HTTP labels, in Istio's order: the one list both label sets come from.
const HTTP_LABELS: [Label; 25] = [
    Label::Reporter,
    Label::SourceWorkload,
    Label::SourceCanonicalService,
    Label::SourceCanonicalRevision,
    Label::SourceWorkloadNamespace,
    Label::SourcePrincipal,
    Label::SourceApp,
    Label::SourceVersion,
    Label::SourceCluster,
    Label::DestinationWorkload,
    Label::DestinationWorkloadNamespace,
    Label::DestinationPrincipal,
    Label::DestinationApp,
    Label::DestinationVersion,
    Label::DestinationService,
    Label::DestinationCanonicalService,
    Label::DestinationCanonicalRevision,
    Label::DestinationServiceName,
    Label::DestinationServiceNamespace,
    Label::DestinationCluster,
    Label::RequestProtocol,
    Label::ResponseCode,
    Label::GrpcResponseStatus,
    Label::ResponseFlags,
    Label::ConnectionSecurityPolicy,
];

/// Istio's TCP labels: [`HTTP_LABELS`] in the same order, without those TCP does not carry
/// (worked out at compile time; a wrong length does not compile).
const TCP_LABEL_SET: [Label; 23] = {
    let mut out = [Label::Reporter; 23];
    let (mut i, mut n) = (0, 0);
    while i < HTTP_LABELS.len() {
        if HTTP_LABELS[i].on_tcp() {
            out[n] = HTTP_LABELS[i];
            n += 1;
        }
        i += 1;
    }
    assert!(n == out.len(), "TCP_LABEL_SET's length");
    out
};

/// The names of `labels`, in their order (for the metrics' definitions).
const fn names<const N: usize>(labels: &[Label; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = labels[i].name();
        i += 1;
    }
    out
}

/// Istio's HTTP label names, in Istio's order (the exposition sorts them;
/// scrapers do not care about order).
pub const LABELS: [&str; 25] = names(&HTTP_LABELS);

/// Istio's TCP label names, in the order of [`IstioLabels::tcp`]: the HTTP set without
/// `response_code` and `grpc_response_status`.
const TCP_LABELS: [&str; 23] = names(&TCP_LABEL_SET);

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
    /// A service of the routes (a cluster's labels).
    Service(&'a ServiceLabels),
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
    /// Envoy response flags.
    pub flags: ResponseFlag,
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
    /// Envoy response flags (`UF,URX` when the upstream could not be reached).
    pub flags: ResponseFlag,
}

/// A service's `destination_*` label values, worked out once (from its host and its
/// endpoints' labels), with the metric handles resolved for it.
#[derive(Debug)]
pub struct ServiceLabels {
    workload: String,
    namespace: String,
    app: String,
    version: String,
    service: String,
    canonical_service: String,
    service_name: String,
    handles: HandleCache,
}

impl ServiceLabels {
    /// The labels of service `host` whose endpoints carry `labels`, at workload `version`.
    pub fn new(host: &str, labels: &BTreeMap<String, String>, version: &str) -> Self {
        let label = |k: &str| labels.get(k).map(String::as_str);
        let mut parts = host.split('.');
        let service_name = parts.next().unwrap_or("unknown");
        let namespace = if host.ends_with(augur_policies::defaults::CLUSTER_DOMAIN) {
            parts.next().unwrap_or("unknown")
        } else {
            "unknown"
        };
        Self {
            workload: label("service.istio.io/workload-name")
                .unwrap_or("unknown")
                .to_owned(),
            namespace: namespace.to_owned(),
            app: label("app").unwrap_or("unknown").to_owned(),
            version: version.to_owned(),
            service: host.to_owned(),
            canonical_service: label("service.istio.io/canonical-name")
                .or(label("app"))
                .unwrap_or(service_name)
                .to_owned(),
            service_name: service_name.to_owned(),
            handles: HandleCache::default(),
        }
    }

    fn view(&self) -> DestinationView<'_> {
        DestinationView {
            workload: &self.workload,
            namespace: &self.namespace,
            app: &self.app,
            version: &self.version,
            service: &self.service,
            canonical_service: &self.canonical_service,
            service_name: &self.service_name,
        }
    }
}

/// Destination label values, borrowed.
#[derive(Clone, Copy)]
struct DestinationView<'a> {
    workload: &'a str,
    namespace: &'a str,
    app: &'a str,
    version: &'a str,
    service: &'a str,
    canonical_service: &'a str,
    service_name: &'a str,
}

impl Default for DestinationView<'_> {
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

impl<'a> DestinationView<'a> {
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
}

/// What every label's value of one request or connection comes from.
struct IstioLabels<'a> {
    reporter: Reporter,
    source: &'a Workload,
    destination: DestinationView<'a>,
    destination_cluster: &'a str,
    protocol: &'static str,
    response_code: &'a str,
    response_flags: ResponseFlag,
}

impl<'a> IstioLabels<'a> {
    /// The value of one label.
    fn value(&self, label: Label) -> &'a str {
        let (s, d) = (self.source, self.destination);
        match label {
            Label::Reporter => self.reporter.as_str(),
            Label::SourceWorkload => &s.name,
            Label::SourceCanonicalService | Label::SourceApp => &s.app,
            Label::SourceCanonicalRevision | Label::SourceVersion => &s.version,
            Label::SourceWorkloadNamespace => &s.namespace,
            Label::SourceCluster => &s.cluster,
            Label::DestinationWorkload => d.workload,
            Label::DestinationWorkloadNamespace | Label::DestinationServiceNamespace => d.namespace,
            Label::DestinationApp => d.app,
            Label::DestinationVersion | Label::DestinationCanonicalRevision => d.version,
            Label::DestinationService => d.service,
            Label::DestinationCanonicalService => d.canonical_service,
            Label::DestinationServiceName => d.service_name,
            Label::DestinationCluster => self.destination_cluster,
            Label::RequestProtocol => self.protocol,
            Label::ResponseCode => self.response_code,
            Label::ResponseFlags => self.response_flags.as_str(),
            // What augur does not know: Istio's placeholders.
            Label::SourcePrincipal
            | Label::DestinationPrincipal
            | Label::ConnectionSecurityPolicy => "unknown",
            Label::GrpcResponseStatus => "",
        }
    }

    /// The values of `labels`, in their order (an array on the stack: nothing is allocated).
    fn values<const N: usize>(&self, labels: &[Label; N]) -> [&'a str; N] {
        labels.map(|l| self.value(l))
    }

    /// The values in [`LABELS`] order.
    fn http(&self) -> [&'a str; 25] {
        self.values(&HTTP_LABELS)
    }

    /// The values in [`TCP_LABELS`] order.
    fn tcp(&self) -> [&'a str; 23] {
        self.values(&TCP_LABEL_SET)
    }
}

/// Label sets a [`HandleCache`] keeps at most; beyond them requests resolve their labels
/// every time (still correct, only slower), so odd status and flag combinations cannot grow
/// memory.
const CACHED_LABEL_SETS: usize = 64;

/// Tells registries apart, so a cache filled for one never serves another (tests make many).
static NEXT_REGISTRY_ID: AtomicU64 = AtomicU64::new(1);

/// The four HTTP metric handles of one complete label set, resolved once.
#[derive(Debug)]
struct Handles {
    requests: IntCounter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

/// What identifies a label set within one destination: the registry, who reports, the
/// destination kind, the status and the flags (every other label is fixed by the destination
/// and this workload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HandleKey {
    registry: u64,
    reporter: Reporter,
    destination: u8,
    status: u16,
    flags: ResponseFlag,
}

/// Resolved metric handles per label set, kept beside what the labels derive from (a
/// service's labels, or the metrics themselves for the other destinations). Resolving Istio's
/// 25 labels hashes every value under a lock, four times per request; a hit here is a short
/// scan of a few entries under an uncontended mutex. A cache lives as long as its cluster, so
/// a reload that replaces clusters starts afresh.
#[derive(Debug, Default)]
struct HandleCache {
    entries: Mutex<Vec<(HandleKey, Arc<Handles>)>>,
}

impl HandleCache {
    fn get(&self, key: &HandleKey) -> Option<Arc<Handles>> {
        let entries = self.entries.lock().ok()?;
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, h)| Arc::clone(h))
    }

    fn put(&self, key: HandleKey, handles: &Arc<Handles>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() < CACHED_LABEL_SETS && !entries.iter().any(|(k, _)| *k == key) {
                entries.push((key, Arc::clone(handles)));
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
    /// Handles of the destinations that are not services (local app, passthrough, nowhere).
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

    /// The labels of a request or connection; `response_code` is filled in by the caller.
    fn labels<'a>(
        &'a self,
        reporter: Reporter,
        destination: Destination<'a>,
        protocol: &'static str,
        response_code: &'a str,
        response_flags: ResponseFlag,
    ) -> IstioLabels<'a> {
        // The client side knows itself and not its peer; the server side the reverse (augur
        // has no peer-metadata exchange, so the other side is `unknown`, as Istio reports it
        // without one).
        let source = match reporter {
            Reporter::Source => &self.local,
            Reporter::Destination => &self.unknown,
        };
        let destination = match destination {
            Destination::Service(s) => s.view(),
            Destination::Local => DestinationView::local(&self.local),
            Destination::Passthrough => DestinationView {
                service_name: "PassthroughCluster",
                ..DestinationView::default()
            },
            Destination::Nowhere => DestinationView::default(),
        };
        IstioLabels {
            reporter,
            source,
            destination,
            destination_cluster: &self.local.cluster,
            protocol,
            response_code,
            response_flags,
        }
    }

    /// Counts one finished request.
    pub fn record(&self, r: &RequestRecord<'_>) {
        let (cache, kind) = match r.destination {
            Destination::Service(s) => (&s.handles, 0),
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
                cache.put(key, &h);
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
        let values = self
            .labels(r.reporter, r.destination, "http", code, r.flags)
            .http();
        Handles {
            requests: self.requests.with_label_values(&values),
            duration: self.duration.with_label_values(&values),
            request_bytes: self.request_bytes.with_label_values(&values),
            response_bytes: self.response_bytes.with_label_values(&values),
        }
    }

    fn tcp_values<'a>(&'a self, r: &TcpRecord<'a>) -> [&'a str; 23] {
        self.labels(r.reporter, r.destination, "tcp", "", r.flags)
            .tcp()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubernetes_service_is_named_from_its_host_and_labels() {
        let mut labels = BTreeMap::new();
        labels.insert("app".to_owned(), "pneumonia".to_owned());
        let s = ServiceLabels::new("pneumonia.models.svc.cluster.local", &labels, "v2");
        let v = s.view();
        assert_eq!(
            (
                v.service_name,
                v.namespace,
                v.app,
                v.canonical_service,
                v.version
            ),
            ("pneumonia", "models", "pneumonia", "pneumonia", "v2")
        );
        let external = ServiceLabels::new("api.example.com", &BTreeMap::new(), "unknown");
        assert_eq!(external.view().namespace, "unknown");
    }

    /// Istio's HTTP label names in Istio's order, as its dashboards and the exposition know them.
    const ISTIO_HTTP_LABELS: [&str; 25] = [
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

    #[test]
    fn the_label_names_are_istios_in_istios_order_and_tcp_drops_only_the_response() {
        assert_eq!(LABELS, ISTIO_HTTP_LABELS);
        let tcp: Vec<&str> = ISTIO_HTTP_LABELS
            .into_iter()
            .filter(|l| !matches!(*l, "response_code" | "grpc_response_status"))
            .collect();
        assert_eq!(TCP_LABELS.as_slice(), tcp.as_slice());
    }

    /// A source whose every field differs, so a value read from the wrong field shows.
    fn source() -> Workload {
        Workload {
            name: "src-name".to_owned(),
            namespace: "src-ns".to_owned(),
            app: "src-app".to_owned(),
            version: "src-v".to_owned(),
            cluster: "src-cluster".to_owned(),
        }
    }

    #[test]
    fn each_label_has_its_value_in_istios_order() {
        let local = source();
        let mut endpoint = BTreeMap::new();
        endpoint.insert("app".to_owned(), "dst-app".to_owned());
        endpoint.insert(
            "service.istio.io/workload-name".to_owned(),
            "dst-workload".to_owned(),
        );
        endpoint.insert(
            "service.istio.io/canonical-name".to_owned(),
            "dst-canonical".to_owned(),
        );
        let s = ServiceLabels::new("m.ns.svc.cluster.local", &endpoint, "v1");
        let labels = IstioLabels {
            reporter: Reporter::Source,
            source: &local,
            destination: s.view(),
            destination_cluster: "dst-cluster",
            protocol: "http",
            response_code: "503",
            response_flags: ResponseFlag::NoHealthyUpstream,
        };
        let expected: [(&str, &str); 25] = [
            ("reporter", "source"),
            ("source_workload", "src-name"),
            ("source_canonical_service", "src-app"),
            ("source_canonical_revision", "src-v"),
            ("source_workload_namespace", "src-ns"),
            ("source_principal", "unknown"),
            ("source_app", "src-app"),
            ("source_version", "src-v"),
            ("source_cluster", "src-cluster"),
            ("destination_workload", "dst-workload"),
            ("destination_workload_namespace", "ns"),
            ("destination_principal", "unknown"),
            ("destination_app", "dst-app"),
            ("destination_version", "v1"),
            ("destination_service", "m.ns.svc.cluster.local"),
            ("destination_canonical_service", "dst-canonical"),
            ("destination_canonical_revision", "v1"),
            ("destination_service_name", "m"),
            ("destination_service_namespace", "ns"),
            ("destination_cluster", "dst-cluster"),
            ("request_protocol", "http"),
            ("response_code", "503"),
            ("grpc_response_status", ""),
            ("response_flags", "UH"),
            ("connection_security_policy", "unknown"),
        ];
        let http: Vec<(&str, &str)> = LABELS.into_iter().zip(labels.http()).collect();
        assert_eq!(http.as_slice(), expected.as_slice());
        let tcp: Vec<(&str, &str)> = TCP_LABELS.into_iter().zip(labels.tcp()).collect();
        let projected: Vec<(&str, &str)> = expected
            .into_iter()
            .filter(|(name, _)| TCP_LABELS.contains(name))
            .collect();
        assert_eq!(tcp, projected);
    }
}
