//! Routing through `augur proxy` with Istio semantics and Envoy's headers, retries, timeouts,
//! faults and local replies, against real upstreams on loopback.

use std::time::{Duration, Instant};

use augur_tests::assert_share_near;
use augur_tests::augur::Proxy;
use augur_tests::http;
use augur_tests::policy::{service, virtual_service, write};
use augur_tests::upstream::{Answer, Upstream};

/// One route to subset v1 of host `model`, with extra route fields (YAML at route level).
fn one_route(up: &Upstream, extra: &str) -> (tempfile::TempDir, Proxy) {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = format!(
        "  - name: main\n{extra}    route:\n    - destination: {{host: model, subset: v1}}\n"
    );
    let vs = virtual_service("model", &http);
    let svc = service("model", &[("v1", up.addr.port())]);
    let file = write(dir.path(), &[&vs, &svc]);
    let proxy = Proxy::start(&[&file]);
    (dir, proxy)
}

#[test]
fn envoy_request_and_response_headers() {
    let up = Upstream::start("v1");
    let (_dir, proxy) = one_route(&up, "");
    let raw =
        "GET /predict HTTP/1.1\r\nHost: model\r\nConnection: close, x-hop\r\nx-hop: secret\r\n\
               traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    let resp = http::request(proxy.listen, raw).expect("request");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("server"), Some("envoy"));
    let service_time: u64 = resp
        .header("x-envoy-upstream-service-time")
        .expect("x-envoy-upstream-service-time")
        .parse()
        .expect("milliseconds");
    assert!(service_time < 5_000);

    let got = &up.received()[0];
    assert_eq!(got.header("x-envoy-attempt-count"), Some("1"));
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        got.header("x-hop"),
        None,
        "a header nominated in Connection is hop-by-hop"
    );
    assert!(
        got.header("traceparent").is_some(),
        "trace headers pass through"
    );
    let id = got.header("x-request-id").expect("x-request-id generated");
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "UUID version 4");

    let given =
        "GET / HTTP/1.1\r\nHost: model\r\nx-request-id: given-id\r\nConnection: close\r\n\r\n";
    http::request(proxy.listen, given).expect("request");
    assert_eq!(
        up.received()[1].header("x-request-id"),
        Some("given-id"),
        "propagated"
    );
}

#[test]
fn retry_on_503_then_success() {
    let up = Upstream::scripted("v1", |n| Answer {
        status: if n == 0 { 503 } else { 200 },
        ..Answer::OK
    });
    let (_dir, proxy) = one_route(&up, "    retries: {attempts: 2, retryOn: \"503\"}\n");
    let resp = http::get(proxy.listen, "model", "/predict").expect("request");
    assert_eq!(resp.status, 200);
    let got = up.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("x-envoy-attempt-count"), Some("2"));
    assert_eq!(got[0].header("x-request-id"), got[1].header("x-request-id"));
}

#[test]
fn retries_stop_at_the_attempt_limit() {
    let up = Upstream::scripted("v1", |_| Answer {
        status: 503,
        ..Answer::OK
    });
    let (_dir, proxy) = one_route(&up, "    retries: {attempts: 2, retryOn: 5xx}\n");
    let resp = http::get(proxy.listen, "model", "/predict").expect("request");
    assert_eq!(resp.status, 503, "the upstream's last answer is passed on");
    assert_eq!(up.served(), 3, "1 try + 2 retries");
}

#[test]
fn no_retry_when_the_policy_does_not_ask() {
    let up = Upstream::scripted("v1", |_| Answer {
        status: 500,
        ..Answer::OK
    });
    let (_dir, proxy) = one_route(
        &up,
        "    retries: {attempts: 3, retryOn: connect-failure}\n",
    );
    assert_eq!(
        http::get(proxy.listen, "model", "/")
            .expect("request")
            .status,
        500
    );
    assert_eq!(up.served(), 1);
}

