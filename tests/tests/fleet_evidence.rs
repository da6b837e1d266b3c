//! The fleet deciding on fleet-wide evidence, as a cluster on one machine: three stable pods
//! and one canary pod, each `augur model-server` with a fixture model and an augur sidecar under
//! the capture rules of `augur init`; a client pod without sidecar sending X-rays to the model
//! Service (kube-proxy DNAT over the stable pods) and posting their true labels to the
//! controller; a real Prometheus on the node scraping every sidecar each second; and `augur
//! controller` on the node, reading the rollout's evidence from Prometheus and pushing its
//! decisions to the sidecars.
//!
//! - A good canary (the same model) is promoted, and every sidecar is at 100% within 2 s of
//!   the decision.
//! - A canary answering 500 is rolled back on the fleet's error rate; every sidecar at 0%
//!   within 2 s.
//! - A canary that answers, but wrongly (a model that calls the NORMAL X-ray PNEUMONIA), is
//!   rolled back on accuracy, which only the labels posted to the controller, forwarded to the
//!   sidecar holding each prediction and read back through Prometheus, can show.
//!
//! The fixture models are NON-MEDICAL: tiny-c labels this X-ray NORMAL, tiny-a PNEUMONIA (each
//! with its own metadata's preprocessing; `augur score` shows it).
//!
//! Needs root, `ip netns`, Debian's `prometheus` and ONNX Runtime (scripts/setup.sh).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use augur_tests::cluster::{Cluster, Pod, GATEWAY};
use augur_tests::metrics;
use augur_tests::netns::{curl, spawn_in, spawn_logged, Running};
use augur_tests::prometheus::Prometheus;
use augur_tests::wait_for;

/// Four model servers, four sidecars, a controller and Prometheus each: one scenario at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const TOKEN: &str = "evidence-token";
const XRAY: &str = "inference/testdata/xrays/NORMAL2-IM-1427-0001.jpeg";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf()
}

/// What the canary pod serves.
enum Canary {
    /// A fixture model served by `augur model-server`.
    Model(&'static str),
    /// Every request answered 500.
    Failing,
}

/// The rollout: split in the stable pods (inbound), 30% then an analysis gate then 100%, its
/// evidence read from the node's Prometheus in 2-s windows 2 s behind.
fn policy(stable_vip: Ipv4Addr, canary_vip: Ipv4Addr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: model}}
spec:
  hosts: [model]
  http:
  - name: primary
    retries: {{attempts: 0}}
    route:
    - destination: {{host: model}}
      weight: 100
    - destination: {{host: model-canary}}
      weight: 0
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: model}}
spec:
  hosts: [model]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {stable_vip}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: model-canary}}
spec:
  hosts: [model-canary]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {canary_vip}}}]
---
apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {{name: model}}
spec:
  startOn: immediately
  trafficRouting:
    virtualService: {{name: model, routes: [primary]}}
    sidecar: inbound
  stable: {{host: model}}
  canary: {{host: model-canary}}
  steps:
  - setWeight: 30
  - analysis: {{}}
  - setWeight: 100
  analysis:
    source:
      prometheus: {{address: "http://127.0.0.1:9090", scrapeLag: 2s}}
    interval: 2s
    minSamples: 10
    metrics:
    - {{name: error-rate, kind: errorRate, allowedChange: {{absolute: 30}}, critical: true}}
    - {{name: accuracy, kind: accuracy, direction: decrease, allowedChange: {{absolute: 50}}}}
  rollback:
    triggers:
    - {{name: fleet-errors, metric: errorRate, condition: {{above: 25}}, window: 8s, action: immediate}}
    - {{name: fleet-accuracy, metric: accuracy, condition: {{dropBy: 40}}, window: 10s, action: immediate}}
  prediction: {{scorePointer: /confidence, labelPointer: /prediction, positiveLabel: PNEUMONIA}}
  labels:
    ttl: 1m
"#
    )
}

/// `augur model-server` in `pod` on port 8501.
fn model_server(pod: &Pod, model: &str, version: &str) -> Running {
    let augur = augur_tests::augur::bin();
    let model = repo().join(format!("inference/fixtures/models/{model}.onnx"));
    spawn_in(
        pod.ns(),
        &[
            augur.to_str().expect("utf-8"),
            "model-server",
            "--model",
            model.to_str().expect("utf-8"),
            "--listen",
            "0.0.0.0:8501",
            "--version",
            version,
            "--log-level",
            "warn",
        ],
    )
}

