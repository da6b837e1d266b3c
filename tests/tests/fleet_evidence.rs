//! The fleet deciding on fleet-wide evidence, as a cluster on one machine: three stable pods
//! and one canary pod, each `augur model-server` with a fixture model and an augur sidecar under
//! the capture rules of `augur init`; a client pod without sidecar sending X-rays to the model
//! Service (kube-proxy DNAT over the stable pods) and posting their true labels to the
//! controller; a real Prometheus on the node scraping every sidecar each second; and `augur
//! controller` on the node, reading the rollout's evidence from Prometheus and pushing its
//! decisions to the sidecars.
//!
//! - A good canary (the same model) is promoted through 20%, 50% and 100%. At every step, every
//!   sidecar's canary share (its own arm counters, while it applied the step's weight) is
//!   within 4σ of the step's weight, and every sidecar is at 100% within 2 s of the decision.
//! - A canary answering 500 is rolled back on the fleet's error rate; every sidecar at 0%
//!   within 2 s.
//! - A canary that answers, but wrongly (a model that calls the NORMAL X-ray PNEUMONIA), is
//!   rolled back on accuracy, which only the labels posted to the controller, forwarded to the
//!   sidecar holding each prediction and read back through Prometheus, can show.
//! - A canary that answers right but slowly (the same model behind a relay that holds each
//!   request 400 ms) is rolled back on the p95 latency, which the controller reads from the
//!   sidecars' latency histograms through Prometheus.
//! - A canary that the stable sidecars' shadow model disagrees with (nonmedical-tiny-a, which
//!   the shadow, tiny-a under another recipe, contradicts) is rolled back on the shadow
//!   agreement, from the sidecars' exported comparisons.
//! - A canary that labels right but scores higher (nonmedical-tiny-c behind a relay that adds
//!   0.15 to each score) is rolled back on the drift of its scores, from the sidecars' score
//!   histograms, and separately on calibration, from their Brier sums.
//!
//! The fixture models are NON-MEDICAL: tiny-c labels this X-ray NORMAL, tiny-a PNEUMONIA (each
//! with its own metadata's preprocessing; `augur score` shows it).
//!
//! Needs root, `ip netns`, Debian's `prometheus` and ONNX Runtime (scripts/setup.sh).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use augur_tests::cluster::{Cluster, Pod, GATEWAY};
use augur_tests::metrics;
use augur_tests::netns::{curl, spawn_in, spawn_logged, Running};
use augur_tests::prometheus::Prometheus;
use augur_tests::{assert_share_near, wait_for};

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
    /// A fixture model served by `augur model-server` behind a relay that holds every request
    /// [`SLOW_BY`] before passing it on.
    Slow(&'static str),
    /// A fixture model served by `augur model-server` behind a relay that adds [`SCORE_SHIFT`]
    /// to every answer's `confidence` and leaves its `prediction` as it is.
    Shifted(&'static str),
}

/// How much longer the slow canary takes to answer.
const SLOW_BY: Duration = Duration::from_millis(400);

/// How much higher the shifted canary's scores are. nonmedical-tiny-c gives this X-ray
/// P(PNEUMONIA) 0.2865 (`augur score`), in the score tenth (0.2, 0.3]; shifted it is 0.4365,
/// in (0.4, 0.5]: still below 0.5, so the label NORMAL stays right, and the Brier term against
/// the truth NORMAL grows from 0.082 to 0.191.
const SCORE_SHIFT: f64 = 0.15;

/// How the rollout walks and what its analysis judges.
struct Rollout {
    /// The `steps:` list, YAML flow items.
    steps: &'static [&'static str],
    /// The `analysis.metrics:` list, YAML flow items.
    metrics: &'static [&'static str],
    /// More `analysis:` settings, `key: value` lines.
    analysis: &'static [&'static str],
    /// The `rollback.triggers:` list, YAML flow items.
    triggers: &'static [&'static str],
    /// Whether the stable sidecars hold the policy's shadow model (see [`SHADOW`]).
    shadow: bool,
}

/// Rolls back at once when the canary's error rate is shown above 25% over 8 s.
const ERRORS_TRIGGER: &str =
    "{name: fleet-errors, metric: errorRate, condition: {above: 25}, window: 8s, action: immediate}";

