//! The Prometheus metric source, against a real Prometheus server scraping real augur
//! sidecars every second: a rollout that serves no traffic itself judges the fleet's evidence
//! (the sidecars' `augur_rollout_*` series, summed over them), promotes a healthy canary, rolls
//! back one that fails across the fleet, and holds while Prometheus does not answer.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::http::Connection;
use augur_tests::policy::{canary_policy, primary_route, service, virtual_service, write};
use augur_tests::prometheus::Prometheus;
use augur_tests::upstream::{Answer, Upstream};
use augur_tests::wait_for;

/// The rollout's process (A): stable v1 and canary v2, analysis read from Prometheus in 2-s
/// windows 2 s behind (the test Prometheus scrapes every second), an error-rate trigger.
fn rollout_policy(
    dir: &Path,
    v1: &Upstream,
    v2: &Upstream,
    prometheus: &str,
    steps: &str,
    analysis: &str,
) -> PathBuf {
    let vs = virtual_service("model", &primary_route("model"));
    let canary = format!(
        r#"  steps:
{steps}  analysis:
    source:
      prometheus: {{address: "http://{prometheus}", scrapeLag: 2s}}
    interval: 2s
    minSamples: 30
{analysis}    metrics:
    - {{name: error-rate, kind: errorRate, allowedChange: {{absolute: 5}}, critical: true}}
  rollback:
    triggers:
    - {{name: fleet-errors, metric: errorRate, condition: {{above: 10}}, window: 8s, action: immediate}}
"#
    );
    let canary = canary_policy("model", &canary);
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    write(dir, &[&vs, &svc, &canary])
}

/// A sidecar of the fleet: the same CanaryPolicy, held at 50% (its own analysis never has
/// enough samples to act), exporting its evidence for Prometheus.
fn sidecar(dir: &Path, v1: &Upstream, v2: &Upstream) -> Proxy {
    let vs = virtual_service("model", &primary_route("model"));
    let canary = canary_policy(
        "model",
        "  steps:\n  - setWeight: 50\n  - pause: {}\n  analysis:\n    minSamples: 1000000\n    metrics:\n    - {name: error-rate, kind: errorRate}\n",
    );
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    Proxy::start(&[&write(dir, &[&vs, &svc, &canary])])
}

fn status(proxy: &Proxy) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/rollouts").body).expect("JSON");
    all["rollouts"][0].clone()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const STEPS: &str = "  - setWeight: 50\n  - analysis: {}\n  - setWeight: 100\n";

/// What the test got back through one sidecar, by the model version that answered:
/// `(answers, of which 5xx)`.
type Answers = BTreeMap<String, (usize, usize)>;

/// Sends `GET /predict` through `conn` and counts the answer under its model version.
fn send(conn: &mut Connection, answers: &mut Answers) {
    let r = conn.get("model", "/predict").expect("request");
    let body: serde_json::Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("not a model's answer ({e}): {} {}", r.status, r.body));
    let version = body["model_version"]
        .as_str()
        .unwrap_or_else(|| panic!("no model_version: {}", r.body));
    let counted = answers.entry(version.to_owned()).or_default();
    counted.0 += 1;
    counted.1 += usize::from(r.status >= 500);
}

