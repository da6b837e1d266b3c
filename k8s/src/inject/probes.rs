//! App probe rewriting, as Istio's `rewriteAppHTTPProbe`: the kubelet's HTTP and TCP probes of
//! the app containers are pointed at the sidecar's status port (`/app-health/<container>/
//! <readyz|livez|startupz>` on 15021), and the originals travel to the proxy in the
//! `AUGUR_APP_PROBERS` environment variable. The proxy then probes the app itself from
//! 127.0.0.6, which the capture rules let through, so probes keep working when inbound traffic
//! is captured (and under strict mTLS, where the kubelet could not reach the app directly).

use serde_json::{json, Map, Value};

use super::template::STATUS_PORT;

/// The environment variable carrying the original probes (path → probe JSON).
pub const APP_PROBERS_ENV: &str = "AUGUR_APP_PROBERS";

const KINDS: [(&str, &str); 3] = [
    ("readinessProbe", "readyz"),
    ("livenessProbe", "livez"),
    ("startupProbe", "startupz"),
];

/// Rewrites the HTTP and TCP probes of `containers` in place; returns the originals by their new
/// path (empty when nothing was rewritten). gRPC and exec probes are left alone.
pub fn rewrite(containers: &mut [Value]) -> Map<String, Value> {
    let mut originals = Map::new();
    for container in containers.iter_mut() {
        let name = container
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let ports = container.get("ports").cloned().unwrap_or(Value::Null);
        for (field, kind) in KINDS {
            let Some(probe) = container.get_mut(field).and_then(Value::as_object_mut) else {
                continue;
            };
            let handler = if let Some(h) = probe.get("httpGet") {
                json!({"httpGet": resolve_port(h, &ports)})
            } else if let Some(t) = probe.get("tcpSocket") {
                json!({"tcpSocket": resolve_port(t, &ports)})
            } else {
                continue;
            };
            let path = format!("/app-health/{name}/{kind}");
            let mut original = handler;
            if let Some(t) = probe.get("timeoutSeconds") {
                original["timeoutSeconds"] = t.clone();
            }
            probe.remove("tcpSocket");
            probe.insert(
                "httpGet".into(),
                json!({"path": path, "port": STATUS_PORT, "scheme": "HTTP"}),
            );
            originals.insert(path, original);
        }
    }
    originals
}

/// A named port (`port: http`) replaced by the container's number for it.
fn resolve_port(handler: &Value, ports: &Value) -> Value {
    let mut h = handler.clone();
    if let Some(name) = h.get("port").and_then(Value::as_str).map(str::to_owned) {
        let number = ports.as_array().and_then(|ps| {
            ps.iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))
                .and_then(|p| p.get("containerPort").cloned())
        });
        if let Some(n) = number {
            h["port"] = n;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_tcp_probes_go_through_the_status_port() {
        let mut containers = vec![json!({
            "name": "model",
            "ports": [{"name": "http", "containerPort": 8000}],
            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": 8000}, "timeoutSeconds": 3},
            "startupProbe": {"exec": {"command": ["true"]}},
        })];
        let originals = rewrite(&mut containers);
        let c = &containers[0];
        assert_eq!(
            c["readinessProbe"]["httpGet"]["path"],
            "/app-health/model/readyz"
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], 15021);
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5, "timings are kept");
        assert_eq!(
            c["livenessProbe"]["httpGet"]["path"],
            "/app-health/model/livez"
        );
        assert!(c["livenessProbe"].get("tcpSocket").is_none());
        assert!(c["startupProbe"].get("exec").is_some(), "exec probes stay");
        assert_eq!(
            originals["/app-health/model/readyz"],
            json!({"httpGet": {"path": "/health", "port": 8000}})
        );
        assert_eq!(
            originals["/app-health/model/livez"],
            json!({"tcpSocket": {"port": 8000}, "timeoutSeconds": 3})
        );
    }
}