/// Rolls back at once when the canary's accuracy is shown 40 points below stable's over 10 s.
const ACCURACY_TRIGGER: &str =
    "{name: fleet-accuracy, metric: accuracy, condition: {dropBy: 40}, window: 10s, action: immediate}";

/// 30%, an analysis gate, 100%; judged on errors and accuracy.
const ERRORS_AND_ACCURACY: Rollout = Rollout {
    steps: &["setWeight: 30", "analysis: {}", "setWeight: 100"],
    metrics: &[
        "{name: error-rate, kind: errorRate, allowedChange: {absolute: 30}, critical: true}",
        "{name: accuracy, kind: accuracy, direction: decrease, allowedChange: {absolute: 50}}",
    ],
    analysis: &[],
    triggers: &[ERRORS_TRIGGER, ACCURACY_TRIGGER],
    shadow: false,
};

/// The policy's shadow model, as `the_shadow_model_scores_inbound_traffic_on_both_arms` in
/// `fleet.rs` holds it: nonmedical-tiny-a with this recipe labels the X-ray NORMAL (P 0.35;
/// see `mirror.rs`), so it agrees with stable (nonmedical-tiny-c, NORMAL) and with no answer of
/// nonmedical-tiny-a under its own metadata's recipe (PNEUMONIA).
const SHADOW: &str = "  shadow:
    model: {model}
    mirrorPercentage: 100
    preprocessing: {channels: 1, width: 64, height: 64, resize: bilinear, range: [0, 1], layout: NCHW}
";

impl Rollout {
    /// The canary weight of its first step.
    fn first_weight(&self) -> f64 {
        self.steps
            .first()
            .and_then(|s| s.strip_prefix("setWeight: "))
            .and_then(|w| w.parse().ok())
            .expect("the first step sets a weight")
    }
}

/// The rollout: split in the stable pods (inbound), its steps, metrics, triggers and shadow model
/// from `rollout`, its evidence read from the node's Prometheus in 2-s windows 2 s behind.
fn policy(stable_vip: Ipv4Addr, canary_vip: Ipv4Addr, rollout: &Rollout) -> String {
    let list = |indent: &str, items: &[&str]| -> String {
        items.iter().map(|i| format!("\n{indent}- {i}")).collect()
    };
    let steps = list("  ", rollout.steps);
    let metrics = list("    ", rollout.metrics);
    let triggers = list("    ", rollout.triggers);
    let analysis: String = rollout
        .analysis
        .iter()
        .map(|line| format!("\n    {line}"))
        .collect();
    let shadow = if rollout.shadow {
        let model = repo().join("inference/fixtures/models/nonmedical-tiny-a.onnx");
        SHADOW.replace("{model}", model.to_str().expect("utf-8"))
    } else {
        String::new()
    };
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
  steps:{steps}
  analysis:
    source:
      prometheus: {{address: "http://127.0.0.1:9090", scrapeLag: 2s}}
    interval: 2s
    minSamples: 10{analysis}
    metrics:{metrics}
  rollback:
    triggers:{triggers}
  prediction: {{scorePointer: /confidence, labelPointer: /prediction, positiveLabel: PNEUMONIA}}
  labels:
    ttl: 1m
{shadow}"#
    )
}

/// `augur model-server` in `pod` on port 8501.
fn model_server(pod: &Pod, model: &str, version: &str) -> Running {
    model_server_on(pod, model, version, "0.0.0.0:8501")
}

/// `augur model-server` in `pod` on `listen`.
fn model_server_on(pod: &Pod, model: &str, version: &str, listen: &str) -> Running {
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
            listen,
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

/// A relayed canary in `pod`: `model` served by `augur model-server` on loopback port 8502,
/// behind a relay on port 8501 that holds each request `delay` before passing it on, and passes
/// the answer back with `score_shift` added to a JSON answer's `confidence` (at most 1), the
/// rest as it came. Returns the relay and the model server.
fn relayed_server(pod: &Pod, model: &str, delay: Duration, score_shift: f64) -> [Running; 2] {
    let server = model_server_on(pod, model, "v2", "127.0.0.1:8502");
    let script = format!(
        r#"
import http.server, json, time, urllib.error, urllib.request
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def relay(self, method):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))) if method == "POST" else None
        if {delay} > 0:
            time.sleep({delay})
        req = urllib.request.Request("http://127.0.0.1:8502" + self.path, data=body, method=method,
            headers={{k: v for k, v in self.headers.items() if k.lower() in ("content-type", "x-request-id")}})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, kind, answer = r.status, r.headers.get("Content-Type", ""), r.read()
        except urllib.error.HTTPError as e:
            status, kind, answer = e.code, e.headers.get("Content-Type", ""), e.read()
        if {shift} != 0 and status == 200 and "json" in kind:
            a = json.loads(answer)
            if isinstance(a, dict) and isinstance(a.get("confidence"), (int, float)):
                a["confidence"] = min(1.0, a["confidence"] + {shift})
                answer = json.dumps(a).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def do_POST(self):
        self.relay("POST")
    def do_GET(self):
        self.relay("GET")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8501), H).serve_forever()