#[test]
fn connection_refused_is_503_uf() {
    let refused = augur_tests::RefusedPort::new();
    let port = refused.port;
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - route:\n    - destination: {host: model, subset: v1}\n",
    );
    let file = write(dir.path(), &[&vs, &service("model", &[("v1", port)])]);
    let proxy = Proxy::start(&[&file]);
    let resp = http::get(proxy.listen, "model", "/").expect("request");
    assert_eq!(resp.status, 503);
    assert!(
        resp.body
            .starts_with("upstream connect error or disconnect/reset before headers"),
        "{}",
        resp.body
    );
}

#[test]
fn route_timeout_is_504_ut() {
    let up = Upstream::scripted("v1", |_| Answer {
        status: 200,
        delay: Duration::from_secs(3),
    });
    let (_dir, proxy) = one_route(&up, "    timeout: 300ms\n    retries: {attempts: 0}\n");
    let start = Instant::now();
    let resp = http::get(proxy.listen, "model", "/").expect("request");
    assert_eq!(resp.status, 504);
    assert_eq!(resp.body, "upstream request timeout");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "answered at the timeout, not the upstream's pace"
    );
}

#[test]
fn fault_abort_and_delay() {
    let up = Upstream::start("v1");
    let (_dir, proxy) = one_route(
        &up,
        "    fault:\n      abort: {httpStatus: 418, percentage: {value: 100}}\n",
    );
    let resp = http::get(proxy.listen, "model", "/").expect("request");
    assert_eq!(resp.status, 418);
    assert_eq!(up.served(), 0);

    let up = Upstream::start("v1");
    let (_dir, proxy) = one_route(
        &up,
        "    fault:\n      delay: {fixedDelay: 400ms, percentage: {value: 100}}\n",
    );
    let start = Instant::now();
    assert_eq!(
        http::get(proxy.listen, "model", "/")
            .expect("request")
            .status,
        200
    );
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[test]
fn header_edits_and_rewrite() {
    let up = Upstream::start("v1");
    let (_dir, proxy) = one_route(
        &up,
        "    match: [{uri: {prefix: /predict}}]\n    rewrite: {uri: /v2/predict}\n    headers:\n      request:\n        set: {x-model-route: main}\n        remove: [x-drop]\n      response:\n        add: {x-served-by: augur}\n",
    );
    let raw = "GET /predict?x=1 HTTP/1.1\r\nHost: model\r\nx-drop: 1\r\nConnection: close\r\n\r\n";
    let resp = http::request(proxy.listen, raw).expect("request");
    assert_eq!(resp.header("x-served-by"), Some("augur"));
    let got = &up.received()[0];
    // The matched prefix is replaced and the query kept; the original goes along as Envoy's.
    assert_eq!(got.line, "GET /v2/predict?x=1 HTTP/1.1");
    assert_eq!(got.header("x-envoy-original-path"), Some("/predict?x=1"));
    assert_eq!(got.header("x-model-route"), Some("main"));
    assert_eq!(got.header("x-drop"), None);
}

#[test]
fn redirect_and_direct_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - match: [{uri: {exact: /old}}]\n    redirect: {uri: /new, redirectCode: 308}\n  - directResponse: {status: 200, body: {string: pong}}\n",
    );
    let file = write(dir.path(), &[&vs]);
    let proxy = Proxy::start(&[&file]);
    let moved = http::get(proxy.listen, "model", "/old").expect("request");
    assert_eq!(moved.status, 308);
    assert_eq!(moved.header("location"), Some("http://model/new"));
    let pong = http::get(proxy.listen, "model", "/anything").expect("request");
    assert_eq!((pong.status, pong.body.as_str()), (200, "pong"));
}

#[test]
fn header_match_routes_ab_traffic() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - match: [{headers: {x-model-version: {exact: v2}}}]\n    route: [{destination: {host: model, subset: v2}}]\n  - route: [{destination: {host: model, subset: v1}}]\n",
    );
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let proxy = Proxy::start(&[&write(dir.path(), &[&vs, &svc])]);
    let raw = "GET / HTTP/1.1\r\nHost: model\r\nx-model-version: v2\r\nConnection: close\r\n\r\n";
    assert!(http::request(proxy.listen, raw)
        .expect("request")
        .body
        .contains("\"v2\""));
    assert!(http::get(proxy.listen, "model", "/")
        .expect("request")
        .body
        .contains("\"v1\""));
}

