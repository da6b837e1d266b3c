//! Upstream clusters: the endpoints of one destination host and subset.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
    /// The workload version (the subset's `version` label, else the subset name, else `unknown`),
    /// as Istio reports `destination_version`.
    pub version: String,
    /// Resolved endpoint addresses.
    pub endpoints: Vec<SocketAddr>,
    /// TCP connect timeout (DestinationRule `connectionPool.tcp.connectTimeout`).
    pub connect_timeout: Duration,
    next: AtomicUsize,
}

impl Cluster {
    /// A cluster over the given endpoints.
    pub fn new(
        name: String,
        host: String,
        subset: Option<String>,
        version: String,
        endpoints: Vec<SocketAddr>,
    ) -> Self {
        Self {
            name,
            host,
            subset,
            version,
            endpoints,
            connect_timeout: augur_policies::defaults::CONNECT_TIMEOUT,
            next: AtomicUsize::new(0),
        }
    }

    /// The next endpoint in round-robin order, or `None` when the cluster has no endpoint
    /// (Envoy answers 503 `no healthy upstream`, flag UH).
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_over_endpoints() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let c = Cluster::new("c".into(), "h".into(), None, "v1".into(), vec![a, b]);
        assert_eq!([c.pick(), c.pick(), c.pick()], [Some(a), Some(b), Some(a)]);
        let empty = Cluster::new("e".into(), "h".into(), None, "v1".into(), vec![]);
        assert_eq!(empty.pick(), None);
    }
}
