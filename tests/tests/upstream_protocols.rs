//! How augur speaks to upstreams, against real nginx: TLS per DestinationRule `tls` (SIMPLE
//! with a CA, MUTUAL with a client certificate, `sni`, `insecureSkipVerify`), HTTP/2 over TLS
//! (ALPN) and in cleartext (prior knowledge) when `h2UpgradePolicy: UPGRADE`, the ServiceEntry
//! port says HTTP2, or `useClientProtocol` follows an HTTP/2 client; and certificate files that
//! cannot be used reject a reload while the last good policy keeps serving.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::nginx::Nginx;
use augur_tests::{http, wait_for};
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A CA, a server certificate for the test hosts and a client certificate, as PEM files.
struct Pki {
    ca: String,
    other_ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn ca(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).expect("CA certificate"), key)
}

fn pki() -> Pki {
    let (ca_cert, ca_key) = ca("augur test CA");
    let (other_ca, _) = ca("a CA nobody uses");
    let server_key = KeyPair::generate().expect("server key");
    let names = vec![
        "*.default.svc.cluster.local".to_owned(),
        "custom.example".to_owned(),
    ];
    let server = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("server certificate");
    let client_key = KeyPair::generate().expect("client key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, "augur-client");
    let client = client_params
        .signed_by(&client_key, &ca_cert, &ca_key)
        .expect("client certificate");
    Pki {
        ca: ca_cert.pem(),
        other_ca: other_ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// A host with one STATIC endpoint on 127.0.0.1:`port` (ServiceEntry port protocol
/// `protocol`), the DestinationRule `traffic_policy` (flow YAML) and a VirtualService to it.
fn host(name: &str, port: u16, protocol: &str, traffic_policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\n\
         spec:\n  hosts: [{name}]\n  ports: [{{number: 80, name: web, protocol: {protocol}}}]\n  \
         resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, ports: {{web: {port}}}}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n\
         spec:\n  host: {name}\n  trafficPolicy: {traffic_policy}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n\
         spec:\n  hosts: [{name}]\n  http:\n  - route: [{{destination: {{host: {name}}}}}]\n"
    )
}

/// One answer through the proxy: status and body.
fn call(proxy: &Proxy, host: &str) -> (u16, String) {
    let r = http::get(proxy.listen, host, "/").expect("request through augur");
    (r.status, r.body)
}

/// The same over prior-knowledge HTTP/2 from the client (curl).
fn call_h2(proxy: &Proxy, host: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "--http2-prior-knowledge", "-H"])
        .arg(format!("host: {host}"))
        .arg(format!("http://{}/", proxy.listen))
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_and_http2_to_upstreams_follow_the_destination_rule() {
    let pki = pki();
    let answer = r#"return 200 "$server_protocol $ssl_protocol sni=$ssl_server_name client=$ssl_client_s_dn\n";"#;
    let tls = "ssl_certificate {dir}/server.pem; ssl_certificate_key {dir}/server.key; \
               ssl_client_certificate {dir}/ca.pem; ssl_protocols TLSv1.2 TLSv1.3;";
    let servers = |p: &[u16]| {
        format!(
            "server {{ listen 127.0.0.1:{} ssl http2; {tls} ssl_verify_client optional; \
               location / {{ {answer} }} }}\n\
             server {{ listen 127.0.0.1:{} ssl http2; {tls} ssl_verify_client on; \
               location / {{ {answer} }} }}\n\
             server {{ listen 127.0.0.1:{} http2; location / {{ {answer} }} }}\n",
            p[0], p[1], p[2]
        )
    };
    // A port taken by a parallel test between its choice and nginx's start: started again on
    // others.
    let (nginx, ports) = Nginx::start_on_free_ports(
        3,
        servers,
        &[
            ("server.pem", pki.server_cert.as_bytes()),
            ("server.key", pki.server_key.as_bytes()),
            ("ca.pem", pki.ca.as_bytes()),
        ],
    );
    let (tls_port, mtls_port, h2c_port) = (ports[0], ports[1], ports[2]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write PEM");
        path.to_str().expect("utf-8").to_owned()
    };
    let (ca, other_ca) = (file("ca.pem", &pki.ca), file("other-ca.pem", &pki.other_ca));
    let client_cert = file("client.pem", &pki.client_cert);
    let client_key = file("client.key", &pki.client_key);
    let simple = format!("{{tls: {{mode: SIMPLE, caCertificates: {ca}}}}}");
    let mutual = format!(
        "{{tls: {{mode: MUTUAL, caCertificates: {ca}, clientCertificate: {client_cert}, privateKey: {client_key}}}}}"
    );
    let documents = |mutual_tp: &str| {
        [
            host("simple", tls_port, "HTTPS", &simple),
            host(
                "simple-h2",
                tls_port,
                "HTTPS",
                &format!("{{tls: {{mode: SIMPLE, caCertificates: {ca}}}, connectionPool: {{http: {{h2UpgradePolicy: UPGRADE}}}}}}"),
            ),
            host(
                "client-protocol",
                tls_port,
                "HTTPS",
                &format!("{{tls: {{mode: SIMPLE, caCertificates: {ca}}}, connectionPool: {{http: {{useClientProtocol: true}}}}}}"),
            ),
            host(
                "named",
                tls_port,
                "HTTPS",
                &format!("{{tls: {{mode: SIMPLE, caCertificates: {ca}, sni: custom.example}}}}"),
            ),
            host(
                "wrong-ca",
                tls_port,
                "HTTPS",
                &format!("{{tls: {{mode: SIMPLE, caCertificates: {other_ca}}}}}"),
            ),
            host(
                "skip-verify",
                tls_port,
                "HTTPS",
                &format!("{{tls: {{mode: SIMPLE, caCertificates: {other_ca}, insecureSkipVerify: true}}}}"),
            ),
            host("mutual", mtls_port, "HTTPS", mutual_tp),
            host("no-client-cert", mtls_port, "HTTPS", &simple),
            host(
                "h2c",
                h2c_port,
                "HTTP",
                "{connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}",
            ),
            host("declared-h2", h2c_port, "HTTP2", "{}"),
        ]
        .join("---\n")
    };
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, documents(&mutual)).expect("write policy");
    let proxy = Proxy::start(&[&policy]);

    // SIMPLE: verified against the CA, SNI is the destination host (Istio's auto SNI), HTTP/1.1.
    let (status, body) = call(&proxy, "simple");
    assert_eq!(status, 200, "{body} / nginx: {}", nginx.error_log());
    assert!(
        body.starts_with("HTTP/1.1 TLSv1.3 sni=simple.default.svc.cluster.local client=\n"),
        "{body}"
    );
    // h2UpgradePolicy: UPGRADE over TLS negotiates h2 by ALPN.
    let (status, body) = call(&proxy, "simple-h2");
    assert_eq!(
        (status, body.split(' ').next()),
        (200, Some("HTTP/2.0")),
        "{body}"
    );
    // useClientProtocol: HTTP/1.1 in, HTTP/1.1 out; HTTP/2 in, HTTP/2 out.
    let (_, body) = call(&proxy, "client-protocol");
    assert!(body.starts_with("HTTP/1.1 "), "{body}");
    let body = call_h2(&proxy, "client-protocol");
    assert!(body.starts_with("HTTP/2.0 "), "{body}");
    // `sni` overrides the host.
    let (_, body) = call(&proxy, "named");
    assert!(body.contains(" sni=custom.example "), "{body}");
    // A server certificate the CA did not sign fails the handshake: Envoy's 503 UF.
    let (status, body) = call(&proxy, "wrong-ca");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("upstream connect error"), "{body}");
    // ... unless verification is off.
    assert_eq!(call(&proxy, "skip-verify").0, 200);
    // MUTUAL presents the client certificate; without one the server refuses.
    let (status, body) = call(&proxy, "mutual");
    assert_eq!(status, 200, "{body} / nginx: {}", nginx.error_log());
    assert!(
        body.trim_end().ends_with("client=CN=augur-client"),
        "{body}"
    );
    assert_eq!(call(&proxy, "no-client-cert").0, 400);
    // Cleartext HTTP/2 with prior knowledge: by the rule, or by the declared port protocol.
    let (status, body) = call(&proxy, "h2c");
    assert_eq!((status, body.as_str()), (200, "HTTP/2.0  sni= client=\n"));
    assert_eq!(call(&proxy, "declared-h2").1, "HTTP/2.0  sni= client=\n");

    // A reload naming a key file that does not exist is rejected whole; the last good policy
    // keeps serving mutual TLS.
    let failures = proxy.metric("augur_config_reload_failures_total");
    let broken = mutual.replace(&client_key, &format!("{client_key}.missing"));
    std::fs::write(&policy, documents(&broken)).expect("write policy");
    wait_for("the reload to be rejected", Duration::from_secs(10), || {
        (proxy.metric("augur_config_reload_failures_total") > failures).then_some(())
    });
    let dump = proxy.admin_get("/config_dump");
    let dump = dump.body;
    assert!(
        dump.contains("privateKey") && dump.contains(".missing"),
        "the rejection names the field and the file: {dump}"
    );
    assert_eq!(call(&proxy, "mutual").0, 200);
    assert!(Path::new(&client_key).exists());
}