#[test]
fn weighted_split_lands_within_four_sigma() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - route:\n    - destination: {host: model, subset: v1}\n      weight: 80\n    - destination: {host: model, subset: v2}\n      weight: 20\n",
    );
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let proxy = Proxy::start(&[&write(dir.path(), &[&vs, &svc])]);
    let n = 10_000usize;
    let mut conn = http::Connection::open(proxy.listen).expect("connect");
    for _ in 0..n {
        assert_eq!(conn.get("model", "/").expect("request").status, 200);
    }
    assert_eq!(v1.served() + v2.served(), n);
    assert_share_near(v2.served(), n, 0.2);
}

#[test]
fn prior_knowledge_http2_is_routed_like_http1() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - match: [{headers: {x-model-version: {exact: v2}}}]\n    route: [{destination: {host: model, subset: v2}}]\n  - route: [{destination: {host: model, subset: v1}}]\n",
    );
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let proxy = Proxy::start(&[&write(dir.path(), &[&vs, &svc])]);
    let curl = |extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--http2-prior-knowledge",
                "-w",
                "\n%{http_version}",
                "-H",
                "Host: model",
            ])
            .args(extra)
            .arg(format!("http://{}/predict", proxy.listen))
            .output()
            .expect("curl (scripts/setup.sh installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = curl(&[]);
    assert!(
        plain.contains("\"v1\"") && plain.ends_with("\n2"),
        "{plain}"
    );
    let header = curl(&["-H", "x-model-version: v2"]);
    assert!(
        header.contains("\"v2\"") && header.ends_with("\n2"),
        "{header}"
    );
}

#[test]
fn access_log_in_istio_format_without_query_strings() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let http_routes = "  - name: main\n    route: [{destination: {host: model, subset: v1}}]\n";
    let file = write(
        dir.path(),
        &[
            &virtual_service("model", http_routes),
            &service("model", &[("v1", up.addr.port())]),
        ],
    );
    let log = dir.path().join("access.log");
    let proxy = Proxy::start_with_args(&[&file], &["--access-log", log.to_str().expect("utf-8")]);
    let raw = "GET /predict?patient=SECRET-NAME HTTP/1.1\r\nHost: model\r\nx-request-id: rid-1\r\n\
               User-Agent: test-agent\r\nConnection: close\r\n\r\n";
    assert_eq!(
        http::request(proxy.listen, raw).expect("request").status,
        200
    );
    assert_eq!(
        http::get(proxy.listen, "nowhere", "/x")
            .expect("request")
            .status,
        404
    );
    let text = augur_tests::wait_for("two access-log lines", Duration::from_secs(5), || {
        let t = std::fs::read_to_string(&log).ok()?;
        (t.lines().count() == 2).then_some(t)
    });
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with('['), "{}", lines[0]);
    assert!(
        lines[0].contains("] \"GET /predict HTTP/1.1\" 200 - via_upstream - \"-\" 0 "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("\"-\" \"test-agent\" \"rid-1\" \"model\""),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(&format!(
        "\"{}\" outbound|80|v1|model.default.svc.cluster.local",
        up.addr
    )));
    assert!(lines[0].ends_with(" main"), "route name last: {}", lines[0]);
    assert!(
        !text.contains("SECRET"),
        "no query strings in the access log"
    );
    assert!(
        lines[1].contains("\"GET /x HTTP/1.1\" 404 NR route_not_found"),
        "{}",
        lines[1]
    );
}

