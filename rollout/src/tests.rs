//! The rollouts of the proxy, driven in process: release to release (issue 19 §5) and a
//! recorded run that `augur analyze` replays to the same decisions at the same times (§4).

use std::sync::Arc;

use augur_analyzer::rollout::{Command, Decision, RolloutState};
use augur_model::{Arm, Sample};
use augur_policies::PolicySet;
use serde_json::Value;

use crate::persist::StateDir;
use crate::sample::RoutedSample;
use crate::sink::MapSink;
use crate::{RolloutMetrics, Rollouts};

const EXAMPLE: &str = include_str!("../../policies/examples/canary-pneumonia.yaml");

/// The example as these tests run it: started as soon as it is loaded.
fn example() -> String {
    let started = EXAMPLE.replace("startOn: command", "startOn: immediately");
    assert_ne!(started, EXAMPLE, "the example says how it starts");
    started
}
const KEY: &str = "default/pneumonia";

/// The example policy with its subsets selecting `version: stable` and `version: canary`.
fn release(stable: &str, canary: &str) -> (PolicySet, String) {
    let yaml = example()
        .replace(
            "        version: v1\n",
            &format!("        version: {stable}\n"),
        )
        .replace(
            "        version: v2\n",
            &format!("        version: {canary}\n"),
        );
    let loaded = augur_policies::load_str("p.yaml", &yaml).expect("the example loads");
    (loaded.set, loaded.hash)
}

fn rollouts(state: &std::path::Path) -> Rollouts {
    let metrics = RolloutMetrics::register(&prometheus::Registry::new()).expect("metrics");
    Rollouts::new(
        Arc::new(MapSink::default()),
        Some(StateDir::open(state).expect("state dir")),
        metrics,
    )
}

/// The first rollout as `GET /rollouts` writes it.
fn status(r: &Rollouts) -> Value {
    serde_json::to_value(&r.status().rollouts[0]).expect("status serializes")
}

fn history(state: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(state.join("default_pneumonia.history.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// What the servers write is what `augur rollout` and the demo read: `/rollouts` and a history
/// survive the trip through JSON whole, after decisions, a gate and a command.
#[test]
fn status_and_history_read_back_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (set, hash) = release("v1", "v2");
    let r = rollouts(dir.path());
    r.sync(&set, &hash, 1000.0);
    r.command(KEY, Command::Pause, 1001.0).expect("pauses");
    let status = r.status();
    assert_eq!(status.rollouts.len(), 1);
    assert!(!status.rollouts[0].decisions.is_empty());
    let text = serde_json::to_string(&status).expect("serializes");
    let back: crate::status::RolloutList = serde_json::from_str(&text).expect("reads back");
    assert_eq!(back, status);
    let history = r.history(KEY).expect("a history");
    let text = serde_json::to_string(&history).expect("serializes");
    let back: crate::status::RolloutHistory = serde_json::from_str(&text).expect("reads back");
    assert_eq!(back, history);
}

/// The release-to-release flow of `docs/analysis.md`, one step at a time.
#[test]
fn one_release_after_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    // 1. v1 → v2 starts at the first step's weight.
    let (v1_v2, hash_a) = release("v1", "v2");
    let r = rollouts(state);
    r.sync(&v1_v2, &hash_a, 1000.0);
    let s = status(&r);
    assert_eq!(s["weights"]["canary"], 10);
    assert_eq!(
        s["release"],
        "stable pneumonia/v1 {version=v1} → canary pneumonia/v2 {version=v2}"
    );
    // 2. v2 is promoted: it takes all traffic.
    r.command(KEY, Command::PromoteFull, 1100.0)
        .expect("promotes");
    assert_eq!(status(&r)["state"]["phase"], "promoted");
    assert_eq!(r.weights().get(KEY).map(|w| w.canary), Some(100));
    // 3. The subsets are relabelled for the next release (stable = v2, canary = v3): a new
    //    rollout starts at step 1 and its first step's weight, never at the old 100%; the
    //    promoted one goes to the history.
    let (v2_v3, hash_b) = release("v2", "v3");
    r.sync(&v2_v3, &hash_b, 2000.0);
    let s = status(&r);
    assert_eq!(
        s["state"],
        serde_json::json!({"phase": "progressing", "step": 1})
    );
    assert_eq!(s["weights"]["canary"], 10);
    assert_eq!(s["archived_releases"], 1);
    let h = history(state);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["state"]["phase"], "promoted");
    assert_eq!(
        h[0]["release"],
        "stable pneumonia/v1 {version=v1} → canary pneumonia/v2 {version=v2}"
    );
    // 4. A restart resumes the v2 → v3 rollout where it was.
    drop(r);
    let r = rollouts(state);
    r.sync(&v2_v3, &hash_b, 2100.0);
    let s = status(&r);
    assert_eq!(s["state"]["step"], 1);
    assert!(s["decisions"]
        .as_array()
        .is_some_and(|d| d.iter().all(|d| d["time"].as_f64() >= Some(2000.0))));
    // 5. State saved for another pair is never applied: started with the v1 → v2 files again,
    //    the saved v2 → v3 rollout is archived and a fresh one starts.
    drop(r);
    let r = rollouts(state);
    r.sync(&v1_v2, &hash_a, 2200.0);
    let s = status(&r);
    assert_eq!(s["weights"]["canary"], 10);
    assert_eq!(
        s["release"],
        "stable pneumonia/v1 {version=v1} → canary pneumonia/v2 {version=v2}"
    );
    assert!(s["decisions"]
        .as_array()
        .is_some_and(|d| d.len() == 1 && d[0]["time"] == 2200.0));
    let h = history(state);
    assert_eq!(h.len(), 2);
    assert!(h[1]["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("saved for another release")));
    // 6. retry works from Promoted (and from RolledBack and Aborted).
    r.command(KEY, Command::PromoteFull, 2300.0)
        .expect("promotes");
    let d = r.command(KEY, Command::Retry, 2400.0).expect("retries");
    assert_eq!(d.weights.canary, 10);
    r.command(KEY, Command::Abort, 2500.0).expect("aborts");
    r.command(KEY, Command::Retry, 2600.0).expect("retries");
    assert_eq!(status(&r)["state"]["step"], 1);
}

/// The example policy with short intervals so that a few minutes of traffic decide.
fn quick_policy() -> (PolicySet, String) {
    let yaml = example()
        .replace("interval: 1m ", "interval: 5s ")
        .replace("minSamples: 200", "minSamples: 40")
        .replace(
            "allowedChange: {relative: 0.2}",
            "allowedChange: {relative: 0.5}",
        )
        .replace(
            "allowedChange: {absolute: 1} ",
            "allowedChange: {absolute: 5} ",
        )
        .replace(
            "allowedChange: {absolute: 2} ",
            "allowedChange: {absolute: 10} ",
        )
        .replace("window: 2m", "window: 20s")
        .replace("window: 5m", "window: 30s");
    let loaded = augur_policies::load_str("p.yaml", &yaml).expect("the policy loads");
    (loaded.set, loaded.hash)
}

/// A live run through the proxy's own rollout component (samples at fractional times, labels
/// arriving later, the driver's timer at irregular moments, a manual command), recorded with
/// `--record-samples`; `augur analyze`'s reader and the replay give the decisions of the audit
/// log, at the same times.
#[test]
fn a_recorded_live_run_replays_to_the_same_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recordings = dir.path().join("recordings");
    let (set, hash) = quick_policy();
    let live = rollouts(&dir.path().join("state")).with_recording(recordings.clone());
    let t0 = 1_700_000_000.37;
    live.sync(&set, &hash, t0);
    let mut rng = 0x5eed_u64;
    let mut uniform = || {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut t, mut next_timer, mut pending) = (t0, t0 + 0.9, Vec::new());
    let (mut id, mut paused_once) = (0u64, false);
    // Some samples reach the rollout after the driver's timer processed their second (they
    // waited in the queue): the recording's clock ticks keep the replay in step with that.
    let mut late: Vec<RoutedSample> = Vec::new();
    while t < t0 + 900.0 {
        t += -(1.0 - uniform()).ln() / 15.0;
        while next_timer <= t {
            live.tick(next_timer);
            for s in late.drain(..) {
                live.observe(&s);
            }
            next_timer += 0.7 + 0.6 * uniform();
        }
        // labels arrive 2–3 s after their prediction
        while pending.first().is_some_and(|(at, _, _)| *at <= t) {
            let (at, rid, truth): (f64, String, &str) = pending.remove(0);
            live.label(&rid, truth, at);
        }
        let canary_share = live
            .weights()
            .get(KEY)
            .map_or(0.0, |w| f64::from(w.canary) / 100.0);
        let arm = if uniform() < canary_share {
            Arm::Canary
        } else {
            Arm::Stable
        };
        // the canary fails 40% of its requests after 45 s
        let failing = arm == Arm::Canary && t > t0 + 45.0 && uniform() < 0.4;
        let truth = if uniform() < 0.5 {
            "PNEUMONIA"
        } else {
            "NORMAL"
        };
        let label = if uniform() < 0.9 {
            truth
        } else if truth == "NORMAL" {
            "PNEUMONIA"
        } else {
            "NORMAL"
        };
        id += 1;
        let sample = Sample {
            request_id: Some(format!("r{id}")),
            label: Some(label.to_owned()),
            score: Some(0.7),
            ..Sample::new(
                t,
                arm,
                if failing { 503 } else { 200 },
                40.0 + 20.0 * uniform(),
            )
        };
        if uniform() < 0.75 {
            pending.push((t + 2.0 + uniform(), format!("r{id}"), truth));
        }
        let routed = RoutedSample {
            policy: Some(Arc::from(KEY)),
            sample,
        };
        if uniform() < 0.05 {
            late.push(routed);
        } else {
            live.observe(&routed);
        }
        if !paused_once && t > t0 + 30.0 {
            paused_once = true;
            live.command(KEY, Command::Pause, t).expect("pauses");
            live.command(KEY, Command::Resume, t + 3.0)
                .expect("resumes");
        }
    }
    live.tick(t + 0.5);
    let recorded: Vec<Decision> =
        std::fs::read_to_string(dir.path().join("state/default_pneumonia.decisions.jsonl"))
            .expect("audit log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a decision"))
            .collect();
    assert!(
        recorded
            .iter()
            .any(|d| matches!(d.to, RolloutState::RolledBack { .. })),
        "the run decides something: {recorded:#?}"
    );
    let events = crate::recording::read_events(&recordings.join("default_pneumonia.samples.jsonl"))
        .expect("the recording reads");
    let spec = crate::spec::from_policy(&set.canary_policies[0]);
    let replayed = augur_analyzer::replay::replay_events(spec.rollout(), events.into_iter(), None);
    let brief = |ds: &[Decision]| -> Vec<(f64, String, u8)> {
        ds.iter()
            .map(|d| (d.time, d.reason.clone(), d.weights.canary))
            .collect()
    };
    assert_eq!(brief(&replayed), brief(&recorded));
    assert_eq!(replayed, recorded);
}

