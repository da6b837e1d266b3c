//! The fleet, as a cluster on one machine: network namespaces as pods routed through a node,
//! Services as kube-proxy programs them, sidecars under the capture rules of `augur init`.
//!
//! Needs root and `ip netns` (scripts/setup.sh installs iproute2 and iptables).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use augur_tests::cluster::{Cluster, Pod, GATEWAY};
use augur_tests::netns::{
    curl, get_many, must, must_in, post_many, spawn_in, spawn_logged, Load, Running,
};
use augur_tests::prometheus::Prometheus;
use augur_tests::{assert_share_near, metrics, wait_for};

/// A pod's HTTP server on port 8501 whose `/who` answers the pod's name.
fn who_server(
    pod: &augur_tests::cluster::Pod,
    root: &std::path::Path,
) -> augur_tests::netns::Running {
    let dir = root.join(&pod.name);
    std::fs::create_dir_all(&dir).expect("www dir");
    std::fs::write(dir.join("who"), &pod.name).expect("who file");
    spawn_in(
        pod.ns(),
        &[
            "python3",
            "-m",
            "http.server",
            "8501",
            "--bind",
            "0.0.0.0",
            "--directory",
            dir.to_str().expect("utf-8"),
        ],
    )
}

/// The cluster itself: a client pod reaches a Service address, and kube-proxy's rules spread
/// its connections over every endpoint.
#[test]
fn a_service_address_spreads_connections_over_its_pods() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::new("svc");
    let pods: Vec<_> = (0..3).map(|i| cluster.pod(&format!("model-{i}"))).collect();
    let client = cluster.pod("client");
    let _servers: Vec<_> = pods.iter().map(|p| who_server(p, root.path())).collect();
    let vip = Ipv4Addr::new(10, 96, 0, 10);
    let endpoints: Vec<_> = pods.iter().map(|p| (p.ip, 8501)).collect();
    cluster.service("model", vip, 80, &endpoints);
    for pod in &pods {
        let url = format!("http://{}:8501/who", pod.ip);
        wait_for(
            &format!("{} to serve", pod.name),
            Duration::from_secs(10),
            || curl(client.ns(), &url, None),
        );
    }
    let seen: BTreeSet<String> = (0..60)
        .filter_map(|_| curl(client.ns(), &format!("http://{vip}/who"), None))
        .collect();
    let names: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
    // With 60 connections, a pod is missed with probability 3 × (2/3)^60 ≈ 1e-10.
    assert_eq!(seen, names, "every endpoint of the Service is reached");
}

/// Steps that hold the rollout at 30% until promoted.
const HOLD_AT_30: &str = "  - setWeight: 30\n  - pause: {}\n";

/// The inbound topology's policies: Service `model` (the stable pods, VIP `stable_vip`) and
/// Service `model-canary` (VIP `canary_vip`), with the rollout split in the stable pods'
/// sidecars, held at 30% canary.
fn inbound_policy(stable_vip: Ipv4Addr, canary_vip: Ipv4Addr, steps: &str) -> String {
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
{steps}  analysis:
    interval: 1m
    metrics:
    - name: error-rate
      kind: errorRate
      allowedChange: {{absolute: 5}}
"#
    )
}

/// Sends `n` GET requests from `ns` to `url` (`Host: host`) carrying `x-augur-split: mark`, as
/// [`get_many`] does, and returns each body (`None` for a failure).
fn get_many_marked(ns: &str, url: &str, host: &str, mark: &str, n: usize) -> Vec<Option<String>> {
    let script = format!(
        r#"
import json, urllib.request
out = []
for _ in range({n}):
    try:
        req = urllib.request.Request({url:?}, headers={{"Host": {host:?}, "x-augur-split": {mark:?}}})
        with urllib.request.urlopen(req, timeout=5) as r:
            out.append(r.read().decode())
    except Exception:
        out.append(None)
print(json.dumps(out))
"#
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).expect("client output")
}

/// Inbound topology: a client with no sidecar calls the model Service, which selects the
/// stable pod only; the stable pod's sidecar keeps 70% for its local app and sends 30% on to
/// the canary's Service; the canary pod's sidecar (with the same policy mounted) serves what
/// it is sent and never splits it again. A client that sends `x-augur-split` itself (the
/// bare policy name, or a made-up fingerprint) is split and counted like any other.
#[test]
fn inbound_policy_splits_in_the_stable_pod() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::new("inb");
    let (stable, canary, client) = (
        cluster.pod("stable"),
        cluster.pod("canary"),
        cluster.pod("client"),
    );
    let (stable_vip, canary_vip) = (Ipv4Addr::new(10, 96, 0, 10), Ipv4Addr::new(10, 96, 0, 11));
    cluster.service("model", stable_vip, 80, &[(stable.ip, 8501)]);
    cluster.service("model-canary", canary_vip, 80, &[(canary.ip, 8501)]);
    let _apps = (
        who_server(&stable, root.path()),
        who_server(&canary, root.path()),
    );
    let policy = root.path().join("policy.yaml");
    std::fs::write(&policy, inbound_policy(stable_vip, canary_vip, HOLD_AT_30)).expect("policy");
    let policy = policy.to_str().expect("utf-8");
    let _sidecars = (
        stable.sidecar(root.path(), &["--policy", policy]),
        canary.sidecar(root.path(), &["--policy", policy]),
    );
    let url = format!("http://{stable_vip}/who");
    wait_for("the stable pod to serve", Duration::from_secs(10), || {
        curl(client.ns(), &url, Some("model"))
    });

    let arm = |pod: &Pod, arm: &str| {
        let selector = format!("augur_requests_total{{arm=\"{arm}\"}}");
        metrics::sum(&pod.sidecar_metrics(), &selector) as usize
    };
    let before = (arm(&stable, "stable"), arm(&stable, "canary"));
    let n = 600;
    let answers = get_many(client.ns(), &url, "model", n);
    assert!(
        answers.iter().all(Option::is_some),
        "every request is served"
    );
    let to_canary = answers
        .iter()
        .filter(|a| a.as_deref() == Some("canary"))
        .count();
    let to_stable = answers
        .iter()
        .filter(|a| a.as_deref() == Some("stable"))
        .count();
    assert_eq!(to_canary + to_stable, n, "only the two versions answer");
    assert_share_near(to_canary, n, 0.3);

    // Both arms are the stable sidecar's: every request counted once, on the arm that served it.
    assert_eq!(arm(&stable, "canary") - before.1, to_canary);
    assert_eq!(arm(&stable, "stable") - before.0, to_stable);
    // The canary's sidecar passed what it was sent to its app: no split, no second sample.
    assert_eq!(arm(&canary, "stable") + arm(&canary, "canary"), 0);
    let served_by_canary = metrics::sum(
        &canary.sidecar_metrics(),
        "istio_requests_total{reporter=\"destination\"}",
    ) as usize;
    assert!(
        served_by_canary >= to_canary,
        "the canary's sidecar saw its requests"
    );

    // A client's own x-augur-split is not the policy's mark: split and counted all the same,
    // and still never split twice.
    for forged in ["default/model", "default/model;0123456789abcdef"] {
        let before = (arm(&stable, "stable"), arm(&stable, "canary"));
        let answers = get_many_marked(client.ns(), &url, "model", forged, n);
        let to_canary = answers
            .iter()
            .filter(|a| a.as_deref() == Some("canary"))
            .count();
        let to_stable = answers
            .iter()
            .filter(|a| a.as_deref() == Some("stable"))
            .count();
        assert_eq!(to_canary + to_stable, n, "{forged}: every request served");
        assert_share_near(to_canary, n, 0.3);
        assert_eq!(arm(&stable, "canary") - before.1, to_canary, "{forged}");
        assert_eq!(arm(&stable, "stable") - before.0, to_stable, "{forged}");
        assert_eq!(
            arm(&canary, "stable") + arm(&canary, "canary"),
            0,
            "{forged}"
        );
    }
}

