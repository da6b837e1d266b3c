//! The five scenarios of the first users (issue 20), each an example policy under
//! `policies/examples/`, run under `augur proxy` to show that it behaves as its comments say.
//! The examples' loopback endpoint ports are replaced by the test upstreams' ports; where a test
//! edits its copy further (a shorter window, pause or interval, a wider allowance), its comment
//! says what and why.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use augur_tests::assert_share_near;
use augur_tests::augur::Proxy;
use augur_tests::http;
use augur_tests::upstream::Upstream;
use augur_tests::wait_for;

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

/// The rollout's entry in `/rollouts`.
fn rollout(proxy: &Proxy) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/rollouts").body).expect("rollouts JSON");
    status["rollouts"][0].clone()
}

fn bg_canary_weight(proxy: &Proxy) -> f64 {
    proxy.metric("augur_rollout_weight{arm=\"canary\",policy=\"default/pneumonia-bg\"}")
}

/// The example `blue-green.yaml` on `blue` and `green`, with its analyses looking every second
/// and allowances wide enough for a green as good as blue to pass on a few hundred requests
/// (error rate +20 points, p99 latency +50ms: loopback latencies are noisy), and `edits`.
fn bg_edited(dir: &Path, blue: &Upstream, green: &Upstream, edits: &[(&str, &str)]) -> PathBuf {
    let mut all = vec![
        (
            "prePromotionAnalysis: {}",
            "prePromotionAnalysis: {interval: 1s}",
        ),
        ("interval: 30s", "interval: 1s"),
        (
            "allowedChange: {absolute: 1}",
            "allowedChange: {absolute: 20}",
        ),
        (
            "allowedChange: {relative: 0.25}",
            "allowedChange: {absolute: 50ms}",
        ),
    ];
    all.extend_from_slice(edits);
    edited(
        dir,
        "blue-green.yaml",
        &all,
        &[(8601, blue.addr.port()), (8602, green.addr.port())],
    )
}

/// Starts the rollout and sends preview (green) and live (blue) traffic until the pre-promotion
/// analysis has passed on its evidence and the rollout waits for the operator's promotion
/// (`autoPromote: false`); then promotes, and waits for the switch.
fn bg_pass_the_gate_and_promote(proxy: &Proxy) {
    let host = "pneumonia-bg";
    let r = proxy.admin_post("/rollouts/pneumonia-bg/start", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let waiting = wait_for(
        "the pre-promotion analysis to pass",
        std::time::Duration::from_secs(120),
        || {
            send(proxy, host, "x-preview: true\r\n", 20, "v2");
            send(proxy, host, "", 20, "v1");
            let r = rollout(proxy);
            (r["state"]["phase"] != "progressing").then_some(r)
        },
    );
    assert_eq!(
        waiting["state"],
        serde_json::json!({"phase": "paused", "step": 1, "reason": "manual_gate"}),
        "the gate passed and the switch waits for the operator: {waiting}"
    );
    let gate = &waiting["gates"][0];
    assert_eq!(
        (gate["step"].as_u64(), gate["outcome"].as_str()),
        (Some(0), Some("passed")),
        "{gate}"
    );
    let verdicts = gate["verdicts"].as_array().expect("the deciding look");
    assert!(
        verdicts.iter().all(|v| v["outcome"] == "pass") && verdicts.len() == 2,
        "every metric shown within its allowance: {verdicts:?}"
    );
    assert_eq!(
        bg_canary_weight(proxy),
        0.0,
        "live stays on blue until promoted"
    );

    // The gate passed on evidence: promotion needs no --force.
    let r = proxy.admin_post("/rollouts/pneumonia-bg/promote", "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("the switch", std::time::Duration::from_secs(10), || {
        (bg_canary_weight(proxy) == 100.0).then_some(())
    });
}