/// The fleet's traffic in one window, as Prometheus would answer for it.
#[derive(Clone, Copy)]
struct Fleet {
    /// Requests per second over both arms.
    rate: f64,
    /// The canary's error rate, latency (ms) and accuracy; stable's are 0, 100 ms and 90%.
    canary_errors: f64,
    canary_latency_ms: f64,
    canary_accuracy: f64,
}

const HEALTHY: Fleet = Fleet {
    rate: 20.0,
    canary_errors: 0.0,
    canary_latency_ms: 100.0,
    canary_accuracy: 0.9,
};

/// What the sidecars' counters increased by in `window` at the canary weight `canary_pct`:
/// the three query results ([`crate::prometheus::reading`]).
fn answers(
    fleet: Fleet,
    window: crate::prometheus::Window,
    canary_pct: u8,
) -> [Vec<crate::prometheus::Series>; 3] {
    let series = |labels: &[(&str, &str)], v: f64| {
        (
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            v,
        )
    };
    let (mut counters, mut latency, mut scores) = (Vec::new(), Vec::new(), Vec::new());
    let total = fleet.rate * (window.to - window.from);
    let share = f64::from(canary_pct) / 100.0;
    for (arm, n, errors, ms, accuracy) in [
        ("stable", total * (1.0 - share), 0.0, 100.0, 0.9),
        (
            "canary",
            total * share,
            fleet.canary_errors,
            fleet.canary_latency_ms,
            fleet.canary_accuracy,
        ),
    ] {
        let c = |name: &str, v: f64| series(&[("arm", arm), ("counter", name)], v);
        counters.push(c("success", n * (1.0 - errors)));
        counters.push(c("error", n * errors));
        counters.push(c("labelled", n));
        counters.push(c("correct", n * accuracy));
        counters.push(c("brier_count", n));
        counters.push(c("brier_sum", n * 0.1));
        counters.push(c("brier_squares", n * 0.02));
        // Some of the sidecars' buckets (`proxy/src/evidence.rs`).
        for le in [
            50.0,
            75.0,
            100.0,
            125.0,
            150.0,
            600.0,
            750.0,
            1000.0,
            f64::INFINITY,
        ] {
            let name = if le.is_finite() {
                le.to_string()
            } else {
                "+Inf".to_owned()
            };
            let v = if ms <= le { n } else { 0.0 };
            latency.push(series(&[("arm", arm), ("le", &name)], v));
        }
        scores.push(series(&[("arm", arm), ("le", "+Inf")], n));
    }
    [counters, latency, scores]
}