/// A cleartext HTTP/2 server that resets every stream (RST_STREAM INTERNAL_ERROR) before
/// answering; returns its port.
fn resetting_h2_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((_request, mut respond))) = conn.accept().await {
                        respond.send_reset(h2::Reason::INTERNAL_ERROR);
                    }
                });
            }
        });
    });
    port
}

#[test]
fn an_http2_stream_reset_is_envoys_503_ur() {
    let port = resetting_h2_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, host("resets", port, "HTTP2", "{}")).expect("write policy");
    let proxy = Proxy::start_with_args(&[&policy], &[]);
    let r = http::get(proxy.listen, "resets", "/").expect("request");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        "upstream connect error or disconnect/reset before headers. reset reason: remote reset"
    );
    let text = proxy.admin_get("/stats/prometheus").body;
    assert!(
        text.lines().any(|l| l.starts_with("istio_requests_total{")
            && l.contains(r#"response_flags="UR""#)),
        "counted with flag UR"
    );
}

/// A cleartext HTTP/2 server as a gRPC service answers: it reads the whole request with its
/// trailers, then sends headers, a body echoing what it saw (`te` and the request trailer) and
/// `grpc-status` in trailers. Returns its port.
fn trailer_echoing_h2_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        tokio::spawn(async move {
                            let te = request
                                .headers()
                                .get("te")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("none")
                                .to_owned();
                            let mut body = request.into_body();
                            while let Some(Ok(chunk)) = body.data().await {
                                let _ = body.flow_control().release_capacity(chunk.len());
                            }
                            let trailer = match body.trailers().await {
                                Ok(Some(t)) => t
                                    .get("x-client-trailer")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("none")
                                    .to_owned(),
                                _ => "none".to_owned(),
                            };
                            let response = ::http::Response::builder()
                                .status(200)
                                .header("content-type", "application/grpc")
                                .body(())
                                .expect("response");
                            let Ok(mut send) = respond.send_response(response, false) else {
                                return;
                            };
                            let seen = format!("te={te} trailer={trailer}");
                            let _ = send.send_data(seen.into(), false);
                            let mut trailers = ::http::HeaderMap::new();
                            trailers.insert("grpc-status", ::http::HeaderValue::from_static("0"));
                            let _ = send.send_trailers(trailers);
                        });
                    }
                });
            }
        });
    });
    port
}

