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

/// The rollout's latest verdict for `metric`, with its sample counts.
fn verdict(proxy: &Proxy, metric: &str) -> Option<(u64, u64)> {
    let status: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/rollouts").body).expect("rollouts JSON");
    let v = status["rollouts"][0]["verdicts"]
        .as_array()?
        .iter()
        .find(|v| v["metric"] == metric)?
        .clone();
    Some((v["n_stable"].as_u64()?, v["n_canary"].as_u64()?))
}

fn send(proxy: &Proxy, host: &str, headers: &str, n: usize, expect: &str) {
    for _ in 0..n {
        assert_eq!(version(proxy, host, headers), expect);
    }
}

/// Scenario 2: blue-green with pre- and post-promotion analysis (`blue-green.yaml`), answering
/// the two questions its docs answer. (1) Pre-promotion analysis gets its canary samples from
/// the preview route: requests there (all to green) are the canary's evidence, the live route's
/// (all to blue) stable's, while the rollout keeps the live weights at blue 100%. (2)
/// Post-promotion analysis, once blue has 0%, compares green against the evidence blue gathered
/// before the switch: evidence is cumulative over the rollout, so stable's samples stay.
/// The example's analysis intervals are shortened to 1s so that the looks come quickly.
#[test]
fn blue_green_analyses_read_the_preview_route_and_then_blues_earlier_evidence() {
    let (blue, green) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let text = example("blue-green.yaml")
        .replace(
            "prePromotionAnalysis: {}",
            "prePromotionAnalysis: {interval: 1s}",
        )
        .replace("interval: 30s", "interval: 1s");
    let file = with_ports(
        dir.path(),
        "blue-green.yaml",
        &text,
        &[(8601, blue.addr.port()), (8602, green.addr.port())],
    );
    let proxy = Proxy::start(&[&file]);
    // The example starts on a command (the default), as an operator would.
    let r = proxy.admin_post("/rollouts/pneumonia-bg/start", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let host = "pneumonia-bg";
    send(&proxy, host, "x-preview: true\r\n", 30, "v2");
    send(&proxy, host, "", 40, "v1");
    augur_tests::wait_for(
        "a look over both routes",
        std::time::Duration::from_secs(10),
        || (verdict(&proxy, "error-rate") == Some((40, 30))).then_some(()),
    );
    assert_eq!(
        proxy.metric("augur_rollout_weight{arm=\"canary\",policy=\"default/pneumonia-bg\"}"),
        0.0,
        "the live route stays on blue before promotion"
    );

    // The operator skips the undecided gate (30 of its 100 samples: that takes --force), then
    // promotes: live traffic switches to green.
    let r = proxy.admin_post("/rollouts/pneumonia-bg/promote", "");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body
            .contains("step 1 is an analysis gate without the evidence to open")
            && r.body.contains("30 of 100 samples"),
        "{}",
        r.body
    );
    let r = proxy.admin_post("/rollouts/pneumonia-bg/promote", "{\"force\": true}");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = proxy.admin_post("/rollouts/pneumonia-bg/promote", "");
    assert_eq!(r.status, 200, "{}", r.body);
    augur_tests::wait_for("the switch", std::time::Duration::from_secs(10), || {
        (proxy.metric("augur_rollout_weight{arm=\"canary\",policy=\"default/pneumonia-bg\"}")
            == 100.0)
            .then_some(())
    });
    send(&proxy, host, "", 50, "v2");
    augur_tests::wait_for(
        "a post-promotion look",
        std::time::Duration::from_secs(10),
        || (verdict(&proxy, "error-rate") == Some((40, 80))).then_some(()),
    );
}

/// Scenario 4: 100 requests per minute per client IP, with API keys (`api-protection.yaml`, on
/// the canary example's `pneumonia` VirtualService). No key or a wrong one is 401 as Envoy's
/// api_key_auth answers; the 101st request within the minute from one IP, keyed or not, is 429
/// as Envoy's local_ratelimit answers. (The canary example's shadow model is not here: the proxy
/// serves without it, as it would in production.)
#[test]
fn api_protection_takes_keys_and_limits_each_client_ip_to_100_a_minute() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let canary = with_ports(
        dir.path(),
        "canary-pneumonia.yaml",
        &example("canary-pneumonia.yaml"),
        &[(8501, v1.addr.port()), (8502, v2.addr.port())],
    );
    let protection = dir.path().join("api-protection.yaml");
    std::fs::write(&protection, example("api-protection.yaml")).expect("write");
    let proxy = Proxy::start_with_env(
        &[&canary, &protection],
        &[("PNEUMONIA_API_KEYS", "team-a-key,team-b-key")],
    );
    let get = |key: Option<&str>| {
        let header = key
            .map(|k| format!("x-api-key: {k}\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "GET /predict HTTP/1.1\r\nHost: pneumonia\r\n{header}Connection: close\r\n\r\n"
        );
        http::request(proxy.listen, &raw).expect("request through augur")
    };
    assert_eq!(get(None).status, 401);
    assert_eq!(get(Some("wrong")).status, 401);
    // Keyed by client IP, the bucket is checked first (docs/security.md), so guesses count too:
    // the two 401s took two of the 100 tokens.
    for i in 0..98 {
        let r = get(Some(if i % 2 == 0 {
            "team-a-key"
        } else {
            "team-b-key"
        }));
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    let limited = get(Some("team-a-key"));
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body, "local_rate_limited");
}