/// Scenario 2 end to end, as its comments say: the pre-promotion analysis passes on the
/// evidence of preview (green) and live (blue) traffic, the operator promotes, live traffic
/// switches to green, and the post-promotion watch (shortened from 5m to 20s) runs for its
/// whole duration while green keeps serving; at its end the rollout completes: Promoted, with
/// 100% on green.
#[test]
fn blue_green_passes_its_gate_on_evidence_and_completes_after_the_watch() {
    let (blue, green) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = bg_edited(
        dir.path(),
        &blue,
        &green,
        &[("duration: 5m", "duration: 20s")],
    );
    let proxy = Proxy::start(&[&file]);
    bg_pass_the_gate_and_promote(&proxy);

    let watching = rollout(&proxy);
    assert_eq!(watching["state"]["step"], 3, "{watching}");
    let deadline = watching["watch_deadline"]
        .as_f64()
        .unwrap_or_else(|| panic!("a watch with an end: {watching}"));
    let done = wait_for(
        "the watch to end and the rollout to complete",
        std::time::Duration::from_secs(120),
        || {
            send(&proxy, "pneumonia-bg", "", 20, "v2");
            let r = rollout(&proxy);
            let phase = r["state"]["phase"].clone();
            assert!(
                phase == "progressing" || phase == "promoted",
                "the watch ends only by completing: {r}"
            );
            (phase == "promoted").then_some(r)
        },
    );
    assert_eq!(
        done["weights"],
        serde_json::json!({"stable": 0, "canary": 100}),
        "{done}"
    );
    let completed = done["decisions"][0].clone();
    assert_eq!(completed["to"]["phase"], "promoted", "{completed}");
    assert!(
        completed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("watched 20s without a failure")),
        "{completed}"
    );
    assert!(
        completed["time"].as_f64() >= Some(deadline),
        "completed at the watch's end, not at its first passing look: {completed}, watch until {deadline}"
    );
    assert_eq!(bg_canary_weight(&proxy), 100.0);
    send(&proxy, "pneumonia-bg", "", 50, "v2");
}