"#,
        delay = delay.as_secs_f64(),
        shift = score_shift,
    );
    [spawn_in(pod.ns(), &["python3", "-c", &script]), server]
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
    weight_in(&pod.sidecar_metrics())
}

/// The canary weight a sidecar's metrics show.
fn weight_in(text: &str) -> Option<f64> {
    let series = "augur_rollout_weight{policy=\"default/model\",arm=\"canary\"}";
    (metrics::count(text, series) > 0).then(|| metrics::sum(text, series))
}

/// The requests a sidecar routed to each arm so far: (stable, canary).
fn arms_in(text: &str) -> (usize, usize) {
    let arm =
        |arm: &str| metrics::sum(text, &format!("augur_requests_total{{arm=\"{arm}\"}}")) as usize;
    (arm("stable"), arm("canary"))
}

/// The requests one sidecar routed while one weight held.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    /// The canary weight the sidecar applied, in percent.
    weight: f64,
    /// Requests it kept on stable.
    stable: usize,
    /// Requests it sent to the canary.
    canary: usize,
}

/// Follows one sidecar's arm counters and applied weight, each read from the same scrape, and
/// splits its requests into the steps it applied. A request is counted when it ends, so one
/// routed just before a weight change may be counted after it. So the counts from the last
/// scrape before a change until a later scrape that finds no request in flight
/// (`augur_downstream_requests_active` 0, read after the scrape that saw the change: every
/// request routed before it has ended and been counted) are left out of every step.
#[derive(Debug, Default)]
struct SidecarSteps {
    /// The last scrape: weight and (stable, canary) counts.
    last: Option<(f64, (usize, usize))>,
    /// Since the last change, no scrape has found the sidecar idle: deltas are left out.
    settling: bool,
    /// The steps seen, in order.
    steps: Vec<Step>,
}

impl SidecarSteps {
    /// Reads `pod`'s metrics once.
    fn scrape(&mut self, pod: &Pod) {
        let text = pod.sidecar_metrics();
        let Some(weight) = weight_in(&text) else {
            return;
        };
        let (stable, canary) = arms_in(&text);
        let idle = metrics::sum(&text, "augur_downstream_requests_active") == 0.0;
        match self.last {
            None => self.steps.push(Step {
                weight,
                stable: 0,
                canary: 0,
            }),
            Some((w, _)) if w != weight => {
                self.settling = true;
                self.steps.push(Step {
                    weight,
                    stable: 0,
                    canary: 0,
                });
            }
            Some((_, (s0, c0))) => {
                if self.settling {
                    // Requests routed before the change may have ended in this delta; from
                    // an idle scrape on, none is left.
                    self.settling = !idle;
                } else if let Some(step) = self.steps.last_mut() {
                    step.stable += stable.saturating_sub(s0);
                    step.canary += canary.saturating_sub(c0);
                }
            }
        }
        self.last = Some((weight, (stable, canary)));
    }

    /// Requests counted in the step it is at now.
    fn current(&self) -> usize {
        self.steps.last().map_or(0, |s| s.stable + s.canary)
    }
}

