//! Transparent mode end to end, as in a pod: two network namespaces joined by a veth pair; in
//! the "pod" namespace an app, `augur proxy` running as uid 1337 with capture listeners on 15001
//! and 15006, and the nat rules `augur init` installs. Checks: traffic to the app port is
//! intercepted and reaches the app; traffic the app sends out is intercepted and routed by the
//! VirtualService, or passed through to its original destination when no policy covers it;
//! augur's own upstream traffic is not captured again (no loop); an excluded port bypasses augur.
//! Then Istio's finer points: ServiceEntry VIPs (one address and a CIDR) routed like their host,
//! for HTTP and TCP; protocol detection only on ports a service declares HTTP or leaves unset
//! (a server-first protocol elsewhere answers at once, a redis inline command on a sniffed port
//! is passed through); the access log's lines for HTTP and TCP, inbound and outbound, with
//! Istio's clusters, routes and addresses; no ERROR in augur's log; and `augur init --cleanup`
//! with no flags leaving no rule behind. A second test runs the real Envoy 1.40, configured as
//! an Istio sidecar's capture listeners, then augur, under the same rules, and compares their
//! access-log lines for the same TCP connections field by field.
//!
//! Needs root and `ip netns` (the test set-up installs iproute2 and iptables); nothing outside
//! the namespaces it creates is touched.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use augur_tests::augur::bin;
use augur_tests::netns::{curl, must, spawn_in, spawn_logged, Netns, Running};
use augur_tests::{metrics, wait_for};

const POD_IP: &str = "10.214.0.2";
const PEER_IP: &str = "10.214.0.1";

/// A "pod" and a "peer" network namespace joined by a veth pair (POD_IP, PEER_IP), deleted on
/// drop. `tag` keeps the names of tests running side by side apart.
struct Namespaces {
    pod: String,
    peer: String,
    veth_pod: String,
    _guards: (Netns, Netns),
}