/// Two sidecars carry the traffic and a real Prometheus scrapes them; A, which serves nothing,
/// runs the rollout on what Prometheus says. Requests go through both sidecars until A leaves
/// `progressing`; returns A's status then, after checking that each sidecar exported exactly
/// the requests the test sent through it, per arm and outcome.
fn run_fleet(v2: Upstream) -> serde_json::Value {
    let v1 = Upstream::start("v1");
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let b = [
        sidecar(dirs[1].path(), &v1, &v2),
        sidecar(dirs[2].path(), &v1, &v2),
    ];
    let prometheus = Prometheus::start_on_loopback(&[b[0].prometheus, b[1].prometheus]);
    let a = Proxy::start(&[&rollout_policy(
        dirs[0].path(),
        &v1,
        &v2,
        &prometheus.addr.to_string(),
        STEPS,
        "",
    )]);
    let mut conns: Vec<Connection> = b
        .iter()
        .map(|p| Connection::open(p.listen).expect("connect"))
        .collect();
    let mut answers = [Answers::new(), Answers::new()];
    let st = wait_for(
        "a decision on the fleet's evidence",
        Duration::from_secs(120),
        || {
            for _ in 0..20 {
                for (c, got) in conns.iter_mut().zip(&mut answers) {
                    send(c, got);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
            let st = status(&a);
            (st["state"]["phase"] != "progressing").then_some(st)
        },
    );
    // Each sidecar exported exactly what the test sent through it, per arm and outcome (a
    // request is counted once its response is sent: wait for the total first); A forwarded
    // none: what it judged came from the fleet, through Prometheus.
    for (i, (sidecar, got)) in b.iter().zip(&answers).enumerate() {
        for (arm, version) in [("stable", "v1"), ("canary", "v2")] {
            let (sent, errors) = got.get(version).copied().unwrap_or_default();
            assert!(sent > 0, "sidecar {i} sent {arm} nothing: {got:?}");
            let requests =
                format!("augur_rollout_requests_total{{policy=\"default/model\",arm=\"{arm}\"}}");
            assert_eq!(
                sidecar.wait_for_metric(&requests, sent as f64),
                sent as f64,
                "sidecar {i}'s {arm} requests: {got:?}"
            );
            assert_eq!(
                sidecar.metric(&format!(
                    "augur_rollout_requests_total{{policy=\"default/model\",arm=\"{arm}\",outcome=\"error\"}}"
                )),
                errors as f64,
                "sidecar {i}'s {arm} errors: {got:?}"
            );
            assert_eq!(
                sidecar.wait_for_metric(
                    &format!("istio_requests_total{{destination_version=\"{version}\"}}"),
                    sent as f64
                ),
                sent as f64,
                "sidecar {i}'s Istio count for {version}: {got:?}"
            );
        }
    }
    for (version, upstream) in [("v1", &v1), ("v2", &v2)] {
        let sent: usize = answers
            .iter()
            .map(|got| got.get(version).map_or(0, |c| c.0))
            .sum();
        assert_eq!(upstream.served(), sent, "{version} served what was sent");
    }
    assert_eq!(
        augur_tests::metrics::count(&a.metrics_text(), "augur_rollout_requests_total"),
        0,
        "A served nothing"
    );
    st
}

#[test]
fn a_healthy_canary_is_promoted_on_the_fleets_evidence() {
    let st = run_fleet(Upstream::start("v2"));
    assert_eq!(st["state"]["phase"], "promoted", "{st}");
    let verdict = &st["decisions"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["to"]["phase"] == "promoted"))
        .expect("the promotion")["verdicts"][0];
    assert_eq!(verdict["outcome"], "pass", "{st}");
    assert!(verdict["n_canary"].as_u64().unwrap_or(0) >= 30, "{st}");
    assert!(st["source"]["evidence_until"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn a_canary_failing_across_the_fleet_is_rolled_back() {
    // v2 fails a third of its requests, whichever sidecar sends them.
    let v2 = Upstream::scripted("v2", |n| Answer {
        status: if n % 3 == 0 { 503 } else { 200 },
        delay: Duration::ZERO,
    });
    let st = run_fleet(v2);
    assert_eq!(st["state"]["phase"], "rolled_back", "{st}");
    assert_eq!(st["weights"]["canary"], 0);
    let reason = st["state"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("fleet-errors") || reason.contains("error-rate"),
        "rolled back for the errors: {st}"
    );
}

/// Prometheus not answering (nothing listens, or it accepts and never answers) holds the
/// rollout at its step: with a timed pause and `onNoData: continue`, which would both move it
/// on, it stays at 50% while the failed reads are counted.
#[test]
fn prometheus_down_or_silent_holds_the_rollout_and_never_promotes() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let refused = augur_tests::RefusedPort::new();
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let steps = "  - setWeight: 50\n  - pause: {duration: 2s}\n  - setWeight: 100\n";
    let analysis = "    onNoData: continue\n    consecutiveErrorLimit: 0\n";
    let dirs: Vec<_> = (0..2)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let down = Proxy::start(&[&rollout_policy(
        dirs[0].path(),
        &v1,
        &v2,
        &loopback(refused.port).to_string(),
        steps,
        analysis,
    )]);
    let slow = Proxy::start(&[&rollout_policy(
        dirs[1].path(),
        &v1,
        &v2,
        &silent.local_addr().expect("addr").to_string(),
        steps,
        analysis,
    )]);
    for (what, proxy, failures) in [("down", &down, 5), ("silent", &slow, 2)] {
        // Each failure is a read of a window that ended more than 2 s before: more failures
        // than the pause is long in seconds means the pause would have ended.
        let st = wait_for(
            &format!("{what}: failed reads"),
            Duration::from_secs(60),
            || {
                let st = status(proxy);
                (st["source"]["failures"].as_u64().unwrap_or(0) >= failures).then_some(st)
            },
        );
        assert_eq!(st["state"]["phase"], "progressing", "{what}: {st}");
        assert_eq!(st["weights"]["canary"], 50, "{what}: held at its step");
        assert!(
            !st["decisions"].to_string().contains("promoted"),
            "{what}: never promoted: {st}"
        );
        assert!(
            st["source"]["last_error"].as_str().is_some(),
            "{what}: {st}"
        );
        assert!(
            proxy.metric("augur_metric_source_errors_total{policy=\"default/model\"}")
                >= failures as f64
        );
    }
    drop(silent);
}

/// A Prometheus that answers, but holds nothing of this policy (no traffic): the windows are
/// read empty, the analysis sees no new samples, and `onNoData: hold` pauses the rollout.
#[test]
fn prometheus_without_evidence_pauses_the_rollout_for_lack_of_data() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let prometheus = Prometheus::start_on_loopback(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Proxy::start(&[&rollout_policy(
        dir.path(),
        &v1,
        &v2,
        &prometheus.addr.to_string(),
        STEPS,
        "    consecutiveErrorLimit: 1\n    onNoData: hold\n",
    )]);
    let st = wait_for("the hold for lack of data", Duration::from_secs(60), || {
        let st = status(&a);
        (st["state"]["phase"] == "paused").then_some(st)
    });
    assert_eq!(
        st["state"]["reason"]["no_data"]["metric"], "error-rate",
        "{st}"
    );
    assert_eq!(st["weights"]["canary"], 50, "held at the current step");
    assert_eq!(
        st["source"]["failures"], 0,
        "Prometheus answered every read"
    );
    assert_eq!(
        a.metric("augur_metric_source_errors_total{policy=\"default/model\"}"),
        0.0
    );
}
