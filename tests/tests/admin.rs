//! The admin, status and Prometheus listeners answer with Envoy's and Istio's shapes, and the
//! proxy's own replies carry Envoy's codes and bodies.

use augur_tests::augur::Proxy;
use augur_tests::http;
use augur_tests::upstream::Upstream;

fn policy(dir: &std::path::Path, up: &Upstream) -> std::path::PathBuf {
    let file = dir.join("policy.yaml");
    let yaml = format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: model}}
spec:
  hosts: [model]
  http:
  - name: gone
    match: [{{uri: {{prefix: /gone}}}}]
    route: [{{destination: {{host: nowhere, subset: v9}}}}]
  - name: main
    route: [{{destination: {{host: model}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: model}}
spec:
  hosts: [model]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: nowhere}}
spec:
  hosts: [nowhere]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{version: none}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: nowhere}}
spec:
  host: nowhere
  subsets: [{{name: v9, labels: {{version: v9}}}}]
"#,
        port = up.addr.port()
    );
    std::fs::write(&file, yaml).expect("write policy");
    file
}

#[test]
fn admin_endpoints_have_envoys_shapes() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&[&policy(dir.path(), &up)]);

    let ready = proxy.admin_get("/ready");
    assert_eq!((ready.status, ready.body.as_str()), (200, "LIVE\n"));

    let info: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/server_info").body).unwrap();
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["command_line_options"]["concurrency"], 1);

    // pilot-agent's readiness probe reads these two through /stats?usedonly&filter=...
    let stats = proxy
        .admin_get("/stats?usedonly&filter=^(server.state|listener_manager.workers_started)$")
        .body;
    assert_eq!(
        stats, "listener_manager.workers_started: 1\n",
        "server.state is 0 (LIVE), dropped by usedonly"
    );
    let all = proxy.admin_get("/stats?filter=^server.state$").body;
    assert_eq!(all, "server.state: 0\n");

    let dump: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/config_dump").body).unwrap();
    let section = &dump["configs"][0];
    assert_eq!(
        section["version_info"].as_str().unwrap().len(),
        64,
        "sha256 hex"
    );
    assert!(section["sources"][0]
        .as_str()
        .unwrap()
        .ends_with("policy.yaml"));

    let clusters = proxy.admin_get("/clusters").body;
    assert!(
        clusters.contains(&format!(
            "outbound|80||model.default.svc.cluster.local::{}::health_flags::healthy",
            up.addr
        )),
        "{clusters}"
    );
    assert!(proxy
        .admin_get("/listeners")
        .body
        .contains(&proxy.listen.to_string()));
    assert_eq!(proxy.admin_get("/no-such-endpoint").status, 404);
}

#[test]
fn health_check_fail_and_ok_drive_readiness() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&[&policy(dir.path(), &up)]);
    let ready = || {
        http::get(proxy.status, "localhost", "/healthz/ready")
            .unwrap()
            .status
    };
    assert_eq!(ready(), 200);

    assert_eq!(
        proxy.admin_get("/healthcheck/fail").status,
        400,
        "mutations are POST only"
    );
    assert_eq!(ready(), 200);

    assert_eq!(
        http::post(proxy.admin, "localhost", "/healthcheck/fail")
            .unwrap()
            .status,
        200
    );
    assert_eq!(ready(), 503);
    assert_eq!(proxy.admin_get("/ready").status, 503);

    assert_eq!(
        http::post(proxy.admin, "localhost", "/healthcheck/ok")
            .unwrap()
            .status,
        200
    );
    assert_eq!(ready(), 200);
}

#[test]
fn status_and_prometheus_ports_serve_only_their_paths() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&[&policy(dir.path(), &up)]);
    assert_eq!(
        http::get(proxy.status, "localhost", "/config_dump")
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        http::get(proxy.prometheus, "localhost", "/config_dump")
            .unwrap()
            .status,
        404
    );
    let metrics = http::get(proxy.prometheus, "localhost", "/stats/prometheus").unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .body
        .contains("# TYPE augur_config_reload_failures_total counter"));
}

#[test]
fn local_replies_use_envoys_codes_and_bodies() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&[&policy(dir.path(), &up)]);

    let ok = http::get(proxy.listen, "model", "/predict").unwrap();
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("v1"));
    let fqdn = http::get(
        proxy.listen,
        "model.default.svc.cluster.local:80",
        "/predict",
    )
    .unwrap();
    assert_eq!(
        fqdn.status, 200,
        "FQDN with port routes like the short name"
    );

    let no_route = http::get(proxy.listen, "unknown-host", "/").unwrap();
    assert_eq!(no_route.status, 404);
    assert_eq!(no_route.body, "");
    assert_eq!(no_route.header("server"), Some("envoy"));

    let no_endpoint = http::get(proxy.listen, "model", "/gone").unwrap();
    assert_eq!(no_endpoint.status, 503);
    assert_eq!(no_endpoint.body, "no healthy upstream");
    assert_eq!(up.served(), 2);
}