#[test]
fn consistent_hash_keeps_each_user_on_one_version() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - route:\n    - destination: {host: model, subset: v1}\n      weight: 80\n    - destination: {host: model, subset: v2}\n      weight: 20\n",
    );
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: model}\nspec:\n  host: model\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x-user}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";
    // The ServiceEntry of `service`, without its DestinationRule (the one above replaces it).
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let se = svc.split("---\n").nth(1).expect("service entry");
    let proxy = Proxy::start(&[&write(dir.path(), &[&vs, dr, se])]);
    let mut conn = http::Connection::open(proxy.listen).expect("connect");
    let mut on_canary = 0;
    for user in 0..200 {
        let versions: std::collections::BTreeSet<bool> = (0..5)
            .map(|_| {
                let raw = format!("GET / HTTP/1.1\r\nHost: model\r\nx-user: user-{user}\r\nConnection: close\r\n\r\n");
                http::request(proxy.listen, &raw).expect("request").body.contains("\"v2\"")
            })
            .collect();
        assert_eq!(versions.len(), 1, "user-{user} switched versions");
        on_canary += usize::from(versions.contains(&true));
    }
    // Each user lands on the canary with the split's probability: 20% of 200 users.
    assert_share_near(on_canary, 200, 0.2);
    // Without the key, requests are spread at random.
    let anonymous: std::collections::BTreeSet<bool> = (0..100)
        .map(|_| {
            conn.get("model", "/")
                .expect("request")
                .body
                .contains("\"v2\"")
        })
        .collect();
    assert_eq!(anonymous.len(), 2);
}

#[test]
fn outlier_detection_ejects_a_failing_endpoint() {
    let good = Upstream::start("v1");
    let bad = Upstream::scripted("v1", |_| Answer {
        status: 500,
        ..Answer::OK
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - route: [{destination: {host: model, subset: v1}}]\n",
    );
    let rest = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: model}}\nspec:\n  host: model\n  \
         trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n    outlierDetection:\n      consecutive5xxErrors: 3\n      \
         interval: 1s\n      baseEjectionTime: 30s\n      maxEjectionPercent: 100\n  subsets: [{{name: v1, labels: {{version: v1}}}}]\n\
         ---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: model}}\nspec:\n  hosts: [model]\n  \
         ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  \
         - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v1}}}}\n  \
         - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v1}}}}\n",
        good.addr.port(),
        bad.addr.port()
    );
    let proxy = Proxy::start(&[&write(dir.path(), &[&vs, &rest])]);
    let mut conn = http::Connection::open(proxy.listen).expect("connect");
    // Round robin: the bad endpoint answers every other request until its third 5xx in a row.
    let warmup: Vec<u16> = (0..6)
        .map(|_| conn.get("model", "/").expect("request").status)
        .collect();
    assert_eq!(
        warmup.iter().filter(|s| **s == 500).count(),
        3,
        "{warmup:?}"
    );
    assert_eq!(proxy.metric("augur_outlier_ejections_total"), 1.0);
    let after: Vec<u16> = (0..50)
        .map(|_| conn.get("model", "/").expect("request").status)
        .collect();
    assert!(
        after.iter().all(|s| *s == 200),
        "the ejected endpoint gets no traffic: {after:?}"
    );
    assert_eq!(bad.served(), 3);
}

#[test]
fn https_listener_negotiates_h2_and_http1() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=model",
            "-addext",
            "subjectAltName=DNS:model",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let http_routes = "  - route: [{destination: {host: model, subset: v1}}]\n";
    let file = write(
        dir.path(),
        &[
            &virtual_service("model", http_routes),
            &service("model", &[("v1", up.addr.port())]),
        ],
    );
    let proxy = Proxy::start_with_args(
        &[&file],
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
    );
    let tls = proxy.tls_listen[0];
    let curl = |version: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", version, "--cacert"])
            .arg(&cert)
            .args([
                "--resolve",
                &format!("model:{}:127.0.0.1", tls.port()),
                "-w",
                "\n%{http_version}",
            ])
            .arg(format!("https://model:{}/predict", tls.port()))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let h2 = curl("--http2");
    assert!(
        h2.contains("\"v1\"") && h2.ends_with("\n2"),
        "ALPN h2: {h2}"
    );
    let h1 = curl("--http1.1");
    assert!(
        h1.contains("\"v1\"") && h1.ends_with("\n1.1"),
        "ALPN http/1.1: {h1}"
    );
    assert!(up
        .received()
        .iter()
        .all(|r| r.header("x-forwarded-proto") == Some("https")));
    drop(proxy);
}
