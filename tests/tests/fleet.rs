//! The fleet, as a cluster on one machine: network namespaces as pods routed through a node,
//! Services as kube-proxy programs them, sidecars under the capture rules of `augur init`.
//!
//! Needs root and `ip netns` (scripts/setup.sh installs iproute2 and iptables).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use augur_tests::cluster::Cluster;
use augur_tests::netns::{curl, spawn_in};
use augur_tests::wait_for;

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
            std::time::Duration::from_secs(10),
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
