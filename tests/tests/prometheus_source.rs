//! The Prometheus metric source, against a real Prometheus server scraping two augur sidecars:
//! fleet-wide evidence promotes a healthy canary; Prometheus down, slow or empty never promotes,
//! counts source errors and acts on `onNoData` past the consecutive-error limit.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::http::Connection;
use augur_tests::policy::{canary_policy, primary_route, service, virtual_service, write};
use augur_tests::prometheus::Prometheus;
use augur_tests::upstream::Upstream;
use augur_tests::{free_port, wait_for};

/// The sidecar that runs the rollout: stable v1 at 100, canary v2 at 0, analysis from Prometheus.
fn rollout_policy(
    dir: &std::path::Path,
    v1: &Upstream,
    v2: &Upstream,
    prometheus: &str,
    analysis: &str,
) -> PathBuf {
    let vs = virtual_service("model", &primary_route("model"));
    let canary = format!(
        r#"  steps:
  - setWeight: 50
  - analysis: {{}}
  - setWeight: 100
  analysis:
    source:
      prometheus: {{address: "http://{prometheus}"}}
    minSamples: 20
{analysis}    metrics:
    - {{name: error-rate, kind: errorRate, allowedChange: {{absolute: 5}}}}
"#
    );
    let canary = canary_policy("model", &canary);
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    write(dir, &[&vs, &svc, &canary])
}

fn status(proxy: &Proxy) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/rollouts").body).expect("JSON");
    all["rollouts"][0].clone()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn fleet_wide_evidence_from_prometheus_promotes_a_healthy_canary() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let prom_addr = loopback(free_port());
    // The rollout sidecar (A) serves no traffic itself: only Prometheus can tell it anything.
    let dir_a = tempfile::tempdir().expect("tempdir");
    let analysis = "    interval: 5s\n    consecutiveErrorLimit: 100\n";
    let a = Proxy::start(&[&rollout_policy(
        dir_a.path(),
        &v1,
        &v2,
        &prom_addr.to_string(),
        analysis,
    )]);
    // Another sidecar of the fleet (B) splits 50/50 and carries the traffic.
    let dir_b = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - route:\n    - destination: {host: model, subset: v1}\n      weight: 50\n    - destination: {host: model, subset: v2}\n      weight: 50\n",
    );
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let b = Proxy::start(&[&write(dir_b.path(), &[&vs, &svc])]);
    let _prometheus = Prometheus::start(prom_addr, &[a.prometheus, b.prometheus]);

    let mut conn = Connection::open(b.listen).expect("connect");
    let mut sent = 0usize;
    wait_for(
        "promotion on Prometheus evidence",
        Duration::from_secs(90),
        || {
            for _ in 0..40 {
                assert_eq!(conn.get("model", "/predict").expect("request").status, 200);
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(200));
            (status(&a)["state"]["phase"] == "promoted").then_some(())
        },
    );
    let st = status(&a);
    let verdict = &st["verdicts"][0];
    assert!(verdict["n_stable"].as_u64().unwrap_or(0) >= 20, "{st}");
    assert!(verdict["n_canary"].as_u64().unwrap_or(0) >= 20, "{st}");
    // B counted every request it forwarded, by version; A, which the evidence was about,
    // forwarded and counted none: what it knew came from the fleet, through Prometheus.
    assert_eq!(v1.served() + v2.served(), sent);
    for (version, upstream) in [("v1", &v1), ("v2", &v2)] {
        assert_eq!(
            b.metric(&format!(
                "istio_requests_total{{destination_version=\"{version}\",response_code=\"200\"}}"
            )),
            upstream.served() as f64,
            "B's count of requests to {version}"
        );
    }
    assert_eq!(b.metric("istio_requests_total"), sent as f64);
    assert_eq!(
        augur_tests::metrics::count(&a.metrics_text(), "istio_requests_total"),
        0,
        "A forwarded nothing: its evidence came from the fleet"
    );
}

#[test]
fn prometheus_down_never_promotes_and_rolls_back_past_the_error_limit() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let refused = augur_tests::RefusedPort::new();
    let closed = loopback(refused.port);
    let dir = tempfile::tempdir().expect("tempdir");
    let analysis = "    interval: 1s\n    consecutiveErrorLimit: 2\n    onNoData: rollback\n";
    let a = Proxy::start(&[&rollout_policy(
        dir.path(),
        &v1,
        &v2,
        &closed.to_string(),
        analysis,
    )]);
    wait_for(
        "the rollback for lack of data",
        Duration::from_secs(30),
        || (status(&a)["state"]["phase"] == "rolled_back").then_some(()),
    );
    let st = status(&a);
    assert!(
        st["state"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no data"),
        "{st}"
    );
    assert!(
        !st["decisions"].to_string().contains("\"promoted\""),
        "never promoted: {st}"
    );
    assert!(a.metric("augur_metric_source_errors_total{policy=\"default/model\"}") >= 1.0);
    assert_eq!(st["weights"]["canary"], 0);
}

#[test]
fn prometheus_slow_or_empty_holds_the_rollout() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    // Slow: a listener that accepts (kernel backlog) and never answers.
    let slow = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = tempfile::tempdir().expect("tempdir");
    let analysis = "    interval: 1s\n    consecutiveErrorLimit: 1\n    onNoData: hold\n";
    let slow_proxy = Proxy::start(&[&rollout_policy(
        dir.path(),
        &v1,
        &v2,
        &slow.local_addr().expect("addr").to_string(),
        analysis,
    )]);
    // Empty: a real Prometheus that scrapes nothing augur exports.
    let prom_addr = loopback(free_port());
    let _prometheus = Prometheus::start(prom_addr, &[]);
    let dir2 = tempfile::tempdir().expect("tempdir");
    let empty_proxy = Proxy::start(&[&rollout_policy(
        dir2.path(),
        &v1,
        &v2,
        &prom_addr.to_string(),
        analysis,
    )]);

    for (what, proxy) in [("empty", &empty_proxy), ("slow", &slow_proxy)] {
        wait_for(
            &format!("{what}: the hold for lack of data"),
            Duration::from_secs(40),
            || {
                let st = status(proxy);
                (st["state"]["phase"] == "paused").then_some(())
            },
        );
        let st = status(proxy);
        assert_eq!(
            st["state"]["reason"]["no_data"]["metric"], "error-rate",
            "{what}: {st}"
        );
        assert_eq!(
            st["weights"]["canary"], 50,
            "{what}: held at the current step"
        );
    }
    wait_for(
        "the slow read to time out and be counted",
        Duration::from_secs(20),
        || {
            let errors =
                slow_proxy.metric("augur_metric_source_errors_total{policy=\"default/model\"}");
            (errors >= 1.0).then_some(())
        },
    );
    assert_eq!(
        empty_proxy.metric("augur_metric_source_errors_total{policy=\"default/model\"}"),
        0.0
    );
    drop(slow);
}
