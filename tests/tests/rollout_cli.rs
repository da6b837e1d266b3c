//! `augur rollout ...` against a running proxy, and `augur analyze` on a recorded stream.

use std::fmt::Write as _;
use std::time::Duration;

use augur_tests::augur::{run, Proxy};
use augur_tests::policy::{service, virtual_service, write};
use augur_tests::upstream::Upstream;
use augur_tests::wait_for;

const CANARY: &str = r#"apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: model}
spec:
  startOn: immediately
  trafficRouting:
    virtualService: {name: model, routes: [primary]}
  stable: {host: model, subset: v1}
  canary: {host: model, subset: v2}
  steps:
  - setWeight: 20
  - pause: {}
  - setWeight: 60
  - pause: {}
  - setWeight: 100
  analysis:
    interval: 1s
    minSamples: 20
    metrics:
    - {name: error-rate, kind: errorRate, allowedChange: {absolute: 2}, critical: true}
  rollback:
    triggers:
    - {name: errors-above-10, metric: errorRate, condition: {above: 10}, window: 60s, action: immediate}
"#;

fn policy_file(dir: &std::path::Path, v1: u16, v2: u16) -> std::path::PathBuf {
    let vs = virtual_service(
        "model",
        "  - name: primary\n    route:\n    - destination: {host: model, subset: v1}\n      weight: 100\n    - destination: {host: model, subset: v2}\n      weight: 0\n",
    );
    write(
        dir,
        &[&vs, &service("model", &[("v1", v1), ("v2", v2)]), CANARY],
    )
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A proxy running [`CANARY`] over two upstreams, the policy file edited by `edit` first; the
/// upstreams and the policy's directory live as long as it does.
struct Running {
    _proxy: Proxy,
    admin: String,
    _upstreams: (Upstream, Upstream),
    _dir: tempfile::TempDir,
}

fn start_edited(edit: impl Fn(&str) -> String) -> Running {
    let upstreams = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = policy_file(dir.path(), upstreams.0.addr.port(), upstreams.1.addr.port());
    let text = std::fs::read_to_string(&file).expect("policy");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changes the policy");
    std::fs::write(&file, edited).expect("write");
    let proxy = Proxy::start(&[&file]);
    let admin = proxy.admin.to_string();
    Running {
        _proxy: proxy,
        admin,
        _upstreams: upstreams,
        _dir: dir,
    }
}

#[test]
fn status_promote_abort_and_retry_from_the_command_line() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start(&[&policy_file(dir.path(), v1.addr.port(), v2.addr.port())]);
    let admin = proxy.admin.to_string();
    let status = |extra: &[&str]| {
        let mut args = vec!["rollout", "--admin", admin.as_str(), "status"];
        args.extend_from_slice(extra);
        run(&args)
    };
    wait_for("step 1", Duration::from_secs(10), || {
        stdout(&status(&[])).contains("canary 20%").then_some(())
    });
    // Before enough samples, the verdict says how far along they are, and the columns line up.
    let waiting = wait_for("a no_data look", Duration::from_secs(10), || {
        let t = stdout(&status(&["model"]));
        t.lines()
            .any(|l| l.starts_with("error-rate") && l.contains("no_data (0 of 20)"))
            .then_some(t)
    });
    let header = waiting
        .lines()
        .find(|l| l.starts_with("METRIC"))
        .expect("the verdict header");
    let row = waiting
        .lines()
        .find(|l| l.starts_with("error-rate"))
        .expect("the error-rate row");
    assert_eq!(
        header.find("VERDICT"),
        row.find("no_data"),
        "aligned:\n{header}\n{row}"
    );
    assert_eq!(
        header.find("E-VALUE").map(|i| i + "E-VALUE".len()),
        Some(row.len()),
        "right-aligned last column:\n{header}\n{row}"
    );
    assert!(
        waiting.contains("Status:   Paused (waiting for promotion)"),
        "{waiting}"
    );
    // Traffic for the analysis: each look's bound, allowance and samples are in the table.
    let mut conn = augur_tests::http::Connection::open(proxy.listen).expect("connect");
    for _ in 0..300 {
        conn.get("model", "/predict").expect("request");
    }
    wait_for("a judged look", Duration::from_secs(10), || {
        let t = stdout(&status(&["model"]));
        t.lines()
            .any(|l| l.starts_with("error-rate") && !l.contains("no_data"))
            .then_some(t)
    });
    let table = stdout(&status(&["model"]));
    assert!(
        table.contains("BOUND") && table.contains("ALLOWED") && table.contains("N CANARY"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("error-rate"))
        .expect("the error-rate row");
    assert!(row.contains("+0.0200"), "the allowance of 2 points: {row}");
    assert!(
        table.contains("error-rate: canary − stable error rate"),
        "{table}"
    );
    assert!(table.contains("Name:     default/model"), "{table}");
    assert!(table.contains("Step:     2/5"), "{table}");
    assert!(table.contains("▶ 2     pause (until promoted)"), "{table}");
    assert!(table.contains("✔ 1     setWeight 20"), "{table}");

    let promoted = run(&["rollout", "--admin", &admin, "promote", "model"]);
    assert_eq!(
        promoted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    wait_for("step 3 (60%)", Duration::from_secs(10), || {
        stdout(&status(&[])).contains("canary 60%").then_some(())
    });

    let json: serde_json::Value =
        serde_json::from_str(&stdout(&status(&["-o", "json"]))).expect("JSON status");
    assert_eq!(json[0]["weights"]["canary"], 60);

    assert_eq!(
        run(&["rollout", "--admin", &admin, "abort", "model"])
            .status
            .code(),
        Some(0)
    );
    assert!(stdout(&status(&[])).contains("Status:   Aborted"));
    let again = run(&["rollout", "--admin", &admin, "abort", "model"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "abort is refused once aborted"
    );
    let refused = String::from_utf8_lossy(&again.stderr);
    assert!(refused.contains("hint:"), "{refused}");
    assert!(
        refused.contains("(409): cannot abort: the rollout is aborted"),
        "a refusal in words, not Rust's Debug text: {refused}"
    );
    assert_eq!(
        run(&["rollout", "--admin", &admin, "retry", "model"])
            .status
            .code(),
        Some(0)
    );
    wait_for(
        "the retried rollout at 20%",
        Duration::from_secs(10),
        || stdout(&status(&[])).contains("canary 20%").then_some(()),
    );
}

#[test]
fn status_explains_an_unreachable_admin() {
    let refused = augur_tests::RefusedPort::new();
    let port = refused.port;
    let out = run(&["rollout", "--admin", &format!("127.0.0.1:{port}"), "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `augur proxy` running there?"));
}

#[test]
fn analyze_replays_a_recorded_stream_to_a_rollback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = policy_file(dir.path(), 1, 2);
    // Two minutes of traffic, 20 requests a second; the canary fails 30% of its requests.
    let mut jsonl = String::new();
    for i in 0..2400u32 {
        let t = f64::from(i) * 0.05;
        let canary = i % 4 == 0;
        let failed = canary && i % 10 < 3;
        let _ = writeln!(
            jsonl,
            r#"{{"t": {t}, "arm": "{}", "latency_ms": 40, "status": {}, "request_id": "r{i}"}}"#,
            if canary { "canary" } else { "stable" },
            if failed { 503 } else { 200 }
        );
    }
    let samples = dir.path().join("samples.jsonl");
    std::fs::write(&samples, jsonl).expect("write samples");
    let args = [
        "analyze",
        "--policy",
        policy.to_str().expect("utf-8"),
        "--samples",
        samples.to_str().expect("utf-8"),
    ];
    let out = run(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(text.contains("Replay of default/model"), "{text}");
    assert!(text.contains("-> rolled_back"), "{text}");

    let mut json_args = args.to_vec();
    json_args.extend_from_slice(&["--output", "json"]);
    let decisions: serde_json::Value =
        serde_json::from_slice(&run(&json_args).stdout).expect("JSON decisions");
    let last = decisions
        .as_array()
        .and_then(|d| d.last())
        .expect("a decision");
    assert_eq!(last["to"]["phase"], "rolled_back");
    assert_eq!(last["weights"]["canary"], 0);

    std::fs::write(&samples, "{\"t\": 0, \"arm\": \"blue\"}\n").expect("write samples");
    let bad = run(&args);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("samples.jsonl:1: not a sample"));
}

/// A timed pause is a pause to people: Paused, with the time left (not "progressing"), and its
/// step in the policy's duration format.
#[test]
fn a_timed_pause_shows_as_paused_with_the_time_left() {
    let running = start_edited(|t| t.replacen("  - pause: {}\n", "  - pause: {duration: 1h}\n", 1));
    let admin = running.admin.clone();
    let table = wait_for("the timed pause", Duration::from_secs(10), || {
        let t = stdout(&run(&["rollout", "--admin", &admin, "status"]));
        t.contains("canary 20%").then_some(t)
    });
    let line = table
        .lines()
        .find(|l| l.starts_with("Status:"))
        .expect("status line");
    assert!(
        line.starts_with("Status:   Paused (timed pause, ") && line.ends_with(" left)"),
        "{table}"
    );
    assert!(table.contains("▶ 2     pause 1h0m0s"), "{table}");
}

/// The share of `n` requests on one connection that v2 answered.
fn v2_answers(proxy: &Proxy, n: usize) -> usize {
    let mut conn = augur_tests::http::Connection::open(proxy.listen).expect("connect");
    (0..n)
        .filter(|_| {
            let r = conn.get("model", "/predict").expect("request");
            assert_eq!(r.status, 200, "{}", r.body);
            r.body.contains("\"v2\"")
        })
        .count()
}

/// The default (`startOn` absent = `command`): the proxy loads the policy and nothing moves.
/// The rollout shows as not started with the command that starts it, and the route keeps its
/// file's 100/0 however long it waits, until `augur rollout start`, which enters step 1 (20%).
/// `startOn: immediately` is at step 1 as soon as the proxy is up.
#[test]
fn a_default_policy_moves_no_traffic_until_rollout_start() {
    let (v1, v2) = (Upstream::start("v1"), Upstream::start("v2"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = policy_file(dir.path(), v1.addr.port(), v2.addr.port());
    let text = std::fs::read_to_string(&file).expect("policy");
    let default = text.replace("  startOn: immediately\n", "");
    assert_ne!(default, text);
    std::fs::write(&file, default).expect("write");
    let proxy = Proxy::start(&[&file]);
    let admin = proxy.admin.to_string();
    let status = || stdout(&run(&["rollout", "--admin", &admin, "status", "model"]));
    let table = status();
    assert!(table.contains("Status:   Pending (not started)"), "{table}");
    assert!(
        table.contains("Weights:  stable 100%  canary 0% (the VirtualService's own: no step yet)"),
        "{table}"
    );
    assert!(
        table.contains("`augur rollout start model` enters step 1"),
        "{table}"
    );
    assert_eq!(v2_answers(&proxy, 200), 0, "no canary traffic before start");
    // (Waiting changes nothing either: the unit test `a_rollout_waits_for_start_...` lets ten
    // minutes pass on the rollout's clock.)
    assert!(status().contains("Pending (not started)"));
    let promote = run(&["rollout", "--admin", &admin, "promote", "model"]);
    assert_eq!(promote.status.code(), Some(1), "promote waits for start");
    assert!(
        String::from_utf8_lossy(&promote.stderr).contains("not started"),
        "{}",
        String::from_utf8_lossy(&promote.stderr)
    );

    let started = run(&["rollout", "--admin", &admin, "start", "model"]);
    assert_eq!(
        started.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    assert!(
        stdout(&started)
            .contains("Pending (not started) -> Paused (waiting for promotion) (canary 20%)"),
        "{}",
        stdout(&started)
    );
    assert!(status().contains("canary 20%"));
    augur_tests::assert_share_near(v2_answers(&proxy, 400), 400, 0.2);
    let again = run(&["rollout", "--admin", &admin, "start", "model"]);
    assert_eq!(again.status.code(), Some(1), "started once");
    drop(proxy);

    // startOn: immediately: at step 1 without a command.
    std::fs::write(&file, &text).expect("write");
    let proxy = Proxy::start(&[&file]);
    let admin = proxy.admin.to_string();
    let table = stdout(&run(&["rollout", "--admin", &admin, "status", "model"]));
    assert!(table.contains("canary 20%"), "{table}");
    augur_tests::assert_share_near(v2_answers(&proxy, 400), 400, 0.2);
}

/// `promote` at an analysis step without the evidence to open it is refused and says what it
/// would skip; `promote --force` skips it, and the decision and the gate's record say so.
#[test]
fn promote_past_an_analysis_without_data_needs_force() {
    let running = start_edited(|t| t.replacen("  - pause: {}\n", "  - analysis: {}\n", 1));
    let admin = running.admin.clone();
    wait_for("a look at the gate", Duration::from_secs(10), || {
        let t = stdout(&run(&["rollout", "--admin", &admin, "status", "model"]));
        t.contains("no_data (0 of 20)").then_some(())
    });
    let refused = run(&["rollout", "--admin", &admin, "promote", "model"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(
            "(409): cannot promote: step 2 is an analysis gate without the evidence to open \
             (error-rate has 0 of 20 samples); `augur rollout promote --force` skips it"
        ),
        "{err}"
    );
    let table = stdout(&run(&["rollout", "--admin", &admin, "status", "model"]));
    assert!(table.contains("canary 20%"), "nothing moved: {table}");

    let forced = run(&["rollout", "--admin", &admin, "promote", "--force", "model"]);
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let out = stdout(&forced);
    assert!(
        out.contains("(canary 60%): command: promote --force: step 2's analysis skipped without evidence (error-rate has 0 of 20 samples)"),
        "{out}"
    );
    let table = stdout(&run(&["rollout", "--admin", &admin, "status", "model"]));
    assert!(
        table.contains("step 2: skipped by hand (promote --force) without evidence: error-rate has 0 of 20 samples"),
        "{table}"
    );
}
