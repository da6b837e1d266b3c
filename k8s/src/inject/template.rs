//! The injected pieces: the `istio-init` container (`augur init`), the proxy container and
//! its two volumes, computed from the configuration and the pod's annotations: the policy
//! ConfigMap (or none), the controller the proxy follows (or none) and its token Secret.
//!
//! The proxy mirrors Istio's `istio-proxy` where Kubernetes sees it: UID/GID 1337, non-root,
//! read-only root filesystem, no capabilities, port 15090 `http-envoy-prom`, readiness and
//! startup probes on 15021 `/healthz/ready`, the downward-API env Istio sets. The init
//! container is the only root piece, with NET_ADMIN and NET_RAW, and only runs the rules.

use serde_json::{json, Value};

use super::annotations::Meta;
use super::config::InjectConfig;
use super::InjectError;
use crate::iptables::options::{
    parse_cidrs, parse_interfaces, parse_ports, CidrSelection, PortSelection,
};

/// Where the policy ConfigMap is mounted (the proxy's `--policy`).
pub const POLICY_DIR: &str = "/etc/augur/policy";
/// Where rollout state lives (the proxy's `--state-dir`).
pub const STATE_DIR: &str = "/var/lib/augur";
/// The policy volume's name.
pub const POLICY_VOLUME: &str = "augur-policy";
/// The state volume's name.
pub const STATE_VOLUME: &str = "augur-state";
/// Status port (`/healthz/ready`).
pub const STATUS_PORT: u16 = 15021;
/// Prometheus port (`/stats/prometheus`).
pub const PROMETHEUS_PORT: u16 = 15090;
/// Inbound ports never captured: Prometheus, status, and Istio's agent status port.
pub const ALWAYS_EXCLUDED_INBOUND: &str = "15090,15021,15020";

/// Everything the pod gains.
#[derive(Debug, Clone)]
pub struct Sidecar {
    /// `istio-init`, or `None` with `interceptionMode: NONE`.
    pub init: Option<Value>,
    /// The proxy container.
    pub proxy: Value,
    /// The policy and state volumes.
    pub volumes: Vec<Value>,
}

/// The pod annotation naming the policy ConfigMap (empty: none).
pub const POLICY_CONFIG_MAP: &str = "augur.dev/policyConfigMap";
/// The pod annotation naming the controller to follow (empty: none).
pub const CONTROLLER: &str = "augur.dev/controller";
/// The proxy's environment variable holding the controller token.
pub const CONTROLLER_TOKEN_ENV: &str = "AUGUR_CONTROLLER_TOKEN";
/// The key of the controller token Secret.
pub const CONTROLLER_TOKEN_KEY: &str = "token";

/// Where a sidecar's policy comes from and whom it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource<'a> {
    /// The policy ConfigMap; `None`: an empty policy directory, the sidecar passes traffic
    /// through (a canary pod's sidecar in the inbound topology).
    pub config_map: Option<&'a str>,
    /// The controller address; `None`: the sidecar runs its policies' rollouts alone.
    pub controller: Option<&'a str>,
}

impl<'a> PolicySource<'a> {
    /// From the pod's annotations, else the configuration. A sidecar without a policy follows
    /// no controller: it has no rollout to follow.
    pub fn of(meta: Meta<'a>, cfg: &'a InjectConfig) -> Result<Self, InjectError> {
        let non_empty = |s: &'a str| Some(s.trim()).filter(|s| !s.is_empty());
        let config_map = non_empty(
            meta.annotation(POLICY_CONFIG_MAP)
                .unwrap_or(&cfg.policy_config_map),
        );
        let annotated = meta.annotation(CONTROLLER);
        let controller = config_map.and_then(|_| non_empty(annotated.unwrap_or(&cfg.controller)));
        if let (Some(address), Some(value)) = (controller, annotated) {
            super::config::check_controller_address(address).map_err(|reason| {
                InjectError::InvalidAnnotation {
                    name: "controller".into(),
                    value: value.to_string(),
                    reason,
                }
            })?;
        }
        Ok(Self {
            config_map,
            controller,
        })
    }
}

/// Builds the sidecar for a pod template with metadata `meta` and spec `spec`.
pub fn build(
    meta: Meta<'_>,
    spec: &Value,
    cfg: &InjectConfig,
    workload: &str,
    native: bool,
) -> Result<Sidecar, InjectError> {
    let image = meta.sidecar_setting("proxyImage").unwrap_or(&cfg.image);
    let init = match meta
        .sidecar_setting("interceptionMode")
        .map(str::to_ascii_uppercase)
    {
        Some(mode) if mode == "NONE" => None,
        Some(mode) if mode != "REDIRECT" => {
            return Err(InjectError::UnsupportedInterceptionMode(mode));
        }
        _ => Some(init_container(meta, cfg, image)?),
    };
    let source = PolicySource::of(meta, cfg)?;
    let policy_volume = match source.config_map {
        Some(map) => json!({"name": POLICY_VOLUME, "configMap": {"name": map}}),
        None => json!({"name": POLICY_VOLUME, "emptyDir": {}}),
    };
    let user_mounts = super::user_volumes::mounts(meta, spec)?;
    Ok(Sidecar {
        init,
        proxy: proxy_container(meta, cfg, image, workload, native, &source, user_mounts)?,
        volumes: vec![policy_volume, json!({"name": STATE_VOLUME, "emptyDir": {}})],
    })
}

