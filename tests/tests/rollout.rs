//! Rollouts under `augur proxy`: steps set the weights requests see, manual promotion, a
//! rollback trigger against a failing canary, and resuming after a crash at the same step.

use std::path::PathBuf;
use std::time::Duration;

use augur_tests::augur::Proxy;
use augur_tests::http::Connection;
use augur_tests::policy::{service, virtual_service, write};
use augur_tests::upstream::{Answer, Upstream};
use augur_tests::{assert_share_near, wait_for};

/// Analysis on the error rate: a canary failing every request fails it.
const ERROR_RATE_ANALYSIS: &str =
    "    - name: error-rate\n      kind: errorRate\n      allowedChange: {absolute: 5}\n";
/// Analysis on latency only, with room to spare: errors are left to the triggers.
const LATENCY_ANALYSIS: &str = "    - name: latency\n      kind: latency\n      quantile: 0.95\n      allowedChange: {relative: 10}\n";

fn canary_policy(metrics: &str, triggers: &str) -> String {
    augur_tests::policy::canary_policy(
        "model",
        &format!(
            r#"  steps:
  - setWeight: 30
  - pause: {{}}
  - setWeight: 100
  analysis:
    interval: 1s
    minSamples: 20
    burstWindow: 0s
    metrics:
{metrics}{triggers}"#
        ),
    )
}

fn setup(
    v1: &Upstream,
    v2: &Upstream,
    metrics: &str,
    triggers: &str,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - name: primary\n    retries: {attempts: 0}\n    route:\n    - destination: {host: model, subset: v1}\n      weight: 100\n    - destination: {host: model, subset: v2}\n      weight: 0\n",
    );
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let file = write(dir.path(), &[&vs, &svc, &canary_policy(metrics, triggers)]);
    (dir, file)
}

/// Sends `n` requests and returns how many the canary (v2) answered.
fn canary_share(proxy: &Proxy, n: usize) -> usize {
    let mut conn = Connection::open(proxy.listen).expect("connect");
    (0..n)
        .filter(|_| {
            conn.get("model", "/predict")
                .expect("request")
                .body
                .contains("\"v2\"")
        })
        .count()
}

fn rollout_status(proxy: &Proxy) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/rollouts").body).expect("rollouts JSON");
    status["rollouts"][0].clone()
}

#[test]
fn steps_set_weights_and_promotion_completes_the_rollout() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let (_dir, file) = setup(&v1, &v2, ERROR_RATE_ANALYSIS, "");
    let proxy = Proxy::start(&[&file]);
    wait_for("the first step to set 30%", Duration::from_secs(10), || {
        (rollout_status(&proxy)["weights"]["canary"] == 30).then_some(())
    });
    assert_share_near(canary_share(&proxy, 2000), 2000, 0.3);
    let status = rollout_status(&proxy);
    assert_eq!(status["name"], "default/model");
    assert_eq!(
        status["state"]["phase"], "paused",
        "pause without duration waits for promotion"
    );
    assert_eq!(
        proxy.metric("augur_rollout_weight{arm=\"canary\",policy=\"default/model\"}"),
        30.0
    );

    let promoted = proxy.admin_post("/rollouts/model/promote", "");
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    wait_for("the rollout to reach 100%", Duration::from_secs(10), || {
        (rollout_status(&proxy)["state"]["phase"] == "promoted").then_some(())
    });
    assert_eq!(canary_share(&proxy, 200), 200);
    assert_eq!(
        proxy.metric("deployments_total{policy=\"default/model\"}"),
        1.0
    );

    let audit = std::fs::read_to_string(proxy.state_dir.join("default_model.decisions.jsonl"))
        .expect("audit log");
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(
        lines.iter().any(|d| d["actor"] == "admin"),
        "the manual promotion is audited"
    );
    assert!(lines
        .iter()
        .all(|d| d["policy_hash"].as_str().map(str::len) == Some(64)));
    assert_eq!(proxy.admin_post("/rollouts/nope/promote", "").status, 404);
    assert_eq!(
        proxy.admin_get("/rollouts/model/promote").status,
        400,
        "mutations are POST only"
    );
}

/// A rolled-back rollout: the proxy, its final status, and what must outlive them.
struct RolledBack {
    proxy: Proxy,
    status: serde_json::Value,
    _upstreams: (Upstream, Upstream),
    _dir: tempfile::TempDir,
}

