//! augur's policy model: Istio VirtualService, DestinationRule and
//! ServiceEntry plus augur's own CanaryPolicy and ApiProtection, loaded from YAML files and
//! validated in two phases (raw serde shape → domain types), with every
//! problem reported at once as `file:line:column: path: message`.
//!
//! ```no_run
//! let loaded = augur_policies::load_paths(&["policies"])?;
//! for w in &loaded.warnings {
//!     eprintln!("{w}");
//! }
//! println!("{}", augur_policies::explain::explain(&loaded.set).render_table());
//! # Ok::<(), augur_policies::LoadError>(())
//! ```

use std::path::PathBuf;

mod canary;
mod context;
pub mod defaults;
mod diagnostic;
pub mod driven;
pub mod duration;
pub mod explain;
mod fields;
pub mod fingerprint;
pub mod hosts;
mod istio;
mod load;
mod protection;
mod schema;
mod validate;
mod yaml;

pub use canary::{
    policy_key, AllowedChange, Amount, Analysis, BlueGreen, CanaryPolicy, DestinationRef,
    Direction, HeaderRoute, Labels, Layout, Method, Metric, MetricKind, MetricSource, MirrorRoute,
    Normalization, OutcomeAction, Prediction, Preprocessing, PrometheusAddress, Resize,
    RollbackTrigger, RolloutStep, Scoring, Shadow, ShadowRuntime, Sidecar, StartOn, Strategy,
    TrafficRouting, TriggerAction, TriggerCondition, TriggerMetric,
};
pub use diagnostic::{Diagnostic, LoadError, Severity};
pub use duration::{parse_duration, DurationError};
pub use istio::common::{Destination, HeaderOperations, Headers, ObjectMeta, Percent, StringMatch};
pub use istio::destination_rule::{
    ClientTls, ConnectionPool, ConsistentHash, DestinationRule, LbPolicy, LoadBalancer,
    OutlierDetection, Subset, TlsMode, TrafficPolicy, STICKY_VERSION_ANNOTATION,
};
pub use istio::service_entry::{
    AddressRange, Location, Resolution, ServiceEntry, ServicePort, WorkloadEntry,
};
pub use istio::virtual_service::{
    DirectResponseBody, FaultAbort, FaultDelay, HttpDirectResponse, HttpFaultInjection,
    HttpMatchRequest, HttpMirrorPolicy, HttpRedirect, HttpRetry, HttpRewrite, HttpRoute,
    HttpRouteDestination, RedirectPort, RegexRewrite, VirtualService,
};
pub use load::{load_bytes, load_paths, load_paths_with, load_str, LoadOptions, MAX_FILE_BYTES};
pub use protection::{
    ApiKey, ApiProtection, KeysFrom, RateLimit, RateLimitKey, DEFAULT_API_KEY_HEADER,
};
pub use schema::{api_protection_schema, canary_policy_schema};
pub use yaml::documents as yaml_documents;

/// A successfully loaded policy set.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated policies.
    pub set: PolicySet,
    /// Warnings (ignored or deprecated fields).
    pub warnings: Vec<Diagnostic>,
    /// The files read, in load order.
    pub sources: Vec<PathBuf>,
    /// SHA-256 (hex) over each source's path and bytes, to detect changes.
    pub hash: String,
    /// Where each document came from, to place diagnostics found after loading.
    pub(crate) origins: std::sync::Arc<validate::Origins>,
}

/// One loaded document, by kind and position in its [`PolicySet`] vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentRef {
    /// `set.virtual_services[i]`.
    VirtualService(usize),
    /// `set.destination_rules[i]`.
    DestinationRule(usize),
    /// `set.service_entries[i]`.
    ServiceEntry(usize),
    /// `set.canary_policies[i]`.
    CanaryPolicy(usize),
    /// `set.api_protections[i]`.
    ApiProtection(usize),
}