/// The example policy read from Prometheus, with the seed triggers and windows; its analysis
/// asks for more samples than come, so that only the triggers can act.
fn fleet_policy(extra: &str) -> (PolicySet, String) {
    let yaml = example()
        .replace(
            "    source: embedded      # samples recorded by this proxy",
            "    source:\n      prometheus: {address: \"http://prometheus:9090\", scrapeLag: 30s}",
        )
        .replace("minSamples: 200 ", "minSamples: 1000000 ")
        .replace(
            "    onNoData: hold ",
            &format!("{extra}    onNoData: hold "),
        );
    let loaded = augur_policies::load_str("p.yaml", &yaml).expect("the policy loads");
    (loaded.set, loaded.hash)
}

/// Runs the driver's loop by hand from `t0` for `seconds`: every second, the reads due, answered
/// by `fleet` at the weight the rollout had (or failed while `down` says so), then the timer.
/// Returns the wall-clock second of each read fed.
fn drive(
    r: &Rollouts,
    t0: f64,
    seconds: u32,
    fleet: impl Fn(f64) -> Fleet,
    down: impl Fn(f64) -> bool,
) -> Vec<f64> {
    let mut fed = Vec::new();
    for s in 0..seconds {
        let now = t0 + f64::from(s);
        for due in r.due_fetches(now) {
            assert!(
                due.window.to <= now - 30.0,
                "a window is read only once its end is scrapeLag old"
            );
            assert_eq!(due.window.to % 60.0, 0.0, "windows end on the interval");
            if down(now) {
                let e = crate::prometheus::SourceError::Timeout("prometheus:9090".into());
                r.source_failed(&due.policy, due.window, &e);
                continue;
            }
            let canary = r.weights().get(KEY).map_or(0, |w| w.canary);
            let [c, l, sc] = answers(fleet(due.window.to), due.window, canary);
            r.feed(
                &due.policy,
                &crate::prometheus::reading(due.window, &c, &l, &sc),
            );
            fed.push(now);
        }
        r.tick(now);
    }
    fed
}

fn last_decision(r: &Rollouts) -> Value {
    status(r)["decisions"][0].clone()
}

/// The seed triggers fire on fleet evidence at their windows (errors 2 min, latency 3 min,
/// accuracy 5 min), with each read's samples spread over its window.
#[test]
fn seed_triggers_fire_on_fleet_evidence_at_their_windows() {
    let cases = [
        (
            "error-rate-above-10",
            Fleet {
                canary_errors: 0.3,
                ..HEALTHY
            },
            120.0,
            "rolled_back",
        ),
        (
            "p95-latency-increase",
            Fleet {
                canary_latency_ms: 700.0,
                ..HEALTHY
            },
            180.0,
            "rolled_back",
        ),
        (
            "accuracy-drop",
            Fleet {
                canary_accuracy: 0.6,
                ..HEALTHY
            },
            300.0,
            "rolling_back",
        ),
    ];
    for (trigger, bad, window, phase) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let (set, hash) = fleet_policy("");
        let r = rollouts(dir.path());
        let t0 = 1_800_000_007.0;
        r.sync(&set, &hash, t0);
        assert_eq!(status(&r)["weights"]["canary"], 10);
        let mut fired_at = None;
        for minute in 0..12 {
            drive(&r, t0 + f64::from(minute) * 60.0, 60, |_| bad, |_| false);
            if status(&r)["state"]["phase"] != "progressing" {
                fired_at = Some(t0 + f64::from(minute + 1) * 60.0);
                break;
            }
        }
        let st = status(&r);
        let d = last_decision(&r);
        assert_eq!(st["state"]["phase"], phase, "{trigger}: {st}");
        assert!(
            d["reason"].as_str().unwrap_or("").contains(trigger),
            "{trigger}: {d}"
        );
        // Decided on evidence time: after one whole trigger window of evidence from the
        // first window read (which starts at the first minute after t0), within two reads.
        let first_window = (t0 / 60.0).ceil() * 60.0;
        let decided = d["time"].as_f64().expect("time");
        assert!(
            decided >= first_window + window && decided <= first_window + window + 120.0,
            "{trigger}: decided at +{} s",
            decided - first_window
        );
        // The wall clock saw it at most a scrape lag and a window after the evidence time.
        let seen = fired_at.expect("fired");
        assert!(seen - decided <= 30.0 + 60.0 + 60.0, "{trigger}");
    }
}

/// A source that does not answer holds the rollout: with timed pauses and `onNoData:
/// continue`, which would both move it on, it stays at its step for hours, re-asking for the
/// same window; when the source answers again, the rollout goes on from where it was.
#[test]
fn a_source_that_is_down_holds_the_rollout_and_never_promotes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = example()
        .replace(
            "    source: embedded      # samples recorded by this proxy",
            "    source:\n      prometheus: {address: \"http://prometheus:9090\"}",
        )
        .replace("    onNoData: hold ", "    onNoData: continue ")
        .replace("    - analysis: {}\n", "    - pause: {duration: 1m}\n");
    let loaded = augur_policies::load_str("p.yaml", &yaml).expect("the policy loads");
    let r = rollouts(dir.path());
    let t0 = 1_800_000_000.0;
    r.sync(&loaded.set, &loaded.hash, t0);
    let fed = drive(&r, t0, 2 * 3600, |_| HEALTHY, |_| true);
    assert!(fed.is_empty());
    let st = status(&r);
    assert_eq!(st["state"]["phase"], "progressing", "{st}");
    assert_eq!(st["weights"]["canary"], 10, "held at the first step");
    assert_eq!(
        st["source"]["evidence_until"], t0,
        "no evidence past the start"
    );
    assert_eq!(
        st["source"]["failures"].as_u64(),
        Some(2 * 3600 - 60 - 30),
        "the same window asked again every second once it was due"
    );
    assert!(st["source"]["last_error"]
        .as_str()
        .unwrap_or("")
        .contains("did not answer"));
    assert!(
        !st["decisions"].to_string().contains("promoted"),
        "never promoted: {st}"
    );
    // The source answers again: the rollout reads the windows it missed, one a second, from
    // where its evidence stopped, and goes through its timed pauses on the evidence's clock.
    let t1 = t0 + 2.0 * 3600.0;
    let fed = drive(&r, t1, 10, |_| HEALTHY, |_| false);
    assert_eq!(
        fed.len(),
        3,
        "missed windows read one a second until the third pause ends; a finished rollout reads no more"
    );
    let st = status(&r);
    assert_eq!(st["state"]["phase"], "promoted", "{st}");
    assert_eq!(st["source"]["evidence_until"], t0 + 180.0);
    let promoted = last_decision(&r)["time"].as_f64().expect("time");
    assert!(
        promoted == t0 + 180.0,
        "three one-minute pauses of evidence after the start, not of outage: +{}",
        promoted - t0
    );
}

/// A sample of `arm` at `t` for the example's rollout.
fn routed(t: f64, arm: Arm) -> RoutedSample {
    RoutedSample {
        policy: Some(Arc::from(KEY)),
        sample: Sample::new(t, arm, 200, 80.0),
    }
}

