//! The five scenarios of the first users (issue 20), each an example policy under
//! `policies/examples/`, run under `augur proxy` to show that it behaves as its comments say.
//! The examples' loopback endpoint ports are replaced by the test upstreams' ports; nothing else
//! in them changes.

use std::path::{Path, PathBuf};

use augur_tests::assert_share_near;
use augur_tests::augur::Proxy;
use augur_tests::http;
use augur_tests::upstream::Upstream;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .join("policies/examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `text` with each `http: PORT` endpoint port replaced, and returns the file.
fn with_ports(dir: &Path, name: &str, text: &str, ports: &[(u16, u16)]) -> PathBuf {
    let mut text = text.to_owned();
    for (from, to) in ports {
        let before = format!("http: {from}\n");
        assert!(text.contains(&before), "{name} has no endpoint port {from}");
        text = text.replace(&before, &format!("http: {to}\n"));
    }
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write policy");
    file
}

/// GET with extra header lines; returns the model version that answered.
fn version(proxy: &Proxy, host: &str, headers: &str) -> String {
    let raw =
        format!("GET /predict HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
    let r = http::request(proxy.listen, &raw).expect("request through augur");
    assert_eq!(r.status, 200, "{}", r.body);
    if r.body.contains("\"v1\"") {
        "v1".to_owned()
    } else if r.body.contains("\"v2\"") {
        "v2".to_owned()
    } else {
        panic!("unexpected body {}", r.body)
    }
}

/// Scenario 3: an A/B split by header with a sticky split for everyone else
/// (`header-ab.yaml`). Beta testers (`x-model-version: v2`) always get v2, and their traffic is
/// counted as the canary arm, the version actually served; everyone else is split 90/10 and
/// each user (`x-user-id`) stays on one version.
#[test]
fn header_ab_sends_beta_testers_to_v2_and_keeps_each_user_on_one_version() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = with_ports(
        dir.path(),
        "header-ab.yaml",
        &example("header-ab.yaml"),
        &[(9085, v1.addr.port()), (9086, v2.addr.port())],
    );
    let proxy = Proxy::start(&[&file]);

    for i in 0..30 {
        let beta = format!("x-model-version: v2\r\nx-user-id: beta-{i}\r\n");
        assert_eq!(version(&proxy, "pneumonia-ab", &beta), "v2");
    }
    assert_eq!(
        proxy.metric("augur_requests_total{route=\"v2-by-header\",arm=\"canary\"}"),
        30.0,
        "the beta route serves v2: its traffic is the canary arm"
    );
    assert_eq!(
        proxy.metric("augur_requests_total{route=\"v2-by-header\",arm=\"stable\"}"),
        0.0
    );

    let users = 400;
    let mut on_v2 = 0;
    for u in 0..users {
        let header = format!("x-user-id: user-{u}\r\n");
        let first = version(&proxy, "pneumonia-ab", &header);
        for _ in 0..2 {
            assert_eq!(
                version(&proxy, "pneumonia-ab", &header),
                first,
                "user-{u} stays on one version"
            );
        }
        on_v2 += usize::from(first == "v2");
    }
    assert_share_near(on_v2, users, 0.1);
    let split = |arm: &str| {
        proxy.metric(&format!(
            "augur_requests_total{{route=\"split\",arm=\"{arm}\"}}"
        ))
    };
    assert_eq!(split("canary"), (3 * on_v2) as f64, "v2 is the canary arm");
    assert_eq!(
        split("stable"),
        (3 * (users - on_v2)) as f64,
        "v1 is the stable arm"
    );
}