impl Loaded {
    /// A diagnostic at `path` (e.g. `spec.shadow.model`) of a loaded document, placed at its
    /// file, line and column: for problems found after loading, such as a key file or a shadow
    /// model that cannot be read, so that they read like every other policy error.
    pub fn diagnostic(
        &self,
        doc: DocumentRef,
        path: &str,
        severity: Severity,
        message: impl Into<String>,
    ) -> Diagnostic {
        let o = &self.origins;
        let origin = match doc {
            DocumentRef::VirtualService(i) => o.virtual_services.get(i),
            DocumentRef::DestinationRule(i) => o.destination_rules.get(i),
            DocumentRef::ServiceEntry(i) => o.service_entries.get(i),
            DocumentRef::CanaryPolicy(i) => o.canary_policies.get(i),
            DocumentRef::ApiProtection(i) => o.api_protections.get(i),
        };
        let (file, pos) = origin.map_or_else(
            || (PathBuf::new(), yaml::Pos { line: 1, column: 1 }),
            |o| (o.file.clone(), o.index.lookup(path)),
        );
        Diagnostic {
            severity,
            file,
            line: pos.line,
            column: pos.column,
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// All validated policies from one load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    /// VirtualServices, in file order.
    pub virtual_services: Vec<VirtualService>,
    /// DestinationRules, in file order.
    pub destination_rules: Vec<DestinationRule>,
    /// ServiceEntries, in file order.
    pub service_entries: Vec<ServiceEntry>,
    /// CanaryPolicies, in file order.
    pub canary_policies: Vec<CanaryPolicy>,
    /// ApiProtections, in file order.
    pub api_protections: Vec<ApiProtection>,
}

impl PolicySet {
    /// The DestinationRule for `host` written in `namespace` (short names
    /// are qualified with it); one in the same namespace is preferred.
    pub fn destination_rule_for(&self, host: &str, namespace: &str) -> Option<&DestinationRule> {
        let matching = |dr: &&DestinationRule| {
            hosts::same_host(&dr.host, &dr.metadata.namespace, host, namespace)
        };
        let mut all = self.destination_rules.iter().filter(matching);
        let first = all.clone().find(|dr| dr.metadata.namespace == namespace);
        first.or_else(|| all.next())
    }

    /// The ServiceEntry that lists `host` (written in `namespace`).
    pub fn service_entry_for(&self, host: &str, namespace: &str) -> Option<&ServiceEntry> {
        self.service_entries.iter().find(|se| {
            se.hosts
                .iter()
                .any(|h| hosts::same_host(h, &se.metadata.namespace, host, namespace))
        })
    }

    /// Endpoints of `host` (in `namespace`) selected by `subset`'s labels:
    /// `(address, port)` pairs, using the first ServiceEntry port.
    pub fn endpoints_for(
        &self,
        host: &str,
        subset: Option<&str>,
        namespace: &str,
    ) -> Vec<(String, u32)> {
        let Some(se) = self.service_entry_for(host, namespace) else {
            return Vec::new();
        };
        let labels = subset
            .and_then(|s| {
                self.destination_rule_for(host, namespace)
                    .and_then(|dr| dr.subset(s))
            })
            .map(|s| s.labels.clone())
            .unwrap_or_default();
        let Some(port) = se.ports.first() else {
            return Vec::new();
        };
        se.endpoints
            .iter()
            .filter(|e| labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
            .map(|e| (e.address.clone(), se.endpoint_port(e, port)))
            .collect()
    }

    /// The consistent-hash policy that makes `route` sticky, with its DestinationRule: the rule
    /// of the route's first destination (written in `namespace`). In augur the hash picks the
    /// destination (the version) as well as the endpoint; Istio's picks only the endpoint.
    pub fn hash_policy_for(
        &self,
        route: &HttpRoute,
        namespace: &str,
    ) -> Option<(&DestinationRule, &ConsistentHash)> {
        let dest = &route.route.first()?.destination;
        let dr = self.destination_rule_for(&dest.host, namespace)?;
        match &dr.policy_for(dest.subset.as_deref()).load_balancer {
            LoadBalancer::ConsistentHash(ch) => Some((dr, ch)),
            LoadBalancer::Simple(_) => None,
        }
    }

    /// The VirtualService called `name` in `namespace`.
    pub fn virtual_service(&self, name: &str, namespace: &str) -> Option<&VirtualService> {
        self.virtual_services
            .iter()
            .find(|v| v.metadata.name == name && v.metadata.namespace == namespace)
    }
}
