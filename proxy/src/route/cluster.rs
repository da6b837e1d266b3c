//! Upstream clusters: the endpoints of one destination host and subset.

use std::collections::BTreeMap;
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
    /// The subset's labels (what its endpoints carry).
    pub labels: BTreeMap<String, String>,
    /// Resolved endpoint addresses.
    pub endpoints: Vec<SocketAddr>,
    /// TCP connect timeout (DestinationRule `connectionPool.tcp.connectTimeout`).
    pub connect_timeout: Duration,
    next: AtomicUsize,
}

impl Cluster {
    /// A cluster over the given endpoints, with default policies.
    pub fn new(
        name: String,
        host: String,
        subset: Option<String>,
        endpoints: Vec<SocketAddr>,
    ) -> Self {
        Self {
            name,
            host,
            subset,
            labels: BTreeMap::new(),
            endpoints,
            connect_timeout: augur_policies::defaults::CONNECT_TIMEOUT,
            next: AtomicUsize::new(0),
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
        let c = Cluster::new("c".into(), "h".into(), None, vec![a, b]);
        assert_eq!([c.pick(), c.pick(), c.pick()], [Some(a), Some(b), Some(a)]);
        let empty = Cluster::new("e".into(), "h".into(), None, vec![]);
        assert_eq!(empty.pick(), None);
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