/// A server in `pod` on port 8501 that answers every request 500.
fn failing_server(pod: &Pod) -> Running {
    let script = r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8501), H).serve_forever()
"#;
    spawn_in(pod.ns(), &["python3", "-c", script])
}

/// The client: four threads posting the X-ray to the model Service until killed, and a fifth
/// posting each answered request's true label (NORMAL) to the controller a second later.
fn load(client: &Pod, stable_vip: Ipv4Addr, log: &Path) -> Running {
    let script = format!(
        r#"
import json, threading, time, urllib.request, uuid
data = open({xray:?}, "rb").read()
pending, lock = [], threading.Lock()
def send():
    while True:
        rid = str(uuid.uuid4())
        req = urllib.request.Request("http://{stable_vip}/predict", data=data, method="POST",
            headers={{"Host": "model", "Content-Type": "image/jpeg", "x-request-id": rid}})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
                with lock:
                    pending.append((time.time() + 1.0, rid))
        except Exception:
            time.sleep(0.05)
def label():
    while True:
        time.sleep(0.5)
        now = time.time()
        with lock:
            due = [rid for t, rid in pending if t <= now]
            pending[:] = [(t, rid) for t, rid in pending if t > now]
        if not due:
            continue
        body = json.dumps({{"labels": [{{"request_id": r, "label": "NORMAL"}} for r in due]}}).encode()
        req = urllib.request.Request("http://{gateway}:15010/labels", data=body, method="POST",
            headers={{"Content-Type": "application/json", "Authorization": "Bearer {TOKEN}"}})
        try:
            urllib.request.urlopen(req, timeout=5).read()
        except Exception as e:
            print("labels:", e, flush=True)
for _ in range(4):
    threading.Thread(target=send, daemon=True).start()
label()
"#,
        xray = repo().join(XRAY).to_str().expect("utf-8").to_owned(),
        gateway = GATEWAY,
    );
    spawn_logged(client.ns(), &["python3", "-c", &script], Some(log))
}

