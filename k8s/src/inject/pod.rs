//! Adds the sidecar to one pod template (`metadata` + `spec`) in place.
//!
//! Native mode (Kubernetes SidecarContainers): `istio-init`, then the proxy with
//! `restartPolicy: Always`, then the pod's own init containers, so the proxy is up before
//! them and stops after the app. Otherwise: `istio-init` first among the init containers and
//! the proxy first among the containers with a `postStart` hook that waits for readiness.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::annotations::{should_inject, Meta, SkipReason, STATUS};
use super::config::InjectConfig;
use super::template::{build, PROMETHEUS_PORT};
use super::InjectError;

/// The `augur.dev/status` annotation, in `sidecar.istio.io/status`'s shape.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectionStatus {
    /// Init containers added (the proxy too, in native mode).
    pub init_containers: Vec<String>,
    /// Containers added (`None` in native mode, as Istio writes `null`).
    pub containers: Option<Vec<String>>,
    /// Volumes added.
    pub volumes: Vec<String>,
    /// Always `None`: augur adds no pull secrets.
    pub image_pull_secrets: Option<Vec<String>>,
    /// The configured revision.
    pub revision: String,
}

/// The workload a bare Pod belongs to: its controller (a ReplicaSet's name without the
/// pod-template hash is the Deployment), else its name, else its `generateName` stem.
pub fn workload_of_pod(pod: &Value) -> String {
    let meta = pod.get("metadata");
    let owner = meta
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .or_else(|| refs.first())
        });
    if let Some(owner) = owner {
        let name = owner
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let hash = meta
            .and_then(|m| m.pointer("/labels/pod-template-hash"))
            .and_then(Value::as_str);
        if owner.get("kind").and_then(Value::as_str) == Some("ReplicaSet") {
            if let Some(stem) = hash.and_then(|h| name.strip_suffix(&format!("-{h}"))) {
                return stem.to_string();
            }
        }
        if !name.is_empty() {
            return name.to_string();
        }
    }
    let field = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str);
    field("name")
        .map(str::to_string)
        .or_else(|| field("generateName").map(|g| g.trim_end_matches('-').to_string()))
        .unwrap_or_default()
}

/// Injects into `template` (an object with `metadata` and `spec`); returns why it was
/// skipped, if it was.
pub fn inject_pod_template(
    template: &mut Value,
    cfg: &InjectConfig,
    workload: &str,
) -> Result<Option<SkipReason>, InjectError> {
    let empty = json!({});
    let spec = template.get("spec").unwrap_or(&empty);
    let meta = Meta::new(template.get("metadata"));
    if let Err(reason) = should_inject(meta, spec, cfg) {
        return Ok(Some(reason));
    }
    let native = match meta.sidecar_setting("nativeSidecar") {
        Some(v) => v.trim().eq_ignore_ascii_case("true"),
        None => cfg.native_by_default(),
    };
    let sidecar = build(meta, spec, cfg, workload, native)?;
    let first_app = spec
        .pointer("/containers/0/name")
        .and_then(Value::as_str)
        .map(str::to_string);

    let mut status = InjectionStatus {
        init_containers: Vec::new(),
        containers: None,
        volumes: sidecar
            .volumes
            .iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
            .collect(),
        image_pull_secrets: None,
        revision: cfg.revision.clone(),
    };
    let rewrite_probes = meta
        .sidecar_setting("rewriteAppHTTPProbers")
        .is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"));
    let spec = child(as_object(template), "spec");
    let mut proxy = sidecar.proxy;
    if rewrite_probes {
        let originals = super::probes::rewrite(list_at(spec, "containers"));
        if !originals.is_empty() {
            let env = json!({
                "name": super::probes::APP_PROBERS_ENV,
                "value": Value::Object(originals).to_string(),
            });
            if let Some(list) = proxy.get_mut("env").and_then(Value::as_array_mut) {
                list.push(env);
            }
        }
    }
    let mut inits: Vec<Value> = Vec::new();
    if let Some(init) = sidecar.init {
        status.init_containers.push(cfg.init_container_name.clone());
        inits.push(init);
    }
    if native {
        status
            .init_containers
            .push(cfg.proxy_container_name.clone());
        inits.push(proxy);
    } else {
        status.containers = Some(vec![cfg.proxy_container_name.clone()]);
        prepend(spec, "containers", vec![proxy]);
    }
    prepend(spec, "initContainers", inits);
    append(spec, "volumes", sidecar.volumes);

    let annotations = child(child(as_object(template), "metadata"), "annotations");
    let status_json = serde_json::to_string(&status).unwrap_or_default();
    annotations.insert(STATUS.to_string(), json!(status_json));
    if !annotations.contains_key("prometheus.io/scrape") {
        annotations.insert("prometheus.io/scrape".into(), json!("true"));
        annotations.insert(
            "prometheus.io/port".into(),
            json!(PROMETHEUS_PORT.to_string()),
        );
        annotations.insert("prometheus.io/path".into(), json!("/stats/prometheus"));
    }
    if let Some(app) = first_app {
        annotations
            .entry("kubectl.kubernetes.io/default-container")
            .or_insert(json!(app));
    }
    Ok(None)
}

/// `value` as an object, replacing a non-object with `{}`.
fn as_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = json!({});
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

/// The object at `key` of `map`, created (or replacing a non-object) when needed.
fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    as_object(map.entry(key.to_string()).or_insert_with(|| json!({})))
}

fn list_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    match slot {
        Value::Array(list) => list,
        _ => unreachable!("just made an array"),
    }
}

fn prepend(map: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    let list = list_at(map, key);
    let rest = std::mem::take(list);
    list.extend(items);
    list.extend(rest);
}

fn append(map: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    list_at(map, key).extend(items);
}