impl Namespaces {
    fn create(tag: &str) -> Self {
        let id = std::process::id();
        let (pod, peer) = (format!("augpod{id}{tag}"), format!("augpeer{id}{tag}"));
        if Command::new("ip")
            .args(["netns", "add", &pod])
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            panic!("`ip netns add` failed: these tests need root and iproute2 (scripts/setup.sh installs it)");
        }
        let pod_ns = Netns(pod.clone());
        must(&["ip", "netns", "add", &peer]);
        let peer_ns = Netns(peer.clone());
        let (veth_pod, veth_peer) = (format!("vp{id}{tag}"), format!("vq{id}{tag}"));
        must(&[
            "ip", "link", "add", &veth_pod, "type", "veth", "peer", "name", &veth_peer,
        ]);
        must(&["ip", "link", "set", &veth_pod, "netns", &pod]);
        must(&["ip", "link", "set", &veth_peer, "netns", &peer]);
        for (ns, dev, ip) in [(&pod, &veth_pod, POD_IP), (&peer, &veth_peer, PEER_IP)] {
            let cidr = format!("{ip}/24");
            must(&["ip", "-n", ns, "addr", "add", &cidr, "dev", dev]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        Self {
            pod,
            peer,
            veth_pod,
            _guards: (pod_ns, peer_ns),
        }
    }

    /// Installs the injected sidecar's capture rules in the pod with `augur init`, port 9999
    /// excluded.
    fn capture(&self) {
        let augur = bin();
        let augur = augur.to_str().expect("utf-8");
        must(&[
            "ip",
            "netns",
            "exec",
            &self.pod,
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
    }
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

/// The pod's augur's Prometheus exposition, read from inside the pod.
fn exposition(ns: &str) -> Option<String> {
    curl(ns, "http://127.0.0.1:15090/stats/prometheus", None)
}

/// The sum of the series `selector` selects in the pod's augur's metrics now.
fn metric(ns: &str, selector: &str) -> f64 {
    metrics::sum(&exposition(ns).unwrap_or_default(), selector)
}

/// Waits until the series `selector` selects sum to `expected` in the pod's augur's metrics,
/// and asserts they sum to exactly that: augur records a request once its response is sent,
/// and a connection's bytes once it closed, after the client already has what it waited for.
fn assert_metric_reaches(ns: &str, selector: &str, expected: f64, what: &str) {
    let got = metrics::wait_for_sum(|| exposition(ns), selector, expected);
    assert_eq!(got, expected, "{selector}: {what}");
}

/// Istio's request count as the pod's inbound side reports it.
const DESTINATION_REQUESTS: &str = r#"istio_requests_total{reporter="destination"}"#;

/// The fields of one line of Istio's default access-log format, quotes removed: 0 start time,
/// 1 `METHOD PATH PROTOCOL`, 2 code, 3 flags, 4 details, 5 termination details, 6 upstream
/// failure, 7 bytes received, 8 sent, 9 duration, 10 upstream time, 11 XFF, 12 user agent,
/// 13 request id, 14 authority, 15 upstream host, 16 cluster, 17 upstream local address,
/// 18 downstream local address, 19 downstream remote address, 20 SNI, 21 route.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.trim_end().chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    out.push(current);
    out
}

/// Waits for the access-log line whose downstream local address is `local` and whose request
/// field is `request` (`- - -` for a TCP connection), and returns its fields.
fn access_line(log: &Path, local: &str, request: &str) -> Vec<String> {
    wait_for(
        &format!("the access-log line of {request:?} to {local}"),
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(log).ok()?;
            text.lines()
                .map(fields)
                .find(|f| f.len() == 22 && f[18] == local && f[1] == request)
        },
    )
}

const DB_VIP: &str = "198.18.0.10";
const MODEL_VIP: &str = "198.18.0.20";
const API_RANGE_ADDRESS: &str = "198.19.3.4";

/// The pod's policies: `model` (VirtualService, subset v1, port 80 HTTP, a VIP), `db` (a VIP
/// on a TCP port), `api` (a CIDR on HTTP port 80, no VirtualService), `legacy` (the peer's
/// subnet on a TCP port, resolution NONE) and `cache` (port 6379 with no protocol, so sniffed).
fn policies() -> String {
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
  addresses: [{MODEL_VIP}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {PEER_IP}, ports: {{http: 9002}}, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.internal]
  addresses: [{DB_VIP}]
  ports: [{{number: 5432, name: tcp-postgres, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: {PEER_IP}, ports: {{tcp-postgres: 7003}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api}}
spec:
  hosts: [api.internal]
  addresses: [198.19.0.0/16]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {PEER_IP}, ports: {{http: 9003}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: legacy}}
spec:
  hosts: [legacy.internal]
  addresses: [10.214.0.0/24]
  ports: [{{number: 7004, name: tcp, protocol: TCP}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: cache}}
spec:
  hosts: [cache.internal]
  ports: [{{number: 6379, name: redis}}]
  resolution: NONE
"#
    )
}

#[test]
fn captured_traffic_is_routed_passed_through_and_never_looped() {
    let net = Namespaces::create("a");
    let (pod, peer, veth_pod) = (net.pod.clone(), net.peer.clone(), net.veth_pod.clone());
    // The VIPs need a route for the app's connect() to reach the capture rules; nothing there
    // answers: only augur's routing by ServiceEntry reaches the peer.
    must(&[
        "ip",
        "netns",
        "exec",
        &pod,
        "ip",
        "route",
        "add",
        "198.18.0.0/15",
        "dev",
        &veth_pod,
    ]);

    // Readable by uid 1337: the proxy's policy and state; writable: its access log.
    let root = tempfile::tempdir().expect("tempdir");
    must(&["chmod", "0777", root.path().to_str().expect("utf-8")]);
    let policy = root.path().join("policy.yaml");
    std::fs::write(&policy, policies()).expect("write policy");
    let state = root.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    must(&["chmod", "0777", state.to_str().expect("utf-8")]);
    let access_log = root.path().join("access.log");
    let augur_log = root.path().join("augur.log");

    let _app = http_server(&pod, root.path(), POD_IP, 8080, "app");
    let _bypass = http_server(&pod, root.path(), POD_IP, 9999, "bypass");
    let _web = http_server(&peer, root.path(), PEER_IP, 80, "external80");
    let _external = http_server(&peer, root.path(), PEER_IP, 9001, "external");
    let _model = http_server(&peer, root.path(), PEER_IP, 9002, "model-v1");
    let _api = http_server(&peer, root.path(), PEER_IP, 9003, "api");
    let _tcp_out = tcp_server(&peer, PEER_IP, 7000, "");
    let _smtp_like = tcp_server(&peer, PEER_IP, 7001, "220 ready\r\n");
    let _tcp_in = tcp_server(&pod, POD_IP, 7002, "");
    let _db = tcp_server(&peer, PEER_IP, 7003, "");
    let _redis_like = tcp_server(&peer, PEER_IP, 6379, "");
    let _legacy = tcp_server(&peer, PEER_IP, 7004, "");

    let augur = bin();
    let augur = augur.to_str().expect("utf-8");
    net.capture();
    let proxy = spawn_logged(
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
            "--access-log",
            access_log.to_str().expect("utf-8"),
            // Istio's duration syntax. Long enough that any wait on an undeclared port would
            // fail the clients below (they give up after 5 s).
            "--protocol-detection-timeout",
            "10m",
        ],
        Some(&augur_log),
    );
    wait_for(
        "augur in the pod namespace",
        Duration::from_secs(20),
        || curl(&pod, "http://127.0.0.1:15000/ready", None).filter(|b| b.contains("LIVE")),
    );
    wait_for("the servers", Duration::from_secs(20), || {
        curl(&peer, &format!("http://{PEER_IP}:9003/who"), None)
    });

    // Inbound: the client dials the app; iptables hands it to 15006; augur forwards it to the
    // app from 127.0.0.6, which the rules let through.
    let before = metric(&pod, DESTINATION_REQUESTS);
    let inbound = curl(&peer, &format!("http://{POD_IP}:8080/who"), None);
    assert_eq!(inbound.as_deref(), Some("app"));
    assert_metric_reaches(
        &pod,
        DESTINATION_REQUESTS,
        before + 1.0,
        "the inbound request went through augur",
    );
    let line = access_line(&access_log, &format!("{POD_IP}:8080"), "GET /who HTTP/1.1");
    assert_eq!(
        (line[16].as_str(), line[21].as_str()),
        ("inbound|8080||", "default"),
        "{line:?}"
    );
    assert!(line[17].starts_with("127.0.0.6:"), "{line:?}");
    assert!(line[19].starts_with(&format!("{PEER_IP}:")), "{line:?}");

    // Excluded inbound port: straight to the app, augur never sees it. A second request to
    // the app after it, counted, bounds the wait: had augur seen the bypass, it would have
    // counted it before this one.
    assert_eq!(
        curl(&peer, &format!("http://{POD_IP}:9999/who"), None).as_deref(),
        Some("bypass")
    );
    assert_eq!(
        curl(&peer, &format!("http://{POD_IP}:8080/who"), None).as_deref(),
        Some("app")
    );
    assert_metric_reaches(
        &pod,
        DESTINATION_REQUESTS,
        before + 2.0,
        "the excluded port's request did not go through augur",
    );

    // Outbound HTTP on a port a service declares HTTP (80), covered by the VirtualService:
    // routed to its endpoint, not the dialled address.
    let routed = curl(&pod, &format!("http://{PEER_IP}/who"), Some("model"));
    assert_eq!(
        routed.as_deref(),
        Some("model-v1"),
        "captured and routed by Host"
    );
    // The same port, no policy for the Host: passed through to where it was going (ALLOW_ANY).
    // Both succeed only because augur's own connections (uid 1337) are not captured again.
    let passed = curl(&pod, &format!("http://{PEER_IP}/who"), None);
    assert_eq!(passed.as_deref(), Some("external80"));
    let line = wait_for("the allow_any line", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&access_log).ok()?;
        text.lines()
            .map(fields)
            .find(|f| f.len() == 22 && f[14] == PEER_IP)
    });
    assert_eq!(
        [&line[15], &line[16], &line[18], &line[21]],
        [
            &format!("{PEER_IP}:80"),
            "PassthroughCluster",
            &format!("{PEER_IP}:80"),
            "allow_any"
        ],
        "{line:?}"
    );
    assert!(line[17].starts_with(&format!("{POD_IP}:")), "{line:?}");

    // A port no service declares is plain TCP, as in Istio: the Host is not looked at.
    let undeclared = curl(&pod, &format!("http://{PEER_IP}:9001/who"), Some("model"));
    assert_eq!(undeclared.as_deref(), Some("external"));
    let line = access_line(&access_log, &format!("{PEER_IP}:9001"), "- - -");
    assert_eq!(line[16], "PassthroughCluster", "{line:?}");

    // ServiceEntry VIPs are routed like their host: the VIP of a VirtualService host, an
    // address in a CIDR of a host without one (its default route), and a TCP port.
    assert_eq!(
        curl(&pod, &format!("http://{MODEL_VIP}/who"), None).as_deref(),
        Some("model-v1")
    );
    assert_eq!(
        curl(&pod, &format!("http://{API_RANGE_ADDRESS}/who"), None).as_deref(),
        Some("api")
    );
    let line = access_line(
        &access_log,
        &format!("{API_RANGE_ADDRESS}:80"),
        "GET /who HTTP/1.1",
    );
    assert_eq!(
        [&line[15], &line[16], &line[21]],
        [
            &format!("{PEER_IP}:9003"),
            "outbound|80||api.internal",
            "default"
        ],
        "{line:?}"
    );
    let db = tcp_exchange(&pod, DB_VIP, 5432, b"select 1", false);
    assert_eq!(db.as_deref(), Some(&b"SELECT 1"[..]));
    let line = access_line(&access_log, &format!("{DB_VIP}:5432"), "- - -");
    assert_eq!(
        [&line[15], &line[16]],
        [&format!("{PEER_IP}:7003"), "outbound|5432||db.internal"],
        "{line:?}"
    );

    // Resolution NONE: a connection into the entry's range keeps its destination, under the
    // entry's name.
    let legacy = tcp_exchange(&pod, PEER_IP, 7004, b"hello", false);
    assert_eq!(legacy.as_deref(), Some(&b"HELLO"[..]));
    let line = access_line(&access_log, &format!("{PEER_IP}:7004"), "- - -");
    assert_eq!(
        [&line[15], &line[16]],
        [&format!("{PEER_IP}:7004"), "outbound|7004||legacy.internal"],
        "{line:?}"
    );

    // Opaque TCP (here bytes like a TLS ClientHello) passes through to the original destination
    // in both directions, counted in Istio's TCP metrics and logged as Envoy's tcp_proxy does.
    let outbound = |name: &str| {
        format!(r#"{name}{{reporter="source",destination_service_name="PassthroughCluster"}}"#)
    };
    let [opened, received, sent] = [
        "istio_tcp_connections_opened_total",
        "istio_tcp_received_bytes_total",
        "istio_tcp_sent_bytes_total",
    ]
    .map(outbound);
    let before = [&opened, &received, &sent].map(|m| metric(&pod, m));
    let payload = b"\x16\x03\x01 opaque bytes";
    let echoed = tcp_exchange(&pod, PEER_IP, 7000, payload, false);
    assert_eq!(echoed.as_deref(), Some(&b"\x16\x03\x01 OPAQUE BYTES"[..]));
    let len = payload.len() as f64;
    for (selector, before, more, what) in [
        (
            &opened,
            before[0],
            1.0,
            "the opaque connection went through augur",
        ),
        (
            &received,
            before[1],
            len,
            "its bytes from the client, once closed",
        ),
        (
            &sent,
            before[2],
            len,
            "its bytes to the client, once closed",
        ),
    ] {
        assert_metric_reaches(&pod, selector, before + more, what);
    }
    let line = access_line(&access_log, &format!("{PEER_IP}:7000"), "- - -");
    let len = payload.len().to_string();
    assert_eq!(
        [
            &line[2], &line[3], &line[4], &line[6], &line[7], &line[8], &line[14], &line[15],
            &line[16], &line[20], &line[21]
        ],
        [
            "0",
            "-",
            "-",
            "-",
            &len,
            &len,
            "-",
            &format!("{PEER_IP}:7000"),
            "PassthroughCluster",
            "-",
            "-"
        ],
        "{line:?}"
    );
    assert!(line[17].starts_with(&format!("{POD_IP}:")), "{line:?}");
    assert!(line[19].starts_with(&format!("{POD_IP}:")), "{line:?}");

    // A server-first protocol on a port no service declares: the greeting arrives at once, with
    // no detection in the way (the detection timeout is 10 minutes).
    let greeted = tcp_exchange(&pod, PEER_IP, 7001, b"quit", true);
    assert_eq!(greeted.as_deref(), Some(&b"220 ready\r\nQUIT"[..]));

    // A redis inline command on a sniffed port (6379, protocol unset) is no HTTP request line:
    // passed through, not answered 400.
    let redis = tcp_exchange(&pod, PEER_IP, 6379, b"GET key\r\n", false);
    assert_eq!(redis.as_deref(), Some(&b"GET KEY\r\n"[..]));

    // Inbound opaque TCP reaches the app from 127.0.0.6, reported by the destination.
    let inbound_tcp =
        r#"istio_tcp_connections_opened_total{reporter="destination",request_protocol="tcp"}"#;
    let before = metric(&pod, inbound_tcp);
    let echoed = tcp_exchange(&peer, POD_IP, 7002, b"\x00\x01inbound", false);
    assert_eq!(echoed.as_deref(), Some(&b"\x00\x01INBOUND"[..]));
    assert_metric_reaches(
        &pod,
        inbound_tcp,
        before + 1.0,
        "the inbound connection went through augur",
    );
    let line = access_line(&access_log, &format!("{POD_IP}:7002"), "- - -");
    assert_eq!(
        [&line[15], &line[16]],
        [&format!("{POD_IP}:7002"), "inbound|7002||"],
        "{line:?}"
    );
    assert!(line[17].starts_with("127.0.0.6:"), "{line:?}");

    // Clients that give up: one that closes before sending, one that sends garbage and
    // half-closes, on a sniffed port each way.
    assert_eq!(
        tcp_exchange(&pod, PEER_IP, 80, b"", false).as_deref(),
        Some(&b""[..])
    );
    tcp_exchange(&peer, POD_IP, 8080, b"\x00\xff\r\n\r\n", false);

    // Nothing of this is a problem for an operator: no ERROR in augur's log.
    drop(proxy);
    let logged = std::fs::read_to_string(&augur_log).unwrap_or_default();
    let errors: Vec<&str> = logged.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "augur logged:\n{}", errors.join("\n"));

    // `augur init --cleanup`, with none of the install's flags, leaves nothing behind.
    must(&["ip", "netns", "exec", &pod, augur, "init", "--cleanup"]);
    let rules = must(&["ip", "netns", "exec", &pod, "iptables-save"]);
    assert!(
        !rules.contains("ISTIO_") && !rules.contains("augur-init"),
        "cleanup left rules:\n{rules}"
    );
}

