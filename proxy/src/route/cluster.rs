//! Upstream clusters: the endpoints of one destination host and subset, and how one is chosen.

use crate::metrics::istio::ServiceLabels;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use augur_policies::LbPolicy;

use super::outlier::{Detector, Outcome};

/// How an endpoint is chosen within a cluster (DestinationRule `loadBalancer.simple`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancer {
    /// In turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// The less busy of two random endpoints (Istio's default, Envoy's LEAST_REQUEST).
    LeastRequest,
}

impl From<LbPolicy> for Balancer {
    fn from(p: LbPolicy) -> Self {
        match p {
            LbPolicy::RoundRobin => Balancer::RoundRobin,
            LbPolicy::Random => Balancer::Random,
            // PASSTHROUGH has no meaning for a cluster with endpoints; UNSPECIFIED is the default.
            LbPolicy::LeastRequest | LbPolicy::Unspecified | LbPolicy::Passthrough => {
                Balancer::LeastRequest
            }
        }
    }
}

/// The endpoints of one `(host, subset, port)` destination, named as Istio names clusters
/// (`outbound|9080|v1|reviews.default.svc.cluster.local`).
#[derive(Debug)]
pub struct Cluster {
    /// Istio's cluster name.
    pub name: String,
    /// The destination host (FQDN).
    pub host: String,
    /// The subset, when the destination names one.
    pub subset: Option<String>,
    /// The subset's labels (what its endpoints carry).
    pub labels: BTreeMap<String, String>,
    /// Resolved endpoint addresses.
    pub endpoints: Vec<SocketAddr>,
    /// TCP connect timeout (DestinationRule `connectionPool.tcp.connectTimeout`).
    pub connect_timeout: Duration,
    /// Endpoint selection.
    pub balancer: Balancer,
    /// Outlier detection, when the DestinationRule asks for it.
    pub outlier: Option<Detector>,
    /// HTTP version and TLS towards the endpoints.
    pub upstream: super::upstream::Upstream,
    /// Circuit breakers (`connectionPool` limits); `None` when all are Istio's defaults.
    pub breakers: Option<Arc<super::breakers::CircuitBreakers>>,
    /// How long an idle upstream connection stays pooled (`connectionPool.http.idleTimeout`).
    pub idle_timeout: Duration,
    /// One request per upstream connection (`maxRequestsPerConnection: 1`).
    pub close_after_request: bool,
    /// Istio's `destination_*` labels for this cluster, worked out on first use (its host
    /// and labels do not change once the cluster is built).
    metric_labels: std::sync::OnceLock<ServiceLabels>,
    next: AtomicUsize,
    active: Vec<AtomicUsize>,
}

impl Cluster {
    /// A cluster over the given endpoints, with default policies.
    pub fn new(
        name: String,
        host: String,
        subset: Option<String>,
        endpoints: Vec<SocketAddr>,
    ) -> Self {
        let active = endpoints.iter().map(|_| AtomicUsize::new(0)).collect();
        Self {
            name,
            host,
            subset,
            labels: BTreeMap::new(),
            endpoints,
            connect_timeout: augur_policies::defaults::CONNECT_TIMEOUT,
            balancer: Balancer::LeastRequest,
            outlier: None,
            upstream: super::upstream::Upstream::default(),
            breakers: None,
            idle_timeout: augur_policies::defaults::IDLE_TIMEOUT,
            close_after_request: false,
            metric_labels: std::sync::OnceLock::new(),
            next: AtomicUsize::new(0),
            active,
        }
    }

    /// The workload version, as Istio reports `destination_version`: the `version` label, else
    /// the subset name, else `unknown`.
    pub fn version(&self) -> &str {
        self.labels
            .get("version")
            .map(String::as_str)
            .or(self.subset.as_deref())
            .unwrap_or("unknown")
    }

    /// Istio's `destination_*` labels for requests to this cluster.
    pub fn metric_labels(&self) -> &ServiceLabels {
        self.metric_labels
            .get_or_init(|| ServiceLabels::new(&self.host, &self.labels, self.version()))
    }

