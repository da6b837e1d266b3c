//! The admission webhook over real HTTPS: a CA and a serving certificate made with rcgen, the
//! server on a loopback port, AdmissionReview v1 requests shaped as in the Kubernetes docs,
//! and the returned JSON Patch applied with `json-patch` to check the resulting pod.

mod common;

use std::sync::Arc;

use augur_k8s::inject::{inject, InjectConfig};
use augur_k8s::webhook::{serve, tls_config};
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{json, Value};

const SERVER_NAME: &str = "augur-injector.augur-system.svc";

struct Pki {
    ca_der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "augur test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("leaf key");
    let params = CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("leaf params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("leaf cert");
    Pki {
        ca_der: ca.der().to_vec(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// One HTTPS request to the webhook; returns (status, body).
async fn call(port: u16, ca_der: &[u8], method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.to_vec().into()).expect("add CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from(SERVER_NAME).expect("name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http1");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", SERVER_NAME)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, body)
}

fn review_with(object: Value, uid: &str) -> Value {
    let text = std::fs::read_to_string(common::testdata("webhook").join("admission-review.json"))
        .expect("read");
    let mut review: Value = serde_json::from_str(&text).expect("json");
    review["request"]["uid"] = json!(uid);
    review["request"]["object"] = object;
    review
}

#[tokio::test]
async fn webhook_patches_pods_over_https() {
    let pki = make_pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &pki.cert_pem).expect("write cert");
    std::fs::write(&key, &pki.key_pem).expect("write key");
    let tls = tls_config(&cert, &key).expect("tls config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cfg = Arc::new(InjectConfig::default());
    let server = tokio::spawn(serve(listener, tls, Arc::clone(&cfg)));

    let (status, body) = call(port, &pki.ca_der, "GET", "/healthz", Vec::new()).await;
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));

    // A pod from a Deployment: patched; the patch applied gives exactly `inject`'s result.
    let text = std::fs::read_to_string(common::testdata("webhook").join("admission-review.json"))
        .expect("read");
    let pod = serde_json::from_str::<Value>(&text).expect("json")["request"]["object"].clone();
    let review = review_with(pod.clone(), "705ab4f5-6393-11e8-b7cc-42010a800002");
    let (status, body) = call(
        port,
        &pki.ca_der,
        "POST",
        "/inject",
        serde_json::to_vec(&review).expect("json"),
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("response JSON");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("patch string"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).expect("JSON Patch");
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).expect("patch applies");
    assert_eq!(patched, inject(&pod, &cfg).expect("inject").object);
    let names = |list: &str| -> Vec<String> {
        patched["spec"][list]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names("containers"), ["istio-proxy", "model"]);
    assert_eq!(names("initContainers"), ["istio-init"]);
    let proxy = &patched["spec"]["containers"][0];
    assert_eq!(proxy["securityContext"]["runAsUser"], 1337);
    assert!(proxy["env"]
        .as_array()
        .is_some_and(|env| env
            .contains(&json!({"name": "ISTIO_META_WORKLOAD_NAME", "value": "pneumonia-v1"}))));
    assert!(patched["metadata"]["annotations"]["augur.dev/status"].is_string());

    // Re-submitting the injected pod changes nothing (idempotent).
    let again = review_with(patched.clone(), "uid-again");
    let (_, body) = call(
        port,
        &pki.ca_der,
        "POST",
        "/inject",
        serde_json::to_vec(&again).expect("json"),
    )
    .await;
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        answer["response"],
        json!({"uid": "uid-again", "allowed": true})
    );

    // Per-pod opt-out is honoured even in an enabled namespace.
    let mut opted_out = pod.clone();
    opted_out["metadata"]["labels"]["augur.dev/inject"] = json!("false");
    let (_, body) = call(
        port,
        &pki.ca_der,
        "POST",
        "/inject",
        serde_json::to_vec(&review_with(opted_out, "uid-opt-out")).expect("json"),
    )
    .await;
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        answer["response"],
        json!({"uid": "uid-opt-out", "allowed": true})
    );

    // An unusable annotation denies the pod with the reason.
    let mut bad = pod.clone();
    bad["metadata"]["annotations"] = json!({"sidecar.istio.io/proxyMemory": "a lot"});
    let (_, body) = call(
        port,
        &pki.ca_der,
        "POST",
        "/inject",
        serde_json::to_vec(&review_with(bad, "uid-bad")).expect("json"),
    )
    .await;
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(answer["response"]["allowed"], false);
    assert!(answer["response"]["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("proxyMemory")));

    // Not JSON: 400.
    let (status, _) = call(port, &pki.ca_der, "POST", "/inject", b"{".to_vec()).await;
    assert_eq!(status, 400);
    server.abort();
}