/// The controller's token in the cluster tests.
const TOKEN: &str = "s3cret-fleet-token";

/// The canary weight `pod`'s sidecar applies now.
fn canary_weight(pod: &Pod) -> f64 {
    metrics::sum(
        &pod.sidecar_metrics(),
        "augur_rollout_weight{policy=\"default/model\",arm=\"canary\"}",
    )
}

/// `pod`'s sidecar's view of its controller.
fn controller_view(pod: &Pod) -> serde_json::Value {
    curl(pod.ns(), "http://127.0.0.1:15000/controller", None)
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default()
}

/// Sends a rollout command to the controller from the node (its loopback).
fn command(cluster: &Cluster, verb: &str) {
    let url = format!("http://127.0.0.1:15010/rollouts/model/{verb}");
    let out = must_in(
        cluster.node(),
        &["curl", "-sf", "-X", "POST", "--max-time", "5", &url],
    );
    assert!(out.contains("decision"), "{verb}: {out}");
}

/// Waits until every pod's sidecar applies `canary`%; returns how long it took.
fn all_at(pods: &[&Pod], canary: f64) -> Duration {
    let start = Instant::now();
    wait_for(
        &format!("every sidecar at {canary}%"),
        Duration::from_secs(15),
        || {
            pods.iter()
                .all(|p| canary_weight(p) == canary)
                .then_some(())
        },
    );
    start.elapsed()
}

/// Starts `augur controller` (with [`TOKEN`]) on the cluster's node, its state in
/// `root/controller-state` and its log appended to `root/controller.log` (a restart on the same
/// state directory adds to both); returns once it is ready. Sidecars reach it at the node's
/// address, port 15010.
fn start_controller(cluster: &Cluster, root: &Path, policy: &str) -> Running {
    let state = root.join("controller-state");
    std::fs::create_dir_all(&state).expect("state dir");
    let augur = augur_tests::augur::bin();
    let running = spawn_logged(
        cluster.node(),
        &[
            augur.to_str().expect("utf-8"),
            "controller",
            "--policy",
            policy,
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--listen",
            "0.0.0.0:15010",
            "--admin",
            "127.0.0.1:15000",
            "--prometheus",
            "0.0.0.0:15014",
            "--token",
            TOKEN,
        ],
        Some(&root.join("controller.log")),
    );
    wait_for("the controller", Duration::from_secs(20), || {
        curl(cluster.node(), "http://127.0.0.1:15010/ready", None)
    });
    running
}

/// Injects into `pod` a sidecar that follows the node's controller with `token`.
fn follow(pod: &Pod, root: &Path, policy: &str, token: &str) -> Running {
    let controller = format!("{GATEWAY}:15010");
    pod.sidecar(
        root,
        &[
            "--policy",
            policy,
            "--controller",
            &controller,
            "--controller-token",
            token,
            "--node",
            &pod.name,
        ],
    )
}

/// The cluster the controller tests start from: three stable pods behind the model Service and
/// a canary pod behind its own, each with its `/who` app; the inbound policy 30% → 60% → 100%
/// with pauses; `augur controller` on the node; the stable sidecars following it and the
/// canary's (no policy) passing everything to its app.
struct Fleet {
    // Fields drop in order: the processes before the namespaces they run in.
    controller: Running,
    _sidecars: Vec<Running>,
    _canary_sidecar: Running,
    _apps: Vec<Running>,
    stable: Vec<Pod>,
    _canary: Pod,
    stable_vip: Ipv4Addr,
    canary_vip: Ipv4Addr,
    /// The model Service's endpoints (a scale-out adds one).
    endpoints: Vec<(Ipv4Addr, u16)>,
    policy: String,
    cluster: Cluster,
    root: tempfile::TempDir,
}