/// `startOn: command` (the default, as the example writes it): loading the policy starts
/// nothing. The rollout is pending, sets no weight (the routes keep their VirtualService
/// weights), takes no evidence and refuses every command but `start`, however long it waits;
/// `start` enters step 1. A restart resumes a pending rollout pending and a started one at its
/// step, without a new start; an ended one stays ended.
#[test]
fn a_rollout_waits_for_start_unless_the_policy_says_immediately() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    let loaded = augur_policies::load_str("p.yaml", EXAMPLE).expect("the example loads");
    let (set, hash) = (loaded.set, loaded.hash);
    let r = rollouts(state);
    r.sync(&set, &hash, 1000.0);
    assert_eq!(status(&r)["state"], serde_json::json!({"phase": "pending"}));
    assert_eq!(
        r.weights().get(KEY),
        None,
        "no weight set: the file's apply"
    );
    for s in 0..600 {
        let t = 1000.5 + f64::from(s);
        r.observe(&routed(t, Arm::Stable));
        r.tick(t);
    }
    let s = status(&r);
    assert_eq!(s["state"]["phase"], "pending", "ten minutes change nothing");
    assert_eq!(r.weights().get(KEY), None);
    assert!(s["verdicts"].as_array().is_some_and(Vec::is_empty));
    assert!(s["decisions"].as_array().is_some_and(Vec::is_empty));
    for c in [
        Command::Promote,
        Command::PromoteFull,
        Command::Abort,
        Command::Retry,
    ] {
        let e = r
            .command(KEY, c, 1700.0)
            .expect_err("refused until started");
        assert!(e.to_string().contains("augur rollout start"), "{c}: {e}");
    }
    // A restart before the start: still pending.
    drop(r);
    let r = rollouts(state);
    r.sync(&set, &hash, 1800.0);
    assert_eq!(status(&r)["state"]["phase"], "pending");
    assert_eq!(r.weights().get(KEY), None);

    let d = r.command(KEY, Command::Start, 1900.0).expect("starts");
    assert_eq!(d.from, RolloutState::Pending);
    assert_eq!(d.to, RolloutState::Progressing { step: 1 });
    assert_eq!(r.weights().get(KEY).map(|w| w.canary), Some(10));
    assert!(d.reason.starts_with("command: start"), "{}", d.reason);
    let e = r.command(KEY, Command::Start, 1901.0).expect_err("once");
    assert!(e.to_string().contains("progressing at step 2"), "{e}");
    // The audit log says who started it.
    let audit = std::fs::read_to_string(state.join("default_pneumonia.decisions.jsonl"))
        .unwrap_or_default();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"actor\":\"admin\"") && l.contains("command: start")),
        "{audit}"
    );
    // A restart resumes the started rollout at its step: no new start needed.
    drop(r);
    let r = rollouts(state);
    r.sync(&set, &hash, 2000.0);
    assert_eq!(
        status(&r)["state"],
        serde_json::json!({"phase": "progressing", "step": 1})
    );
    assert_eq!(r.weights().get(KEY).map(|w| w.canary), Some(10));
    // An ended rollout stays ended after a restart.
    r.command(KEY, Command::PromoteFull, 2100.0)
        .expect("promotes");
    drop(r);
    let r = rollouts(state);
    r.sync(&set, &hash, 2200.0);
    assert_eq!(status(&r)["state"]["phase"], "promoted");
    assert_eq!(r.weights().get(KEY).map(|w| w.canary), Some(100));

    // startOn: immediately starts at the first step as soon as the policy is loaded.
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = augur_policies::load_str("p.yaml", &example()).expect("loads");
    let r = rollouts(dir.path());
    r.sync(&loaded.set, &loaded.hash, 1000.0);
    assert_eq!(
        status(&r)["state"],
        serde_json::json!({"phase": "progressing", "step": 1})
    );
    assert_eq!(r.weights().get(KEY).map(|w| w.canary), Some(10));
}

/// `promote` at an analysis gate without the evidence to open is refused (409), naming the
/// gate and what it lacks; `{"force": true}` (`augur rollout promote --force`) skips it, and
/// the decision, the audit log and the gate record say it was forced and what was skipped.
#[test]
fn promote_past_a_gate_without_evidence_needs_force() {
    use http::{Method, StatusCode};
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    let (set, hash) = quick_policy();
    let r = rollouts(state);
    // The admin API acts at the wall clock's time: the rollout runs on it.
    let t0 = crate::sample::now().floor();
    r.sync(&set, &hash, t0);
    // 12 requests an arm: the gate (step 2) has a look with too few samples (minSamples 40).
    for i in 0..24 {
        let arm = if i % 2 == 0 { Arm::Stable } else { Arm::Canary };
        r.observe(&routed(t0 + 0.5 + f64::from(i) * 0.01, arm));
    }
    r.tick(t0 + 0.9);
    r.tick(t0 + 5.0);
    assert_eq!(status(&r)["state"]["step"], 1, "at the gate");
    let path = "/rollouts/pneumonia/promote";
    let refused = crate::api::answer(&r, &Method::POST, path, b"");
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let text = String::from_utf8_lossy(&refused.body).into_owned();
    assert!(
        text.starts_with(
            "cannot promote: step 2 is an analysis gate without the evidence to open ("
        ) && text.contains("error-rate has 12 of 40 samples")
            && text.contains("`augur rollout promote --force` skips it"),
        "{text}"
    );
    assert_eq!(status(&r)["state"]["step"], 1, "nothing moved");
    let bad = crate::api::answer(&r, &Method::POST, path, b"{\"forse\": true}");
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = crate::api::answer(
        &r,
        &Method::POST,
        "/rollouts/pneumonia/abort",
        b"{\"force\": true}",
    );
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "force is promote's only"
    );

    let forced = crate::api::answer(&r, &Method::POST, path, b"{\"force\": true}");
    assert_eq!(forced.status, StatusCode::OK);
    let s = status(&r);
    assert_eq!(s["state"]["step"], 3, "past the gate, at the next one");
    assert_eq!(s["weights"]["canary"], 20);
    let reason = s["decisions"][0]["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        reason
            .starts_with("command: promote --force: step 2's analysis skipped without evidence (")
            && reason.contains("error-rate has 12 of 40 samples"),
        "{reason}"
    );
    let gate = &s["gates"][0];
    assert_eq!(gate["step"], 1);
    assert!(
        gate["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("skipped by hand (promote --force) without evidence: ")),
        "{gate}"
    );
    let audit = std::fs::read_to_string(state.join("default_pneumonia.decisions.jsonl"))
        .unwrap_or_default();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"actor\":\"admin\"") && l.contains("skipped without evidence")),
        "{audit}"
    );
}

const BLUE_GREEN: &str = include_str!("../../policies/examples/blue-green.yaml");
const BG_KEY: &str = "default/pneumonia-bg";

