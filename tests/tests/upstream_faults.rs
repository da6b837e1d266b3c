//! Upstream faults: an upstream killed mid-request, a reset, a black hole, slow headers, a
//! truncated body. Each ends with Envoy's status and response flag within the configured
//! timeouts, is retried only where the route's `retryOn` allows it, and leaves the proxy
//! serving. A dead canary pod costs the clients nothing once retries and outlier detection act.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::faulty::{Fault, FaultyUpstream};
use augur_tests::http;
use augur_tests::policy::{service, virtual_service, write};

/// Starts augur with one route to subset v1 of `model` at `port`; `route_extra` is YAML added
/// to the route (retries, timeout), indented by four spaces. Returns the access log's path.
fn start_proxy(dir: &Path, port: u16, route_extra: &str) -> (Proxy, PathBuf) {
    let vs = virtual_service(
        "model",
        &format!("  - route:\n    - destination: {{host: model, subset: v1}}\n{route_extra}"),
    );
    let file = write(dir, &[&vs, &service("model", &[("v1", port)])]);
    let log = dir.join("access.log");
    let log_arg = log.to_str().expect("utf-8 path").to_owned();
    let proxy = Proxy::start_with_args(&[&file], &["--access-log", &log_arg]);
    (proxy, log)
}

/// The access log's line for the request with this status, once written.
fn logged(log: &Path, status: u16) -> String {
    augur_tests::wait_for("the access log line", Duration::from_secs(5), || {
        let text = std::fs::read_to_string(log).ok()?;
        text.lines()
            .rev()
            .find(|l| l.contains(&format!("\" {status} ")))
            .map(str::to_owned)
    })
}

#[test]
fn an_upstream_killed_mid_request_is_503_uc_and_not_retried_by_default() {
    let up = FaultyUpstream::start("v1", |_| Fault::Close);
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, log) = start_proxy(dir.path(), up.addr.port(), "");
    let r = http::get(proxy.listen, "model", "/").expect("request");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    );
    assert!(logged(&log, 503).contains(" UC "), "flag UC");
    assert_eq!(
        up.requests(),
        1,
        "Istio's default retries cover connect failures only"
    );
}

#[test]
fn a_reset_is_retried_under_reset_and_not_under_connect_failure() {
    let up = FaultyUpstream::start("v1", |n| if n == 0 { Fault::Reset } else { Fault::Ok });
    let dir = tempfile::tempdir().expect("tempdir");
    let retries = "    retries: {attempts: 2, retryOn: reset}\n";
    let (proxy, _log) = start_proxy(dir.path(), up.addr.port(), retries);
    let r = http::get(proxy.listen, "model", "/").expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.requests(), 2, "one reset, one retry");

    // `connect-failure` alone does not cover a reset after the connection was made (as Envoy).
    let up = FaultyUpstream::start("v1", |n| if n == 0 { Fault::Reset } else { Fault::Ok });
    let dir = tempfile::tempdir().expect("tempdir");
    let retries = "    retries: {attempts: 2, retryOn: connect-failure}\n";
    let (proxy, log) = start_proxy(dir.path(), up.addr.port(), retries);
    let r = http::get(proxy.listen, "model", "/").expect("request");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(logged(&log, 503).contains(" UC "));
    assert_eq!(up.requests(), 1);
}

#[test]
fn a_black_hole_ends_at_the_route_timeout_with_504_ut() {
    let up = FaultyUpstream::start("v1", |_| Fault::Blackhole);
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, log) = start_proxy(dir.path(), up.addr.port(), "    timeout: 500ms\n");
    let started = Instant::now();
    let r = http::get(proxy.listen, "model", "/").expect("request");
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.body, "upstream request timeout");
    assert!(logged(&log, 504).contains(" UT "));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
    // Held connections to the black hole do not wedge the proxy: the next one times out too.
    let again = http::get(proxy.listen, "model", "/").expect("request");
    assert_eq!(again.status, 504);
    assert_eq!(
        up.requests(),
        2,
        "a route timeout is not retried by default"
    );
}

#[test]
fn slow_headers_hit_the_per_try_timeout_and_the_retry_succeeds() {
    let up = FaultyUpstream::start("v1", |n| {
        if n == 0 {
            Fault::SlowHeaders(Duration::from_secs(3))
        } else {
            Fault::Ok
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let retries = "    retries: {attempts: 2, perTryTimeout: 300ms, retryOn: gateway-error}\n";
    let (proxy, _log) = start_proxy(dir.path(), up.addr.port(), retries);
    let started = Instant::now();
    let r = http::get(proxy.listen, "model", "/").expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the slow try was abandoned"
    );
    assert_eq!(up.requests(), 2);
}

#[test]
fn a_truncated_body_cuts_the_client_connection_and_the_next_request_works() {
    let up = FaultyUpstream::start("v1", |n| if n == 0 { Fault::Truncated } else { Fault::Ok });
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, _log) = start_proxy(dir.path(), up.addr.port(), "");
    let mut client = TcpStream::connect(proxy.listen).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: model\r\n\r\n")
        .expect("send");
    let mut got = Vec::new();
    let read = client.read_to_end(&mut got);
    assert!(read.is_ok(), "the proxy closed the connection: {read:?}");
    let text = String::from_utf8_lossy(&got);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        body.len() < 100,
        "the client never gets a body longer than what the upstream sent: {text}"
    );
    let r = http::get(proxy.listen, "model", "/").expect("next request");
    assert_eq!(r.status, 200);
}

#[test]
fn a_dead_canary_pod_costs_no_client_errors() {
    let stable = FaultyUpstream::start("v1", |_| Fault::Ok);
    let canary_ok = FaultyUpstream::start("v2", |_| Fault::Ok);
    let dead = augur_tests::RefusedPort::new(); // nothing listens there
    let dead_port = dead.port;
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - route:\n    - destination: {host: model, subset: v1}\n      weight: 50\n    \
         - destination: {host: model, subset: v2}\n      weight: 50\n",
    );
    let rest = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: model}}\nspec:\n  host: model\n  \
         trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}}\n  \
         subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]\n\
         ---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: model}}\nspec:\n  hosts: [model]\n  \
         ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  \
         - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v1}}}}\n  \
         - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v2}}}}\n  \
         - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v2}}}}\n",
        stable.addr.port(),
        canary_ok.addr.port(),
        dead_port
    );
    let proxy = Proxy::start(&[&write(dir.path(), &[&vs, &rest])]);
    let statuses: Vec<u16> = (0..200)
        .map(|_| {
            http::get(proxy.listen, "model", "/")
                .expect("request")
                .status
        })
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a client saw an error: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert!(canary_ok.requests() > 50, "the live canary pod served");
    assert!(
        proxy.metric("augur_outlier_ejections_total") >= 1.0,
        "the dead pod was ejected"
    );
}
