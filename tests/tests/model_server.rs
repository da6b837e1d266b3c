//! `augur score` and `augur model-server` on the 16 real chest X-rays, and the model servers
//! behind `augur proxy` as stable and canary: predictions are read into samples, delayed
//! ground-truth labels join them by request id. The models are NON-MEDICAL test fixtures: their
//! outputs on real X-rays are not diagnoses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use augur_tests::augur::{address, bin, run, wait_for_address_file, Proxy};
use augur_tests::policy::{service, virtual_service, write};
use augur_tests::{http, wait_for};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn fixture_model(name: &str) -> PathBuf {
    repo().join(format!("inference/fixtures/models/{name}.onnx"))
}

fn xrays() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("inference/testdata/xrays"))
        .expect("x-ray folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpeg"))
        .collect();
    files.sort();
    files
}

fn require_onnxruntime() {
    let path = std::env::var("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH must name libonnxruntime.so: run the tests through scripts/test.sh",
    );
    assert!(
        Path::new(&path).exists(),
        "ORT_DYLIB_PATH={path} does not exist: run scripts/setup.sh"
    );
}

/// A running `augur model-server`; killed when dropped.
struct ModelServer {
    child: Child,
    addr: SocketAddr,
    _address_dir: tempfile::TempDir,
}

impl ModelServer {
    /// Starts it on a port it picks (port 0), read back from its `--address-file`.
    fn start(model: &str, version: &str) -> Self {
        let address_dir = tempfile::tempdir().expect("address file dir");
        let address_file = address_dir.path().join("address.json");
        let mut child = Command::new(bin())
            .args(["model-server", "--model"])
            .arg(fixture_model(model))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--version",
                version,
                "--log-level",
                "warn",
                "--address-file",
            ])
            .arg(&address_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn augur model-server");
        let addr = address(&wait_for_address_file(&mut child, &address_file)["listen"]);
        let mut server = Self {
            child,
            addr,
            _address_dir: address_dir,
        };
        wait_for("the model server", Duration::from_secs(20), || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("model server exited: {status}");
            }
            http::get(addr, "localhost", "/health")
                .ok()
                .filter(|r| r.status == 200)
        });
        server
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST /predict` with a raw JPEG body through `addr` with the given Host.
fn predict(addr: SocketAddr, host: &str, image: &Path, request_id: &str) -> http::Response {
    let body = std::fs::read(image).expect("read x-ray");
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\nx-request-id: {request_id}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut raw = head.into_bytes();
    raw.extend_from_slice(&body);
    http::request_bytes(addr, &raw).expect("predict request")
}

#[test]
fn score_prints_every_xray() {
    require_onnxruntime();
    let images = xrays();
    assert_eq!(images.len(), 16);
    let mut args: Vec<String> = vec!["score".into(), "--model".into()];
    args.push(fixture_model("nonmedical-tiny-a").display().to_string());
    args.extend(images.iter().map(|p| p.display().to_string()));
    args.extend(["--output".into(), "json".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&argv);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let reports = reports.as_array().expect("array");
    assert_eq!(reports.len(), 16);
    for r in reports {
        let score = r["score"].as_f64().expect("score");
        assert!((0.0..=1.0).contains(&score), "{r}");
        assert!(
            ["NORMAL", "PNEUMONIA"].contains(&r["label"].as_str().unwrap_or("")),
            "{r}"
        );
    }

    let missing = run(&["score", "--model", "/nonexistent.onnx", "x.png"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot load the model"));
}

#[test]
fn model_servers_behind_the_proxy_feed_predictions_and_labels_to_the_rollout() {
    require_onnxruntime();
    let (v1, v2) = (
        ModelServer::start("nonmedical-tiny-a", "v1"),
        ModelServer::start("nonmedical-tiny-b", "v2"),
    );
    let direct = predict(v1.addr, "localhost", &xrays()[0], "direct");
    assert_eq!(direct.status, 200, "{}", direct.body);
    let answer: serde_json::Value = serde_json::from_str(&direct.body).expect("JSON");
    assert_eq!(answer["model_version"], "v1");

    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "pneumonia",
        "  - name: primary\n    route:\n    - destination: {host: pneumonia, subset: v1}\n      weight: 100\n    - destination: {host: pneumonia, subset: v2}\n      weight: 0\n",
    );
    let svc = service(
        "pneumonia",
        &[("v1", v1.addr.port()), ("v2", v2.addr.port())],
    );
    let canary = r#"apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: pneumonia}
spec:
  startOn: immediately
  trafficRouting:
    virtualService: {name: pneumonia, routes: [primary]}
  stable: {host: pneumonia, subset: v1}
  canary: {host: pneumonia, subset: v2}
  steps:
  - setWeight: 50
  - pause: {}
  - setWeight: 100
  analysis:
    interval: 1s
    minSamples: 5
    onNoData: continue
    metrics:
    - {name: accuracy, kind: accuracy, allowedChange: {absolute: 50}}
    - {name: errors, kind: errorRate, allowedChange: {absolute: 50}}
  prediction: {scorePointer: /confidence, labelPointer: /prediction, positiveLabel: PNEUMONIA}
  labels: {ttl: 10m}
"#;
    let proxy = Proxy::start(&[&write(dir.path(), &[&vs, &svc, canary])]);
    wait_for("the 50% step", Duration::from_secs(10), || {
        let s: serde_json::Value = serde_json::from_str(&proxy.admin_get("/rollouts").body).ok()?;
        (s["rollouts"][0]["weights"]["canary"] == 50).then_some(())
    });
    let mut labels = Vec::new();
    for round in 0..4 {
        for (i, image) in xrays().iter().enumerate() {
            let id = format!("req-{round}-{i}");
            let r = predict(proxy.listen, "pneumonia", image, &id);
            assert_eq!(r.status, 200, "{}", r.body);
            let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let truth = if name.starts_with("NORMAL") {
                "NORMAL"
            } else {
                "PNEUMONIA"
            };
            labels.push(serde_json::json!({"request_id": id, "label": truth}));
        }
    }
    // Ground truth arrives later: once the analyzer has all 64 samples (the error-rate
    // verdict counts every request it saw, labelled or not).
    wait_for(
        "the 64 samples in the analyzer",
        Duration::from_secs(20),
        || {
            let s: serde_json::Value =
                serde_json::from_str(&proxy.admin_get("/rollouts").body).ok()?;
            let verdicts = s["rollouts"][0]["verdicts"].as_array()?.clone();
            let errors = verdicts.iter().find(|v| v["metric"] == "errors")?;
            (errors["n_stable"].as_u64()? + errors["n_canary"].as_u64()? == 64).then_some(())
        },
    );
    let answer = proxy.admin_post(
        "/labels",
        &serde_json::json!({ "labels": labels }).to_string(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let counts: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
    assert_eq!(counts["received"], 64);
    assert_eq!(
        counts["matched"], 64,
        "every prediction joined its label: {counts}"
    );
    wait_for(
        "an accuracy verdict with data",
        Duration::from_secs(10),
        || {
            let s: serde_json::Value =
                serde_json::from_str(&proxy.admin_get("/rollouts").body).ok()?;
            let v = &s["rollouts"][0]["verdicts"][0];
            (v["metric"] == "accuracy"
                && v["n_stable"].as_u64()? > 0
                && v["n_canary"].as_u64()? > 0)
                .then_some(())
        },
    );
    assert_eq!(
        proxy.metric("predictions_total{status=\"success\"}"),
        64.0,
        "every answer's prediction was read"
    );
    assert!(proxy.metric("prediction_confidence_count{model_version=\"v1\"}") > 0.0);
    let bad = proxy.admin_post("/labels", "{\"oops\": 1}");
    assert_eq!(bad.status, 400);
}
