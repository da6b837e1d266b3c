//! Mirroring: copies are fire-and-forget (a slow, failing or saturated shadow never delays or
//! fails the primary), drops are counted, the copy carries the request's id and body, and the
//! embedded shadow model scores mirrored X-rays into the rollout's samples.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::http;
use augur_tests::policy::{canary_policy, primary_route, service, virtual_service, write};
use augur_tests::upstream::{Answer, Upstream};
use augur_tests::wait_for;

/// `model` routes to v1 and mirrors `percentage` of requests to the `shadow` subset.
fn mirror_policy(dir: &Path, primary: &Upstream, shadow_port: u16, percentage: u32) -> PathBuf {
    let vs = virtual_service(
        "model",
        &format!(
            "  - name: main\n    route: [{{destination: {{host: model, subset: v1}}}}]\n    \
             mirror: {{host: model, subset: shadow}}\n    mirrorPercentage: {{value: {percentage}}}\n"
        ),
    );
    let svc = service(
        "model",
        &[("v1", primary.addr.port()), ("shadow", shadow_port)],
    );
    write(dir, &[&vs, &svc])
}

fn post(addr: std::net::SocketAddr, body: &str, id: &str) -> http::Response {
    let raw = format!(
        "POST /predict HTTP/1.1\r\nHost: model\r\nx-request-id: {id}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http::request(addr, &raw).expect("request")
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

fn timed(proxy: &Proxy, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let start = Instant::now();
            assert_eq!(post(proxy.listen, "{}", &format!("t{i}")).status, 200);
            start.elapsed()
        })
        .collect()
}

#[test]
fn the_copy_carries_the_request_id_and_body_and_its_answer_is_counted() {
    let (primary, shadow) = (Upstream::start("v1"), Upstream::start("shadow"));
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(&[&mirror_policy(
        dir.path(),
        &primary,
        shadow.addr.port(),
        100,
    )]);
    let resp = post(proxy.listen, r#"{"image": "abc"}"#, "req-42");
    assert!(
        resp.body.contains("\"v1\""),
        "the client sees the primary's answer"
    );
    wait_for("the mirror copy", Duration::from_secs(10), || {
        (shadow.served() == 1).then_some(())
    });
    let copy = &shadow.received()[0];
    assert_eq!(copy.header("x-request-id"), Some("req-42"));
    assert_eq!(
        copy.header("host"),
        Some("model"),
        "no -shadow suffix by default (Istio 1.28+)"
    );
    assert_eq!(copy.body, br#"{"image": "abc"}"#);
    wait_for("the mirror answer counted", Duration::from_secs(10), || {
        (proxy.metric("augur_mirror_requests_total{outcome=\"answered\"}") == 1.0).then_some(())
    });
    let metrics = http::get(proxy.prometheus, "localhost", "/stats/prometheus")
        .expect("metrics")
        .body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("destination_version=\"shadow\"")),
        "mirrored requests are counted under the shadow destination"
    );
}

