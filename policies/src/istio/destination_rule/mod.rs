//! DestinationRule: subsets by labels and the traffic policy (load
//! balancing, connection pool, outlier detection, upstream TLS) for a host.
//! Defaults come from [`crate::defaults`]; a subset's policy is merged over
//! the rule's policy field by field, as pilot does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::defaults;
use crate::istio::common::{ObjectMeta, Percent};

pub(crate) mod raw;

/// A validated DestinationRule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationRule {
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// The host the rule applies to.
    pub host: String,
    /// Policy for the whole host (defaults filled in).
    pub traffic_policy: TrafficPolicy,
    /// Named subsets.
    pub subsets: Vec<Subset>,
}

impl DestinationRule {
    /// The subset called `name`.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// The policy for `subset` (its own merged policy, or the rule's).
    pub fn policy_for(&self, subset: Option<&str>) -> &TrafficPolicy {
        subset
            .and_then(|s| self.subset(s))
            .and_then(|s| s.traffic_policy.as_ref())
            .unwrap_or(&self.traffic_policy)
    }
}

/// A named group of endpoints selected by labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subset {
    /// Subset name, referenced by route destinations.
    pub name: String,
    /// Endpoint labels that select the subset.
    pub labels: BTreeMap<String, String>,
    /// The subset's policy merged over the rule's, when it has one.
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Upstream traffic policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrafficPolicy {
    /// Endpoint selection.
    pub load_balancer: LoadBalancer,
    /// Connection limits and timeouts.
    pub connection_pool: ConnectionPool,
    /// Ejection of failing endpoints; `None` = off.
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream TLS; `None` = plaintext.
    pub tls: Option<ClientTls>,
}

/// Load balancing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LoadBalancer {
    /// A simple algorithm.
    Simple(LbPolicy),
    /// Hash-based affinity.
    ConsistentHash(ConsistentHash),
}

/// `loadBalancer.simple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LbPolicy {
    /// Let the proxy choose (augur: least request).
    Unspecified,
    /// Round robin.
    RoundRobin,
    /// Fewest outstanding requests of two random picks (Istio's default).
    LeastRequest,
    /// Random.
    Random,
    /// Forward to the original destination address.
    Passthrough,
}

/// `loadBalancer.consistentHash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ConsistentHash {
    /// Hash on a request header.
    HttpHeaderName(String),
    /// Hash on a cookie (generated when missing and `ttl` is set).
    HttpCookie {
        /// Cookie name.
        name: String,
        /// Cookie path.
        path: Option<String>,
        /// Cookie lifetime.
        ttl: Option<Duration>,
    },
    /// Hash on the client IP.
    UseSourceIp,
    /// Hash on a query parameter.
    HttpQueryParameterName(String),
}

impl ConsistentHash {
    /// What the hash is keyed on: `header x-user`, `cookie session`, `query parameter u`,
    /// `source IP`.
    pub fn key(&self) -> String {
        match self {
            ConsistentHash::HttpHeaderName(h) => format!("header {h}"),
            ConsistentHash::HttpCookie { name, .. } => format!("cookie {name}"),
            ConsistentHash::UseSourceIp => "source IP".to_owned(),
            ConsistentHash::HttpQueryParameterName(q) => format!("query parameter {q}"),
        }
    }
}

/// The annotation on a DestinationRule that says its consistentHash is meant to pick the version
/// too (augur's meaning, not Istio's), which silences the warning about it.
pub const STICKY_VERSION_ANNOTATION: &str = "augur.dev/sticky-version";

/// Connection pool settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionPool {
    /// Max connections per host.
    pub max_connections: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Max connection lifetime; `None` = unlimited.
    pub max_connection_duration: Option<Duration>,
    /// TCP idle timeout.
    pub tcp_idle_timeout: Duration,
    /// Max queued requests (HTTP/1).
    pub http1_max_pending_requests: u32,
    /// Max concurrent requests (HTTP/2).
    pub http2_max_requests: u32,
    /// Requests per connection; 0 = unlimited.
    pub max_requests_per_connection: u32,
    /// Max outstanding retries.
    pub max_retries: u32,
    /// HTTP idle timeout.
    pub http_idle_timeout: Duration,
    /// `h2UpgradePolicy: UPGRADE`: speak HTTP/2 to the endpoints.
    pub h2_upgrade: bool,
    /// `useClientProtocol`: speak to the endpoints what the client spoke.
    pub use_client_protocol: bool,
}

impl Default for ConnectionPool {
    fn default() -> Self {
        ConnectionPool {
            max_connections: defaults::MAX_CONNECTIONS,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            max_connection_duration: None,
            tcp_idle_timeout: defaults::IDLE_TIMEOUT,
            http1_max_pending_requests: defaults::MAX_REQUESTS,
            http2_max_requests: defaults::MAX_REQUESTS,
            max_requests_per_connection: defaults::MAX_REQUESTS_PER_CONNECTION,
            max_retries: defaults::MAX_REQUESTS,
            http_idle_timeout: defaults::IDLE_TIMEOUT,
            h2_upgrade: false,
            use_client_protocol: false,
        }
    }
}

/// Outlier detection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierDetection {
    /// 5xx in a row before ejection; 0 disables.
    pub consecutive_5xx_errors: u32,
    /// 502/503/504 in a row before ejection; `None` = off.
    pub consecutive_gateway_errors: Option<u32>,
    /// Sweep interval.
    pub interval: Duration,
    /// Minimum ejection time (times the ejection count).
    pub base_ejection_time: Duration,
    /// Max share of endpoints ejected.
    pub max_ejection_percent: Percent,
    /// Below this share of healthy endpoints, detection is off.
    pub min_health_percent: Percent,
}

/// Upstream TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientTls {
    /// TLS mode.
    pub mode: TlsMode,
    /// CA bundle file.
    pub ca_certificates: Option<String>,
    /// Client certificate file (MUTUAL).
    pub client_certificate: Option<String>,
    /// Client key file (MUTUAL).
    pub private_key: Option<String>,
    /// SNI to send.
    pub sni: Option<String>,
    /// Skip server certificate verification.
    pub insecure_skip_verify: bool,
}

/// `tls.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TlsMode {
    /// Plaintext.
    Disable,
    /// TLS with server verification.
    Simple,
    /// mTLS with the given client certificate.
    Mutual,
    /// mTLS with Istio certificates.
    IstioMutual,
}