/// gRPC through augur: an HTTP/2 client's `te: trailers` reaches an HTTP/2 upstream (h2 refuses
/// any other `te`), and the upstream's trailers (`grpc-status`) reach the client, as through
/// Envoy.
#[test]
fn grpc_trailers_pass_end_to_end() {
    let port = trailer_echoing_h2_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, host("grpc", port, "GRPC", "{}")).expect("write policy");
    let proxy = Proxy::start_with_args(&[&policy], &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (seen, trailers) = runtime.block_on(async {
        let socket = tokio::net::TcpStream::connect(proxy.listen)
            .await
            .expect("connect to augur");
        let (client, conn) = h2::client::handshake(socket).await.expect("h2 handshake");
        tokio::spawn(conn);
        let mut client = client.ready().await.expect("ready");
        let request = ::http::Request::builder()
            .method("POST")
            .uri("http://grpc/pkg.Service/Method")
            .header("te", "trailers")
            .header("content-type", "application/grpc")
            .body(())
            .expect("request");
        let (response, mut send) = client.send_request(request, false).expect("send");
        // A gRPC call: one empty message, and the stream ends with it (gRPC clients send no
        // request trailers; pingora 0.9.1 does not read them from HTTP/2 clients).
        send.send_data(bytes_of("\0\0\0\0\0"), true).expect("data");
        let response = response.await.expect("response");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut seen = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            seen.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.expect("trailers").unwrap_or_default();
        (String::from_utf8_lossy(&seen).into_owned(), trailers)
    });
    assert_eq!(
        seen, "te=trailers trailer=none",
        "what the upstream received"
    );
    assert_eq!(
        trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("0"),
        "the upstream's trailers reach the client"
    );
}

fn bytes_of(s: &'static str) -> bytes::Bytes {
    bytes::Bytes::from_static(s.as_bytes())
}
