//! Pod labels and annotations: whether to inject, and per-pod overrides.
//!
//! augur's own keys (`augur.dev/...`) win over Istio's (`sidecar.istio.io/...`,
//! `traffic.sidecar.istio.io/...`), which are honoured so that existing manifests keep their
//! meaning. Labels win over annotations for the inject switch, as in Istio.

use serde_json::Value;

use super::config::InjectConfig;

/// Annotation recording what was injected (shaped like `sidecar.istio.io/status`).
pub const STATUS: &str = "augur.dev/status";
/// Istio's injection status annotation: its presence means Istio already injected.
pub const ISTIO_STATUS: &str = "sidecar.istio.io/status";
/// augur's inject switch (label or annotation).
pub const INJECT: &str = "augur.dev/inject";
/// Istio's inject switch (honoured when configured).
pub const ISTIO_INJECT: &str = "sidecar.istio.io/inject";

/// Why a pod is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The object holds no pod template (a Service, a ConfigMap...).
    NotAWorkload,
    /// `augur.dev/inject` (or the Istio switch) said no, or the default is off.
    Disabled,
    /// Host-network pods share the node's network namespace; capture would hijack the node.
    HostNetwork,
    /// `augur.dev/status` is present: injected before.
    AlreadyInjected,
    /// Istio injected its own sidecar.
    IstioSidecarPresent,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotAWorkload => "not a workload",
            Self::Disabled => "injection disabled",
            Self::HostNetwork => "hostNetwork pod",
            Self::AlreadyInjected => "already injected",
            Self::IstioSidecarPresent => "Istio sidecar present",
        })
    }
}

/// Read access to a pod template's labels and annotations.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    labels: Option<&'a serde_json::Map<String, Value>>,
    annotations: Option<&'a serde_json::Map<String, Value>>,
}

impl<'a> Meta<'a> {
    /// Wraps a `metadata` object (missing or malformed maps read as empty).
    pub fn new(metadata: Option<&'a Value>) -> Self {
        let map = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_object);
        Self {
            labels: map("labels"),
            annotations: map("annotations"),
        }
    }

    /// A label's value, when it is a string.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels?.get(key)?.as_str()
    }

    /// An annotation's value, when it is a string.
    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.annotations?.get(key)?.as_str()
    }

    /// `augur.dev/<name>`, else `sidecar.istio.io/<name>`.
    pub fn sidecar_setting(&self, name: &str) -> Option<&'a str> {
        self.annotation(&format!("augur.dev/{name}"))
            .or_else(|| self.annotation(&format!("sidecar.istio.io/{name}")))
    }

    /// `augur.dev/<name>`, else `traffic.sidecar.istio.io/<name>`.
    pub fn traffic_setting(&self, name: &str) -> Option<&'a str> {
        self.annotation(&format!("augur.dev/{name}"))
            .or_else(|| self.annotation(&format!("traffic.sidecar.istio.io/{name}")))
    }
}

/// Istio's truthiness for the inject switch: `y`, `yes`, `true`, `on` (any case) mean yes,
/// empty means "not said", anything else means no.
fn switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" => None,
        "y" | "yes" | "true" | "on" => Some(true),
        _ => Some(false),
    }
}

/// Decides whether a pod template gets the sidecar.
pub fn should_inject(meta: Meta<'_>, spec: &Value, cfg: &InjectConfig) -> Result<(), SkipReason> {
    if meta.annotation(STATUS).is_some() {
        return Err(SkipReason::AlreadyInjected);
    }
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Err(SkipReason::HostNetwork);
    }
    let has_istio_proxy = ["containers", "initContainers"].iter().any(|list| {
        spec.get(list).and_then(Value::as_array).is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("name").and_then(Value::as_str) == Some("istio-proxy"))
        })
    });
    if meta.annotation(ISTIO_STATUS).is_some()
        || (has_istio_proxy && cfg.proxy_container_name == "istio-proxy")
    {
        return Err(SkipReason::IstioSidecarPresent);
    }
    let mut said = meta
        .label(INJECT)
        .and_then(switch)
        .or_else(|| meta.annotation(INJECT).and_then(switch));
    if said.is_none() && cfg.honour_istio_inject {
        said = meta
            .label(ISTIO_INJECT)
            .and_then(switch)
            .or_else(|| meta.annotation(ISTIO_INJECT).and_then(switch));
    }
    if said.unwrap_or(cfg.inject_by_default) {
        Ok(())
    } else {
        Err(SkipReason::Disabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decide(metadata: Value, spec: Value, cfg: &InjectConfig) -> Result<(), SkipReason> {
        should_inject(Meta::new(Some(&metadata)), &spec, cfg)
    }

    #[test]
    fn label_wins_over_annotation_and_istio_switch_is_opt_in() {
        let cfg = InjectConfig::default();
        let spec = json!({"containers": []});
        let off = json!({"labels": {"augur.dev/inject": "false"}, "annotations": {"augur.dev/inject": "true"}});
        assert_eq!(decide(off, spec.clone(), &cfg), Err(SkipReason::Disabled));
        let istio_off = json!({"labels": {"sidecar.istio.io/inject": "false"}});
        assert_eq!(decide(istio_off.clone(), spec.clone(), &cfg), Ok(()));
        let honour = InjectConfig {
            honour_istio_inject: true,
            ..InjectConfig::default()
        };
        assert_eq!(
            decide(istio_off, spec.clone(), &honour),
            Err(SkipReason::Disabled)
        );
        let by_default_off = InjectConfig {
            inject_by_default: false,
            ..InjectConfig::default()
        };
        let on = json!({"annotations": {"augur.dev/inject": "YES"}});
        assert_eq!(decide(on, spec, &by_default_off), Ok(()));
    }

    #[test]
    fn host_network_injected_and_istio_pods_are_skipped() {
        let cfg = InjectConfig::default();
        assert_eq!(
            decide(json!({}), json!({"hostNetwork": true}), &cfg),
            Err(SkipReason::HostNetwork)
        );
        let injected = json!({"annotations": {"augur.dev/status": "{}"}});
        assert_eq!(
            decide(injected, json!({}), &cfg),
            Err(SkipReason::AlreadyInjected)
        );
        let istio = json!({"containers": [{"name": "istio-proxy"}]});
        assert_eq!(
            decide(json!({}), istio, &cfg),
            Err(SkipReason::IstioSidecarPresent)
        );
    }
}