/// A canary that fails every request, driven at 30% until the rollout rolls back; checks what
/// every rollback must do.
fn roll_back_a_failing_canary(metrics: &str, triggers: &str) -> RolledBack {
    let v1 = Upstream::start("v1");
    let v2 = Upstream::scripted("v2", |_| Answer {
        status: 500,
        ..Answer::OK
    });
    let (dir, file) = setup(&v1, &v2, metrics, triggers);
    let proxy = Proxy::start(&[&file]);
    wait_for("the first step to set 30%", Duration::from_secs(10), || {
        (rollout_status(&proxy)["weights"]["canary"] == 30).then_some(())
    });
    let mut conn = Connection::open(proxy.listen).expect("connect");
    wait_for("the rollback", Duration::from_secs(20), || {
        for _ in 0..50 {
            conn.get("model", "/predict").expect("request");
        }
        std::thread::sleep(Duration::from_millis(100));
        (rollout_status(&proxy)["state"]["phase"] == "rolled_back").then_some(())
    });
    let status = rollout_status(&proxy);
    assert_eq!(status["weights"]["canary"], 0);
    assert!(status["decisions"].to_string().contains("rolled_back"));
    assert_eq!(canary_share(&proxy, 200), 0, "all traffic back on stable");
    assert_eq!(
        proxy.metric("rollbacks_total{policy=\"default/model\"}"),
        1.0
    );
    RolledBack {
        proxy,
        status,
        _upstreams: (v1, v2),
        _dir: dir,
    }
}