/// Sets its flag when dropped.
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a run saw.
struct Outcome {
    /// The rollout's status once it ended.
    status: serde_json::Value,
    /// The canary weights the controller published, in order, each once.
    published: Vec<f64>,
    /// Each stable sidecar's name and steps.
    sidecars: Vec<(String, Vec<Step>)>,
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the cluster with `canary` and `rollout` until the controller ends the rollout; checks
/// that every sidecar applies the outcome within 2 s of the decision; then, while the load
/// goes on, waits for every sidecar to count `at_outcome` requests at the outcome. Returns what it
/// saw: the status, the weights published and each sidecar's requests per arm at each step.
fn run(tag: &str, canary_app: Canary, rollout: &Rollout, at_outcome: usize) -> Outcome {
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
    let canary_answers = !matches!(canary_app, Canary::Failing);
    match canary_app {
        Canary::Model(model) => apps.push(model_server(&canary, model, "v2")),
        Canary::Failing => apps.push(failing_server(&canary)),
        Canary::Slow(model) => apps.extend(relayed_server(&canary, model, SLOW_BY, 0.0)),
        Canary::Shifted(model) => {
            apps.extend(relayed_server(&canary, model, Duration::ZERO, SCORE_SHIFT))
        }
    }
    let file = root.path().join("policy.yaml");
    std::fs::write(&file, policy(stable_vip, canary_vip, rollout)).expect("policy");
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
    let first = rollout.first_weight();
    for p in &stable {
        assert_eq!(
            canary_weight(p),
            Some(first),
            "{} starts at {first}%",
            p.name
        );
    }
    let mut health = vec![(stable_vip, "model")];
    if canary_answers {
        health.push((canary_vip, "model-canary"));
    }
    for (vip, host) in health {
        wait_for("the model servers", Duration::from_secs(60), || {
            curl(client.ns(), &format!("http://{vip}/health"), Some(host))
        });
    }
    // Each sidecar's steps, scraped all along on a thread of their own.
    let steps: Mutex<Vec<SidecarSteps>> =
        Mutex::new(stable.iter().map(|_| SidecarSteps::default()).collect());
    let done = AtomicBool::new(false);
    let scrape_all = || {
        let mut steps = steps.lock().unwrap_or_else(|p| p.into_inner());
        for (record, pod) in steps.iter_mut().zip(&stable) {
            record.scrape(pod);
        }
    };
    scrape_all();
    let _load = load(&client, stable_vip, &root.path().join("client.log"));
    let (status, published) = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                scrape_all();
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // Stops the scraping thread however `decide` ends (a failed check panics).
        let _stop = Stop(&done);
        decide(&cluster, &stable, &steps, at_outcome)
    });
    Outcome {
        status,
        published,
        sidecars: stable
            .iter()
            .zip(steps.into_inner().unwrap_or_else(|p| p.into_inner()))
            .map(|(p, s)| (p.name.clone(), s.steps))
            .collect(),
    }
}

/// Waits for the controller to end the rollout, noting each canary weight it publishes; checks
/// that every sidecar applies the outcome within 2 s of the decision; then waits for every
/// sidecar to count `at_outcome` requests at the outcome in `steps`. Returns the rollout's
/// status and the weights published.
fn decide(
    cluster: &Cluster,
    stable: &[Pod],
    steps: &Mutex<Vec<SidecarSteps>>,
    at_outcome: usize,
) -> (serde_json::Value, Vec<f64>) {
    let mut published: Vec<f64> = Vec::new();
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
            if let Some(w) = r["weights"]["canary"].as_f64() {
                if published.last() != Some(&w) {
                    published.push(w);
                }
            }
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
    for p in stable {
        let sent = metrics::sum(
            &p.sidecar_metrics(),
            "augur_rollout_requests_total{policy=\"default/model\",arm=\"canary\"}",
        );
        assert!(sent > 0.0, "{} sent canary requests", p.name);
    }
    wait_for(
        &format!("{at_outcome} requests at the outcome from every sidecar"),
        Duration::from_secs(60),
        || {
            let steps = steps.lock().unwrap_or_else(|p| p.into_inner());
            steps
                .iter()
                .all(|s| s.current() >= at_outcome)
                .then_some(())
        },
    );
    (status, published)
}

/// 20%, a gate, 50%, a gate, 100%, judged on errors and accuracy. Each gate waits for enough
/// canary samples over the whole rollout (600 requests at 20%, then about 560 more at 50%)
/// that every sidecar routes a few hundred requests at each weight before the fleet moves on.
const STEPPED: Rollout = Rollout {
    steps: &[
        "setWeight: 20",
        "analysis: {minSamples: 120}",
        "setWeight: 50",
        "analysis: {minSamples: 700}",
        "setWeight: 100",
    ],
    ..ERRORS_AND_ACCURACY
};

