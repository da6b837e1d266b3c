//! The HTTPS listener: mutual TLS with `--tls-client-ca` (a client certificate signed by the CA
//! is accepted; none, or one from another CA, fails the handshake), and only TLS 1.2 and 1.3
//! with AEAD suites are offered (OpenSSL's client tries TLS 1.0, 1.1 and CBC suites and fails).
//! Each failed handshake is counted, as Envoy's `ssl.connection_error`, and never logged at ERROR.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::policy::{service, virtual_service, write};
use augur_tests::upstream::Upstream;
use augur_tests::wait_for;

fn openssl(args: &[&str], dir: &Path) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A CA (`<name>-ca.pem`/`.key`) and a client certificate it signed (`<name>-client.pem`/`.key`).
fn ca_and_client(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca = format!("{name}-ca");
    let client = format!("{name}-client");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    let ca_subj = format!("/CN={ca}");
    args.extend(["-days", "1", "-subj", &ca_subj]);
    let (ca_key, ca_pem) = (format!("{ca}.key"), format!("{ca}.pem"));
    args.extend(["-keyout", &ca_key, "-out", &ca_pem]);
    openssl(&args, dir);
    let mut args = vec!["req"];
    args.extend(ec);
    let (key, csr, pem) = (
        format!("{client}.key"),
        format!("{client}.csr"),
        format!("{client}.pem"),
    );
    let subj = format!("/CN={client}");
    args.extend(["-subj", &subj, "-keyout", &key, "-out", &csr]);
    openssl(&args, dir);
    let ext = dir.join(format!("{client}.ext"));
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let ext = ext.display().to_string();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
        dir,
    );
    (dir.join(ca_pem), dir.join(pem), dir.join(key))
}

#[test]
fn mutual_tls_and_modern_protocols_only() {
    let up = Upstream::start("v1");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=model",
            "-addext",
            "subjectAltName=DNS:model",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
        ],
        d,
    );
    let (ca, cert, key) = ca_and_client(d, "good");
    let (_, other_cert, other_key) = ca_and_client(d, "other");
    let routes = "  - route: [{destination: {host: model, subset: v1}}]\n";
    let file = write(
        d,
        &[
            &virtual_service("model", routes),
            &service("model", &[("v1", up.addr.port())]),
        ],
    );
    let server_pem = d.join("server.pem");
    let log = d.join("augur.log");
    let mut proxy = Proxy::start_full(
        &[&file],
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            server_pem.to_str().unwrap(),
            "--tls-key",
            d.join("server.key").to_str().unwrap(),
            "--tls-client-ca",
            ca.to_str().unwrap(),
        ],
        &[],
        Some(&log),
    );
    let tls = proxy.tls_listen[0];
    let url = format!("https://model:{}/predict", tls.port());
    let resolve = format!("model:{}:127.0.0.1", tls.port());
    let curl = |client: Option<(&Path, &Path)>| {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "10", "--cacert"])
            .arg(&server_pem)
            .args(["--resolve", &resolve]);
        if let Some((cert, key)) = client {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let out = cmd.arg(&url).output().expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, body) = curl(Some((&cert, &key)));
    assert!(
        ok && body.contains("\"v1\""),
        "a client certificate from the CA: {body}"
    );
    let (ok, body) = curl(None);
    assert!(!ok && !body.contains("v1"), "no client certificate: {body}");
    let (ok, body) = curl(Some((&other_cert, &other_key)));
    assert!(
        !ok && !body.contains("v1"),
        "a certificate from another CA: {body}"
    );
    assert_eq!(up.served(), 1);
    let failures = || proxy.metric("augur_downstream_tls_handshake_failures_total");
    wait_for(
        "both failed handshakes counted",
        Duration::from_secs(10),
        || (failures() == 2.0).then_some(()),
    );

    // Protocols and suites, with OpenSSL's client at security level 0 so that it offers them.
    let connect = tls.to_string();
    let s_client = |extra: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &connect,
            "-servername",
            "model",
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .args(extra)
        .stdin(std::process::Stdio::null());
        let out = cmd.output().expect("openssl s_client");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && text.contains("Cipher is ") && !text.contains("Cipher is (NONE)")
    };
    assert!(s_client(&["-tls1_3"]), "TLS 1.3 is offered");
    assert!(
        s_client(&["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]),
        "TLS 1.2 AEAD"
    );
    assert!(
        s_client(&["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"]),
        "TLS 1.2 ChaCha20-Poly1305"
    );
    for old in ["-tls1_1", "-tls1"] {
        assert!(
            !s_client(&[old, "-cipher", "DEFAULT@SECLEVEL=0"]),
            "{old} must be refused"
        );
    }
    for weak in [
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA384",
        "AES128-SHA",
    ] {
        assert!(
            !s_client(&["-tls1_2", "-cipher", &format!("{weak}@SECLEVEL=0")]),
            "{weak} (CBC or static RSA) must be refused"
        );
    }
    // Every refused client is counted (the old protocols and weak suites too), and none is an
    // ERROR line: the client's fault is nothing a person must act on.
    wait_for(
        "every failed handshake counted",
        Duration::from_secs(10),
        || (failures() >= 7.0).then_some(()),
    );
    proxy.stop();
    let text = std::fs::read_to_string(&log).expect("the proxy's log");
    assert!(
        !text.lines().any(|l| l.contains("ERROR")),
        "nothing to act on was logged at ERROR:\n{text}"
    );
}