#[test]
fn a_failing_canary_is_rolled_back_by_the_analysis() {
    let RolledBack { proxy, status, .. } = roll_back_a_failing_canary(ERROR_RATE_ANALYSIS, "");
    assert!(status["state"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("error-rate"));
    assert_eq!(status["state"]["trigger"], serde_json::Value::Null);
    let canary_errors = "augur_rollout_metric_value{arm=\"canary\",kind=\"error_rate\",metric=\"error-rate\",policy=\"default/model\"}";
    assert_eq!(
        proxy.metric(canary_errors),
        1.0,
        "the measured value is exported for dashboards"
    );
}

#[test]
fn a_failing_canary_is_rolled_back_by_the_error_rate_trigger() {
    let triggers = "  rollback:\n    triggers:\n    - name: errors\n      metric: errorRate\n      condition: {above: 10}\n      window: 2s\n      action: immediate\n";
    let rolled_back = roll_back_a_failing_canary(LATENCY_ANALYSIS, triggers);
    let status = &rolled_back.status;
    assert_eq!(status["state"]["trigger"], "errors", "{}", status["state"]);
}

/// `augur analyze` replays what `--record-samples` recorded of a live run to the decisions of
/// the audit log, at the same times (issue 19 §4).
#[test]
fn augur_analyze_replays_a_recorded_live_run_to_the_same_decisions() {
    let v1 = Upstream::start("v1");
    let v2 = Upstream::scripted("v2", |n| Answer {
        status: if n % 2 == 0 { 500 } else { 200 },
        ..Answer::OK
    });
    let triggers = "  rollback:\n    triggers:\n    - name: errors\n      metric: errorRate\n      condition: {above: 10}\n      window: 3s\n      action: immediate\n";
    let (_dir, file) = setup(&v1, &v2, LATENCY_ANALYSIS, triggers);
    let recordings = tempfile::tempdir().expect("recordings");
    let rec = recordings.path().to_string_lossy().into_owned();
    let proxy = Proxy::start_with_args(&[&file], &["--record-samples", &rec]);
    wait_for("the first step to set 30%", Duration::from_secs(10), || {
        (rollout_status(&proxy)["weights"]["canary"] == 30).then_some(())
    });
    let mut conn = Connection::open(proxy.listen).expect("connect");
    wait_for("the rollback", Duration::from_secs(30), || {
        for _ in 0..20 {
            conn.get("model", "/predict").expect("request");
        }
        std::thread::sleep(Duration::from_millis(100));
        (rollout_status(&proxy)["state"]["phase"] == "rolled_back").then_some(())
    });
    let audit: Vec<serde_json::Value> =
        std::fs::read_to_string(proxy.state_dir.join("default_model.decisions.jsonl"))
            .expect("audit log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
    let rolled_back_at = audit
        .last()
        .and_then(|d| d["time"].as_f64())
        .expect("a time");
    // The driver flushes the recording once a second: wait until it holds the rollback's second.
    // The proxy is still writing it, so a read can end inside a line: replay a copy of the
    // whole lines read.
    let recording = recordings.path().join("default_model.samples.jsonl");
    let whole_lines = wait_for(
        "the recording to be flushed",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&recording).ok()?;
            let whole = &text[..text.rfind('\n')? + 1];
            whole
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .any(|e| e["tick"].as_f64().is_some_and(|t| t >= rolled_back_at))
                .then(|| whole.to_owned())
        },
    );
    let recording = recordings.path().join("replayed.samples.jsonl");
    std::fs::write(&recording, whole_lines).expect("write the copy");
    let out = augur_tests::augur::run(&[
        "analyze",
        "--policy",
        file.to_str().expect("utf-8 path"),
        "--samples",
        recording.to_str().expect("utf-8 path"),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("decisions JSON");
    let brief = |d: &serde_json::Value| {
        (
            d["time"].as_f64(),
            d["to"].clone(),
            d["weights"].clone(),
            d["reason"].clone(),
        )
    };
    let live: Vec<_> = audit.iter().map(brief).collect();
    let again: Vec<_> = replayed.iter().map(brief).collect();
    assert_eq!(again, live);
    assert_eq!(
        live.last().map(|d| d.1["trigger"].clone()),
        Some("errors".into())
    );
}

#[test]
fn a_killed_proxy_resumes_the_rollout_at_the_same_step_and_weight() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let (_dir, file) = setup(&v1, &v2, ERROR_RATE_ANALYSIS, "");
    let state = tempfile::tempdir().expect("state dir");
    let mut proxy = Proxy::start_with_state(&[&file], state.path());
    wait_for("the first step to set 30%", Duration::from_secs(10), || {
        (rollout_status(&proxy)["weights"]["canary"] == 30).then_some(())
    });
    let before = rollout_status(&proxy);
    proxy.kill();

    let proxy = Proxy::start_with_state(&[&file], state.path());
    let after = rollout_status(&proxy);
    assert_eq!(after["state"], before["state"], "same step, same phase");
    assert_eq!(
        after["weights"]["canary"], 30,
        "never back to 0% or up to 100%"
    );
    assert_share_near(canary_share(&proxy, 1000), 1000, 0.3);
}

#[test]
fn a_proxy_killed_at_every_step_resumes_at_that_step() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let vs = virtual_service(
        "model",
        "  - name: primary\n    route:\n    - destination: {host: model, subset: v1}\n      weight: 100\n    - destination: {host: model, subset: v2}\n      weight: 0\n",
    );
    let svc = service("model", &[("v1", v1.addr.port()), ("v2", v2.addr.port())]);
    let policy = augur_tests::policy::canary_policy(
        "model",
        "  steps:\n  - setWeight: 10\n  - pause: {}\n  - setWeight: 40\n  - pause: {}\n  - setWeight: 70\n  - pause: {}\n  \
         analysis:\n    interval: 1s\n    minSamples: 20\n    onNoData: continue\n    metrics:\n\
         \x20   - name: error-rate\n      kind: errorRate\n      allowedChange: {absolute: 100}\n",
    );
    let file = write(dir.path(), &[&vs, &svc, &policy]);
    let state = tempfile::tempdir().expect("state dir");
    let mut proxy = Proxy::start_with_state(&[&file], state.path());
    for (step, weight) in [(1, 10), (3, 40), (5, 70)] {
        wait_for(
            &format!("step {step} at {weight}%"),
            Duration::from_secs(10),
            || {
                let s = rollout_status(&proxy);
                (s["weights"]["canary"] == weight && s["state"]["step"] == step).then_some(())
            },
        );
        let before = rollout_status(&proxy);
        proxy.kill(); // SIGKILL: no chance to save anything on the way out
        proxy = Proxy::start_with_state(&[&file], state.path());
        let after = rollout_status(&proxy);
        assert_eq!(after["state"], before["state"], "killed at step {step}");
        assert_eq!(after["weights"], before["weights"], "killed at step {step}");
        assert_share_near(canary_share(&proxy, 400), 400, f64::from(weight) / 100.0);
        let promoted = proxy.admin_post("/rollouts/model/promote", "");
        assert_eq!(promoted.status, 200, "{}", promoted.body);
    }
    wait_for("the rollout to finish", Duration::from_secs(10), || {
        (rollout_status(&proxy)["state"]["phase"] == "promoted").then_some(())
    });
    proxy.kill();
    let proxy = Proxy::start_with_state(&[&file], state.path());
    assert_eq!(rollout_status(&proxy)["state"]["phase"], "promoted");
    assert_eq!(canary_share(&proxy, 50), 50, "promoted stays promoted");
}