/// `requests` GETs on one connection to `host`; how many v2 answered, and how many failed.
fn tally(proxy: &Proxy, host: &str, requests: usize) -> (usize, usize) {
    let mut conn = http::Connection::open(proxy.listen).expect("connect");
    let (mut v2, mut failed) = (0, 0);
    for _ in 0..requests {
        let r = conn.get(host, "/predict").expect("request through augur");
        if r.status != 200 {
            failed += 1;
        } else if r.body.contains("\"v2\"") {
            v2 += 1;
        }
    }
    (v2, failed)
}

fn steps_state(proxy: &Proxy) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/rollouts").body).expect("rollouts JSON");
    status["rollouts"][0]["state"].clone()
}

fn steps_command(proxy: &Proxy, verb: &str) {
    let r = proxy.admin_post(&format!("/rollouts/pneumonia-steps/{verb}"), "");
    assert_eq!(r.status, 200, "{verb}: {}", r.body);
}

/// Scenario 1: a canary 5 → 20 → 50 → 100 with pauses and three rollback triggers
/// (`canary-steps.yaml`). Nothing moves before `augur rollout start`; each step's share of
/// live traffic goes to v2 (within 4σ); the timed 10-minute pauses are skipped with
/// `augur rollout promote` (the test does not wait 20 minutes: the pause's timing is the state
/// machine's, tested on its own clock in `augur-analyzer`), and the pause before 100% holds
/// however much traffic comes until promoted.
#[test]
fn canary_steps_follow_5_20_50_100_and_hold_at_the_pause() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = with_ports(
        dir.path(),
        "canary-steps.yaml",
        &example("canary-steps.yaml"),
        &[(8701, v1.addr.port()), (8702, v2.addr.port())],
    );
    let proxy = Proxy::start(&[&file]);
    let host = "pneumonia-steps";
    assert_eq!(steps_state(&proxy)["phase"], "pending");
    assert_eq!(
        tally(&proxy, host, 200),
        (0, 0),
        "no canary traffic before start"
    );

    steps_command(&proxy, "start");
    assert_eq!(
        steps_state(&proxy),
        serde_json::json!({"phase": "progressing", "step": 1}),
        "5%, in the first timed pause"
    );
    let n = 1000;
    let (on_v2, failed) = tally(&proxy, host, n);
    assert_eq!(failed, 0);
    assert_share_near(on_v2, n, 0.05);

    steps_command(&proxy, "promote");
    assert_eq!(
        steps_state(&proxy)["step"],
        3,
        "20%, in the second timed pause"
    );
    let (on_v2, _) = tally(&proxy, host, n);
    assert_share_near(on_v2, n, 0.2);

    steps_command(&proxy, "promote");
    let held = serde_json::json!({"phase": "paused", "step": 5, "reason": "manual_gate"});
    assert_eq!(steps_state(&proxy), held, "50%, held until promoted");
    let (on_v2, _) = tally(&proxy, host, n);
    assert_share_near(on_v2, n, 0.5);
    assert_eq!(steps_state(&proxy), held, "traffic does not end the pause");

    steps_command(&proxy, "promote");
    assert_eq!(steps_state(&proxy)["phase"], "promoted");
    assert_eq!(tally(&proxy, host, 200), (200, 0), "100%: all v2");
}

/// Scenario 1, a bad canary: v2 answers 500 to everything. At 5% the error-rate trigger (above
/// 5%) fires once its full window holds enough canary requests, and all traffic goes back to v1
/// at once. The trigger's window is shortened from 2m to 10s so that the test does not wait
/// two minutes (a trigger needs a full window of samples); nothing else changes.
#[test]
fn canary_steps_roll_back_when_the_canary_fails() {
    use augur_tests::upstream::Answer;
    let v1 = Upstream::start("v1");
    let v2 = Upstream::scripted("v2", |_| Answer {
        status: 500,
        ..Answer::OK
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let text = example("canary-steps.yaml");
    let shortened = text.replacen("        window: 2m\n", "        window: 10s\n", 1);
    assert_ne!(shortened, text, "the error trigger's window");
    let file = with_ports(
        dir.path(),
        "canary-steps.yaml",
        &shortened,
        &[(8701, v1.addr.port()), (8702, v2.addr.port())],
    );
    let proxy = Proxy::start(&[&file]);
    let host = "pneumonia-steps";
    steps_command(&proxy, "start");
    let rolled_back = augur_tests::wait_for(
        "the error trigger",
        std::time::Duration::from_secs(60),
        || {
            tally(&proxy, host, 100);
            let state = steps_state(&proxy);
            (state["phase"] == "rolled_back").then_some(state)
        },
    );
    assert_eq!(rolled_back["trigger"], "errors-above-5", "{rolled_back}");
    assert_eq!(
        proxy.metric("augur_rollout_weight{arm=\"canary\",policy=\"default/pneumonia-steps\"}"),
        0.0
    );
    assert_eq!(
        tally(&proxy, host, 200),
        (0, 0),
        "all traffic on v1, none failing"
    );
}
