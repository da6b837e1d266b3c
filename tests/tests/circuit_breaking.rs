//! DestinationRule `connectionPool` limits act as Envoy's circuit breakers: requests beyond
//! them get a fast 503 with flag UO and `x-envoy-overloaded: true`, never a queue that grows
//! with the load; `maxRequestsPerConnection: 1` opens one upstream connection per request.
//! A shed request is answered and counted, not logged at ERROR, and the log never holds its
//! path or query string.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::http::{self, Response};
use augur_tests::upstream::{Answer, Upstream};

/// An upstream that takes `delay` to answer each request.
fn slow(version: &str, delay: Duration) -> Upstream {
    Upstream::scripted(version, move |_| Answer { status: 200, delay })
}

/// A host with one STATIC endpoint, the DestinationRule `pool` (flow YAML for
/// `connectionPool`) and a route to it.
fn host(name: &str, upstream: &Upstream, pool: &str) -> String {
    let port = upstream.addr.port();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\n\
         spec:\n  hosts: [{name}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  \
         resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n\
         spec:\n  host: {name}\n  trafficPolicy: {{connectionPool: {pool}}}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n\
         spec:\n  hosts: [{name}]\n  http:\n  - route: [{{destination: {{host: {name}}}}}]\n"
    )
}

/// A query string that stands for patient data: it must never reach the proxy's log.
const MARKED: &str = "/?patient=PHI-MARK-4711";

/// Sends `n` requests to `host` at the same moment; each answer with how long it took.
fn burst(proxy: &Proxy, host: &'static str, n: usize) -> Vec<(Response, Duration)> {
    let barrier = Arc::new(Barrier::new(n));
    let listen = proxy.listen;
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let r = http::get(listen, host, MARKED).expect("request through augur");
                (r, start.elapsed())
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

#[test]
fn requests_beyond_the_connection_pool_get_a_fast_503_uo() {
    let delay = Duration::from_secs(2);
    let (pending, concurrent) = (slow("v1", delay), slow("v1", delay));
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    let documents = [
        host(
            "pending",
            &pending,
            "{tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}",
        ),
        host("concurrent", &concurrent, "{http: {http2MaxRequests: 2}}"),
    ];
    std::fs::write(&policy, documents.join("---\n")).expect("write policy");
    let log = dir.path().join("augur.log");
    let mut proxy = Proxy::start_logging_to(&[&policy], &log);

    // One connection and one waiting request: of four at once, two are served (one after the
    // other) and two are shed at once.
    let answers = burst(&proxy, "pending", 4);
    let shed: Vec<_> = answers.iter().filter(|(r, _)| r.status == 503).collect();
    let served = answers.iter().filter(|(r, _)| r.status == 200).count();
    assert_eq!((served, shed.len()), (2, 2), "{answers:?}");
    for (r, took) in &shed {
        assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
        assert_eq!(
            r.body,
            "upstream connect error or disconnect/reset before headers. reset reason: overflow"
        );
        assert!(
            *took < delay,
            "shed without waiting for the upstream: {took:?}"
        );
    }
    assert_eq!(
        pending.served(),
        2,
        "the shed requests never reached the model"
    );

    // At most two requests in flight whatever the protocol.
    let answers = burst(&proxy, "concurrent", 3);
    let codes: Vec<u16> = answers.iter().map(|(r, _)| r.status).collect();
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 1, "{codes:?}");
    assert_eq!(concurrent.served(), 2);

    // A request is counted once its response is sent: wait for the count, then check it.
    let uo = r#"istio_requests_total{response_flags="UO"}"#;
    assert_eq!(
        proxy.wait_for_metric(uo, 3.0),
        3.0,
        "UO responses are counted with their flag"
    );
    assert_eq!(
        proxy.wait_for_metric(r#"istio_requests_total{response_code="200"}"#, 4.0),
        4.0,
        "the served ones too"
    );
    proxy.stop();
    let text = std::fs::read_to_string(&log).expect("the proxy's log");
    assert!(
        !text.contains("PHI-MARK") && !text.lines().any(|l| l.contains("ERROR")),
        "a shed request is nothing a person must act on, and its query string is never logged:\n{text}"
    );
}

#[test]
fn one_request_per_connection_closes_each_upstream_connection() {
    let upstream = Upstream::start("v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        host("single", &upstream, "{http: {maxRequestsPerConnection: 1}}"),
    )
    .expect("write policy");
    let proxy = Proxy::start(&[&policy]);
    for _ in 0..3 {
        assert_eq!(
            http::get(proxy.listen, "single", "/")
                .expect("request")
                .status,
            200
        );
    }
    let received = upstream.received();
    assert_eq!(received.len(), 3);
    assert!(
        received
            .iter()
            .all(|r| r.header("connection") == Some("close")),
        "every upstream request asks to close its connection"
    );
}