fn init_container(meta: Meta<'_>, cfg: &InjectConfig, image: &str) -> Result<Value, InjectError> {
    let setting = |name: &'static str, default: &str| -> String {
        meta.traffic_setting(name).unwrap_or(default).to_string()
    };
    let include_ranges = setting("includeOutboundIPRanges", &cfg.include_ip_ranges);
    let exclude_ranges = setting("excludeOutboundIPRanges", &cfg.exclude_ip_ranges);
    let include_inbound = setting("includeInboundPorts", &cfg.include_inbound_ports);
    let extra_excluded = setting("excludeInboundPorts", &cfg.exclude_inbound_ports);
    let include_out_ports = setting("includeOutboundPorts", "");
    let exclude_out_ports = setting("excludeOutboundPorts", "");
    let exclude_ifaces = setting("excludeInterfaces", "");
    let reroute_ifaces = meta
        .annotation("istio.io/reroute-virtual-interfaces")
        .or_else(|| meta.traffic_setting("kubevirtInterfaces"))
        .unwrap_or("")
        .to_string();

    // Validate now, so a typo fails at admission instead of in a crash-looping init container.
    let invalid =
        |name: &str, value: &str, err: &dyn std::fmt::Display| InjectError::InvalidAnnotation {
            name: name.to_string(),
            value: value.to_string(),
            reason: err.to_string(),
        };
    CidrSelection::parse("-i", &include_ranges)
        .map_err(|e| invalid("includeOutboundIPRanges", &include_ranges, &e))?;
    parse_cidrs("-x", &exclude_ranges)
        .map_err(|e| invalid("excludeOutboundIPRanges", &exclude_ranges, &e))?;
    PortSelection::parse("-b", &include_inbound)
        .map_err(|e| invalid("includeInboundPorts", &include_inbound, &e))?;
    parse_ports("-d", &extra_excluded)
        .map_err(|e| invalid("excludeInboundPorts", &extra_excluded, &e))?;
    parse_ports("-q", &include_out_ports)
        .map_err(|e| invalid("includeOutboundPorts", &include_out_ports, &e))?;
    parse_ports("-o", &exclude_out_ports)
        .map_err(|e| invalid("excludeOutboundPorts", &exclude_out_ports, &e))?;
    parse_interfaces("-c", &exclude_ifaces)
        .map_err(|e| invalid("excludeInterfaces", &exclude_ifaces, &e))?;
    parse_interfaces("-k", &reroute_ifaces)
        .map_err(|e| invalid("kubevirtInterfaces", &reroute_ifaces, &e))?;

    let excluded_inbound = if extra_excluded.trim().is_empty() {
        ALWAYS_EXCLUDED_INBOUND.to_string()
    } else {
        format!("{ALWAYS_EXCLUDED_INBOUND},{}", extra_excluded.trim())
    };
    let mut args: Vec<String> = [
        "init", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        include_ranges,
        "-x".into(),
        exclude_ranges,
        "-b".into(),
        include_inbound,
        "-d".into(),
        excluded_inbound,
    ]);
    for (flag, value) in [
        ("-q", include_out_ports),
        ("-o", exclude_out_ports),
        ("-k", reroute_ifaces),
        ("-c", exclude_ifaces),
    ] {
        if !value.trim().is_empty() {
            args.extend([flag.to_string(), value]);
        }
    }
    let mut container = json!({
        "name": cfg.init_container_name,
        "image": image,
        "args": args,
        "resources": resources(meta, cfg)?,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        },
    });
    set_pull_policy(&mut container, cfg);
    Ok(container)
}

