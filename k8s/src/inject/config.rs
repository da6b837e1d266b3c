//! What the injector injects: image, policy ConfigMap, the controller the sidecars follow,
//! defaults for resources and capture.
//!
//! Read from a YAML file (`--config`, camelCase keys, unknown keys rejected) and/or flags;
//! every field has a default so an empty file is a valid configuration.

use serde::Deserialize;

/// The injector's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectConfig {
    /// The augur image, for both the init and the proxy container.
    pub image: String,
    /// `imagePullPolicy` of both containers (unset: Kubernetes' default).
    pub image_pull_policy: Option<String>,
    /// Name of the proxy container. `istio-proxy` keeps `kubectl logs -c istio-proxy`,
    /// dashboards filtering on `container="istio-proxy"` and Kiali working unchanged.
    pub proxy_container_name: String,
    /// Name of the init container that installs the capture rules.
    pub init_container_name: String,
    /// Where `augur` lives in the image (for lifecycle hooks, which have no PATH lookup
    /// guarantees).
    pub binary_path: String,
    /// ConfigMap holding the policy files (per pod: `augur.dev/policyConfigMap`; empty: no
    /// policy, the sidecar passes traffic through, as a canary pod's sidecar does).
    pub policy_config_map: String,
    /// Address of the `augur controller` the sidecars follow (the proxy's `--controller`, e.g.
    /// `http://augur-controller.augur-system.svc:15010`; per pod: `augur.dev/controller`).
    /// Empty: each sidecar runs its policies' rollouts alone. Never set on a sidecar without a
    /// policy, which has no rollout to follow.
    pub controller: String,
    /// Secret, in the pod's namespace, whose `token` key the sidecar presents to the
    /// controller (env `AUGUR_CONTROLLER_TOKEN`); used only with a controller. Empty: no token.
    pub controller_token_secret: String,
    /// `ISTIO_META_CLUSTER_ID`.
    pub cluster_id: String,
    /// Written into the status annotation, like Istio's revision.
    pub revision: String,
    /// The cluster's Kubernetes version (`1.30`, `v1.31.2`); native sidecars are the
    /// default from 1.29 on.
    pub kubernetes_version: Option<String>,
    /// Forces native sidecars on or off for every pod, whatever the version says (a pod's
    /// `augur.dev/nativeSidecar` annotation still wins).
    pub native_sidecars: Option<bool>,
    /// Inject when no label or annotation says either way (the webhook's namespaceSelector
    /// has already chosen the namespace).
    pub inject_by_default: bool,
    /// Also honour `sidecar.istio.io/inject` (label, then annotation) after augur's own.
    pub honour_istio_inject: bool,
    /// Default CPU request of the proxy.
    pub proxy_cpu: String,
    /// Default memory request of the proxy.
    pub proxy_memory: String,
    /// Default CPU limit of the proxy (empty: none).
    pub proxy_cpu_limit: String,
    /// Default memory limit of the proxy (empty: none).
    pub proxy_memory_limit: String,
    /// `--concurrency` of the proxy.
    pub concurrency: u32,
    /// `--drain-duration` of the proxy, in seconds (keep below the pod's grace period).
    pub drain_duration_seconds: u32,
    /// Default `-i` (outbound ranges captured).
    pub include_ip_ranges: String,
    /// Default `-x` (outbound ranges spared).
    pub exclude_ip_ranges: String,
    /// Default `-b` (inbound ports captured).
    pub include_inbound_ports: String,
    /// Default extra `-d` ports (15090, 15021 and 15020 are always spared).
    pub exclude_inbound_ports: String,
}

impl Default for InjectConfig {
    fn default() -> Self {
        Self {
            image: "ghcr.io/augur-dev/augur:0.1.0".into(),
            image_pull_policy: None,
            proxy_container_name: "istio-proxy".into(),
            init_container_name: "istio-init".into(),
            binary_path: "/usr/local/bin/augur".into(),
            policy_config_map: "augur-policy".into(),
            controller: String::new(),
            controller_token_secret: "augur-controller-token".into(),
            cluster_id: "Kubernetes".into(),
            revision: "default".into(),
            kubernetes_version: None,
            native_sidecars: None,
            inject_by_default: true,
            honour_istio_inject: false,
            proxy_cpu: "100m".into(),
            proxy_memory: "128Mi".into(),
            proxy_cpu_limit: "2000m".into(),
            proxy_memory_limit: "1024Mi".into(),
            concurrency: 2,
            drain_duration_seconds: 25,
            include_ip_ranges: "*".into(),
            exclude_ip_ranges: String::new(),
            include_inbound_ports: "*".into(),
            exclude_inbound_ports: String::new(),
        }
    }
}

impl InjectConfig {
    /// Whether pods get native sidecars unless they say otherwise: the explicit setting,
    /// else Kubernetes ≥ 1.29 (SidecarContainers on by default), else no.
    pub fn native_by_default(&self) -> bool {
        if let Some(native) = self.native_sidecars {
            return native;
        }
        self.kubernetes_version
            .as_deref()
            .and_then(parse_minor_version)
            .is_some_and(|(major, minor)| major > 1 || (major == 1 && minor >= 29))
    }
}

/// Checks a controller address the way the proxy's `--controller` needs it: an `http://` or
/// `https://` URL with a host, so that a typo fails at injection, not in a sidecar that never
/// becomes ready.
pub fn check_controller_address(address: &str) -> Result<(), String> {
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .ok_or_else(|| "not an http:// or https:// URL".to_string())?;
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    if host.is_empty() || rest.chars().any(char::is_whitespace) {
        return Err("no host, or white space in the URL".to_string());
    }
    Ok(())
}

/// Parses `1.30`, `v1.31.2` or `1.29+` into (major, minor).
pub fn parse_minor_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_sidecars_follow_the_version_unless_forced() {
        let mut cfg = InjectConfig::default();
        assert!(!cfg.native_by_default());
        cfg.kubernetes_version = Some("v1.29.3".into());
        assert!(cfg.native_by_default());
        cfg.kubernetes_version = Some("1.28".into());
        assert!(!cfg.native_by_default());
        cfg.native_sidecars = Some(true);
        assert!(cfg.native_by_default());
        assert_eq!(parse_minor_version("1.30+"), Some((1, 30)));
        assert_eq!(parse_minor_version("one"), None);
    }

    #[test]
    fn controller_addresses_are_urls_with_a_host() {
        for ok in [
            "http://augur-controller.augur-system.svc:15010",
            "https://10.0.0.1:15012",
        ] {
            assert_eq!(check_controller_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "augur-controller:15010",
            "http://",
            "http://:15010",
            "http://a b",
        ] {
            assert!(check_controller_address(bad).is_err(), "{bad}");
        }
    }
}