/// The part of an Istio sidecar's Envoy configuration that opaque TCP takes: the capture
/// listeners with the original-destination filter, `tcp_proxy` to `PassthroughCluster` and to
/// `inbound|7002||` (ORIGINAL_DST clusters, inbound bound to 127.0.0.6), and Istio's default
/// access-log format.
fn envoy_config(log: &Path) -> String {
    let format = "[%START_TIME%] \\\"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% \
        %PROTOCOL%\\\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% \
        %CONNECTION_TERMINATION_DETAILS% \\\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\\\" \
        %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \
        \\\"%REQ(X-FORWARDED-FOR)%\\\" \\\"%REQ(USER-AGENT)%\\\" \\\"%REQ(X-REQUEST-ID)%\\\" \
        \\\"%REQ(:AUTHORITY)%\\\" \\\"%UPSTREAM_HOST%\\\" %UPSTREAM_CLUSTER_RAW% \
        %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% \
        %REQUESTED_SERVER_NAME% %ROUTE_NAME%\\n";
    let log = log.display();
    let listener = |name: &str, port: u16, cluster: &str| {
        format!(
            r#"  - name: {name}
    address: {{socket_address: {{address: 0.0.0.0, port_value: {port}}}}}
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: "{cluster}"
          cluster: "{cluster}"
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{text_format_source: {{inline_string: "{format}"}}}}
"#
        )
    };
    format!(
        r#"admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 15000}}}}}}
static_resources:
  listeners:
{}{}  clusters:
  - name: PassthroughCluster
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 10s
  - name: "inbound|7002||"
    type: ORIGINAL_DST
    lb_policy: CLUSTER_PROVIDED
    connect_timeout: 10s
    upstream_bind_config: {{source_address: {{address: 127.0.0.6, port_value: 0}}}}
"#,
        listener("virtualOutbound", 15001, "PassthroughCluster"),
        listener("virtualInbound", 15006, "inbound|7002||"),
    )
}

