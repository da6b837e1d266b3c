//! The fleet, as a cluster on one machine: network namespaces as pods routed through a node,
//! Services as kube-proxy programs them, sidecars under the capture rules of `augur init`.
//!
//! Needs root and `ip netns` (scripts/setup.sh installs iproute2 and iptables).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use augur_tests::cluster::{Cluster, Pod};
use augur_tests::netns::{curl, get_many, spawn_in};
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

/// The inbound topology's policies: Service `model` (the stable pods, VIP `stable_vip`) and
/// Service `model-canary` (VIP `canary_vip`), with the rollout split in the stable pods'
/// sidecars, held at 30% canary.
fn inbound_policy(stable_vip: Ipv4Addr, canary_vip: Ipv4Addr) -> String {
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
  trafficRouting:
    virtualService: {{name: model, routes: [primary]}}
    sidecar: inbound
  stable: {{host: model}}
  canary: {{host: model-canary}}
  steps:
  - setWeight: 30
  - pause: {{}}
  analysis:
    interval: 1m
    metrics:
    - name: error-rate
      kind: errorRate
      allowedChange: {{absolute: 5}}
"#
    )
}

/// Inbound topology: a client with no sidecar calls the model Service, which selects the
/// stable pod only; the stable pod's sidecar keeps 70% for its local app and sends 30% on to
/// the canary's Service; the canary pod's sidecar (with the same policy mounted) serves what
/// it is sent and never splits it again.
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
    std::fs::write(&policy, inbound_policy(stable_vip, canary_vip)).expect("policy");
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
}
