//! The reference model server on port 0, with real bytes in every accepted encoding.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::net::SocketAddr;

use augur_inference::{ModelServer, ServerConfig, ShadowConfig};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    ct: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = ct {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn multipart(file: &[u8], content_type: &str) -> (String, Vec<u8>) {
    let boundary = "augurtestboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"xray\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predicts_like_the_fastapi_service() {
    common::ort();
    let server = ModelServer::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        model: common::model("nonmedical-tiny-a"),
        shadow: ShadowConfig::default(),
        version: Some("v2-canary".into()),
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    let xray = std::fs::read(&common::xrays()[0]).unwrap();
    let check = |status: u16, body: &str| {
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            matches!(v["prediction"].as_str(), Some("NORMAL" | "PNEUMONIA")),
            "{body}"
        );
        let p = v["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(
            v["model_version"], "v2-canary",
            "--version overrides the metadata's"
        );
        p
    };
    // multipart (FastAPI UploadFile), raw JPEG, base64 JSON: same image, same answer.
    let (ct, body) = multipart(&xray, "image/jpeg");
    let (s, b) = request(addr, "POST", "/predict", Some(&ct), &body).await;
    let p1 = check(s, &b);
    let (s, b) = request(addr, "POST", "/predict", Some("image/jpeg"), &xray).await;
    let p2 = check(s, &b);
    let json =
        serde_json::json!({"image": base64::engine::general_purpose::STANDARD.encode(&xray)})
            .to_string();
    let (s, b) = request(
        addr,
        "POST",
        "/predict",
        Some("application/json"),
        json.as_bytes(),
    )
    .await;
    let p3 = check(s, &b);
    assert_eq!((p1, p1), (p2, p3));
    // DICOM and PNG.
    let dcm = std::fs::read(common::image("mono2-rescale-window.dcm")).unwrap();
    let (s, b) = request(addr, "POST", "/predict", Some("application/dicom"), &dcm).await;
    check(s, &b);
    let (ct, body) = multipart(
        &std::fs::read(common::image("gray16.png")).unwrap(),
        "application/octet-stream",
    );
    let (s, b) = request(addr, "POST", "/predict", Some(&ct), &body).await;
    check(s, &b);

    // Errors.
    let (s, _) = request(addr, "POST", "/predict", Some("text/plain"), b"hi").await;
    assert_eq!(s, 415);
    let (s, _) = request(addr, "POST", "/predict", Some("image/png"), &xray).await;
    assert_eq!(s, 400, "a JPEG declared as PNG");
    let huge = std::fs::read(common::image("huge-60000x60000.png")).unwrap();
    let (s, _) = request(addr, "POST", "/predict", None, &huge).await;
    assert_eq!(s, 413);
    let (s, _) = request(addr, "GET", "/predict", None, b"").await;
    assert_eq!(s, 405);
    let (s, _) = request(addr, "GET", "/nope", None, b"").await;
    assert_eq!(s, 404);

    let (s, b) = request(addr, "GET", "/health", None, b"").await;
    assert_eq!(s, 200);
    assert!(
        b.contains("\"status\":\"ok\"") && b.contains("nonmedical-tiny-a"),
        "{b}"
    );
    let (s, metrics) = request(addr, "GET", "/metrics", None, b"").await;
    assert_eq!(s, 200);
    assert!(
        metrics.contains("augur_shadow_inferences_total{outcome=\"success\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("augur_shadow_inferences_total{outcome=\"decode_error\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("augur_shadow_latency_seconds_count 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("augur_model_server_requests_total{code=\"200\"}"),
        "{metrics}"
    );

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