/// The same opaque connections through Envoy and through augur, in turn, under the same
/// `augur init` rules: an outbound one passed through, an inbound one to the app, and one to a
/// port nothing listens on. Their access-log lines must agree field by field, but for times,
/// durations and ephemeral ports.
#[test]
fn tcp_access_log_lines_match_envoys() {
    let net = Namespaces::create("b");
    let (pod, peer) = (net.pod.clone(), net.peer.clone());
    net.capture();
    let root = tempfile::tempdir().expect("tempdir");
    must(&["chmod", "0777", root.path().to_str().expect("utf-8")]);
    let _outbound = tcp_server(&peer, PEER_IP, 7000, "");
    let _inbound = tcp_server(&pod, POD_IP, 7002, "");
    let policy = root.path().join("policy.yaml");
    // No service: every port is undeclared, as for Envoy's passthrough chains.
    std::fs::write(
        &policy,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: none}\n\
         spec:\n  hosts: [none]\n  http:\n  - route: [{destination: {host: none}}]\n",
    )
    .expect("write policy");
    wait_for("the servers", Duration::from_secs(20), || {
        tcp_exchange(&peer, PEER_IP, 7000, b"ping", false).filter(|r| r == b"PING")
    });

    let flows = [
        (pod.as_str(), PEER_IP, 7000, &b"hello envoy"[..]),
        (peer.as_str(), POD_IP, 7002, &b"inbound bytes"[..]),
        (pod.as_str(), PEER_IP, 7999, &b""[..]),
    ];
    let lines_of = |log: &Path| {
        flows
            .iter()
            .map(|(ns, ip, port, payload)| {
                tcp_exchange(ns, ip, *port, payload, false);
                access_line(log, &format!("{ip}:{port}"), "- - -")
            })
            .collect::<Vec<_>>()
    };
    let as_1337 = [
        "setpriv",
        "--reuid",
        "1337",
        "--regid",
        "1337",
        "--clear-groups",
        "--",
    ];

    let envoy_log = root.path().join("envoy.log");
    let config = root.path().join("envoy.yaml");
    std::fs::write(&config, envoy_config(&envoy_log)).expect("write envoy config");
    let envoy = augur_tests::envoy::binary();
    let mut args = as_1337.to_vec();
    args.extend([
        envoy.to_str().expect("utf-8"),
        "-c",
        config.to_str().expect("utf-8"),
        "--disable-hot-restart",
        "--file-flush-interval-msec",
        "50",
        "--log-level",
        "error",
    ]);
    let envoy = spawn_in(&pod, &args);
    wait_for(
        "Envoy in the pod namespace",
        Duration::from_secs(30),
        || curl(&pod, "http://127.0.0.1:15000/ready", None).filter(|b| b.contains("LIVE")),
    );
    let from_envoy = lines_of(&envoy_log);
    drop(envoy);

    let augur_log = root.path().join("augur.log");
    let augur = bin();
    let state = root.path().join("state");
    let mut args = as_1337.to_vec();
    args.extend([
        augur.to_str().expect("utf-8"),
        "proxy",
        "--policy",
        policy.to_str().expect("utf-8"),
        "--outbound-capture",
        "0.0.0.0:15001",
        "--inbound-capture",
        "0.0.0.0:15006",
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--access-log",
        augur_log.to_str().expect("utf-8"),
    ]);
    let _augur = spawn_in(&pod, &args);
    wait_for(
        "augur in the pod namespace",
        Duration::from_secs(20),
        || curl(&pod, "http://127.0.0.1:15000/ready", None).filter(|b| b.contains("LIVE")),
    );
    let from_augur = lines_of(&augur_log);

    // Times, durations and ephemeral ports differ; every other field must not.
    let comparable = |f: &[String]| -> Vec<String> {
        let ip = |a: &String| {
            a.rsplit_once(':')
                .map_or(a.clone(), |(ip, _)| ip.to_owned())
        };
        f.iter()
            .enumerate()
            .filter(|(i, _)| *i != 0 && *i != 9)
            .map(|(i, v)| if i == 17 || i == 19 { ip(v) } else { v.clone() })
            .collect()
    };
    for (envoy, augur) in from_envoy.iter().zip(&from_augur) {
        assert_eq!(
            comparable(augur),
            comparable(envoy),
            "\naugur: {augur:?}\nenvoy: {envoy:?}"
        );
    }
}