/// Requests each sidecar must route at a step for its share to say which weight it applied:
/// with 100, the 4σ band at 20% (4–36%) excludes 50%, and the one at 50% (30–70%) excludes
/// 20% and 100%.
const PER_STEP: usize = 100;

#[test]
fn a_good_canary_is_promoted_on_the_fleets_evidence() {
    let outcome = run(
        "evg",
        Canary::Model("nonmedical-tiny-c"),
        &STEPPED,
        PER_STEP,
    );
    let status = &outcome.status;
    assert_eq!(status["state"]["phase"], "promoted", "{status:#}");
    assert_eq!(
        outcome.published,
        [20.0, 50.0, 100.0],
        "the controller walked every weight step"
    );
    // At every step, every sidecar split its own traffic at the step's weight.
    for (name, steps) in &outcome.sidecars {
        let weights: Vec<f64> = steps.iter().map(|s| s.weight).collect();
        assert_eq!(weights, outcome.published, "{name} applied every step");
        for step in steps {
            let n = step.stable + step.canary;
            eprintln!(
                "{name} at {}%: {} of {n} to the canary",
                step.weight, step.canary
            );
            assert!(
                n >= PER_STEP,
                "{name} routed {n} requests at {}%",
                step.weight
            );
            assert_share_near(step.canary, n, step.weight / 100.0);
        }
    }
}

#[test]
fn a_failing_canary_is_rolled_back_on_the_fleets_error_rate() {
    let status = run("eve", Canary::Failing, &ERRORS_AND_ACCURACY, 0).status;
    assert_eq!(status["state"]["phase"], "rolled_back", "{status:#}");
    let reason = status["decisions"][0]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("error"), "rolled back for errors: {reason}");
}

#[test]
fn an_inaccurate_canary_is_rolled_back_on_the_labels() {
    let status = run(
        "eva",
        Canary::Model("nonmedical-tiny-a"),
        &ERRORS_AND_ACCURACY,
        0,
    )
    .status;
    assert_eq!(status["state"]["phase"], "rolled_back", "{status:#}");
    let reason = status["decisions"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("accuracy"),
        "rolled back on accuracy: {reason}"
    );
}

/// 30%, a gate, 100%, judged on errors and on the p95 latency, which may grow by 100 ms.
const LATENCY: Rollout = Rollout {
    steps: &["setWeight: 30", "analysis: {}", "setWeight: 100"],
    metrics: &[
        "{name: error-rate, kind: errorRate, allowedChange: {absolute: 30}, critical: true}",
        "{name: p95-latency, kind: latency, quantile: 0.95, direction: increase, allowedChange: {absolute: 100ms}, critical: true}",
    ],
    ..ERRORS_AND_ACCURACY
};

#[test]
fn a_slow_canary_is_rolled_back_on_the_fleets_latency() {
    let status = run("evl", Canary::Slow("nonmedical-tiny-c"), &LATENCY, 0).status;
    assert_eq!(status["state"]["phase"], "rolled_back", "{status:#}");
    let reason = status["decisions"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("p95-latency"),
        "rolled back on the p95 latency: {reason}"
    );
}

/// The verdict on `metric` that came with the rollout's first decision.
fn deciding_verdict(status: &serde_json::Value, metric: &str) -> serde_json::Value {
    status["decisions"][0]["verdicts"]
        .as_array()
        .and_then(|all| all.iter().find(|v| v["metric"] == metric))
        .cloned()
        .unwrap_or_else(|| panic!("a verdict on {metric}: {status:#}"))
}

/// 30%, a gate, 100%, judged on errors and on each arm's agreement with the stable sidecars'
/// shadow model, which may drop by 30 points. The rollout lasts less than the default 2-min
/// burst window, which a rate metric's Fail would leave out: no burst window, so the analysis
/// itself can decide (and no accuracy trigger, which would decide first on a wrong canary).
const SHADOW_AGREEMENT: Rollout = Rollout {
    metrics: &[
        "{name: error-rate, kind: errorRate, allowedChange: {absolute: 30}, critical: true}",
        "{name: shadow-agreement, kind: shadowAgreement, allowedChange: {absolute: 30}}",
    ],
    analysis: &["burstWindow: 0s"],
    triggers: &[ERRORS_TRIGGER],
    shadow: true,
    ..ERRORS_AND_ACCURACY
};