impl Fleet {
    /// Starts it on a new node tagged `tag`, with the Services at `vips` (stable, canary);
    /// returns once every stable sidecar applies the fleet's 30%.
    fn start(tag: &str, (stable_vip, canary_vip): (Ipv4Addr, Ipv4Addr)) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let mut cluster = Cluster::new(tag);
        let stable: Vec<Pod> = (0..3)
            .map(|i| cluster.pod(&format!("stable-{i}")))
            .collect();
        let canary = cluster.pod("canary");
        let endpoints: Vec<_> = stable.iter().map(|p| (p.ip, 8501)).collect();
        cluster.service("model", stable_vip, 80, &endpoints);
        cluster.service("model-canary", canary_vip, 80, &[(canary.ip, 8501)]);
        let apps = stable
            .iter()
            .chain([&canary])
            .map(|p| who_server(p, root.path()))
            .collect();
        let steps =
            "  - setWeight: 30\n  - pause: {}\n  - setWeight: 60\n  - pause: {}\n  - setWeight: 100\n";
        let file = root.path().join("policy.yaml");
        std::fs::write(&file, inbound_policy(stable_vip, canary_vip, steps)).expect("policy");
        let policy = file.to_str().expect("utf-8").to_owned();
        // The controller, on the node; sidecars reach it at the node's address.
        let controller = start_controller(&cluster, root.path(), &policy);
        let sidecars = stable
            .iter()
            .map(|p| follow(p, root.path(), &policy, TOKEN))
            .collect();
        // The canary pod's sidecar holds no policy: it passes everything to its app.
        let empty = root.path().join("no-policy");
        std::fs::create_dir_all(&empty).expect("empty policy dir");
        let canary_sidecar =
            canary.sidecar(root.path(), &["--policy", empty.to_str().expect("utf-8")]);
        for pod in &stable {
            assert_eq!(
                canary_weight(pod),
                30.0,
                "{} starts at the fleet's weight",
                pod.name
            );
        }
        Self {
            controller,
            _sidecars: sidecars,
            _canary_sidecar: canary_sidecar,
            _apps: apps,
            stable,
            _canary: canary,
            stable_vip,
            canary_vip,
            endpoints,
            policy,
            cluster,
            root,
        }
    }
}

