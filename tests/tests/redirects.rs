//! Redirects that the Envoy parity test (tests/tests/envoy_parity.rs,
//! `rewrites_and_redirects_match_envoy`) does not cover: `redirectCode: 303`, compared with the
//! real Envoy 1.40 given Istio's translation of it, and redirects answered on the HTTPS
//! listener (`--tls-listen`), whose expected values come from Istio's documentation (the parity
//! test's Envoy has no TLS listener).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use augur_tests::augur::Proxy;
use augur_tests::envoy::{Envoy, Listener, ISTIO_HCM};
use augur_tests::http;
use augur_tests::policy::{virtual_service, write};

/// `(status, Location)` of `GET target` with this Host, on a cleartext listener.
fn redirect_of(addr: SocketAddr, host: &str, target: &str) -> (u16, Option<String>) {
    let r = http::request(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    (r.status, r.header("location").map(str::to_owned))
}

#[test]
fn a_303_redirect_answers_like_envoy() {
    let dir = tempfile::tempdir().unwrap();
    // Istio's `translateRedirect` turns `redirectCode: 303` into Envoy's `SEE_OTHER`; `uri`
    // becomes `path_redirect`, which keeps the request's query unless it brings its own.
    let envoy = Envoy::start(
        dir.path(),
        &[Listener {
            hcm: ISTIO_HCM,
            routes: "              - match: {prefix: /see}\n                \
                     redirect: {path_redirect: /new, response_code: SEE_OTHER}\n",
        }],
        &[],
    );
    let proxy = Proxy::start(&[&write(
        dir.path(),
        &[&virtual_service(
            "model",
            "  - match: [{uri: {prefix: /see}}]\n    redirect: {uri: /new, redirectCode: 303}\n",
        )],
    )]);
    // Istio's documentation: `uri` replaces the whole path, the request's scheme, authority
    // (with its port) and query are kept, and the status is `redirectCode`.
    let cases = [
        ("model", "/see/x?q=1", "http://model/new?q=1"),
        ("model:8080", "/see", "http://model:8080/new"),
    ];
    for (host, target, location) in cases {
        let augur = redirect_of(proxy.listen, host, target);
        assert_eq!(
            augur,
            (303, Some(location.to_owned())),
            "Host {host}, {target}"
        );
        assert_eq!(
            augur,
            redirect_of(envoy.listen[0], host, target),
            "Host {host}, {target}: augur and Envoy"
        );
    }
}

/// A self-signed certificate for `model` (`server.pem`, `server.key` in `dir`).
fn certificate(dir: &Path) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=model", "-addext", "subjectAltName=DNS:model"])
        .args(["-keyout", "server.key", "-out", "server.pem"])
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `(status, Location)` of `GET path` over HTTPS to `tls` (SNI `model`), with this Host.
fn tls_redirect_of(tls: SocketAddr, ca: &Path, host: &str, path: &str) -> (u16, Option<String>) {
    let resolve = format!("model:{}:127.0.0.1", tls.port());
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--http1.1", "--cacert"])
        .arg(ca)
        .args(["--resolve", &resolve, "-H", &format!("Host: {host}")])
        .args(["-o", "/dev/null", "-w", "%{http_code}\n%header{location}"])
        .arg(format!("https://model:{}{path}", tls.port()))
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, location) = said
        .split_once('\n')
        .unwrap_or_else(|| panic!("curl {path}: {said:?} {out:?}"));
    (
        code.parse()
            .unwrap_or_else(|_| panic!("curl {path}: {said:?}")),
        Some(location.to_owned()).filter(|l| !l.is_empty()),
    )
}

#[test]
fn redirects_on_the_tls_listener_keep_https_and_derive_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificate(d);
    let routes = "  - match: [{uri: {prefix: /plain}}]\n    redirect: {uri: /new}\n  \
                  - match: [{uri: {prefix: /derive}}]\n    \
                  redirect: {uri: /new, derivePort: FROM_REQUEST_PORT}\n  \
                  - match: [{uri: {prefix: /tohttp}}]\n    redirect: {uri: /new, scheme: http}\n";
    let file = write(d, &[&virtual_service("model", routes)]);
    let (pem, key) = (d.join("server.pem"), d.join("server.key"));
    let proxy = Proxy::start_with_args(
        &[&file],
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            pem.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let tls = proxy.tls_listen[0];
    let (tls_port, plain_port) = (tls.port(), proxy.listen.port());
    let moved = |location: String| (301, Some(location));

    // Istio's HTTPRedirect.scheme: "If unset, the original scheme will be used": https on
    // the TLS listener, with the request's authority (and its port, if it had one) kept.
    assert_eq!(
        tls_redirect_of(tls, &pem, "model", "/plain/x"),
        moved("https://model/new".to_owned())
    );
    assert_eq!(
        tls_redirect_of(tls, &pem, &format!("model:{tls_port}"), "/plain/x"),
        moved(format!("https://model:{tls_port}/new"))
    );
    // derivePort FROM_REQUEST_PORT: "automatically use the port of the request"; Istio
    // programs it as `port_redirect` set to the port the route serves, here the TLS listener's.
    assert_eq!(
        tls_redirect_of(tls, &pem, "model", "/derive/x"),
        moved(format!("https://model:{tls_port}/new"))
    );
    // A scheme the redirect sets wins over the request's.
    assert_eq!(
        tls_redirect_of(tls, &pem, "model", "/tohttp/x"),
        moved("http://model/new".to_owned())
    );

    // The same routes on the cleartext listener: http, and its own port.
    assert_eq!(
        redirect_of(proxy.listen, "model", "/plain/x"),
        moved("http://model/new".to_owned())
    );
    assert_eq!(
        redirect_of(proxy.listen, "model", "/derive/x"),
        moved(format!("http://model:{plain_port}/new"))
    );
}
