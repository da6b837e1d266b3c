//! Request limits answered with Envoy's local replies (statuses, bodies and flags checked
//! against Envoy 1.40 by hand, see docs/hardening.md): too many or too large headers `431`,
//! a long URI `414`, a body over the limit `413` (by Content-Length and while streaming),
//! `Content-Length` with `Transfer-Encoding` `400`, and connections over `--max-connections`
//! shed with a fast `503` flagged `OM`. The origin never sees a rejected request.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::echo_origin::{exchange, model_policy, peak_rss_kib, EchoOrigin};

const WAIT: Duration = Duration::from_secs(3);

fn get_with_headers(n: usize) -> Vec<u8> {
    let mut raw = b"GET /h HTTP/1.1\r\nHost: model\r\n".to_vec();
    for i in 1..n {
        raw.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

fn assert_local_reply(raw: &str, status: &str, body: &str) {
    assert!(
        raw.starts_with(&format!("HTTP/1.1 {status}\r\n")),
        "want {status}, got {raw:?}"
    );
    let lower = raw.to_ascii_lowercase();
    assert!(lower.contains("\r\nserver: envoy\r\n"), "{raw:?}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{raw:?}");
    assert!(raw.ends_with(body), "body {body:?} in {raw:?}");
}

fn assert_headers_too_large(raw: &str) {
    assert_local_reply(
        raw,
        "431 Request Header Fields Too Large",
        "Request Header Fields Too Large",
    );
}

#[test]
fn header_uri_body_and_framing_limits_answer_like_envoy() {
    let origin = EchoOrigin::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let policy = model_policy(dir.path(), origin.addr);
    let proxy = Proxy::start_with_args(
        &[&policy],
        &[
            "--max-request-body-bytes",
            "1000",
            "--max-request-uri-bytes",
            "8192",
            "--access-log",
            log.to_str().expect("utf-8 path"),
        ],
    );
    let addr = proxy.listen;
    let mut tried = 0;

    // 100 headers (Host included) pass, 101 do not.
    let ok = exchange(addr, &get_with_headers(100), WAIT);
    assert_eq!(ok.statuses(), vec![200], "{}", ok.text());
    let too_many = exchange(addr, &get_with_headers(101), WAIT);
    assert_headers_too_large(&too_many.text());
    assert!(too_many.closed);
    tried += 2;

    // 60 KiB of headers pass, more do not (the request line counts).
    let big = |n: usize| {
        format!(
            "GET /h HTTP/1.1\r\nHost: model\r\nx-big: {}\r\n\r\n",
            "a".repeat(n)
        )
    };
    assert_eq!(
        exchange(addr, big(60 * 1024 - 100).as_bytes(), WAIT).statuses(),
        vec![200]
    );
    let too_big = exchange(addr, big(61 * 1024).as_bytes(), WAIT);
    assert_headers_too_large(&too_big.text());
    tried += 2;

    // Past pingora's own ceiling (256 headers; 1 MiB of head) the answer is Envoy's 431 too,
    // not pingora's 400: the connection watches the head as it is read. pingora never makes
    // a request of these; the connection logs and counts them itself (no method or path).
    let r = exchange(addr, &get_with_headers(300), WAIT);
    assert_headers_too_large(&r.text());
    assert!(r.closed);
    let r = exchange(addr, big(2 * 1024 * 1024).as_bytes(), WAIT);
    assert_headers_too_large(&r.text());
    assert!(r.closed);
    tried += 2;

    // 8 KiB of request target pass, more are 414.
    let uri = |n: usize| format!("GET /{} HTTP/1.1\r\nHost: model\r\n\r\n", "u".repeat(n));
    assert_eq!(
        exchange(addr, uri(8 * 1024 - 1).as_bytes(), WAIT).statuses(),
        vec![200]
    );
    let long = exchange(addr, uri(9 * 1024).as_bytes(), WAIT);
    assert_local_reply(&long.text(), "414 URI Too Long", "URI Too Long");
    tried += 2;

    // A declared body over the limit: 413 before anything is forwarded, the body unread.
    let declared = format!(
        "POST /declared HTTP/1.1\r\nHost: model\r\nContent-Length: 5000\r\n\r\n{}",
        "b".repeat(5000)
    );
    let r = exchange(addr, declared.as_bytes(), WAIT);
    assert_local_reply(&r.text(), "413 Payload Too Large", "Payload Too Large");
    assert!(r.closed);
    tried += 1;

    // A chunked body that grows past the limit: 413 as soon as it does.
    let chunk = format!("3e8\r\n{}\r\n", "c".repeat(1000));
    let streamed = format!(
        "POST /streamed HTTP/1.1\r\nHost: model\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    let r = exchange(addr, streamed.as_bytes(), WAIT);
    assert_eq!(r.statuses(), vec![413], "{}", r.text());
    assert!(r.closed);
    tried += 1;

    // Content-Length and Transfer-Encoding together: Envoy's 400, whatever their order.
    for raw in [
        "POST /clte HTTP/1.1\r\nHost: model\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /clte HTTP/1.1\r\nHost: model\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    ] {
        let r = exchange(addr, raw.as_bytes(), WAIT);
        assert_local_reply(&r.text(), "400 Bad Request", "Bad Request");
        tried += 1;
    }

    // None of the rejected requests reached the origin; the three good ones did.
    let seen: Vec<String> = origin.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen
        .iter()
        .all(|t| !["/declared", "/streamed", "/clte"].contains(&t.as_str())));

    // Each local reply is in the access log with Envoy's flag.
    let lines = augur_tests::wait_for("the access log", Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.lines().count() >= tried).then_some(text)
    });
    for want in [" 431 DPE ", " 414 DPE ", " 413 - ", " 400 DPE "] {
        assert!(lines.contains(want), "{want:?} not in {lines}");
    }
    let refused_by_connection = lines
        .lines()
        .filter(|l| l.contains("\"- - HTTP/1.1\" 431 DPE "))
        .count();
    assert_eq!(refused_by_connection, 2, "{lines}");
    // So are Istio's metrics: four 431s, two from each place that answers them.
    assert_eq!(
        proxy.metric("istio_requests_total{response_code=\"431\",response_flags=\"DPE\"}"),
        4.0,
        "{}",
        proxy.metrics_text()
    );
    println!(
        "FIGURES class=limits tried={tried} failures=0 peak_rss_kib={}",
        peak_rss_kib(proxy.pid())
    );
}