/// The stable sidecars hold the shadow model, which agrees with stable's answers (NORMAL) and
/// with none of the canary's (nonmedical-tiny-a: PNEUMONIA). Only the sidecars' exported
/// comparisons, summed through Prometheus, show it to the controller.
#[test]
fn a_canary_the_shadow_disagrees_with_is_rolled_back_on_the_fleets_agreement() {
    let status = run(
        "evs",
        Canary::Model("nonmedical-tiny-a"),
        &SHADOW_AGREEMENT,
        0,
    )
    .status;
    assert_eq!(status["state"]["phase"], "rolled_back", "{status:#}");
    let reason = status["decisions"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("shadow-agreement"),
        "rolled back on the shadow agreement: {reason}"
    );
    let verdict = deciding_verdict(&status, "shadow-agreement");
    assert_eq!(
        (verdict["stable"].as_f64(), verdict["canary"].as_f64()),
        (Some(1.0), Some(0.0)),
        "the shadow agreed with every stable answer and no canary answer: {verdict:#}"
    );
}

/// 30%, a gate, 100%, judged on errors and on the drift (PSI) of the canary's scores from
/// stable's, allowed up to 0.2.
const DRIFT: Rollout = Rollout {
    metrics: &[
        "{name: error-rate, kind: errorRate, allowedChange: {absolute: 30}, critical: true}",
        "{name: score-drift, kind: predictionDrift, allowedChange: {absolute: 0.2}}",
    ],
    ..ERRORS_AND_ACCURACY
};

/// A canary that gives every answer the same label but a score [`SCORE_SHIFT`] higher: right
/// as often as stable, its scores in another tenth. Only the sidecars' score histograms, read
/// through Prometheus, show it.
#[test]
fn a_canary_whose_scores_drift_is_rolled_back_on_the_fleets_score_histograms() {
    let status = run("evd", Canary::Shifted("nonmedical-tiny-c"), &DRIFT, 0).status;
    assert_eq!(status["state"]["phase"], "rolled_back", "{status:#}");
    let reason = status["decisions"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("score-drift"),
        "rolled back on the score drift: {reason}"
    );
    let verdict = deciding_verdict(&status, "score-drift");
    let psi = verdict["estimate"].as_f64().unwrap_or(0.0);
    assert!(psi > 0.2, "the PSI is beyond its allowance: {verdict:#}");
}

/// 30%, a gate, 100%, judged on errors and on calibration: the canary's mean Brier score may
/// exceed stable's by 0.05.
const CALIBRATION: Rollout = Rollout {
    metrics: &[
        "{name: error-rate, kind: errorRate, allowedChange: {absolute: 30}, critical: true}",
        "{name: brier-score, kind: calibration, allowedChange: {absolute: 0.05}}",
    ],
    ..ERRORS_AND_ACCURACY
};

/// The same shifted canary, judged on calibration: with the labels posted to the controller
/// (all NORMAL), stable's Brier score is 0.2865² and the canary's 0.4365². Only the sidecars'
/// Brier sums, read through Prometheus, show it.
#[test]
fn a_miscalibrated_canary_is_rolled_back_on_the_fleets_brier_sums() {
    let status = run("evc", Canary::Shifted("nonmedical-tiny-c"), &CALIBRATION, 0).status;
    assert_eq!(status["state"]["phase"], "rolled_back", "{status:#}");
    let reason = status["decisions"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("brier-score"),
        "rolled back on calibration: {reason}"
    );
    let verdict = deciding_verdict(&status, "brier-score");
    let brier = |arm: &str| verdict[arm].as_f64().unwrap_or(f64::NAN);
    // The fixture's score, as `augur score` gives it, to its 4 decimals.
    let stable_score = 0.2865;
    for (arm, score) in [
        ("stable", stable_score),
        ("canary", stable_score + SCORE_SHIFT),
    ] {
        assert!(
            (brier(arm) - score * score).abs() < 1e-3,
            "{arm}'s Brier score is its score squared: {verdict:#}"
        );
    }
}