/// The blue-green example, started at `t0`, driven second by second on the rollout's own clock.
struct BlueGreenRun {
    r: Rollouts,
    t: f64,
    _dir: tempfile::TempDir,
}

impl BlueGreenRun {
    fn start(t0: f64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let loaded = augur_policies::load_str("bg.yaml", BLUE_GREEN).expect("the example loads");
        let r = rollouts(dir.path());
        r.sync(&loaded.set, &loaded.hash, t0);
        r.command(BG_KEY, Command::Start, t0).expect("starts");
        BlueGreenRun {
            r,
            t: t0,
            _dir: dir,
        }
    }

    /// Lets `seconds` pass; each second `per_s(t)` gives the (stable, canary, canary status)
    /// requests of that second.
    fn run(&mut self, seconds: u32, per_s: impl Fn(f64) -> (u32, u32, u16)) {
        for _ in 0..seconds {
            let (stable, canary, status) = per_s(self.t);
            for i in 0..stable.max(canary) {
                let t = self.t + 0.1 + f64::from(i) * 0.001;
                let sample = |arm, status| RoutedSample {
                    policy: Some(Arc::from(BG_KEY)),
                    sample: Sample::new(t, arm, status, 80.0),
                };
                if i < stable {
                    self.r.observe(&sample(Arm::Stable, 200));
                }
                if i < canary {
                    self.r.observe(&sample(Arm::Canary, status));
                }
            }
            self.t += 1.0;
            self.r.tick(self.t);
        }
    }

    fn state(&self) -> Value {
        status(&self.r)["state"].clone()
    }

    fn canary_weight(&self) -> Option<u8> {
        self.r.weights().get(BG_KEY).map(|w| w.canary)
    }

    /// Switches live traffic to green (the operator's promote at the pause before it) and
    /// returns the time of the switch.
    fn switch(&mut self) -> f64 {
        assert_eq!(
            self.state(),
            serde_json::json!({"phase": "paused", "step": 1, "reason": "manual_gate"})
        );
        let d = self
            .r
            .command(BG_KEY, Command::Promote, self.t)
            .expect("the switch");
        assert_eq!(d.weights.canary, 100);
        assert_eq!(d.to, RolloutState::Progressing { step: 3 });
        assert!(d.reason.contains("watches for 5m0s"), "{}", d.reason);
        self.t
    }
}

/// A healthy green: blue's and the preview's evidence pass the pre-promotion gate; after the
/// switch the post-promotion analysis passes at every look, yet the rollout completes only when
/// its `duration: 5m` has passed, not at the first passing look.
#[test]
fn blue_green_post_promotion_watches_its_duration_then_completes() {
    let mut bg = BlueGreenRun::start(10_000.0);
    bg.run(70, |_| (10, 10, 200));
    let switched = bg.switch();
    let s = status(&bg.r);
    assert_eq!(s["watch_deadline"], switched + 300.0);
    assert_eq!(s["gate_deadline"], Value::Null);
    bg.run(299, |_| (0, 10, 200));
    assert_eq!(
        bg.state(),
        serde_json::json!({"phase": "progressing", "step": 3}),
        "still watching after 4m59s, though the looks pass"
    );
    let verdicts = status(&bg.r)["verdicts"].clone();
    assert!(
        verdicts
            .as_array()
            .is_some_and(|v| v.iter().all(|v| v["outcome"] == "pass")),
        "{verdicts}"
    );
    bg.run(1, |_| (0, 10, 200));
    assert_eq!(bg.state()["phase"], "promoted", "at 5m0s");
    assert_eq!(bg.canary_weight(), Some(100));
    let last = status(&bg.r)["decisions"][0]["reason"].clone();
    assert!(
        last.as_str()
            .is_some_and(|r| r.starts_with("step 4: watched 5m0s without a failure")),
        "{last}"
    );
}

/// A green that fails within the watch switches back to blue at once.
#[test]
fn blue_green_post_promotion_failure_within_the_duration_switches_back() {
    let mut bg = BlueGreenRun::start(10_000.0);
    bg.run(70, |_| (10, 10, 200));
    let switched = bg.switch();
    // Two healthy minutes, then green answers 500s.
    bg.run(240, |t| {
        (0, 10, if t < switched + 120.0 { 200 } else { 500 })
    });
    assert_eq!(bg.state()["phase"], "rolled_back", "{}", bg.state());
    assert_eq!(bg.canary_weight(), Some(0), "live traffic back on blue");
}

/// A watch that ends without the evidence to show green good (too few green samples) does not
/// complete the rollout: `onInconclusive` (hold, the default) hands it to a human.
#[test]
fn blue_green_post_promotion_inconclusive_at_the_end_holds_for_a_human() {
    let mut bg = BlueGreenRun::start(10_000.0);
    // Blue's evidence only: the preview got no traffic, so the operator forces the gate.
    bg.run(70, |_| (10, 0, 200));
    bg.r.command(BG_KEY, Command::PromoteForce, bg.t)
        .expect("forced past the pre-promotion gate");
    bg.switch();
    // One green request every 10 s: 30 in the watch, under minSamples 100. (Blue's silence
    // after the switch is expected, so the watch is not paused for no data.)
    bg.run(300, |t| (0, u32::from((t as u64).is_multiple_of(10)), 200));
    assert_eq!(
        bg.state(),
        serde_json::json!({"phase": "inconclusive", "step": 3})
    );
    assert_eq!(
        bg.canary_weight(),
        Some(100),
        "a human decides; nothing moved"
    );
    let last = status(&bg.r)["decisions"][0]["reason"].clone();
    assert!(
        last.as_str().is_some_and(|r| r
            .contains("watched 5m0s without a failure, but the last look does not show")
            && r.ends_with("onInconclusive: hold")),
        "{last}"
    );
}

/// A Pending rollout whose policy is edited to `startOn: immediately` starts at the reload (the
/// policy is the command), and one saved Pending starts when the proxy comes back with such a
/// policy; the audit log names the policy as the actor.
#[test]
fn a_pending_rollout_starts_when_its_policy_says_immediately() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    let waiting = augur_policies::load_str("p.yaml", EXAMPLE).expect("loads");
    let now = augur_policies::load_str("p.yaml", &example()).expect("loads");
    let r = rollouts(state);
    r.sync(&waiting.set, &waiting.hash, 1000.0);
    assert_eq!(status(&r)["state"]["phase"], "pending");
    r.sync(&now.set, &now.hash, 1010.0);
    assert_eq!(
        status(&r)["state"],
        serde_json::json!({"phase": "progressing", "step": 1})
    );
    assert_eq!(r.weights().get(KEY).map(|w| w.canary), Some(10));
    let audit = std::fs::read_to_string(state.join("default_pneumonia.decisions.jsonl"))
        .unwrap_or_default();
    assert!(audit.contains("\"actor\":\"policy\""), "{audit}");

    let dir = tempfile::tempdir().expect("tempdir");
    let r = rollouts(dir.path());
    r.sync(&waiting.set, &waiting.hash, 1000.0);
    drop(r);
    let r = rollouts(dir.path());
    r.sync(&now.set, &now.hash, 1100.0);
    assert_eq!(status(&r)["state"]["step"], 1);
}