#[test]
fn connections_over_the_limit_are_shed_fast_with_503_om() {
    let origin = EchoOrigin::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = model_policy(dir.path(), origin.addr);
    let proxy = Proxy::start_with_args(&[&policy], &["--max-connections", "3"]);
    let addr = proxy.listen;
    // Three clients hold connections (idle, nothing sent yet).
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    augur_tests::wait_for(
        "the three connections counted",
        Duration::from_secs(20),
        || (proxy.metric("augur_downstream_connections_active") == 3.0).then_some(()),
    );
    let started = Instant::now();
    let shed = exchange(
        addr,
        b"GET /over HTTP/1.1\r\nHost: model\r\n\r\n",
        Duration::from_secs(5),
    );
    let took = started.elapsed();
    assert_local_reply(&shed.text(), "503 Service Unavailable", "envoy overloaded");
    assert!(
        shed.text()
            .to_ascii_lowercase()
            .contains("\r\nx-envoy-overloaded: true\r\n"),
        "{}",
        shed.text()
    );
    assert!(took < Duration::from_secs(1), "shed in {took:?}, not fast");
    assert!(origin.requests().is_empty());

    // The held connections are served, and once they are gone new ones are too.
    let mut first = held.into_iter().next().expect("a held connection");
    first
        .write_all(b"GET /held HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut first, &mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // (the other two held connections were dropped with the iterator)
    let after = augur_tests::wait_for("capacity again", Duration::from_secs(5), || {
        let r = exchange(
            addr,
            b"GET /after HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n",
            WAIT,
        );
        (r.statuses() == vec![200]).then_some(r)
    });
    assert!(after.text().ends_with("echo GET /after"));
    assert_eq!(
        proxy.metric("istio_requests_total{response_code=\"503\",response_flags=\"OM\"}"),
        1.0,
        "the one shed request is in the metrics"
    );
}

#[test]
fn an_api_protection_lowers_the_body_limit_on_its_routes_only() {
    let origin = EchoOrigin::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // Route `upload` takes bodies up to 1,000 bytes; the other route keeps the proxy's limit.
    let routes = "  - name: upload\n    match: [{uri: {prefix: /upload}}]\n    route:\n    - destination: {host: model, subset: v1}\n  \
                  - name: rest\n    route:\n    - destination: {host: model, subset: v1}\n";
    let protection = "apiVersion: augur.dev/v1alpha1\nkind: ApiProtection\nmetadata: {name: upload-size}\n\
                      spec:\n  virtualService: {name: model, routes: [upload]}\n  maxRequestBodyBytes: 1000\n";
    let policy = augur_tests::policy::write(
        dir.path(),
        &[
            &augur_tests::policy::service("model", &[("v1", origin.addr.port())]),
            &augur_tests::policy::virtual_service("model", routes),
            protection,
        ],
    );
    let proxy = Proxy::start(&[&policy]);
    let post = |path: &str, n: usize| {
        let mut raw = format!("POST {path} HTTP/1.1\r\nHost: model\r\nContent-Length: {n}\r\n\r\n")
            .into_bytes();
        raw.extend(std::iter::repeat_n(b'x', n));
        exchange(proxy.listen, &raw, WAIT)
    };
    let small = post("/upload", 1000);
    assert_eq!(small.statuses(), vec![200], "{}", small.text());
    let large = post("/upload", 1001);
    assert_local_reply(&large.text(), "413 Payload Too Large", "Payload Too Large");
    let elsewhere = post("/other", 5000);
    assert_eq!(
        elsewhere.statuses(),
        vec![200],
        "the limit is the route's only"
    );

    // A chunked body has no Content-Length: it is cut once it passes the route's limit.
    let mut chunked =
        b"POST /upload HTTP/1.1\r\nHost: model\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"258\r\n");
        chunked.extend(std::iter::repeat_n(b'y', 600));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = exchange(proxy.listen, &chunked, WAIT);
    assert!(
        streamed.text().starts_with("HTTP/1.1 413"),
        "{}",
        streamed.text()
    );
    let seen: Vec<String> = origin.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(
        seen.iter().filter(|t| t.starts_with("/upload")).count(),
        1,
        "only the accepted upload reached the origin in full: {seen:?}"
    );
}