/// Issue 19 §5 as an SRE met it: after v2 was promoted, the subsets were relabelled for the
/// next release (stable = v2, canary = v3), and augur sent all traffic to the untested v3, again
/// after a restart. Now the new pair starts a new rollout at its first step's weight, and a
/// restart resumes that one.
#[test]
fn the_next_release_starts_at_step_one_and_never_at_the_old_weight() {
    let (v1, v2, v3) = (
        Upstream::start("v1"),
        Upstream::start("v2"),
        Upstream::start("v3"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let files = |stable: &str, canary: &str| {
        let vs = virtual_service(
            "model",
            "  - name: primary\n    retries: {attempts: 0}\n    route:\n    - destination: {host: model, subset: v1}\n      weight: 100\n    - destination: {host: model, subset: v2}\n      weight: 0\n",
        );
        // Subsets v1 and v2 select the versions given; every version has an endpoint.
        let svc = service(
            "model",
            &[
                ("v1", v1.addr.port()),
                ("v2", v2.addr.port()),
                ("v3", v3.addr.port()),
            ],
        )
        .replacen(
            "{name: v1, labels: {version: v1}}",
            &format!("{{name: v1, labels: {{version: {stable}}}}}"),
            1,
        )
        .replacen(
            "{name: v2, labels: {version: v2}}",
            &format!("{{name: v2, labels: {{version: {canary}}}}}"),
            1,
        );
        let policy = augur_tests::policy::canary_policy(
            "model",
            "  steps:\n  - setWeight: 10\n  - pause: {}\n  - setWeight: 100\n  analysis:\n    interval: 1s\n    metrics:\n    - name: error-rate\n      kind: errorRate\n      allowedChange: {absolute: 50}\n",
        );
        [vs, svc, policy].join("\n---\n")
    };
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, files("v1", "v2")).expect("write");
    let state = tempfile::tempdir().expect("state dir");
    let mut proxy = Proxy::start_with_state(&[&file], state.path());
    wait_for("the first step", Duration::from_secs(10), || {
        (rollout_status(&proxy)["weights"]["canary"] == 10).then_some(())
    });
    assert_eq!(
        proxy.admin_post("/rollouts/model/promote-full", "").status,
        200
    );
    wait_for("v2 promoted", Duration::from_secs(10), || {
        (rollout_status(&proxy)["state"]["phase"] == "promoted").then_some(())
    });
    assert_eq!(canary_share(&proxy, 50), 50, "v2 takes everything");

    // The next release: stable selects v2, canary v3.
    let before = proxy.config_version();
    augur_tests::policy::write_atomically(&file, files("v2", "v3"));
    wait_for("the reload", Duration::from_secs(10), || {
        (proxy.config_version() != before).then_some(())
    });
    wait_for("the new rollout", Duration::from_secs(10), || {
        let s = rollout_status(&proxy);
        (s["state"]["phase"] == "paused" && s["weights"]["canary"] == 10).then_some(())
    });
    let s = rollout_status(&proxy);
    assert_eq!(s["archived_releases"], 1);
    assert!(
        s["release"]
            .as_str()
            .is_some_and(|r| r.contains("version=v3")),
        "{s}"
    );
    // 10% to the canary (now v3), the rest to stable (now v2): never 100% to v3.
    let mut conn = Connection::open(proxy.listen).expect("connect");
    let (mut on_v2, mut on_v3) = (0, 0);
    for _ in 0..1000 {
        let body = conn.get("model", "/predict").expect("request").body;
        on_v2 += usize::from(body.contains("\"v2\""));
        on_v3 += usize::from(body.contains("\"v3\""));
    }
    assert_eq!(on_v2 + on_v3, 1000);
    assert_share_near(on_v3, 1000, 0.1);
    let history = std::fs::read_to_string(state.path().join("default_model.history.jsonl"))
        .expect("the archived rollout");
    assert!(history.contains("\"promoted\"") && history.contains("version=v2"));

    // A restart resumes the v2 → v3 rollout, at its step and weight.
    proxy.kill();
    let proxy = Proxy::start_with_state(&[&file], state.path());
    let s = rollout_status(&proxy);
    assert_eq!(
        (s["state"]["phase"].clone(), s["weights"]["canary"].clone()),
        ("paused".into(), 10.into())
    );
    assert_share_near(canary_share_of(&proxy, "\"v3\"", 1000), 1000, 0.1);
}

/// Sends `n` requests and returns how many answers contain `marker`.
fn canary_share_of(proxy: &Proxy, marker: &str, n: usize) -> usize {
    let mut conn = Connection::open(proxy.listen).expect("connect");
    (0..n)
        .filter(|_| {
            conn.get("model", "/predict")
                .expect("request")
                .body
                .contains(marker)
        })
        .count()
}