const SHADOW_EXAMPLE: &str = include_str!("../../policies/examples/shadow-scoring.yaml");
const SHADOW_KEY: &str = "default/pneumonia-shadow";

/// A labelled sample of `arm` for request `id`.
fn labelled(t: f64, arm: Arm, id: &str, label: &str) -> RoutedSample {
    RoutedSample {
        policy: Some(Arc::from(SHADOW_KEY)),
        sample: Sample {
            request_id: Some(id.to_owned()),
            label: Some(label.to_owned()),
            ..Sample::new(t, arm, 200, 5.0)
        },
    }
}

/// Scenario 5: a shadow-only policy is listed as `shadowing`, with no steps and no weights, its
/// weights are never set, commands are refused with what it is, and stable's agreement with the
/// shadow is shown with its interval.
#[test]
fn a_shadow_only_policy_is_shown_shadowing_and_reports_stables_agreement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = augur_policies::load_str("s.yaml", SHADOW_EXAMPLE).expect("the example loads");
    let r = rollouts(dir.path());
    r.sync(&loaded.set, &loaded.hash, 1000.0);
    // 30 stable predictions compared: the shadow agrees with 24 (6 PNEUMONIA vs NORMAL).
    for i in 0..30 {
        let t = 1000.0 + f64::from(i);
        let id = format!("r{i}");
        r.observe(&labelled(t, Arm::Stable, &id, "NORMAL"));
        let shadow = if i % 5 == 0 { "PNEUMONIA" } else { "NORMAL" };
        r.observe(&labelled(t, Arm::Shadow, &id, shadow));
        r.tick(t);
    }
    let s = status(&r);
    assert_eq!(s["name"], SHADOW_KEY);
    assert_eq!(s["state"]["phase"], "shadowing");
    assert_eq!(s["steps"], serde_json::json!([]));
    assert_eq!(
        (s["step"].clone(), s["weights"].clone()),
        (Value::Null, Value::Null)
    );
    let shadow = &s["shadow"];
    assert_eq!(shadow["percentage"], 10.0);
    assert_eq!(shadow["model"], "models/pneumonia-v3.onnx");
    let stable = &shadow["agreement"]["stable"];
    assert_eq!(
        (stable["compared"].as_u64(), stable["agreed"].as_u64()),
        (Some(30), Some(24))
    );
    assert_eq!(stable["rate"].as_f64(), Some(0.8));
    let ci = stable["ci95"].as_array().expect("an interval");
    // Wilson 95% for 24 of 30: [0.6269, 0.9050].
    assert!(
        (ci[0].as_f64().unwrap_or(0.0) - 0.6269).abs() < 1e-3,
        "{ci:?}"
    );
    assert!(
        (ci[1].as_f64().unwrap_or(0.0) - 0.9050).abs() < 1e-3,
        "{ci:?}"
    );
    assert!(
        shadow["agreement"].get("canary").is_none(),
        "no canary: {shadow}"
    );

    assert_eq!(r.weights().get(SHADOW_KEY), None, "no weight is ever set");
    assert!(r.summaries().is_empty(), "nothing to publish to sidecars");
    let refused = r
        .command("pneumonia-shadow", Command::Promote, 1100.0)
        .expect_err("nothing to promote");
    assert_eq!(
        refused.to_string(),
        "default/pneumonia-shadow is shadow-only: it scores requests in the shadow model and has no canary, steps or weights to promote; add canary and steps to the policy to roll the model out"
    );
    let h = r.history("pneumonia-shadow").expect("a history");
    assert!(h.points.is_empty() && h.period_s.is_none(), "{h:?}");

    // A reload keeps the agreement; turning the policy into a canary rollout replaces it.
    r.sync(&loaded.set, &loaded.hash, 1200.0);
    assert_eq!(status(&r)["shadow"]["agreement"]["stable"]["compared"], 30);
    let (canary, hash) = release("v1", "v2");
    r.sync(&canary, &hash, 1300.0);
    let all = r.status();
    assert_eq!(all.rollouts.len(), 1);
    assert_eq!(all.rollouts[0].name, KEY);
}

/// A rollout waiting for `augur rollout start` takes no evidence, but stable's agreement with the
/// shadow is still shown: the SRE sees it before deciding to start.
#[test]
fn a_waiting_rollout_shows_stables_agreement_with_the_shadow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = augur_policies::load_str("p.yaml", EXAMPLE).expect("loads");
    let r = rollouts(dir.path());
    r.sync(&loaded.set, &loaded.hash, 1000.0);
    assert_eq!(status(&r)["state"]["phase"], "pending");
    for i in 0..4 {
        let t = 1000.0 + f64::from(i);
        let id = format!("w{i}");
        // The shadow answers first for half of them.
        let mut s = labelled(t, Arm::Stable, &id, "NORMAL");
        s.policy = Some(Arc::from(KEY));
        let mut sh = labelled(
            t,
            Arm::Shadow,
            &id,
            if i == 0 { "PNEUMONIA" } else { "NORMAL" },
        );
        sh.policy = Some(Arc::from(KEY));
        if i % 2 == 0 {
            r.observe(&sh);
            r.observe(&s);
        } else {
            r.observe(&s);
            r.observe(&sh);
        }
    }
    let s = status(&r);
    let stable = &s["shadow"]["agreement"]["stable"];
    assert_eq!(
        (stable["compared"].as_u64(), stable["agreed"].as_u64()),
        (Some(4), Some(3))
    );
}

/// A canary rollout with a shadow shows stable's agreement while the canary has 0% (before its
/// first step), and the canary's next to it; the verdicts are unchanged by it.
#[test]
fn a_rollouts_shadow_agreement_is_shown_while_the_canary_has_no_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = example().replace(
        "    - setWeight: 10\n",
        "    - pause: {}\n    - setWeight: 10\n",
    );
    let loaded = augur_policies::load_str("p.yaml", &yaml).expect("loads");
    let r = rollouts(dir.path());
    r.sync(&loaded.set, &loaded.hash, 1000.0);
    assert_eq!(status(&r)["weights"]["canary"], 0);
    for i in 0..10 {
        let t = 1000.0 + f64::from(i);
        let id = format!("q{i}");
        let mut s = labelled(t, Arm::Stable, &id, "NORMAL");
        s.policy = Some(Arc::from(KEY));
        r.observe(&s);
        let mut sh = labelled(
            t,
            Arm::Shadow,
            &id,
            if i < 9 { "NORMAL" } else { "PNEUMONIA" },
        );
        sh.policy = Some(Arc::from(KEY));
        r.observe(&sh);
    }
    let s = status(&r);
    let agreement = &s["shadow"]["agreement"];
    assert_eq!(agreement["stable"]["compared"], 10);
    assert_eq!(agreement["stable"]["agreed"], 9);
    assert_eq!(agreement["canary"]["compared"], 0);
    assert_eq!(agreement["canary"]["rate"], Value::Null);
    assert_eq!(s["shadow"]["percentage"], 10.0);
}

