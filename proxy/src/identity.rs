//! Who this sidecar's workload is, for the `source_*` labels of Istio's metrics.
//!
//! Read once at start from the environment the injector sets (Istio's names where they exist):
//! `ISTIO_META_WORKLOAD_NAME`, `POD_NAMESPACE`, `AUGUR_APP`/`ISTIO_META_APP`,
//! `AUGUR_VERSION`, `ISTIO_META_CLUSTER_ID` (default `Kubernetes`). Missing values are
//! `unknown`, as Istio reports missing peer information.

/// The local workload's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Deployment (workload) name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `app` label.
    pub app: String,
    /// `version` label.
    pub version: String,
    /// Cluster id.
    pub cluster: String,
}

const UNKNOWN: &str = "unknown";

impl Workload {
    /// Reads the identity from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// A peer augur knows nothing about (every field `unknown`, cluster `Kubernetes`).
    pub fn unknown() -> Self {
        Self::from_lookup(|_| None)
    }

    /// Reads the identity through `get` (testable without touching the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let first = |keys: &[&str], default: &str| {
            keys.iter()
                .find_map(|k| get(k).filter(|v| !v.is_empty()))
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            name: first(&["ISTIO_META_WORKLOAD_NAME", "AUGUR_WORKLOAD"], UNKNOWN),
            namespace: first(&["POD_NAMESPACE"], UNKNOWN),
            app: first(&["AUGUR_APP", "ISTIO_META_APP"], UNKNOWN),
            version: first(&["AUGUR_VERSION", "ISTIO_META_VERSION"], UNKNOWN),
            cluster: first(&["ISTIO_META_CLUSTER_ID"], "Kubernetes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_istio_names_with_defaults() {
        let w = Workload::from_lookup(|k| match k {
            "ISTIO_META_WORKLOAD_NAME" => Some("client".into()),
            "POD_NAMESPACE" => Some("prod".into()),
            _ => None,
        });
        assert_eq!((w.name.as_str(), w.namespace.as_str()), ("client", "prod"));
        assert_eq!(
            (w.app.as_str(), w.cluster.as_str()),
            ("unknown", "Kubernetes")
        );
    }
}