fn proxy_container(
    meta: Meta<'_>,
    cfg: &InjectConfig,
    image: &str,
    workload: &str,
    native: bool,
    source: &PolicySource<'_>,
    user_mounts: Vec<Value>,
) -> Result<Value, InjectError> {
    let mut args: Vec<String> = vec![
        "proxy".into(),
        "--policy".into(),
        POLICY_DIR.into(),
        "--state-dir".into(),
        STATE_DIR.into(),
    ];
    if let Some(controller) = source.controller {
        args.extend(["--controller".to_string(), controller.to_string()]);
    }
    args.extend([
        "--outbound-capture".into(),
        "0.0.0.0:15001".into(),
        "--inbound-capture".into(),
        "0.0.0.0:15006".into(),
        "--concurrency".into(),
        cfg.concurrency.to_string(),
        "--drain-duration".into(),
        cfg.drain_duration_seconds.to_string(),
        "--log-format".into(),
        "json".into(),
    ]);
    if let Some(level) = meta.sidecar_setting("logLevel") {
        args.extend(["--log-level".to_string(), level.to_string()]);
    }
    let field =
        |path: &str| json!({"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}});
    let env_from = |name: &str, path: &str| {
        let mut env = field(path);
        env["name"] = json!(name);
        env
    };
    let probe = |period: u32, failures: u32| {
        json!({
            "httpGet": {"path": "/healthz/ready", "port": STATUS_PORT, "scheme": "HTTP"},
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": 3,
        })
    };
    let mut lifecycle = json!({
        // Fail readiness, then let in-flight requests finish before SIGTERM arrives.
        "preStop": {"exec": {"command": [cfg.binary_path, "drain"]}},
    });
    if !native {
        // The proxy is the first container; the kubelet starts the next one only after this
        // hook returns, i.e. once the proxy is ready (holdApplicationUntilProxyStarts).
        lifecycle["postStart"] = json!({"exec": {"command": [cfg.binary_path, "wait"]}});
    }
    let mut env = vec![
        env_from("POD_NAME", "metadata.name"),
        env_from("POD_NAMESPACE", "metadata.namespace"),
        env_from("INSTANCE_IP", "status.podIP"),
        env_from("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        json!({"name": "ISTIO_META_WORKLOAD_NAME", "value": workload}),
        json!({"name": "ISTIO_META_CLUSTER_ID", "value": cfg.cluster_id}),
    ];
    if source.controller.is_some() && !cfg.controller_token_secret.trim().is_empty() {
        env.push(json!({
            "name": CONTROLLER_TOKEN_ENV,
            "valueFrom": {"secretKeyRef": {
                "name": cfg.controller_token_secret.trim(),
                "key": CONTROLLER_TOKEN_KEY,
            }},
        }));
    }
    let mut mounts = vec![
        json!({"name": POLICY_VOLUME, "mountPath": POLICY_DIR, "readOnly": true}),
        json!({"name": STATE_VOLUME, "mountPath": STATE_DIR}),
    ];
    mounts.extend(user_mounts);
    let mut container = json!({
        "name": cfg.proxy_container_name,
        "image": image,
        "args": args,
        "env": env,
        "ports": [{"containerPort": PROMETHEUS_PORT, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": probe(15, 4),
        "startupProbe": probe(1, 600),
        "lifecycle": lifecycle,
        "resources": resources(meta, cfg)?,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": 1337,
            "runAsNonRoot": true,
            "runAsUser": 1337,
        },
        "volumeMounts": mounts,
    });
    if native {
        container["restartPolicy"] = json!("Always");
    }
    set_pull_policy(&mut container, cfg);
    Ok(container)
}

fn set_pull_policy(container: &mut Value, cfg: &InjectConfig) {
    if let Some(policy) = &cfg.image_pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
}

/// Requests and limits from `augur.dev/proxyCPU|proxyMemory|proxyCPULimit|proxyMemoryLimit`
/// (or the `sidecar.istio.io/` ones), else the configured defaults; empty means unset.
fn resources(meta: Meta<'_>, cfg: &InjectConfig) -> Result<Value, InjectError> {
    let mut requests = serde_json::Map::new();
    let mut limits = serde_json::Map::new();
    for (annotation, default, is_limit, key) in [
        ("proxyCPU", &cfg.proxy_cpu, false, "cpu"),
        ("proxyMemory", &cfg.proxy_memory, false, "memory"),
        ("proxyCPULimit", &cfg.proxy_cpu_limit, true, "cpu"),
        ("proxyMemoryLimit", &cfg.proxy_memory_limit, true, "memory"),
    ] {
        let value = meta.sidecar_setting(annotation).unwrap_or(default).trim();
        if value.is_empty() {
            continue;
        }
        if !is_quantity(value) {
            return Err(InjectError::InvalidAnnotation {
                name: annotation.to_string(),
                value: value.to_string(),
                reason: "not a Kubernetes quantity (e.g. 100m, 1.5, 128Mi)".to_string(),
            });
        }
        let map = if is_limit { &mut limits } else { &mut requests };
        map.insert(key.to_string(), json!(value));
    }
    let mut out = serde_json::Map::new();
    if !limits.is_empty() {
        out.insert("limits".into(), Value::Object(limits));
    }
    if !requests.is_empty() {
        out.insert("requests".into(), Value::Object(requests));
    }
    Ok(Value::Object(out))
}

/// A Kubernetes resource quantity: a decimal number and an optional suffix.
pub fn is_quantity(value: &str) -> bool {
    let digits_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(digits_end);
    let number = number.strip_prefix('+').unwrap_or(number);
    let number_ok = !number.is_empty()
        && number.chars().filter(|c| *c == '.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit())
        && !number.contains('+');
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) || (suffix.len() > 1
        && (suffix.starts_with('e') || suffix.starts_with('E'))
        && suffix[1..]
            .trim_start_matches(['+', '-'])
            .chars()
            .all(|c| c.is_ascii_digit())
        && !suffix[1..].trim_start_matches(['+', '-']).is_empty());
    number_ok && suffix_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for ok in ["100m", "1", "1.5", "128Mi", "2Gi", "1e3", "+2"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "1.2.3", "10 Mi", "lots", "1e", "128MB"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