/// One event as a `tracing` subscriber sees it: its fields, each written as the log writes it
/// (`%` fields by their Display, `?` fields by their Debug).
type Event = std::collections::BTreeMap<String, String>;

/// A subscriber that keeps every event, for the tests of what the proxy logs.
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<Event>>>);

struct Fields(Event);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(Event::new());
        event.record(&mut fields);
        self.0.lock().expect("the capture").push(fields.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// The events logged while `f` runs on this thread.
fn logged(f: impl FnOnce()) -> Vec<Event> {
    let capture = Capture::default();
    tracing::subscriber::with_default(capture.clone(), f);
    let events = capture.0.lock().expect("the capture").clone();
    events
}

/// The proxy's log writes rollout states and weights as `augur rollout status` does: in words,
/// with steps counting from 1 (`paused at step 1 (waiting for promotion)`), never Rust's Debug
/// (`Paused { step: 0, reason: ManualGate }`, `Some("…")`, `Weights { … }`): for a decision, a
/// rollout resumed from saved state and one archived for a new release.
#[test]
fn the_proxys_log_writes_states_and_weights_in_words_with_steps_from_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with_gate = |stable: &str, canary: &str| {
        let yaml = example()
            .replace(
                "    - setWeight: 10\n",
                "    - pause: {}\n    - setWeight: 10\n",
            )
            .replace(
                "        version: v1\n",
                &format!("        version: {stable}\n"),
            )
            .replace(
                "        version: v2\n",
                &format!("        version: {canary}\n"),
            );
        let loaded = augur_policies::load_str("p.yaml", &yaml).expect("the policy loads");
        (loaded.set, loaded.hash)
    };
    let (v1_v2, hash_a) = with_gate("v1", "v2");
    let (v2_v3, hash_b) = with_gate("v2", "v3");
    let events = logged(|| {
        let r = rollouts(dir.path());
        r.sync(&v1_v2, &hash_a, 1000.0);
        r.command(KEY, Command::Promote, 1100.0)
            .expect("promotes past the gate");
        r.command(KEY, Command::Pause, 1200.0).expect("pauses");
        drop(r);
        let r = rollouts(dir.path());
        r.sync(&v1_v2, &hash_a, 1300.0);
        r.sync(&v2_v3, &hash_b, 1400.0);
    });
    let named = |message: &str| -> Vec<&Event> {
        events
            .iter()
            .filter(|e| e.get("message").is_some_and(|m| m.starts_with(message)))
            .collect()
    };
    let decisions: Vec<[&str; 3]> = named("rollout decision")
        .iter()
        .map(|e| {
            let field = |name| e.get(name).map_or("", String::as_str);
            [field("from"), field("to"), field("weights")]
        })
        .collect();
    for expected in [
        [
            "progressing at step 1",
            "paused at step 1 (waiting for promotion)",
            "stable 100%, canary 0%",
        ],
        [
            "paused at step 1 (waiting for promotion)",
            "progressing at step 3",
            "stable 90%, canary 10%",
        ],
        [
            "progressing at step 3",
            "paused at step 3 (paused by a command)",
            "stable 90%, canary 10%",
        ],
    ] {
        assert!(decisions.contains(&expected), "{decisions:#?}");
    }
    let resumed = named("rollout resumed from saved state");
    assert_eq!(resumed.len(), 1, "{events:#?}");
    assert_eq!(
        resumed[0].get("state").map(String::as_str),
        Some("paused at step 3 (paused by a command)")
    );
    let archived = named("rollout archived");
    assert_eq!(archived.len(), 1, "{events:#?}");
    assert_eq!(
        archived[0].get("release").map(String::as_str),
        Some("stable pneumonia/v1 {version=v1} → canary pneumonia/v2 {version=v2}")
    );
    assert_eq!(
        archived[0].get("state").map(String::as_str),
        Some("paused at step 3 (paused by a command)")
    );
    // Nothing of these lines is Debug text.
    for e in named("rollout ") {
        for (name, value) in e.iter() {
            for debug in [
                " { ",
                "Some(",
                "None",
                "Paused",
                "Progressing",
                "Weights",
                "step:",
            ] {
                assert!(!value.contains(debug), "{name} = {value}");
            }
        }
    }
}

/// A fired trigger's reason words its condition as `augur policy explain` does, in the policy's
/// units, for every trigger of the example policies (`above: 5` is `> 5%`, `dropBy: 5` is
/// `drops by 5 points below stable`, `increaseBy: 500ms` is `increases by 500ms above
/// stable`), never the analyzer's fractions.
#[test]
fn trigger_conditions_read_as_explain_words_them() {
    let examples = [
        include_str!("../../policies/examples/canary-pneumonia.yaml"),
        include_str!("../../policies/examples/canary-steps.yaml"),
        include_str!("../../policies/examples/blue-green.yaml"),
    ];
    let mut compared = 0;
    for yaml in examples {
        let loaded = augur_policies::load_str("p.yaml", yaml).expect("the example loads");
        let explained = augur_policies::explain::explain(&loaded.set);
        for (policy, explanation) in loaded.set.canary_policies.iter().zip(&explained.rollouts) {
            let spec = crate::spec::from_policy(policy);
            assert_eq!(spec.triggers.len(), explanation.triggers.len());
            for (t, e) in spec.triggers.iter().zip(&explanation.triggers) {
                assert_eq!(t.name, e.name);
                assert_eq!(
                    augur_analyzer::triggers::condition_text(t.metric, t.condition),
                    e.condition,
                    "{}",
                    t.name
                );
                compared += 1;
            }
        }
    }
    assert!(compared >= 7, "{compared} triggers");
}

/// The example with a header route, a pause, a 50% mirror route and a pause before its
/// first weight.
fn routed_policy() -> (PolicySet, String) {
    let loaded =
        augur_policies::load_str("p.yaml", &routed_policy_text()).expect("the policy loads");
    (loaded.set, loaded.hash)
}

/// [`routed_policy`]'s text.
fn routed_policy_text() -> String {
    let steps = "    - setHeaderRoute:\n        name: beta\n        match:\n          - headerName: X-Beta\n            headerValue: {exact: \"true\"}\n    - pause: {}\n    - setMirrorRoute: {name: shadow-copy, percentage: 50}\n    - pause: {}\n    - setWeight: 10\n";
    example().replacen("    - setWeight: 10\n", steps, 1)
}