#[test]
fn a_slow_or_failing_shadow_never_delays_or_fails_the_primary() {
    let primary = Upstream::start("v1");
    let slow = Upstream::scripted("shadow", |_| Answer {
        status: 200,
        delay: Duration::from_secs(2),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let off = Proxy::start(&[&mirror_policy(dir.path(), &primary, slow.addr.port(), 0)]);
    let baseline = p99(timed(&off, 200));
    drop(off);
    let dir = tempfile::tempdir().expect("tempdir");
    let on = Proxy::start(&[&mirror_policy(dir.path(), &primary, slow.addr.port(), 100)]);
    let mirrored = timed(&on, 200);
    let slowest = mirrored.iter().max().copied().unwrap_or_default();
    eprintln!(
        "primary p99 with 100% mirroring to a 2 s shadow: {:?}, without: {:?} (ratio {:.2})",
        p99(mirrored.clone()),
        baseline,
        p99(mirrored).as_secs_f64() / baseline.as_secs_f64().max(1e-6)
    );
    assert!(
        slowest < Duration::from_secs(1),
        "no primary waited for the 2 s shadow: {slowest:?}"
    );

    // A shadow that refuses connections: primaries still all succeed.
    let dir = tempfile::tempdir().expect("tempdir");
    let refused_port = augur_tests::RefusedPort::new();
    let refused = refused_port.port;
    let failing = Proxy::start(&[&mirror_policy(dir.path(), &primary, refused, 100)]);
    assert!(timed(&failing, 50)
        .iter()
        .all(|d| *d < Duration::from_secs(1)));
    wait_for("failed mirrors counted", Duration::from_secs(10), || {
        (failing.metric("augur_mirror_requests_total{outcome=\"failed\"}") >= 50.0).then_some(())
    });
}

#[test]
fn a_saturated_queue_and_oversized_bodies_drop_and_count() {
    let primary = Upstream::start("v1");
    let slow = Upstream::scripted("shadow", |_| Answer {
        status: 200,
        delay: Duration::from_secs(3),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = mirror_policy(dir.path(), &primary, slow.addr.port(), 100);
    let proxy = Proxy::start_with_args(
        &[&policy],
        &["--mirror-queue", "1", "--mirror-max-body", "1024"],
    );
    // 64 in flight to the 3 s shadow fill the senders; the 1-slot queue then overflows.
    let mut conn = http::Connection::open(proxy.listen).expect("connect");
    for _ in 0..150 {
        assert_eq!(conn.get("model", "/").expect("request").status, 200);
    }
    assert!(proxy.metric("augur_mirror_dropped_total{reason=\"queue_full\"}") > 0.0);
    let big = "x".repeat(4096);
    assert_eq!(
        post(proxy.listen, &big, "big").status,
        200,
        "the primary is unaffected"
    );
    wait_for("the oversized body counted", Duration::from_secs(5), || {
        (proxy.metric("augur_mirror_dropped_total{reason=\"body_too_large\"}") == 1.0).then_some(())
    });
}

#[test]
fn the_embedded_shadow_model_scores_mirrored_xrays() {
    let ort = std::env::var("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH must name libonnxruntime.so: run the tests through scripts/test.sh",
    );
    assert!(
        Path::new(&ort).exists(),
        "ORT_DYLIB_PATH={ort} does not exist: run scripts/setup.sh"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf();
    let model = repo.join("inference/fixtures/models/nonmedical-tiny-a.onnx");
    // Stable answers NORMAL, the canary PNEUMONIA, to every X-ray.
    let v1 = Upstream::predicting("v1", "NORMAL");
    let v2 = Upstream::predicting("v2", "PNEUMONIA");
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service("model", &primary_route("model"));
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let canary = format!(
        r#"  steps:
  - setWeight: 50
  - pause: {{}}
  - setWeight: 100
  analysis:
    interval: 1s
    minSamples: 1
    onNoData: continue
    metrics:
    - {{name: agreement, kind: shadowAgreement, allowedChange: {{absolute: 100}}}}
  prediction: {{scorePointer: /confidence, labelPointer: /prediction, positiveLabel: PNEUMONIA}}
  shadow:
    model: {model}
    mirrorPercentage: 100
    preprocessing: {{channels: 1, width: 64, height: 64, resize: bilinear, range: [0, 1], layout: NCHW}}
"#,
        model = model.display()
    );
    let canary = canary_policy("model", &canary);
    let proxy = Proxy::start(&[&write(dir.path(), &[&vs, &svc, &canary])]);
    let xray = std::fs::read(repo.join("inference/testdata/xrays/NORMAL2-IM-1427-0001.jpeg"))
        .expect("x-ray");
    let mut served = (0u64, 0u64);
    for i in 0..20 {
        let mut raw = format!(
            "POST /predict HTTP/1.1\r\nHost: model\r\nContent-Type: image/jpeg\r\nx-request-id: x{i}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            xray.len()
        )
        .into_bytes();
        raw.extend_from_slice(&xray);
        let answer = http::request_bytes(proxy.listen, &raw).expect("request");
        assert_eq!(answer.status, 200);
        if answer.body.contains("\"v1\"") {
            served.0 += 1;
        } else {
            served.1 += 1;
        }
    }
    wait_for("shadow inferences", Duration::from_secs(20), || {
        (proxy.metric("augur_shadow_inferences_total{outcome=\"success\"}") >= 20.0).then_some(())
    });
    // What the fixture gives, computed with the shadow model and preprocessing above:
    // `augur score --policy <this policy> inference/testdata/xrays/NORMAL2-IM-1427-0001.jpeg`
    // says NORMAL, P(pneumonia) 0.3534 (nonmedical-tiny-a labels all 16 X-rays NORMAL with
    // this recipe, 0.17 to 0.40). So the shadow agrees with every stable answer (NORMAL) and
    // with no canary answer (PNEUMONIA): agreement 100% on stable, 0% on the canary, over
    // every request each arm served. allowedChange 100 keeps the analysis from acting on it
    // while the test reads it.
    let verdict = wait_for(
        "an agreement verdict over all 20 shadow comparisons",
        Duration::from_secs(10),
        || {
            let s: serde_json::Value =
                serde_json::from_str(&proxy.admin_get("/rollouts").body).ok()?;
            let v = s["rollouts"][0]["verdicts"][0].clone();
            (v["n_stable"].as_u64()? + v["n_canary"].as_u64()? == 20).then_some(v)
        },
    );
    assert_eq!(verdict["metric"], "agreement", "{verdict}");
    assert_eq!(
        (verdict["n_stable"].as_u64(), verdict["n_canary"].as_u64()),
        (Some(served.0), Some(served.1)),
        "every answer compared with the shadow's: {verdict}"
    );
    // (An arm that served nothing, a 2^-20 chance at 50%, has no value.)
    assert_eq!(
        (verdict["stable"].as_f64(), verdict["canary"].as_f64()),
        ((served.0 > 0).then_some(1.0), (served.1 > 0).then_some(0.0)),
        "the shadow agrees with all of stable and none of the canary: {verdict}"
    );
}

/// A retried X-ray-sized body (past pingora's 64 KiB retry buffer) is answered, reaches the
/// primary whole on each attempt, and is mirrored once, whole.
#[test]
fn a_retried_large_body_is_answered_and_mirrored_once() {
    let primary = Upstream::scripted("v1", |n| Answer {
        status: if n == 0 { 503 } else { 200 },
        ..Answer::OK
    });
    let shadow = Upstream::start("shadow");
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - name: main\n    retries: {attempts: 2, retryOn: 5xx}\n    \
         route: [{destination: {host: model, subset: v1}}]\n    \
         mirror: {host: model, subset: shadow}\n    mirrorPercentage: {value: 100}\n",
    );
    let svc = service(
        "model",
        &[("v1", primary.addr.port()), ("shadow", shadow.addr.port())],
    );
    let proxy = Proxy::start(&[&write(dir.path(), &[&vs, &svc])]);
    let body = "x".repeat(200_000);
    let resp = post(proxy.listen, &body, "big-retried");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let attempts: Vec<usize> = primary.received().iter().map(|r| r.body.len()).collect();
    assert_eq!(
        attempts,
        vec![200_000, 200_000],
        "both attempts carried the whole body"
    );
    wait_for("the mirror copy", Duration::from_secs(10), || {
        (shadow.served() == 1).then_some(())
    });
    assert_eq!(shadow.received()[0].body.len(), 200_000);
    assert_eq!(shadow.served(), 1, "one copy per request, not per attempt");
}

/// A shadow model that does not load leaves the routes serving without it (the primary path
/// never depends on the shadow), and what `/config_dump` shows names the policy's file, line and
/// field, like every other policy error.
#[test]
fn a_shadow_model_that_does_not_load_is_reported_at_its_policy_line() {
    let v1 = Upstream::predicting("v1", "NORMAL");
    let v2 = Upstream::predicting("v2", "PNEUMONIA");
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service("model", &primary_route("model"));
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let canary = canary_policy(
        "model",
        "  steps:\n  - setWeight: 100\n  shadow:\n    model: no-such-dir/shadow.onnx\n    \
         preprocessing: {channels: 1, width: 64, height: 64}\n",
    );
    let file = write(dir.path(), &[&vs, &svc, &canary]);
    let proxy = Proxy::start(&[&file]);
    let text = std::fs::read_to_string(&file).expect("policy");
    let line = text
        .lines()
        .position(|l| l.contains("model: no-such-dir"))
        .map_or(0, |i| i + 1);
    let dump: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/config_dump").body).expect("JSON");
    let errors = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["shadow_model_errors"].as_array())
        .unwrap_or_else(|| panic!("no shadow_model_errors in {dump}"));
    let expected = format!(
        "{}:{line}:5: warning: spec.shadow.model: shadow model no-such-dir/shadow.onnx not loaded; the routes serve without it: cannot read model metadata no-such-dir/shadow.json",
        file.display()
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let got = errors[0].as_str().unwrap_or_default();
    assert!(got.starts_with(&expected), "{got}\nexpected {expected}");
    let raw = "GET /predict HTTP/1.1\r\nHost: model\r\nConnection: close\r\n\r\n";
    assert_eq!(
        http::request(proxy.listen, raw).expect("request").status,
        200
    );
}
