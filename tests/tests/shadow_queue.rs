//! The embedded shadow model under a burst it cannot keep up with: its bounded queue fills, the
//! copies that do not fit are dropped and counted, and the primary responses are all 200 and no
//! slower than they need to be (no request ever waits for the shadow model).
//!
//! The policy's `shadow.runtime` gives the model one worker thread, a queue of 4 images and
//! batches of one. A burst of 200 mirrored chest X-rays
//! (a 1016×656 JPEG: decoding and resizing it takes milliseconds in a release build and about
//! ten times longer in a debug one) arrives much faster than one worker scores them, so the
//! queue overflows whatever the build.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use augur_tests::augur::Proxy;
use augur_tests::http;
use augur_tests::policy::{canary_policy, primary_route, service, virtual_service, write};
use augur_tests::upstream::Upstream;
use augur_tests::wait_for;

/// Requests in the burst.
const REQUESTS: usize = 200;
/// Client threads sending them concurrently.
const CLIENTS: usize = 16;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The test needs ONNX Runtime through `ORT_DYLIB_PATH`, as `scripts/test.sh` sets it.
fn require_ort() {
    let ort = std::env::var("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH must name libonnxruntime.so: run the tests through scripts/test.sh",
    );
    assert!(
        Path::new(&ort).exists(),
        "ORT_DYLIB_PATH={ort} does not exist: run scripts/setup.sh"
    );
}

/// A CanaryPolicy on `model` (stable v1, canary v2 at 50%) whose shadow model, the non-medical
/// fixture CNN, gets `percentage`% of the requests.
fn policy(dir: &Path, v1: &Upstream, v2: &Upstream, percentage: u32) -> PathBuf {
    let model = repo().join("inference/fixtures/models/nonmedical-tiny-a.onnx");
    let vs = virtual_service("model", &primary_route("model"));
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let canary = canary_policy(
        "model",
        &format!(
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
    mirrorPercentage: {percentage}
    preprocessing: {{channels: 1, width: 64, height: 64, resize: bilinear, range: [0, 1], layout: NCHW}}
    runtime: {{workers: 1, queueCapacity: 4, maxBatch: 1}}
"#,
            model = model.display()
        ),
    );
    write(dir, &[&vs, &svc, &canary])
}

/// One primary answer: status, whether a model server (v1 or v2) answered, latency.
struct Answer {
    status: u16,
    from_model: bool,
    latency: Duration,
}

/// Sends `REQUESTS` X-ray POSTs from `CLIENTS` threads at once; returns every answer.
fn burst(addr: SocketAddr, xray: &Arc<Vec<u8>>) -> Vec<Answer> {
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let xray = Arc::clone(xray);
            std::thread::spawn(move || {
                (client..REQUESTS)
                    .step_by(CLIENTS)
                    .map(|i| {
                        let mut raw = format!(
                            "POST /predict HTTP/1.1\r\nHost: model\r\nContent-Type: image/jpeg\r\n\
                             x-request-id: burst-{i}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            xray.len()
                        )
                        .into_bytes();
                        raw.extend_from_slice(&xray);
                        let start = Instant::now();
                        let response = http::request_bytes(addr, &raw).expect("primary request");
                        Answer {
                            status: response.status,
                            from_model: response.body.contains(r#""model_version":"v"#),
                            latency: start.elapsed(),
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect()
}

fn quantile(answers: &[Answer], q: f64) -> Duration {
    let mut latencies: Vec<Duration> = answers.iter().map(|a| a.latency).collect();
    latencies.sort();
    let index = ((latencies.len() - 1) as f64 * q).round() as usize;
    latencies[index]
}

fn shadow_count(proxy: &Proxy, outcome: &str) -> f64 {
    proxy.metric(&format!(
        "augur_shadow_inferences_total{{outcome=\"{outcome}\"}}"
    ))
}

#[test]
fn a_saturated_shadow_queue_drops_and_counts_while_every_primary_succeeds() {
    require_ort();
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let xray = Arc::new(
        std::fs::read(repo().join("inference/testdata/xrays/person1951_bacteria_4882.jpeg"))
            .expect("x-ray"),
    );

    // Baseline: the same proxy, policy and burst, with the shadow model scoring nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let off = Proxy::start(&[&policy(dir.path(), &v1, &v2, 0)]);
    let baseline = burst(off.listen, &xray);
    assert!(baseline.iter().all(|a| a.status == 200 && a.from_model));
    assert_eq!(shadow_count(&off, "dropped"), 0.0);
    drop(off);

    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(&[&policy(dir.path(), &v1, &v2, 100)]);
    // (scored, dropped) so far; scored includes failures, which are asserted to be none.
    let finished = |p: &Proxy| {
        let scored = shadow_count(p, "success")
            + shadow_count(p, "decode_error")
            + shadow_count(p, "inference_error");
        (scored, shadow_count(p, "dropped"))
    };
    let started = Instant::now();
    let answers = burst(proxy.listen, &xray);
    let burst_time = started.elapsed();
    let (scored_then, dropped_then) = finished(&proxy);

    // Every primary answered 200 by a model server, none of them held up by the shadow.
    assert_eq!(answers.len(), REQUESTS);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.status, 200, "primary {i}");
        assert!(a.from_model, "primary {i} was answered by v1 or v2");
    }

    // Every copy ends as scored or dropped (the queue drains after the burst).
    let (scored, dropped) = wait_for(
        "every mirrored X-ray scored or dropped",
        Duration::from_secs(120),
        || {
            let (scored, dropped) = finished(&proxy);
            (scored + dropped >= REQUESTS as f64).then_some((scored, dropped))
        },
    );
    let drained = started.elapsed();
    assert_eq!(
        shadow_count(&proxy, "decode_error") + shadow_count(&proxy, "inference_error"),
        0.0,
        "the X-ray decodes and scores"
    );
    assert!(dropped > 0.0, "the 4-image queue overflowed");
    assert_eq!(
        dropped,
        REQUESTS as f64 - scored,
        "every copy that was not scored was dropped and counted"
    );
    assert_eq!(
        proxy.metric("augur_mirror_dropped_total{reason=\"queue_full\"}"),
        dropped,
        "the proxy counts the same drops"
    );
    assert_eq!(proxy.metric("augur_shadow_queue_depth"), 0.0);

    let slowest = answers.iter().map(|a| a.latency).max().unwrap_or_default();
    let backlog = REQUESTS as f64 - scored_then - dropped_then;
    eprintln!(
        "{REQUESTS} primaries from {CLIENTS} clients in {burst_time:?}; shadow scored {scored} and \
         dropped {dropped}, drained after {drained:?} ({backlog} still queued when the last primary \
         was answered); primary p50/p99/max {:?}/{:?}/{slowest:?} \
         (shadow off: {:?}/{:?})",
        quantile(&answers, 0.5),
        quantile(&answers, 0.99),
        quantile(&baseline, 0.5),
        quantile(&baseline, 0.99),
    );
    // The shadow model needed `drained` to finish: a primary that waited for it would show it.
    assert!(
        slowest < Duration::from_secs(3),
        "no primary waited for the shadow model: slowest {slowest:?}"
    );
    assert!(
        backlog > 0.0,
        "when the last primary was answered the shadow model still had copies to score \
         (scored {scored_then}, dropped {dropped_then} of {REQUESTS})"
    );
}