#[test]
fn app_probes_run_through_the_status_port() {
    let healthy = Upstream::start("v1");
    let sick = augur_tests::upstream::Upstream::scripted("v1", |_| augur_tests::upstream::Answer {
        status: 503,
        ..augur_tests::upstream::Answer::OK
    });
    let refused = augur_tests::RefusedPort::new();
    let closed = refused.port;
    let probers = serde_json::json!({
        "/app-health/model/readyz": {"httpGet": {"path": "/health", "port": healthy.addr.port()}},
        "/app-health/model/livez": {"tcpSocket": {"port": healthy.addr.port()}},
        "/app-health/sick/readyz": {"httpGet": {"path": "/health", "port": sick.addr.port()}},
        "/app-health/gone/livez": {"tcpSocket": {"port": closed}, "timeoutSeconds": 1},
    })
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_with_env(
        &[&policy(dir.path(), &healthy)],
        &[("AUGUR_APP_PROBERS", &probers)],
    );
    let probe = |path: &str| http::get(proxy.status, "localhost", path).unwrap().status;
    assert_eq!(probe("/app-health/model/readyz"), 200);
    assert_eq!(probe("/app-health/model/livez"), 200);
    assert_eq!(probe("/app-health/sick/readyz"), 503);
    assert_eq!(probe("/app-health/gone/livez"), 503);
    assert_eq!(probe("/app-health/other/readyz"), 404);
    let got = healthy.received();
    assert!(got
        .iter()
        .any(|r| r.line == "GET /health HTTP/1.1"
            && r.header("user-agent") == Some("kube-probe/augur")));
}

#[test]
fn drain_fails_readiness_and_waits_for_in_flight_requests() {
    let slow = augur_tests::upstream::Upstream::scripted("v1", |_| augur_tests::upstream::Answer {
        status: 200,
        delay: std::time::Duration::from_millis(1500),
    });
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&[&policy(dir.path(), &slow)]);
    let listen = proxy.listen;
    let in_flight =
        std::thread::spawn(move || http::get(listen, "model", "/predict").unwrap().status);
    augur_tests::wait_for(
        "the request in flight",
        std::time::Duration::from_secs(5),
        || (slow.received().len() == 1).then_some(()),
    );
    let start = std::time::Instant::now();
    let admin = proxy.admin.to_string();
    let out = augur_tests::augur::run(&[
        "drain",
        "--admin",
        &admin,
        "--wait-seconds",
        "0",
        "--max-seconds",
        "10",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(800),
        "drain waited for the request"
    );
    assert_eq!(
        in_flight.join().unwrap(),
        200,
        "the in-flight request completed"
    );
    assert_eq!(
        http::get(proxy.status, "localhost", "/healthz/ready")
            .unwrap()
            .status,
        503
    );
}

#[test]
fn logging_level_changes_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    // An upstream that is gone: each request fails to connect, which augur logs at debug.
    let gone = Upstream::start("v1");
    let policy = policy(dir.path(), &gone);
    drop(gone);
    let log = dir.path().join("augur.log");
    let proxy = Proxy::start_logging_to(&[&policy], &log);
    let debug_lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("DEBUG") && l.contains("request failed"))
            .count()
    };
    assert_eq!(http::get(proxy.listen, "model", "/").unwrap().status, 503);
    assert_eq!(debug_lines(), 0, "started at --log-level warn");

    assert_eq!(
        proxy.admin_get("/logging").status,
        400,
        "mutations are POST only"
    );
    let refused = proxy.admin_post("/logging?level=loud", "");
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("unknown level"), "{}", refused.body);

    let set = proxy.admin_post("/logging?level=debug", "");
    assert_eq!(set.status, 200);
    assert!(set.body.contains("augur: debug"), "{}", set.body);
    assert_eq!(http::get(proxy.listen, "model", "/").unwrap().status, 503);
    augur_tests::wait_for("a debug line", std::time::Duration::from_secs(5), || {
        (debug_lines() > 0).then_some(())
    });
    // Envoy's `warning` maps to tracing's `warn`; debug stops.
    assert!(proxy
        .admin_post("/logging?level=warning", "")
        .body
        .contains("augur: warn"));
    let before = debug_lines();
    assert_eq!(http::get(proxy.listen, "model", "/").unwrap().status, 503);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(debug_lines(), before);
}

#[test]
fn drain_listeners_fails_readiness_and_closes_kept_alive_connections() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(&[&policy(dir.path(), &up)]);
    let mut conn = http::Connection::open(proxy.listen).unwrap();
    let first = conn.get("model", "/").unwrap();
    assert_eq!(first.status, 200);
    assert_ne!(first.header("connection"), Some("close"));

    assert_eq!(proxy.admin_get("/drain_listeners").status, 400);
    assert_eq!(proxy.admin_post("/drain_listeners", "").status, 200);
    assert_eq!(proxy.admin_get("/ready").status, 503);
    let status = http::get(proxy.status, "localhost", "/healthz/ready").unwrap();
    assert_eq!(status.status, 503);
    // The request in progress on a kept-alive connection is served, and the connection closes.
    let next = conn.get("model", "/").unwrap();
    assert_eq!(next.status, 200);
    assert_eq!(next.header("connection"), Some("close"));
    assert!(conn.get("model", "/").is_err(), "the connection was closed");
}

#[test]
fn quitquitquit_shuts_the_proxy_down() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = Proxy::start(&[&policy(dir.path(), &up)]);
    assert_eq!(proxy.admin_get("/quitquitquit").status, 400);
    assert!(proxy.is_running());
    assert_eq!(proxy.admin_post("/quitquitquit", "").status, 200);
    augur_tests::wait_for("augur to exit", std::time::Duration::from_secs(10), || {
        (!proxy.is_running()).then_some(())
    });
}