/// Scenario 2, a green that fails after the switch: it passes the pre-promotion analysis, is
/// promoted, and then answers 500 to everything. Within the post-promotion watch (the
/// example's 5m) the error-rate trigger fires, and live traffic switches back to blue. The
/// trigger's window is shortened from 1m to 10s.
#[test]
fn blue_green_switches_back_to_blue_when_green_fails_during_the_watch() {
    use augur_tests::upstream::Answer;
    use std::sync::Arc;
    let failing = Arc::new(AtomicBool::new(false));
    let blue = Upstream::start("v1");
    let green = {
        let failing = Arc::clone(&failing);
        Upstream::scripted("v2", move |_| Answer {
            status: if failing.load(Ordering::Relaxed) {
                500
            } else {
                200
            },
            ..Answer::OK
        })
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = bg_edited(
        dir.path(),
        &blue,
        &green,
        &[("        window: 1m\n", "        window: 10s\n")],
    );
    let proxy = Proxy::start(&[&file]);
    bg_pass_the_gate_and_promote(&proxy);
    assert!(
        rollout(&proxy)["watch_deadline"].is_f64(),
        "{}",
        rollout(&proxy)
    );

    failing.store(true, Ordering::Relaxed);
    let state = wait_for(
        "the switch back to blue",
        std::time::Duration::from_secs(120),
        || {
            tally(&proxy, "pneumonia-bg", 20);
            let r = rollout(&proxy);
            (r["state"]["phase"] == "rolled_back").then_some(r["state"].clone())
        },
    );
    assert_eq!(state["trigger"], "error-rate-above-5", "{state}");
    assert_eq!(bg_canary_weight(&proxy), 0.0);
    send(&proxy, "pneumonia-bg", "", 50, "v1");
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

/// The example `name` with each `(from, to)` edit applied once (each must be in the example)
/// and its endpoint ports replaced, written to `dir`.
fn edited(dir: &Path, name: &str, edits: &[(&str, &str)], ports: &[(u16, u16)]) -> PathBuf {
    let mut text = example(name);
    for (from, to) in edits {
        assert!(text.contains(from), "{name} has {from:?}");
        text = text.replacen(from, to, 1);
    }
    with_ports(dir, name, &text, ports)
}

/// The example `canary-steps.yaml` on `v1` and `v2`, with `edits`.
fn steps_edited(dir: &Path, v1: &Upstream, v2: &Upstream, edits: &[(&str, &str)]) -> PathBuf {
    edited(
        dir,
        "canary-steps.yaml",
        edits,
        &[(8701, v1.addr.port()), (8702, v2.addr.port())],
    )
}

/// Sets its flag when dropped, so that load threads stop when the test panics too.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `batch(client, round)` in a loop on each of `clients` threads until `until` (polled by
/// [`wait_for`], up to `deadline`) returns `Some`, then stops them and returns it.
fn under_load<T>(
    clients: usize,
    what: &str,
    deadline: std::time::Duration,
    batch: impl Fn(usize, usize) + Sync,
    until: impl FnMut() -> Option<T>,
) -> T {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for client in 0..clients {
            let (stop, batch) = (&stop, &batch);
            s.spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    batch(client, round);
                    round += 1;
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        wait_for(what, deadline, until)
    })
}

/// The rollout's state once it has rolled back, and what `augur rollout status` prints then.
fn rolled_back(proxy: &Proxy) -> Option<serde_json::Value> {
    let state = steps_state(proxy);
    (state["phase"] == "rolled_back").then_some(state)
}

/// What a rollback by a trigger leaves: the rollout ended by the trigger `name`, named in
/// `/rollouts` and in its decisions that `augur rollout status` prints, the canary's weight at
/// 0, and all traffic on v1.
fn assert_rolled_back_by(proxy: &Proxy, state: &serde_json::Value, name: &str) {
    assert_eq!(state["trigger"], name, "{state}");
    assert!(
        state["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("trigger {name}"))),
        "{state}"
    );
    let admin = proxy.admin.to_string();
    let out = augur_tests::augur::run(&["rollout", "--admin", &admin, "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Status:   RolledBack") && text.contains(&format!("trigger {name}")),
        "{text}"
    );
    assert_eq!(
        proxy.metric("augur_rollout_weight{arm=\"canary\",policy=\"default/pneumonia-steps\"}"),
        0.0
    );
    assert_eq!(
        tally(proxy, "pneumonia-steps", 200),
        (0, 0),
        "all traffic on v1, none failing"
    );
}

/// Scenario 1, a slow canary: v2 answers every request after 1 s, stable at once. At 5% the
/// latency trigger (canary p95 more than 500ms above stable's) fires once its full window
/// shows it, and all traffic goes back to v1 at once. Its window is shortened from 3m to 10s;
/// eight clients send at once so that the window holds enough requests of both arms (a trigger
/// needs 20 canary requests, and stable's p95 needs a few hundred to be bounded at the
/// trigger's level), however slow the canary's answers.
#[test]
fn canary_steps_roll_back_when_the_canary_is_slow() {
    use augur_tests::upstream::Answer;
    let v1 = Upstream::start("v1");
    let v2 = Upstream::scripted("v2", |_| Answer {
        delay: std::time::Duration::from_secs(1),
        ..Answer::OK
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = steps_edited(
        dir.path(),
        &v1,
        &v2,
        &[("        window: 3m\n", "        window: 10s\n")],
    );
    let proxy = Proxy::start(&[&file]);
    steps_command(&proxy, "start");
    let state = under_load(
        8,
        "the latency trigger",
        std::time::Duration::from_secs(120),
        |_, _| {
            tally(&proxy, "pneumonia-steps", 20);
        },
        || rolled_back(&proxy),
    );
    assert_rolled_back_by(&proxy, &state, "p95-latency-up-500ms");
}

/// Scenario 1, a canary that answers wrongly: stable says PNEUMONIA, the canary NORMAL, and
/// the ground truth posted to `POST /labels` for every request is PNEUMONIA. At 5% the accuracy
/// trigger (canary accuracy more than 5 points below stable's) fires once its full window of
/// labels shows it, and all traffic goes back to v1 at once. Its window is shortened from 5m to
/// 10s; labels follow each batch of requests, so that they arrive throughout the window.
#[test]
fn canary_steps_roll_back_when_the_canary_answers_wrongly() {
    let v1 = Upstream::predicting("v1", "PNEUMONIA");
    let v2 = Upstream::predicting("v2", "NORMAL");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = steps_edited(
        dir.path(),
        &v1,
        &v2,
        &[("        window: 5m\n", "        window: 10s\n")],
    );
    let proxy = Proxy::start(&[&file]);
    steps_command(&proxy, "start");
    let state = under_load(
        2,
        "the accuracy trigger",
        std::time::Duration::from_secs(120),
        |client, round| {
            let mut labels = Vec::new();
            for i in 0..50 {
                let id = format!("c{client}-r{round}-{i}");
                let raw = format!(
                    "GET /predict HTTP/1.1\r\nHost: pneumonia-steps\r\nx-request-id: {id}\r\n\
                     Connection: close\r\n\r\n"
                );
                let r = http::request(proxy.listen, &raw).expect("request through augur");
                assert_eq!(r.status, 200, "{}", r.body);
                labels.push(serde_json::json!({"request_id": id, "label": "PNEUMONIA"}));
            }
            let r = proxy.admin_post(
                "/labels",
                &serde_json::json!({ "labels": labels }).to_string(),
            );
            assert_eq!(r.status, 200, "{}", r.body);
        },
        || rolled_back(&proxy),
    );
    assert_rolled_back_by(&proxy, &state, "accuracy-down-5");
}

/// Scenario 1's timed pauses, shortened from 10m to 10s and 2s: after `start` the rollout is in
/// the first pause at 5%, shown as a timed pause with the time left; each pause ends by itself
/// (no `promote`, no traffic), and the rollout stops at the pause before 100% that waits for a
/// person.
#[test]
fn canary_steps_timed_pauses_end_by_themselves() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = steps_edited(
        dir.path(),
        &v1,
        &v2,
        &[
            ("pause: {duration: 10m}", "pause: {duration: 10s}"),
            ("pause: {duration: 10m}", "pause: {duration: 2s}"),
        ],
    );
    let proxy = Proxy::start(&[&file]);
    let weight =
        || proxy.metric("augur_rollout_weight{arm=\"canary\",policy=\"default/pneumonia-steps\"}");
    steps_command(&proxy, "start");
    let status: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/rollouts").body).expect("rollouts JSON");
    let rollout = &status["rollouts"][0];
    assert_eq!(rollout["state"]["step"], 1, "{rollout}");
    assert!(rollout["pause_deadline"].is_f64(), "{rollout}");
    assert_eq!(weight(), 5.0);
    let admin = proxy.admin.to_string();
    let out = augur_tests::augur::run(&["rollout", "--admin", &admin, "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Status:   Paused (timed pause, "), "{text}");

    wait_for(
        "the first pause to end by itself",
        std::time::Duration::from_secs(60),
        || (steps_state(&proxy)["step"].as_u64() >= Some(3)).then_some(()),
    );
    let held = serde_json::json!({"phase": "paused", "step": 5, "reason": "manual_gate"});
    wait_for(
        "the second pause to end by itself",
        std::time::Duration::from_secs(60),
        || (steps_state(&proxy) == held).then_some(()),
    );
    assert_eq!(weight(), 50.0, "50%, held until promoted");
}

/// Scenario 5: 10% mirrored to the shadow model (`shadow-scoring.yaml`, a shadow-only policy).
/// Every request is served by stable; about 10% of them (within 4σ) are also scored by the
/// in-process shadow model; no weight is ever set, there is nothing to promote, and stable's
/// agreement with the shadow is reported in `/rollouts`, `augur rollout status` and the
/// Prometheus counters. Besides the endpoint port, the example's model path is replaced by the
/// test fixture model, and its input size (224×224 for the real model) by the fixture's 64×64.
#[test]
fn shadow_scoring_serves_everything_from_stable_and_scores_a_tenth_in_the_shadow() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf();
    let ort = std::env::var("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH must name libonnxruntime.so: run the tests through scripts/test.sh",
    );
    assert!(
        Path::new(&ort).exists(),
        "ORT_DYLIB_PATH={ort} does not exist"
    );
    let model = repo.join("inference/fixtures/models/nonmedical-tiny-a.onnx");
    let text = example("shadow-scoring.yaml");
    for original in [
        "model: models/pneumonia-v3.onnx",
        "width: 224",
        "height: 224",
    ] {
        assert!(text.contains(original), "the example has {original}");
    }
    let text = text
        .replace(
            "model: models/pneumonia-v3.onnx",
            &format!("model: {}", model.display()),
        )
        .replace("width: 224", "width: 64")
        .replace("height: 224", "height: 64");
    // Stable answers NORMAL to everything; the fixture model says NORMAL for this X-ray with the
    // example's preprocessing (`augur score`), so the shadow agrees with every stable answer.
    let v1 = Upstream::start("v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = with_ports(
        dir.path(),
        "shadow-scoring.yaml",
        &text,
        &[(8701, v1.addr.port())],
    );
    let proxy = Proxy::start(&[&file]);
    let status = || -> serde_json::Value {
        let all: serde_json::Value =
            serde_json::from_str(&proxy.admin_get("/rollouts").body).expect("rollouts JSON");
        all["rollouts"][0].clone()
    };
    let s = status();
    assert_eq!(s["name"], "default/pneumonia-shadow");
    assert_eq!(s["state"]["phase"], "shadowing");
    assert_eq!(
        (s["weights"].is_null(), s["steps"].clone()),
        (true, serde_json::json!([]))
    );

    let xray = std::fs::read(repo.join("inference/testdata/xrays/person1951_bacteria_4882.jpeg"))
        .expect("x-ray");
    let n = 400;
    for i in 0..n {
        let mut raw = format!(
            "POST /predict HTTP/1.1\r\nHost: pneumonia-shadow\r\nContent-Type: image/jpeg\r\n\
             x-request-id: s{i}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            xray.len()
        )
        .into_bytes();
        raw.extend_from_slice(&xray);
        let answer = http::request_bytes(proxy.listen, &raw).expect("request through augur");
        assert_eq!(answer.status, 200);
        assert!(
            answer.body.contains("\"v1\""),
            "stable answers: {}",
            answer.body
        );
    }
    assert_eq!(v1.served(), n, "stable served every request");
    assert_eq!(
        proxy.metric("augur_requests_total{route=\"primary\",arm=\"stable\"}"),
        n as f64
    );
    assert_eq!(proxy.metric("augur_requests_total{arm=\"canary\"}"), 0.0);

    // Each mirrored image was handed to the shadow when its body ended, before stable answered,
    // and ends as one outcome: wait until every one has, and every score is compared with
    // stable's answer.
    let (submitted, agreement) = wait_for(
        "every shadow answer compared with stable's",
        std::time::Duration::from_secs(30),
        || {
            let submitted = proxy.metric("augur_shadow_submitted_total");
            let success = proxy.metric("augur_shadow_inferences_total{outcome=\"success\"}");
            let agreement = status()["shadow"]["agreement"]["stable"].clone();
            (proxy.metric("augur_shadow_inferences_total") == submitted
                && agreement["compared"].as_f64() == Some(success))
            .then_some((submitted as usize, agreement))
        },
    );
    let scored = proxy.metric("augur_shadow_inferences_total{outcome=\"success\"}") as usize;
    assert_eq!(
        scored, submitted,
        "every mirrored image was scored (none dropped or failed)"
    );
    assert_share_near(scored, n, 0.10);
    assert_eq!(
        agreement["agreed"].as_u64(),
        Some(scored as u64),
        "{agreement}"
    );
    assert_eq!(agreement["rate"].as_f64(), Some(1.0));
    let ci = agreement["ci95"].as_array().expect("an interval");
    assert!(
        ci[0].as_f64().unwrap_or(1.0) < 1.0 && ci[1] == 1.0,
        "{ci:?}"
    );
    let policy = "policy=\"default/pneumonia-shadow\",arm=\"stable\"";
    assert_eq!(
        proxy.metric(&format!("augur_rollout_shadow_compared_total{{{policy}}}")),
        scored as f64
    );
    assert_eq!(
        proxy.metric(&format!("augur_rollout_shadow_agreed_total{{{policy}}}")),
        scored as f64
    );

    // No weight was ever set or changed: no weight gauge, the written split is the live one.
    assert!(
        !proxy.metrics_text().contains("augur_rollout_weight{"),
        "no rollout weight exported"
    );
    let dump: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/config_dump").body).expect("config_dump JSON");
    let driven = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["driven_routes"].as_array())
        .cloned()
        .unwrap_or_default();
    assert!(driven.is_empty(), "no route is driven: {driven:?}");
    let config = &dump["configs"][0];
    assert_eq!(
        config["shadow_models"][0]["mirror_percentage"], 10.0,
        "{config}"
    );
    assert_eq!(config["shadow_models"][0]["shadow_only"], true);
    assert_eq!(config["routes"]["rollouts"][0]["strategy"], "shadowOnly");

    // The command line shows it for what it is, and there is nothing to promote.
    let admin = proxy.admin.to_string();
    let out = augur_tests::augur::run(&["rollout", "--admin", &admin, "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Status:   Shadowing (scoring 10% of requests in the shadow model")
            && text.contains("Weights:  unchanged")
            && !text.contains("STEP  ACTION"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("stable "))
        .unwrap_or_else(|| panic!("no agreement row:\n{text}"));
    assert!(
        row.contains(&format!(" {scored} ")) && row.contains("100.0%"),
        "{row}"
    );
    let out =
        augur_tests::augur::run(&["rollout", "--admin", &admin, "promote", "pneumonia-shadow"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is shadow-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