    /// Chooses an endpoint: by `hash` when the route is sticky, else by the balancer. `None`
    /// when the cluster has no endpoint (Envoy answers 503 `no healthy upstream`, flag UH).
    /// The returned guard counts the request as active on that endpoint until dropped.
    pub fn pick(self: &Arc<Self>, hash: Option<u64>) -> Option<(SocketAddr, EndpointGuard)> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        // Ejected endpoints are skipped; with every endpoint out, all are used (panic mode).
        let ejected = |i: usize| self.outlier.as_ref().is_some_and(|d| d.is_ejected(i));
        // Only when something is ejected is a list of candidates built (the rare case).
        let pool: Option<Vec<usize>> = (0..n).any(ejected).then(|| {
            let healthy: Vec<usize> = (0..n).filter(|i| !ejected(*i)).collect();
            if healthy.is_empty() {
                (0..n).collect()
            } else {
                healthy
            }
        });
        let m = pool.as_ref().map_or(n, Vec::len);
        let at = |slot: usize| pool.as_ref().map_or(Some(slot), |p| p.get(slot).copied());
        let slot = match (hash, self.balancer) {
            (Some(h), _) => (h % m as u64) as usize,
            (None, Balancer::RoundRobin) => self.next.fetch_add(1, Ordering::Relaxed) % m,
            (None, Balancer::Random) => rand::random_range(0..m),
            (None, Balancer::LeastRequest) if m == 1 => 0,
            (None, Balancer::LeastRequest) => {
                let (a, b) = (rand::random_range(0..m), rand::random_range(0..m));
                let load = |slot: usize| {
                    at(slot)
                        .and_then(|i| self.active.get(i))
                        .map_or(0, |c| c.load(Ordering::Relaxed))
                };
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        let index = at(slot)?;
        let addr = *self.endpoints.get(index)?;
        if let Some(c) = self.active.get(index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        Some((
            addr,
            EndpointGuard {
                cluster: Arc::clone(self),
                index,
            },
        ))
    }

    /// Requests in flight on endpoint `index`.
    pub fn active(&self, index: usize) -> usize {
        self.active
            .get(index)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// One request's claim on an endpoint, for least-request balancing.
#[derive(Debug)]
pub struct EndpointGuard {
    cluster: Arc<Cluster>,
    index: usize,
}

impl EndpointGuard {
    /// Reports the attempt's outcome to the cluster's outlier detection; returns whether the
    /// endpoint was ejected by it.
    pub fn report(&self, outcome: Outcome) -> bool {
        self.cluster
            .outlier
            .as_ref()
            .is_some_and(|d| d.report(self.index, outcome))
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.active.get(self.index) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect()
    }

    #[test]
    fn round_robin_over_endpoints() {
        let mut c = Cluster::new("c".into(), "h".into(), None, addrs(2));
        c.balancer = Balancer::RoundRobin;
        let c = Arc::new(c);
        let picks: Vec<u16> = (0..3).map(|_| c.pick(None).unwrap().0.port()).collect();
        assert_eq!(picks, [1, 2, 1]);
        let empty = Arc::new(Cluster::new("e".into(), "h".into(), None, vec![]));
        assert!(empty.pick(None).is_none());
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let c = Arc::new(Cluster::new("c".into(), "h".into(), None, addrs(2)));
        // Hold many requests on endpoint 1 (port 1).
        let held: Vec<_> = (0..50).map(|_| c.pick(Some(0)).unwrap().1).collect();
        assert_eq!(c.active(0), 50);
        let to_idle = (0..200)
            .filter(|_| c.pick(None).unwrap().0.port() == 2)
            .count();
        // Both choices hit the busy endpoint with probability 1/4: 150 of 200 expected, sd 6.
        assert!(
            to_idle > 120,
            "two random choices prefer the idle endpoint: {to_idle}/200"
        );
        drop(held);
        assert_eq!(c.active(0), 0, "guards release their claim");
    }

    #[test]
    fn a_hash_always_picks_the_same_endpoint() {
        let c = Arc::new(Cluster::new("c".into(), "h".into(), None, addrs(5)));
        let first = c.pick(Some(12345)).unwrap().0;
        assert!((0..20).all(|_| c.pick(Some(12345)).unwrap().0 == first));
    }

    #[test]
    fn version_comes_from_labels_then_subset() {
        let mut c = Cluster::new("c".into(), "h".into(), Some("v2".into()), vec![]);
        assert_eq!(c.version(), "v2");
        c.labels.insert("version".into(), "2.1".into());
        assert_eq!(c.version(), "2.1");
        assert_eq!(
            Cluster::new("c".into(), "h".into(), None, vec![]).version(),
            "unknown"
        );
    }
}
