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

/// A TCP server in `ns` on `ip:port` speaking no HTTP: it sends `greeting` first (a
/// server-first protocol, like MySQL or SMTP) when given, then answers each read upper-cased.
fn tcp_server(ns: &str, ip: &str, port: u16, greeting: &str) -> Running {
    let script = format!(
        r#"
import socketserver
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        if {greeting:?}:
            self.request.sendall({greeting:?}.encode())
        while True:
            data = self.request.recv(4096)
            if not data:
                break
            self.request.sendall(data.upper())
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(({ip:?}, {port}), Echo).serve_forever()
"#
    );
    spawn_in(ns, &["python3", "-c", &script])
}

/// A raw TCP client in `ns`: sends `payload` (when not empty), half-closes, and returns what
/// came back before the server closed (`None` on a connection failure).
fn tcp_exchange(
    ns: &str,
    ip: &str,
    port: u16,
    payload: &[u8],
    wait_first: bool,
) -> Option<Vec<u8>> {
    let script = format!(
        r#"
import socket, sys
s = socket.create_connection(({ip:?}, {port}), timeout=5)
got = b""
if {wait_first}:
    got += s.recv(4096)
payload = bytes.fromhex({hex:?})
if payload:
    s.sendall(payload)
s.shutdown(socket.SHUT_WR)
while True:
    data = s.recv(4096)
    if not data:
        break
    got += data
sys.stdout.write(got.hex())
"#,
        wait_first = if wait_first { "True" } else { "False" },
        hex = payload
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    );
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "tcp client: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let hex = String::from_utf8_lossy(&out.stdout);
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The sum of a Prometheus metric's series whose labels contain every one of `labels`.
fn metric_sum(ns: &str, name: &str, labels: &[&str]) -> f64 {
    curl(ns, "http://127.0.0.1:15090/stats/prometheus", None)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
    let _tcp_out = tcp_server(&peer, PEER_IP, 7000, "");
    let _smtp_like = tcp_server(&peer, PEER_IP, 7001, "220 ready\r\n");
    let _tcp_in = tcp_server(&pod, POD_IP, 7002, "");

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
            "--protocol-detection-timeout",
            "1",
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

    // Opaque TCP (here bytes like a TLS ClientHello) passes through to the original destination
    // in both directions, counted in Istio's TCP metrics.
    let outbound = [
        r#"reporter="source""#,
        r#"destination_service_name="PassthroughCluster""#,
    ];
    let opened = metric_sum(&pod, "istio_tcp_connections_opened_total", &outbound);
    let payload = b"\x16\x03\x01 opaque bytes";
    let echoed = tcp_exchange(&pod, PEER_IP, 7000, payload, false);
    assert_eq!(echoed.as_deref(), Some(&b"\x16\x03\x01 OPAQUE BYTES"[..]));
    assert_eq!(
        metric_sum(&pod, "istio_tcp_connections_opened_total", &outbound),
        opened + 1.0,
        "the opaque connection went through augur"
    );
    wait_for(
        "the closed connection's bytes",
        Duration::from_secs(5),
        || {
            (metric_sum(&pod, "istio_tcp_received_bytes_total", &outbound) >= payload.len() as f64)
                .then_some(())
        },
    );
    assert_eq!(
        metric_sum(&pod, "istio_tcp_sent_bytes_total", &outbound),
        payload.len() as f64
    );

    // A server-first protocol: the client waits for the greeting, which arrives once protocol
    // detection gives up on the silent client (--protocol-detection-timeout).
    let greeted = tcp_exchange(&pod, PEER_IP, 7001, b"quit", true);
    assert_eq!(greeted.as_deref(), Some(&b"220 ready\r\nQUIT"[..]));

    // Inbound opaque TCP reaches the app from 127.0.0.6, reported by the destination.
    let inbound_tcp = [r#"reporter="destination""#, r#"request_protocol="tcp""#];
    let before = metric_sum(&pod, "istio_tcp_connections_opened_total", &inbound_tcp);
    let echoed = tcp_exchange(&peer, POD_IP, 7002, b"\x00\x01inbound", false);
    assert_eq!(echoed.as_deref(), Some(&b"\x00\x01INBOUND"[..]));
    assert_eq!(
        metric_sum(&pod, "istio_tcp_connections_opened_total", &inbound_tcp),
        before + 1.0
    );
}