/// The managed routes the sink holds for the example.
fn routes_of(sink: &MapSink) -> Option<crate::sink::ManagedRoutes> {
    sink.1.lock().expect("sink").get(KEY).cloned()
}

/// The engine hands the data plane each managed route as its step is entered (the header
/// route with its matches from the policy), keeps both through the pauses, and removes both
/// when the rollout ends, by a promotion to the end or by an abort; the controller's summary
/// names them.
#[test]
fn managed_routes_reach_the_sink_from_their_step_until_the_rollout_ends() {
    use augur_policies::StringMatch;
    for end in [Command::PromoteFull, Command::Abort] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (set, hash) = routed_policy();
        let sink = Arc::new(MapSink::default());
        let metrics = RolloutMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let r = Rollouts::new(
            Arc::clone(&sink) as Arc<dyn crate::WeightSink>,
            Some(StateDir::open(dir.path()).expect("state dir")),
            metrics,
        );
        r.sync(&set, &hash, 1000.0);
        let routes = routes_of(&sink).expect("the header route is set at step 1");
        assert_eq!(routes.headers.len(), 1);
        assert_eq!(routes.headers[0].name, "beta");
        assert_eq!(
            routes.headers[0].matches,
            vec![("x-beta".to_owned(), StringMatch::Exact("true".into()))]
        );
        assert!(routes.mirrors.is_empty(), "no mirror before its step");
        r.command(KEY, Command::Promote, 1001.0)
            .expect("past the first pause");
        let routes = routes_of(&sink).expect("both routes");
        assert_eq!(routes.headers.len(), 1, "the header route stays");
        assert_eq!(routes.mirrors, vec![("shadow-copy".to_owned(), 50)]);
        let summary = &r.summaries()[0];
        assert_eq!(summary.header_routes, vec!["beta".to_owned()]);
        assert_eq!(summary.mirror_routes, vec![("shadow-copy".to_owned(), 50)]);
        r.command(KEY, end, 1002.0).expect("ends");
        assert_eq!(
            routes_of(&sink),
            None,
            "{end:?} removes every managed route"
        );
        let summary = &r.summaries()[0];
        assert!(summary.header_routes.is_empty() && summary.mirror_routes.is_empty());
        // Resumed from its saved state, a rollout at the header route's step sets it again.
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Arc::new(MapSink::default());
        let metrics = RolloutMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let first = Rollouts::new(
            Arc::new(MapSink::default()),
            Some(StateDir::open(dir.path()).expect("state dir")),
            metrics.clone(),
        );
        first.sync(&set, &hash, 1000.0);
        let again = Rollouts::new(
            Arc::clone(&sink) as Arc<dyn crate::WeightSink>,
            Some(StateDir::open(dir.path()).expect("state dir")),
            metrics,
        );
        again.sync(&set, &hash, 1000.5);
        assert_eq!(routes_of(&sink).map(|r| r.headers.len()), Some(1));
    }
}

/// A `canaryOnly` rollback takes the canary out of the live traffic (weight 0, header route
/// removed) but keeps the mirror route, and the routing the controller publishes says the
/// same: a following sidecar applies exactly what the single proxy does.
#[test]
fn a_canary_only_rollback_keeps_the_mirror_route_for_proxy_and_fleet_alike() {
    let (_, hash) = routed_policy();
    let dir = tempfile::tempdir().expect("tempdir");
    // The example's first trigger, canaryOnly instead of immediate.
    let policy = routed_policy_text().replacen(
        "action: immediate                  # all traffic back to v1 now",
        "action: canaryOnly",
        1,
    );
    let loaded = augur_policies::load_str("p.yaml", &policy).expect("loads");
    assert_ne!(loaded.hash, hash, "the trigger's action changed");
    let sink = Arc::new(MapSink::default());
    let metrics = RolloutMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let r = Rollouts::new(
        Arc::clone(&sink) as Arc<dyn crate::WeightSink>,
        Some(StateDir::open(dir.path()).expect("state dir")),
        metrics,
    );
    r.sync(&loaded.set, &loaded.hash, 1000.0);
    r.command(KEY, Command::Promote, 1001.0)
        .expect("to the mirror step");
    assert_eq!(routes_of(&sink).map(|m| m.mirrors.len()), Some(1));
    // Canary errors far above 10%, stable fine: the trigger fires.
    for i in 0..200 {
        let t = 1002.0 + f64::from(i) * 0.7;
        let mut canary = routed(t, Arm::Canary);
        canary.sample.status = 500;
        r.observe(&canary);
        r.observe(&routed(t, Arm::Stable));
    }
    r.tick(1150.0);
    let summary = &r.summaries()[0];
    assert_eq!(summary.phase, "rolled_back", "{summary:?}");
    assert_eq!(summary.weights.canary, 0);
    assert!(summary.header_routes.is_empty(), "no header route");
    assert_eq!(summary.mirror_routes, vec![("shadow-copy".to_owned(), 50)]);
    let routes = routes_of(&sink).expect("the mirror stays");
    assert!(routes.headers.is_empty());
    assert_eq!(routes.mirrors, vec![("shadow-copy".to_owned(), 50)]);
}

/// A `setHeaderRoute` without `match` takes the named route off the data plane at its step,
/// and a later step that sets it again puts it back with its matches.
#[test]
fn a_header_route_step_without_match_takes_the_route_off_the_data_plane() {
    let steps = "    - setHeaderRoute:\n        name: beta\n        match:\n          - headerName: X-Beta\n            headerValue: {exact: \"true\"}\n    - pause: {}\n    - setHeaderRoute: {name: beta}\n    - pause: {}\n    - setHeaderRoute:\n        name: beta\n        match:\n          - headerName: X-Beta\n            headerValue: {exact: \"yes\"}\n    - pause: {}\n    - setWeight: 10\n";
    let text = example().replacen("    - setWeight: 10\n", steps, 1);
    let loaded = augur_policies::load_str("p.yaml", &text).expect("the policy loads");
    let sink = Arc::new(MapSink::default());
    let metrics = RolloutMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let r = Rollouts::new(
        Arc::clone(&sink) as Arc<dyn crate::WeightSink>,
        None,
        metrics,
    );
    r.sync(&loaded.set, &loaded.hash, 1000.0);
    let header = |sink: &MapSink| routes_of(sink).map(|r| r.headers);
    let set = header(&sink).expect("set at step 1");
    assert_eq!(set.len(), 1);
    r.command(KEY, Command::Promote, 1001.0)
        .expect("past the first pause");
    assert_eq!(header(&sink), None, "removed by the step without match");
    assert!(r.summaries()[0].header_routes.is_empty());
    r.command(KEY, Command::Promote, 1002.0)
        .expect("past the second pause");
    let again = header(&sink).expect("set again");
    assert_eq!(
        again[0].matches,
        vec![(
            "x-beta".to_owned(),
            augur_policies::StringMatch::Exact("yes".into())
        )],
        "with the matches of the step that set it again"
    );
}