fn canary_weight(pod: &Pod) -> Option<f64> {
    let text = pod.sidecar_metrics();
    let series = "augur_rollout_weight{policy=\"default/model\",arm=\"canary\"}";
    (metrics::count(&text, series) > 0).then(|| metrics::sum(&text, series))
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the cluster with `canary` until the controller ends the rollout; checks that every
/// sidecar applies the outcome within 2 s of the decision, and returns the rollout's status.
fn run(tag: &str, canary_app: Canary) -> serde_json::Value {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        std::env::var_os("ORT_DYLIB_PATH").is_some(),
        "ORT_DYLIB_PATH must name libonnxruntime.so (scripts/setup.sh)"
    );
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::new(tag);
    let stable: Vec<Pod> = (0..3)
        .map(|i| cluster.pod(&format!("stable-{i}")))
        .collect();
    let canary = cluster.pod("canary");
    let client = cluster.pod("client");
    let (stable_vip, canary_vip) = (Ipv4Addr::new(10, 96, 1, 10), Ipv4Addr::new(10, 96, 1, 11));
    let endpoints: Vec<_> = stable.iter().map(|p| (p.ip, 8501)).collect();
    cluster.service("model", stable_vip, 80, &endpoints);
    cluster.service("model-canary", canary_vip, 80, &[(canary.ip, 8501)]);
    let mut apps: Vec<Running> = stable
        .iter()
        .map(|p| model_server(p, "nonmedical-tiny-c", "v1"))
        .collect();
    apps.push(match canary_app {
        Canary::Model(model) => model_server(&canary, model, "v2"),
        Canary::Failing => failing_server(&canary),
    });
    let file = root.path().join("policy.yaml");
    std::fs::write(&file, policy(stable_vip, canary_vip)).expect("policy");
    let file = file.to_str().expect("utf-8").to_owned();

    let state = root.path().join("controller-state");
    std::fs::create_dir_all(&state).expect("state dir");
    let augur = augur_tests::augur::bin();
    let _controller = spawn_logged(
        cluster.node(),
        &[
            augur.to_str().expect("utf-8"),
            "controller",
            "--policy",
            &file,
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--listen",
            "0.0.0.0:15010",
            "--prometheus",
            "127.0.0.1:15014",
            "--token",
            TOKEN,
        ],
        Some(&root.path().join("controller.log")),
    );
    wait_for("the controller", Duration::from_secs(20), || {
        curl(cluster.node(), "http://127.0.0.1:15010/ready", None)
    });
    let controller = format!("{GATEWAY}:15010");
    let _sidecars: Vec<Running> = stable
        .iter()
        .map(|p| {
            p.sidecar(
                root.path(),
                &[
                    "--policy",
                    &file,
                    "--controller",
                    &controller,
                    "--controller-token",
                    TOKEN,
                    "--node",
                    &p.name,
                ],
            )
        })
        .collect();
    let empty = root.path().join("no-policy");
    std::fs::create_dir_all(&empty).expect("empty policy dir");
    let _canary_sidecar =
        canary.sidecar(root.path(), &["--policy", empty.to_str().expect("utf-8")]);
    let targets: Vec<_> = stable
        .iter()
        .map(|p| std::net::SocketAddr::from((p.ip, 15090)))
        .collect();
    let _prometheus = Prometheus::start_in(
        Some(cluster.node()),
        "127.0.0.1:9090".parse().expect("address"),
        &targets,
    );
    for p in &stable {
        assert_eq!(canary_weight(p), Some(30.0), "{} starts at 30%", p.name);
    }
    wait_for("the model servers", Duration::from_secs(60), || {
        curl(
            client.ns(),
            &format!("http://{stable_vip}/health"),
            Some("model"),
        )
    });
    let _load = load(&client, stable_vip, &root.path().join("client.log"));

    let status = wait_for(
        "the controller to end the rollout",
        Duration::from_secs(240),
        || {
            let all: serde_json::Value = serde_json::from_str(&curl(
                cluster.node(),
                "http://127.0.0.1:15010/rollouts",
                None,
            )?)
            .ok()?;
            let r = all["rollouts"][0].clone();
            matches!(
                r["state"]["phase"].as_str(),
                Some("promoted" | "rolled_back")
            )
            .then_some(r)
        },
    );
    let expected = status["weights"]["canary"]
        .as_f64()
        .expect("the final weight");
    // When the controller published the decision (its wall clock: the rollout's own clock is
    // the evidence's, a scrape lag behind).
    let published_at = wait_for("the decision's state", Duration::from_secs(10), || {
        let state: serde_json::Value = serde_json::from_str(&curl(
            cluster.node(),
            "http://127.0.0.1:15010/v1/fleet/state",
            None,
        )?)
        .ok()?;
        (state["rollouts"][0]["canary_weight"].as_f64() == Some(expected))
            .then(|| state["published_at_ms"].as_f64())
            .flatten()
    }) / 1000.0;
    wait_for(
        "every sidecar to apply the decision",
        Duration::from_secs(10),
        || {
            stable
                .iter()
                .all(|p| canary_weight(p) == Some(expected))
                .then_some(())
        },
    );
    let after = now_unix() - published_at;
    assert!(
        after < 2.0,
        "every sidecar applied {expected}% {after:.2} s after the controller published it"
    );
    // Each sidecar carried its own share of the traffic and exported it: the decision was the
    // fleet's.
    for p in &stable {
        let sent = metrics::sum(
            &p.sidecar_metrics(),
            "augur_rollout_requests_total{policy=\"default/model\",arm=\"canary\"}",
        );
        assert!(sent > 0.0, "{} sent canary requests", p.name);
    }
    status
}

#[test]
fn a_good_canary_is_promoted_on_the_fleets_evidence() {
    let status = run("evg", Canary::Model("nonmedical-tiny-c"));
    assert_eq!(status["state"]["phase"], "promoted", "{status:#}");
}

#[test]
fn a_failing_canary_is_rolled_back_on_the_fleets_error_rate() {
    let status = run("eve", Canary::Failing);
    assert_eq!(status["state"]["phase"], "rolled_back", "{status:#}");
    let reason = status["decisions"][0]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("error"), "rolled back for errors: {reason}");
}

#[test]
fn an_inaccurate_canary_is_rolled_back_on_the_labels() {
    let status = run("eva", Canary::Model("nonmedical-tiny-a"));
    assert_eq!(status["state"]["phase"], "rolled_back", "{status:#}");
    let reason = status["decisions"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("accuracy"),
        "rolled back on accuracy: {reason}"
    );
}
