//! Transparent mode end to end, as in a pod: two network namespaces joined by a veth pair; in
//! the "pod" namespace an app, `augur proxy` running as uid 1337 with capture listeners on 15001
//! and 15006, and the nat rules `augur init` installs. Checks: traffic to the app port is
//! intercepted and reaches the app; traffic the app sends out is intercepted and routed by the
//! VirtualService, or passed through to its original destination when no policy covers it;
//! augur's own upstream traffic is not captured again (no loop); an excluded port bypasses augur.
//!
//! Needs root and `ip netns` (the test set-up installs iproute2 and iptables); nothing outside
//! the namespaces it creates is touched.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use augur_tests::augur::bin;
use augur_tests::wait_for;

const POD_IP: &str = "10.214.0.2";
const PEER_IP: &str = "10.214.0.1";

/// A network namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A process in a namespace, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn must(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn_in(ns: &str, args: &[&str]) -> Running {
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn in namespace");
    Running(child)
}

/// An HTTP server in `ns` on `ip:port` whose `/who` answers `name`.
fn http_server(ns: &str, root: &Path, ip: &str, port: u16, name: &str) -> Running {
    let dir = root.join(format!("www-{port}"));
    std::fs::create_dir_all(&dir).expect("www dir");
    std::fs::write(dir.join("who"), name).expect("who file");
    let port = port.to_string();
    let dir = dir.to_str().expect("utf-8").to_owned();
    spawn_in(
        ns,
        &[
            "python3",
            "-m",
            "http.server",
            &port,
            "--bind",
            ip,
            "--directory",
            &dir,
        ],
    )
}

/// `curl` in `ns`: the body, or `None` when the request failed.
fn curl(ns: &str, url: &str, host: Option<&str>) -> Option<String> {
    let mut args = vec!["netns", "exec", ns, "curl", "-sf", "--max-time", "5"];
    let header;
    if let Some(h) = host {
        header = format!("Host: {h}");
        args.extend(["-H", &header]);
    }
    args.push(url);
    let out = Command::new("ip").args(&args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn destination_requests(ns: &str) -> f64 {
    curl(ns, "http://127.0.0.1:15090/stats/prometheus", None)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("istio_requests_total{") && l.contains("reporter=\"destination\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn captured_traffic_is_routed_passed_through_and_never_looped() {
    let id = std::process::id();
    let (pod, peer) = (format!("augpod{id}"), format!("augpeer{id}"));
    if Command::new("ip")
        .args(["netns", "add", &pod])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        panic!("`ip netns add` failed: these tests need root and iproute2 (scripts/setup.sh installs it)");
    }
    let _pod_ns = Netns(pod.clone());
    must(&["ip", "netns", "add", &peer]);
    let _peer_ns = Netns(peer.clone());
    let (veth_pod, veth_peer) = (format!("vp{id}"), format!("vq{id}"));
    must(&[
        "ip", "link", "add", &veth_pod, "type", "veth", "peer", "name", &veth_peer,
    ]);
    must(&["ip", "link", "set", &veth_pod, "netns", &pod]);
    must(&["ip", "link", "set", &veth_peer, "netns", &peer]);
    for (ns, dev, ip) in [(&pod, &veth_pod, POD_IP), (&peer, &veth_peer, PEER_IP)] {
        must(&[
            "ip",
            "netns",
            "exec",
            ns,
            "ip",
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            dev,
        ]);
        must(&["ip", "netns", "exec", ns, "ip", "link", "set", dev, "up"]);
        must(&["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
    }

    // Readable by uid 1337: the proxy's policy and state.
    let root = tempfile::tempdir().expect("tempdir");
    must(&["chmod", "0777", root.path().to_str().expect("utf-8")]);
    let policy = root.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: model}}
spec:
  hosts: [model]
  http:
  - route: [{{destination: {{host: model, subset: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: model}}
spec:
  host: model
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: model}}
spec:
  hosts: [model]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {PEER_IP}, ports: {{http: 9002}}, labels: {{version: v1}}}}]
"#
        ),
    )
    .expect("write policy");
    let state = root.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    must(&["chmod", "0777", state.to_str().expect("utf-8")]);

    let _app = http_server(&pod, root.path(), POD_IP, 8080, "app");
    let _bypass = http_server(&pod, root.path(), POD_IP, 9999, "bypass");
    let _external = http_server(&peer, root.path(), PEER_IP, 9001, "external");
    let _model = http_server(&peer, root.path(), PEER_IP, 9002, "model-v1");

    let augur = bin();
    let augur = augur.to_str().expect("utf-8");
    must(&[
        "ip",
        "netns",
        "exec",
        &pod,
        augur,
        "init",
        "-p",
        "15001",
        "-z",
        "15006",
        "-u",
        "1337",
        "-g",
        "1337",
        "-m",
        "REDIRECT",
        "-i",
        "*",
        "-b",
        "*",
        "-d",
        "15090,15021,15020,9999",
    ]);
    let _proxy = spawn_in(
        &pod,
        &[
            "setpriv",
            "--reuid",
            "1337",
            "--regid",
            "1337",
            "--clear-groups",
            "--",
            augur,
            "proxy",
            "--policy",
            policy.to_str().expect("utf-8"),
            "--outbound-capture",
            "0.0.0.0:15001",
            "--inbound-capture",
            "0.0.0.0:15006",
            "--admin",
            "127.0.0.1:15000",
            "--status",
            "0.0.0.0:15021",
            "--prometheus",
            "0.0.0.0:15090",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--log-level",
            "warn",
        ],
    );
    wait_for(
        "augur in the pod namespace",
        Duration::from_secs(20),
        || curl(&pod, "http://127.0.0.1:15000/ready", None).filter(|b| b.contains("LIVE")),
    );
    wait_for("the servers", Duration::from_secs(20), || {
        curl(&peer, &format!("http://{PEER_IP}:9001/who"), None)
    });

    // Inbound: the client dials the app; iptables hands it to 15006; augur forwards it to the
    // app from 127.0.0.6, which the rules let through.
    let before = destination_requests(&pod);
    let inbound = curl(&peer, &format!("http://{POD_IP}:8080/who"), None);
    assert_eq!(inbound.as_deref(), Some("app"));
    assert_eq!(
        destination_requests(&pod),
        before + 1.0,
        "the inbound request went through augur"
    );

    // Excluded inbound port: straight to the app, augur never sees it.
    assert_eq!(
        curl(&peer, &format!("http://{POD_IP}:9999/who"), None).as_deref(),
        Some("bypass")
    );
    assert_eq!(destination_requests(&pod), before + 1.0);

    // Outbound, covered by the VirtualService: routed to its endpoint, not the dialled address.
    let routed = curl(&pod, &format!("http://{PEER_IP}:9001/who"), Some("model"));
    assert_eq!(
        routed.as_deref(),
        Some("model-v1"),
        "captured and routed by Host"
    );

    // Outbound, no policy: passed through to where it was going (ALLOW_ANY). Both succeed only
    // because augur's own connections (uid 1337) are not captured again.
    let passed = curl(&pod, &format!("http://{PEER_IP}:9001/who"), None);
    assert_eq!(passed.as_deref(), Some("external"));
}