/// The fleet as Kubernetes runs it, inbound topology: three stable pods behind the model
/// Service and one canary pod behind its own, a client without sidecar, and `augur controller`
/// (with a token) on the node. Every stable sidecar splits at the controller's weight (4σ
/// each); a promote reaches all of them within 2 s; callers without the token are refused and
/// counted, and learn nothing; a sidecar cut off from the controller holds its weight and says
/// how stale it is, and converges once its link is back.
#[test]
fn the_cluster_follows_one_controller() {
    let mut fleet = Fleet::start(
        "ctl",
        (Ipv4Addr::new(10, 96, 0, 20), Ipv4Addr::new(10, 96, 0, 21)),
    );
    let client = fleet.cluster.pod("client");
    let outsider = fleet.cluster.pod("outsider");
    let Fleet {
        root,
        cluster,
        stable,
        stable_vip,
        policy,
        ..
    } = &fleet;
    let follow = |pod: &Pod, token: &str| follow(pod, root.path(), policy, token);
    let stable_refs: Vec<&Pod> = stable.iter().collect();

    // Every stable sidecar splits its share of the client's requests at 30%.
    let url = format!("http://{stable_vip}/who");
    let before: Vec<_> = stable.iter().map(arm_counts).collect();
    let answers = get_many(client.ns(), &url, "model", 900);
    assert!(
        answers.iter().all(Option::is_some),
        "every request is served"
    );
    for (pod, (s0, c0)) in stable.iter().zip(before) {
        let (s, c) = arm_counts(pod);
        let (s, c) = (s - s0, c - c0);
        assert!(
            s + c > 150,
            "{} got its share of connections: {}",
            pod.name,
            s + c
        );
        assert_share_near(c, s + c, 0.3);
    }

    // Without the token: refused, counted, and nothing learned.
    for path in ["/v1/fleet/state", "/rollouts", "/v1/fleet/watch"] {
        let url = format!("http://{GATEWAY}:15010{path}");
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                outsider.ns(),
                "curl",
                "-s",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ])
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "401",
            "{path} without the token"
        );
    }
    let with_token = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            outsider.ns(),
            "curl",
            "-sf",
            "--max-time",
            "5",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg(format!("http://{GATEWAY}:15010/v1/fleet/state"))
        .output()
        .expect("curl");
    assert!(String::from_utf8_lossy(&with_token.stdout).contains("\"canary_weight\":30"));
    // A command and an xDS request without the token: refused, and nothing done or told.
    let step = controller_step(cluster);
    let refusals = [
        ("/rollouts/model/promote", "", "command"),
        (
            "/v3/discovery:routes",
            r#"{"node": {"id": "outsider", "cluster": "x"}, "resource_names": ["augur"]}"#,
            "xds",
        ),
    ];
    for (path, body, _) in refusals {
        let (status, answer) = post_from(
            outsider.ns(),
            &format!("http://{GATEWAY}:15010{path}"),
            body,
            None,
        );
        assert_eq!(status, 401, "POST {path} without the token");
        for secret in ["model", "weight", "phase", "step", "canary", "routes"] {
            assert!(
                !answer.contains(secret),
                "POST {path}: the refusal tells nothing: {answer:?}"
            );
        }
    }
    let (status, _) = post_from(
        outsider.ns(),
        &format!("http://{GATEWAY}:15010/rollouts/model/promote"),
        "",
        Some("not-the-token"),
    );
    assert_eq!(status, 401, "a command with the wrong token");
    assert_eq!(controller_step(cluster), step, "no command was carried out");
    let _wrong = follow(&outsider, "not-the-token");
    wait_for("the refusal to show", Duration::from_secs(10), || {
        let view = controller_view(&outsider);
        (view["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("token"))
            && view["applied"].is_null())
        .then_some(())
    });
    let refused = metrics::sum(
        &curl(
            cluster.node(),
            "http://127.0.0.1:15014/stats/prometheus",
            None,
        )
        .unwrap_or_default(),
        "augur_controller_unauthorized_total",
    );
    assert!(refused >= 7.0, "refusals counted: {refused}");
    let text = curl(
        cluster.node(),
        "http://127.0.0.1:15014/stats/prometheus",
        None,
    )
    .unwrap_or_default();
    let commands = metrics::sum(
        &text,
        "augur_controller_unauthorized_total{endpoint=\"command\"}",
    );
    let xds = metrics::sum(
        &text,
        "augur_controller_unauthorized_total{endpoint=\"xds\"}",
    );
    assert!(commands >= 2.0, "refused commands counted: {commands}");
    assert!(xds >= 1.0, "refused xDS requests counted: {xds}");
    let log = std::fs::read_to_string(root.path().join("controller.log")).unwrap_or_default();
    for (path, _, endpoint) in refusals {
        assert!(
            log.lines().any(|l| l.contains("refused: no valid token")
                && l.contains(&outsider.ip.to_string())
                && l.contains(path)
                && l.contains(endpoint)),
            "the refused POST {path} is logged with the caller and its kind ({endpoint}):\n{log}"
        );
    }
    let logged = log
        .lines()
        .filter(|l| l.contains("refused: no valid token") && l.contains(&outsider.ip.to_string()))
        .count();
    assert!(
        logged >= 4,
        "each refusal logged with the caller's address:\n{log}"
    );

    // One promote, every sidecar.
    command(cluster, "promote");
    let took = all_at(&stable_refs, 60.0);
    // Measured, and bounded loosely (a shared 2-core machine): the issue's 1 s is the goal.
    eprintln!("promote reached every sidecar pod in {took:?}");
    assert!(took < Duration::from_secs(2), "all switched in {took:?}");

    // A partition: stable-0 holds 60% and reports staleness while the others move on.
    stable[0].set_link(false);
    wait_for(
        "stable-0 to lose the controller",
        Duration::from_secs(15),
        || (controller_view(&stable[0])["connected"] == false).then_some(()),
    );
    command(cluster, "promote");
    all_at(&stable_refs[1..], 100.0);
    assert_eq!(canary_weight(&stable[0]), 60.0, "fail static");
    let stale = controller_view(&stable[0])["stale_seconds"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(stale > 0.0, "staleness reported: {stale}");
    stable[0].set_link(true);
    let took = all_at(&stable_refs[..1], 100.0);
    eprintln!("the partitioned sidecar converged {took:?} after its link came back");
    assert!(
        took < Duration::from_secs(2),
        "converged {took:?} after the link came back"
    );
}

/// A POST of `body` from `ns` to `url` with curl, with `Authorization: Bearer <token>` when
/// given: the status and the answer's body.
fn post_from(ns: &str, url: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut args = vec![
        "netns",
        "exec",
        ns,
        "curl",
        "-s",
        "--max-time",
        "5",
        "-X",
        "POST",
    ];
    let auth;
    if let Some(token) = token {
        auth = format!("Authorization: Bearer {token}");
        args.extend(["-H", &auth]);
    }
    args.extend([
        "-H",
        "content-type: application/json",
        "--data-binary",
        body,
    ]);
    args.extend(["-w", "\n%{http_code}", url]);
    let out = std::process::Command::new("ip")
        .args(&args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (answer, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), answer.to_owned())
}

/// Requests `pod`'s sidecar has split so far: (stable, canary).
fn arm_counts(pod: &Pod) -> (usize, usize) {
    let text = pod.sidecar_metrics();
    let arm =
        |arm: &str| metrics::sum(&text, &format!("augur_requests_total{{arm=\"{arm}\"}}")) as usize;
    (arm("stable"), arm("canary"))
}

/// The controller's rollout as its `/rollouts` shows it: (phase, step index).
fn controller_step(cluster: &Cluster) -> (String, u64) {
    let body = curl(cluster.node(), "http://127.0.0.1:15010/rollouts", None).unwrap_or_default();
    let status: serde_json::Value = serde_json::from_str(&body).expect("/rollouts JSON");
    let r = &status["rollouts"][0];
    (
        r["state"]["phase"].as_str().unwrap_or_default().to_owned(),
        r["step"].as_u64().unwrap_or(u64::MAX),
    )
}

/// The `x-augur-split` mark of the rollout the controller runs: `<policy>;<fingerprint>`.
fn split_mark(cluster: &Cluster) -> String {
    wait_for("the controller's state", Duration::from_secs(10), || {
        let body = curl(
            cluster.node(),
            "http://127.0.0.1:15010/v1/fleet/state",
            None,
        )?;
        let state: serde_json::Value = serde_json::from_str(&body).ok()?;
        let r = &state["rollouts"][0];
        Some(format!(
            "{};{}",
            r["policy"].as_str()?,
            r["policy_hash"].as_str()?
        ))
    })
}

/// Waits until the controller publishes `canary`%; returns when it published it (its wall
/// clock, s since the epoch) and the `version_info` it gives that state over RDS.
fn published(cluster: &Cluster, canary: u64) -> (f64, String) {
    wait_for(
        &format!("the controller to publish {canary}%"),
        Duration::from_secs(10),
        || {
            let body = curl(
                cluster.node(),
                "http://127.0.0.1:15010/v1/fleet/state",
                None,
            )?;
            let state: serde_json::Value = serde_json::from_str(&body).ok()?;
            (state["rollouts"][0]["canary_weight"] == canary).then_some(())?;
            let at = state["published_at_ms"].as_f64()? / 1000.0;
            let version = format!("{}-{}", state["controller"].as_str()?, state["version"]);
            Some((at, version))
        },
    )
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the node's Prometheus holds now for `metric`: each scraped instance and its value.
fn prometheus_values(cluster: &Cluster, metric: &str) -> Vec<(String, f64)> {
    let url = format!("http://127.0.0.1:9090/api/v1/query?query={metric}");
    let body = curl(cluster.node(), &url, None).unwrap_or_default();
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    answer["data"]["result"]
        .as_array()
        .map(|series| {
            series
                .iter()
                .filter_map(|s| {
                    let instance = s["metric"]["instance"].as_str()?.to_owned();
                    let value = s["value"][1].as_str()?.parse().ok()?;
                    Some((instance, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the Envoy in `pod` has applied the routes the controller publishes for
/// `canary`% (the `version_info` of that state).
fn envoy_applied(pod: &Pod, cluster: &Cluster, canary: u64) {
    let (_, version) = published(cluster, canary);
    wait_for(
        &format!("envoy to apply routes {version}"),
        Duration::from_secs(20),
        || {
            let dump = curl(
                pod.ns(),
                "http://127.0.0.1:15000/config_dump?resource=dynamic_route_configs",
                None,
            )?;
            dump.contains(&format!("\"version_info\": \"{version}\""))
                .then_some(())
        },
    );
}

/// How many of `answers` (bodies of `/who`) the canary pod gave; panics unless every request
/// was answered by one of the model's pods.
fn from_canary(answers: &[Option<String>]) -> usize {
    for a in answers {
        let who = a.as_deref().expect("every request is served");
        assert!(
            who == "canary" || who.starts_with("stable-"),
            "answered by {who}"
        );
    }
    answers
        .iter()
        .filter(|a| a.as_deref() == Some("canary"))
        .count()
}

/// The fleet through what happens to it in production, in the same cluster as
/// [`the_cluster_follows_one_controller`] plus a Prometheus on the node scraping every stable
/// sidecar each second and a gateway pod running a stock Envoy 1.40:
/// - the controller is killed with SIGKILL at the 60% step while a client pod sends requests
///   through the model Service: every sidecar holds 60% (its gauge, and its split of the
///   traffic while the controller is away, 4σ) and Prometheus shows each one disconnected and
///   stale; no request fails; the controller restarted on its state directory resumes the same
///   step, and the sidecars reconnect to it;
/// - a pod added to the Service mid-rollout (a scale-out) has the fleet's weight before it
///   serves, and splits its very first requests at it (4σ);
/// - `augur rollout abort`, sent to the controller, brings every sidecar to 0% within 2 s of
///   the decision;
/// - the Envoy, following the controller over RDS, carries the same share (4σ), and follows the
///   promote (to 60%, 4σ) and the abort (0%).
#[test]
fn the_cluster_rides_out_a_controller_crash_a_scale_out_and_an_abort() {
    let mut fleet = Fleet::start(
        "rid",
        (Ipv4Addr::new(10, 96, 0, 40), Ipv4Addr::new(10, 96, 0, 41)),
    );
    let client = fleet.cluster.pod("client");
    let gateway = fleet.cluster.pod("gateway");
    let Fleet {
        ref root,
        ref mut cluster,
        ref stable,
        stable_vip,
        canary_vip,
        ref mut endpoints,
        ref policy,
        ref mut controller,
        ..
    } = fleet;
    // The fleet's Prometheus, on the node, scraping every stable sidecar each second.
    let targets: Vec<_> = stable
        .iter()
        .map(|p| SocketAddr::from((p.ip, 15090)))
        .collect();
    let _prometheus = Prometheus::start_in(
        Some(cluster.node()),
        "127.0.0.1:9090".parse().expect("address"),
        &targets,
    );

    // A stock Envoy in the gateway pod, its routes from the controller over RDS, its clusters
    // (named as the controller names them) the two Services. It marks what it forwards as
    // split already, as a stable pod's sidecar does (the policy's name and fingerprint, which
    // the controller publishes), so that the stable pods' sidecars do not split its stable
    // share again.
    let mark = split_mark(cluster);
    let (envoy_listen, controller_addr) = (
        SocketAddr::from((gateway.ip, 8080)),
        SocketAddr::from((GATEWAY, 15010)),
    );
    let _envoy = augur_tests::envoy::Envoy::start_rds_in(
        root.path(),
        &augur_tests::envoy::RdsInPod {
            ns: gateway.ns(),
            listen: envoy_listen,
            controller: controller_addr,
            token: TOKEN,
            route_config_name: "augur",
            request_headers: &[("x-augur-split", &mark)],
            clusters: &[
                (
                    "outbound|80||model.default.svc.cluster.local",
                    SocketAddr::from((stable_vip, 80)),
                ),
                (
                    "outbound|80||model-canary.default.svc.cluster.local",
                    SocketAddr::from((canary_vip, 80)),
                ),
            ],
        },
    );
    let via_envoy = format!("http://{envoy_listen}/who");
    envoy_applied(&gateway, cluster, 30);
    let n = 400;
    assert_share_near(
        from_canary(&get_many(client.ns(), &via_envoy, "model", n)),
        n,
        0.3,
    );

    // A promote reaches the sidecars and the Envoy, which carries the new share.
    command(cluster, "promote");
    let stable_refs: Vec<&Pod> = stable.iter().collect();
    all_at(&stable_refs, 60.0);
    envoy_applied(&gateway, cluster, 60);
    assert_share_near(
        from_canary(&get_many(client.ns(), &via_envoy, "model", n)),
        n,
        0.6,
    );

    // The controller is killed (SIGKILL) at 60% (a step a controller that lost its state
    // would not come back to) while the client sends requests through the model Service.
    let url = format!("http://{stable_vip}/who");
    let load = Load::start(client.ns(), &url, "model", root.path());
    let counted = || arm_counts(&stable[0]).0 + arm_counts(&stable[0]).1;
    let start = counted();
    wait_for(
        "the client's requests to flow",
        Duration::from_secs(20),
        || (counted() > start + 20).then_some(()),
    );
    let before_kill = controller_step(cluster);
    assert_eq!(
        before_kill.0, "paused",
        "held at the 60% step: {before_kill:?}"
    );
    let pid = controller.pid().to_string();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "augur", "the controller's own process");
    must(&["kill", "-9", &pid]);
    let _ = controller.0.wait();
    for pod in stable {
        wait_for(
            &format!("{} to lose the controller", pod.name),
            Duration::from_secs(15),
            || (controller_view(pod)["connected"] == false).then_some(()),
        );
    }
    // Operators see the outage where they look: Prometheus scrapes every sidecar reporting
    // that it lost the controller, and how stale its routing is.
    wait_for(
        "Prometheus to show every sidecar cut off from the controller",
        Duration::from_secs(20),
        || {
            let connected = prometheus_values(cluster, "augur_controller_connected");
            let stale = prometheus_values(cluster, "augur_controller_staleness_seconds");
            (connected.len() == stable.len()
                && connected.iter().all(|(_, v)| *v == 0.0)
                && stale.len() == stable.len()
                && stale.iter().all(|(_, v)| *v > 0.0))
            .then_some(())
        },
    );
    // Fail static: each sidecar's weight holds, and so does its split of what it serves while
    // the controller is away.
    let during: Vec<_> = stable.iter().map(arm_counts).collect();
    for (pod, (s0, c0)) in stable.iter().zip(&during) {
        let (s, c) = wait_for(
            &format!("{} to serve 150 requests without the controller", pod.name),
            Duration::from_secs(60),
            || {
                let (s, c) = arm_counts(pod);
                (s + c >= s0 + c0 + 150).then_some((s - s0, c - c0))
            },
        );
        assert_eq!(canary_weight(pod), 60.0, "{} holds 60%", pod.name);
        assert_share_near(c, s + c, 0.6);
    }

    // Restarted on the same state directory: the same step, and every sidecar reconnects.
    let _restarted = start_controller(cluster, root.path(), policy);
    assert_eq!(
        controller_step(cluster),
        before_kill,
        "the same step resumes"
    );
    for pod in stable {
        wait_for(
            &format!("{} to reconnect", pod.name),
            Duration::from_secs(15),
            || (controller_view(pod)["connected"] == true).then_some(()),
        );
        assert_eq!(canary_weight(pod), 60.0, "{} still at 60%", pod.name);
    }
    let counts = load.stop();
    assert_eq!(counts.failed, 0, "no request failed: {counts:?}");
    assert!(counts.served > 450, "the client kept sending: {counts:?}");

    // Scale-out: a new pod has the fleet's 60% before it listens, then joins the Service and
    // splits its very first requests at 60%.
    let late = cluster.pod("stable-3");
    let _late_app = who_server(&late, root.path());
    let _late_sidecar = follow(&late, root.path(), policy, TOKEN);
    assert_eq!(
        controller_view(&late)["synced_before_listening"],
        true,
        "{}",
        controller_view(&late)
    );
    assert_eq!(canary_weight(&late), 60.0, "60% before its first request");
    assert_eq!(arm_counts(&late), (0, 0), "no request yet");
    endpoints.push((late.ip, 8501));
    cluster.service("model", stable_vip, 80, endpoints);
    let answers = get_many(client.ns(), &url, "model", 800);
    from_canary(&answers);
    let (s, c) = arm_counts(&late);
    assert!(s + c >= 100, "the new pod got its share: {}", s + c);
    assert_share_near(c, s + c, 0.6);

    // Abort, sent to the controller with the command line, reaches every sidecar.
    let augur = augur_tests::augur::bin();
    must_in(
        cluster.node(),
        &[
            augur.to_str().expect("utf-8"),
            "rollout",
            "--admin",
            "127.0.0.1:15010",
            "abort",
            "model",
        ],
    );
    let (decided, _) = published(cluster, 0);
    let mut everyone = stable_refs.clone();
    everyone.push(&late);
    all_at(&everyone, 0.0);
    let after = now_unix() - decided;
    assert!(
        after < 2.0,
        "every sidecar at 0% {after:.2} s after the controller published the abort"
    );
    assert_eq!(controller_step(cluster).0, "aborted");
    assert_eq!(from_canary(&get_many(client.ns(), &url, "model", 100)), 0);
    envoy_applied(&gateway, cluster, 0);
    assert_eq!(
        from_canary(&get_many(client.ns(), &via_envoy, "model", 100)),
        0
    );
}

/// A model server in `pod` on port 8501 that answers every POST with `label` at 0.9.
fn predictor(pod: &Pod, label: &str, version: &str) -> augur_tests::netns::Running {
    let script = format!(
        r#"
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({{"prediction": {label:?}, "confidence": 0.9, "model_version": {version:?}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8501), H).serve_forever()
"#
    );
    spawn_in(pod.ns(), &["python3", "-c", &script])
}

/// Mirroring and the embedded shadow model on inbound traffic: the stable pod's sidecar scores
/// every request it splits with the shadow model, on both arms, and compares its verdicts with
/// what the local app (stable, NORMAL) and the canary (PNEUMONIA) answered.
#[test]
fn the_shadow_model_scores_inbound_traffic_on_both_arms() {
    let ort = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (scripts/setup.sh sets it)");
    assert!(
        std::path::Path::new(&ort).exists(),
        "ORT_DYLIB_PATH={ort} does not exist"
    );
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf();
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::new("shd");
    let (stable, canary, client) = (
        cluster.pod("stable"),
        cluster.pod("canary"),
        cluster.pod("client"),
    );
    let (stable_vip, canary_vip) = (Ipv4Addr::new(10, 96, 0, 30), Ipv4Addr::new(10, 96, 0, 31));
    cluster.service("model", stable_vip, 80, &[(stable.ip, 8501)]);
    cluster.service("model-canary", canary_vip, 80, &[(canary.ip, 8501)]);
    let _apps = (
        predictor(&stable, "NORMAL", "v1"),
        predictor(&canary, "PNEUMONIA", "v2"),
    );
    let model = repo.join("inference/fixtures/models/nonmedical-tiny-a.onnx");
    let steps = "  - setWeight: 50\n  - pause: {}\n";
    let policy = inbound_policy(stable_vip, canary_vip, steps).replace(
        "  analysis:\n    interval: 1m\n    metrics:\n    - name: error-rate\n      kind: errorRate\n      allowedChange: {absolute: 5}\n",
        &format!(
            "  analysis:\n    interval: 1s\n    minSamples: 1\n    onNoData: continue\n    metrics:\n    \
             - {{name: agreement, kind: shadowAgreement, allowedChange: {{absolute: 100}}}}\n  \
             prediction: {{scorePointer: /confidence, labelPointer: /prediction, positiveLabel: PNEUMONIA}}\n  \
             shadow:\n    model: {}\n    mirrorPercentage: 100\n    \
             preprocessing: {{channels: 1, width: 64, height: 64, resize: bilinear, range: [0, 1], layout: NCHW}}\n",
            model.display()
        ),
    );
    assert!(
        policy.contains("shadowAgreement"),
        "the analysis was replaced"
    );
    let file = root.path().join("policy.yaml");
    std::fs::write(&file, policy).expect("policy");
    let empty = root.path().join("no-policy");
    std::fs::create_dir_all(&empty).expect("empty policy dir");
    let _sidecars = (
        stable.sidecar(root.path(), &["--policy", file.to_str().expect("utf-8")]),
        canary.sidecar(root.path(), &["--policy", empty.to_str().expect("utf-8")]),
    );
    let xray = repo.join("inference/testdata/xrays/NORMAL2-IM-1427-0001.jpeg");
    let url = format!("http://{stable_vip}/predict");
    let answers = post_many(client.ns(), &url, "model", &xray, "image/jpeg", "x", 20);
    let served = (
        answers
            .iter()
            .filter(|a| a.as_deref().is_some_and(|b| b.contains("\"v1\"")))
            .count(),
        answers
            .iter()
            .filter(|a| a.as_deref().is_some_and(|b| b.contains("\"v2\"")))
            .count(),
    );
    assert_eq!(served.0 + served.1, 20, "every X-ray answered: {answers:?}");

    // The fixture labels this X-ray NORMAL with this recipe (P 0.35; see mirror.rs): the
    // shadow agrees with every stable answer and with no canary answer.
    let verdict = wait_for(
        "an agreement verdict over all 20 shadow comparisons",
        Duration::from_secs(30),
        || {
            let s: serde_json::Value =
                serde_json::from_str(&curl(stable.ns(), "http://127.0.0.1:15000/rollouts", None)?)
                    .ok()?;
            let v = s["rollouts"][0]["verdicts"][0].clone();
            (v["n_stable"].as_u64()? + v["n_canary"].as_u64()? == 20).then_some(v)
        },
    );
    assert_eq!(
        (verdict["n_stable"].as_u64(), verdict["n_canary"].as_u64()),
        (Some(served.0 as u64), Some(served.1 as u64)),
        "{verdict}"
    );
    assert_eq!(
        (verdict["stable"].as_f64(), verdict["canary"].as_f64()),
        ((served.0 > 0).then_some(1.0), (served.1 > 0).then_some(0.0)),
        "{verdict}"
    );
    // The same comparisons, exported for a fleet's controller.
    let text = stable.sidecar_metrics();
    let exported = |name: &str, arm: &str| {
        metrics::sum(
            &text,
            &format!("{name}{{policy=\"default/model\",arm=\"{arm}\"}}"),
        ) as usize
    };
    assert_eq!(
        exported("augur_rollout_shadow_compared_total", "stable"),
        served.0
    );
    assert_eq!(
        exported("augur_rollout_shadow_compared_total", "canary"),
        served.1
    );
    assert_eq!(
        exported("augur_rollout_shadow_agreed_total", "stable"),
        served.0
    );
    assert_eq!(exported("augur_rollout_shadow_agreed_total", "canary"), 0);
}

/// A pod's app on port 8501 that answers every request with `{"who": <pod>, "id": <its
/// x-request-id>}`, so a client can tell which version served which of its requests.
fn echo_app(pod: &Pod) -> Running {
    let script = format!(
        r#"
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({{"who": {name:?}, "id": self.headers.get("x-request-id")}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8501), H).serve_forever()
"#,
        name = pod.name
    );
    spawn_in(pod.ns(), &["python3", "-c", &script])
}

/// A mirror on port 8501 (HTTP/1.1, kept-alive connections as augur's mirror pool uses them)
/// that answers 200 to every request and records its method, path, Host, x-request-id and
/// body; `GET /seen` answers the records as a JSON list.
fn mirror_recorder(pod: &Pod) -> Running {
    let script = r#"
import http.server, json, threading
seen, lock = [], threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def record(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            seen.append({"method": self.command, "path": self.path,
                         "host": self.headers.get("Host"),
                         "id": self.headers.get("x-request-id"),
                         "body": body.decode("utf-8", "replace")})
        self.reply(b"{}")
    def do_GET(self):
        if self.path == "/seen":
            with lock:
                self.reply(json.dumps(seen).encode())
        else:
            self.record()
    do_POST = record
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8501), H).serve_forever()
"#;
    spawn_in(pod.ns(), &["python3", "-c", script])
}

/// What the mirror recorded so far (read from `ns` at `mirror`'s address).
fn mirror_seen(ns: &str, mirror: &Pod) -> Vec<serde_json::Value> {
    let url = format!("http://{}:8501/seen", mirror.ip);
    curl(ns, &url, None)
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default()
}

/// Mirroring on inbound traffic, as Istio applies a route's `mirror`: the stable pod's sidecar
/// splits the route 70/30 between its local app and the canary's Service, and copies 50% of
/// the route's requests, whichever arm serves them, to the mirror's Service with the Host
/// suffixed (`--mirror-host-suffix=-shadow`, Envoy's and Istio < 1.28's `-shadow`; none by
/// default, as mirror.rs checks outbound). The primaries are untouched: every request answered
/// 200 by the arm the split chose, counted once on that arm. The canary's sidecar (with the same
/// policy) neither splits nor mirrors again what it is sent.
#[test]
fn inbound_traffic_is_mirrored_before_the_split() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::new("mir");
    let (stable, canary, mirror, client) = (
        cluster.pod("stable"),
        cluster.pod("canary"),
        cluster.pod("mirror"),
        cluster.pod("client"),
    );
    let (stable_vip, canary_vip, mirror_vip) = (
        Ipv4Addr::new(10, 96, 0, 40),
        Ipv4Addr::new(10, 96, 0, 41),
        Ipv4Addr::new(10, 96, 0, 42),
    );
    cluster.service("model", stable_vip, 80, &[(stable.ip, 8501)]);
    cluster.service("model-canary", canary_vip, 80, &[(canary.ip, 8501)]);
    cluster.service("model-mirror", mirror_vip, 80, &[(mirror.ip, 8501)]);
    let _apps = (
        echo_app(&stable),
        echo_app(&canary),
        mirror_recorder(&mirror),
    );
    let policy = inbound_policy(stable_vip, canary_vip, HOLD_AT_30).replacen(
        "      weight: 0\n---\n",
        &format!(
            "      weight: 0\n    mirror: {{host: model-mirror}}\n    mirrorPercentage: {{value: 50}}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: model-mirror}}\n\
             spec:\n  hosts: [model-mirror]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  \
             resolution: STATIC\n  endpoints: [{{address: {mirror_vip}}}]\n---\n"
        ),
        1,
    );
    assert!(policy.contains("mirrorPercentage"), "the mirror was added");
    let file = root.path().join("policy.yaml");
    std::fs::write(&file, policy).expect("policy");
    let file = file.to_str().expect("utf-8");
    let _sidecars = (
        stable.sidecar(
            root.path(),
            &["--policy", file, "--mirror-host-suffix=-shadow"],
        ),
        canary.sidecar(root.path(), &["--policy", file]),
    );
    wait_for("the mirror to serve", Duration::from_secs(10), || {
        curl(
            client.ns(),
            &format!("http://{}:8501/seen", mirror.ip),
            None,
        )
    });
    let url = format!("http://{stable_vip}/predict");
    wait_for("the stable pod to serve", Duration::from_secs(10), || {
        curl(client.ns(), &url, Some("model"))
    });

    let arm = |pod: &Pod, arm: &str| {
        let selector = format!("augur_requests_total{{arm=\"{arm}\"}}");
        metrics::sum(&pod.sidecar_metrics(), &selector) as usize
    };
    let all_arms = |pod: &Pod| metrics::sum(&pod.sidecar_metrics(), "augur_requests_total");
    let before = (
        arm(&stable, "stable"),
        arm(&stable, "canary"),
        all_arms(&stable),
    );
    let body = root.path().join("body.json");
    std::fs::write(&body, br#"{"image": "abc"}"#).expect("body");
    let n = 600;
    let answers = post_many(
        client.ns(),
        &url,
        "model",
        &body,
        "application/json",
        "r",
        n,
    );
    // Which version served each request (every one answered 200 by its own id).
    let served: Vec<String> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let a: serde_json::Value = a
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or_else(|| panic!("request r{i} answered 200: {a:?}"));
            assert_eq!(a["id"], format!("r{i}"), "the app saw the client's id");
            a["who"].as_str().expect("who").to_owned()
        })
        .collect();
    let to_canary = served.iter().filter(|w| *w == "canary").count();
    let to_stable = served.iter().filter(|w| *w == "stable").count();
    assert_eq!(to_canary + to_stable, n, "only the two versions answer");
    // The split is the policy's, mirror or not: 30% to the canary, each request counted once,
    // on the arm that served it, and the copies on no arm.
    assert_share_near(to_canary, n, 0.3);
    assert_eq!(arm(&stable, "stable") - before.0, to_stable);
    assert_eq!(arm(&stable, "canary") - before.1, to_canary);
    assert_eq!(all_arms(&stable) - before.2, n as f64, "no copy on any arm");
    assert_eq!(arm(&canary, "stable") + arm(&canary, "canary"), 0);

    // Each copy was offered when its request body ended, before its primary was answered, into
    // one FIFO queue: once a copy of a later request reached the mirror, every copy of the batch
    // has left the queue; then wait for each of them to be answered (counted) and seen.
    let mut k = 0;
    wait_for(
        "a copy of a request sent after the batch",
        Duration::from_secs(30),
        || {
            let answer = post_many(
                client.ns(),
                &url,
                "model",
                &body,
                "application/json",
                &format!("f{k}-"),
                1,
            );
            assert!(answer[0].is_some(), "every request answered");
            k += 1;
            mirror_seen(client.ns(), &mirror)
                .iter()
                .any(|c| c["id"].as_str().is_some_and(|id| id.starts_with('f')))
                .then_some(())
        },
    );
    let seen = wait_for(
        "every copy sent answered and counted",
        Duration::from_secs(30),
        || {
            let text = stable.sidecar_metrics();
            let sent = metrics::sum(&text, "augur_mirror_requests_total") as usize;
            let seen = mirror_seen(client.ns(), &mirror);
            (sent == seen.len()).then_some(seen)
        },
    );
    let text = stable.sidecar_metrics();
    assert_eq!(
        metrics::sum(&text, "augur_mirror_requests_total{outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(metrics::sum(&text, "augur_mirror_dropped_total"), 0.0);
    assert_eq!(
        metrics::sum(&canary.sidecar_metrics(), "augur_mirror_requests_total"),
        0.0,
        "the canary's sidecar mirrors nothing again"
    );

    // Every copy is the request as sent, to the mirror, with the suffixed Host.
    for copy in &seen {
        assert_eq!(copy["host"], "model-shadow", "{copy}");
    }
    let batch: Vec<usize> = seen
        .iter()
        .filter_map(|c| c["id"].as_str()?.strip_prefix('r')?.parse().ok())
        .collect();
    let unique: BTreeSet<usize> = batch.iter().copied().collect();
    assert_eq!(
        unique.len(),
        batch.len(),
        "each request mirrored at most once"
    );
    for copy in seen
        .iter()
        .filter(|c| c["id"].as_str().is_some_and(|i| i.starts_with('r')))
    {
        assert_eq!(
            (&copy["method"], &copy["path"], &copy["body"]),
            (
                &serde_json::json!("POST"),
                &serde_json::json!("/predict"),
                &serde_json::json!(r#"{"image": "abc"}"#)
            ),
            "{copy}"
        );
    }
    // 50% of the route's requests, taken before the split: half of each arm's.
    assert!(unique.iter().all(|&i| i < n), "only the batch's ids");
    assert_share_near(unique.len(), n, 0.5);
    let mirrored_of = |who: &str| unique.iter().filter(|&&i| served[i] == who).count();
    assert_share_near(mirrored_of("stable"), to_stable, 0.5);
    assert_share_near(mirrored_of("canary"), to_canary, 0.5);
}
