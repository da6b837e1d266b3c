//! The rollout state machine: step types, triggers, gates, no-data, limits, commands, resume.

mod common;

use augur_analyzer::rollout::{Action, Command, Decision, PauseReason, Rollout, RolloutState};
use augur_analyzer::spec::{
    default_triggers, Allowed, AnalysisSpec, GapAction, Method, MetricKind, MetricSpec,
    ScoringSpec, StepSpec, TriggerAction,
};
use augur_model::Arm;
use common::{request, ArmModel, Rng, BASE};

/// Feeds traffic from `from` to `to` s at `rate`/s, ticking every 5 s; `canary(t)` models it.
fn drive(
    r: &mut Rollout,
    rng: &mut Rng,
    (from, to): (f64, f64),
    rate: f64,
    canary: impl Fn(f64) -> ArmModel,
) -> Vec<Decision> {
    let mut out = Vec::new();
    let mut t = from;
    let mut next_tick = from;
    while t < to {
        while next_tick <= t {
            out.extend(r.tick(next_tick));
            next_tick += 5.0;
        }
        let w = f64::from(r.weights().canary) / 100.0;
        let arm = if rng.uniform() < w {
            Arm::Canary
        } else {
            Arm::Stable
        };
        let model = if arm == Arm::Canary { canary(t) } else { BASE };
        r.observe(&request(rng, t, arm, model));
        t += 1.0 / rate;
    }
    out.extend(r.tick(to));
    out
}

/// p95 latency (+20%), error rate (+2 points) and accuracy (−5 points), 50 samples per arm.
fn metrics() -> Vec<MetricSpec> {
    let mut latency = MetricSpec::new("latency-p95", MetricKind::Latency { quantile: 0.95 });
    latency.allowed = Allowed::Relative(0.2);
    let mut errors = MetricSpec::new("error-rate", MetricKind::ErrorRate);
    errors.allowed = Allowed::Absolute(0.02);
    let mut accuracy = MetricSpec::new("accuracy", MetricKind::Accuracy);
    accuracy.allowed = Allowed::Absolute(0.05);
    vec![latency, errors, accuracy]
}

fn spec() -> AnalysisSpec {
    AnalysisSpec {
        metrics: metrics(),
        min_samples: 50,
        ..AnalysisSpec::default()
    }
}

fn actions(ds: &[Decision]) -> Vec<Action> {
    ds.iter().flat_map(|d| d.actions.clone()).collect()
}

#[test]
fn every_step_type_and_a_manual_gate() {
    let steps = vec![
        StepSpec::SetHeaderRoute {
            name: "beta".into(),
        },
        StepSpec::SetMirrorRoute {
            name: "mirror".into(),
            percent: 10,
        },
        StepSpec::SetWeight(10),
        StepSpec::Pause {
            duration_s: Some(120.0),
        },
        StepSpec::SetWeight(30),
        StepSpec::Analysis,
        StepSpec::Pause { duration_s: None },
        StepSpec::SetWeight(60),
    ];
    let mut r = Rollout::new(spec(), steps, default_triggers());
    let mut rng = Rng(7);
    let first = r.tick(0.0);
    assert_eq!(
        actions(&first),
        vec![
            Action::SetHeaderRoute {
                name: "beta".into()
            },
            Action::SetMirror {
                name: "mirror".into(),
                percent: 10
            },
            Action::SetWeight { canary: 10 },
        ]
    );
    assert_eq!(r.state(), &RolloutState::Progressing { step: 3 });
    let ds = drive(&mut r, &mut rng, (0.0, 119.0), 20.0, |_| BASE);
    assert!(ds.is_empty(), "{ds:?}");
    let ds = drive(&mut r, &mut rng, (119.0, 125.0), 20.0, |_| BASE);
    assert_eq!(actions(&ds), vec![Action::SetWeight { canary: 30 }]);
    assert_eq!(r.state(), &RolloutState::Progressing { step: 5 });
    // the analysis gate passes at a look with enough data, then the manual gate holds
    let ds = drive(&mut r, &mut rng, (125.0, 1200.0), 20.0, |_| BASE);
    let gate = RolloutState::Paused {
        step: 6,
        reason: PauseReason::ManualGate,
    };
    assert_eq!(r.state(), &gate, "{ds:?}");
    let passed = ds.last().expect("the gate opened");
    assert!(
        passed.reason.contains("analysis passed"),
        "{}",
        passed.reason
    );
    // the gate opened on evidence: every metric's bound inside its allowance, with its samples
    for v in passed
        .verdicts
        .iter()
        .filter(|v| v.metric != "sample-ratio")
    {
        assert_eq!(v.outcome, augur_analyzer::verdict::Outcome::Pass, "{v:?}");
        let (bound, allowance) = (v.bound.expect("bound"), v.allowance.expect("allowance"));
        match v.metric.as_str() {
            "accuracy" => assert!(bound > allowance, "{v:?}"),
            _ => assert!(bound < allowance, "{v:?}"),
        }
        assert!(v.n_canary >= 50 && v.n_stable >= 50);
    }
    let record = r.gates().last().expect("the gate's record");
    assert_eq!((record.step, record.outcome.as_str()), (5, "passed"));
    let promoted = r.command(Command::Promote, 1200.0).expect("allowed");
    assert_eq!(
        promoted.actions,
        vec![
            Action::SetWeight { canary: 60 },
            Action::SetWeight { canary: 100 },
            Action::Promote
        ]
    );
    assert_eq!(r.state(), &RolloutState::Promoted);
    assert_eq!(r.weights().canary, 100);
    assert!(r.command(Command::Promote, 1201.0).is_err());
}

fn triggered(canary: ArmModel, seed: u64) -> (Rollout, Vec<Decision>) {
    let steps = vec![
        StepSpec::SetMirrorRoute {
            name: "m".into(),
            percent: 5,
        },
        StepSpec::SetWeight(40),
        StepSpec::Pause { duration_s: None },
    ];
    // the judge is off (no metrics) so that only the triggers act
    let spec = AnalysisSpec {
        metrics: vec![],
        ..spec()
    };
    let mut r = Rollout::new(spec, steps, default_triggers());
    let ds = drive(&mut r, &mut Rng(seed), (0.0, 900.0), 20.0, |_| canary);
    (r, ds)
}

#[test]
fn immediate_trigger_rolls_back_and_removes_routes() {
    let (r, ds) = triggered(
        ArmModel {
            error_rate: 0.5,
            ..BASE
        },
        1,
    );
    let RolloutState::RolledBack { trigger, .. } = r.state() else {
        panic!("{:?}", r.state())
    };
    assert_eq!(trigger.as_deref(), Some("error-rate-above-10pct"));
    let last = ds.last().expect("decision");
    assert!(last.time >= 120.0 && last.time < 200.0, "{}", last.time);
    assert_eq!(
        last.actions,
        vec![
            Action::Rollback {
                mode: TriggerAction::Immediate
            },
            Action::SetWeight { canary: 0 },
            Action::RemoveMirror { name: "m".into() },
        ]
    );
}

#[test]
fn canary_only_trigger_keeps_the_mirror() {
    let (r, ds) = triggered(
        ArmModel {
            median_ms: 800.0,
            ..BASE
        },
        2,
    );
    assert!(
        matches!(r.state(), RolloutState::RolledBack { trigger: Some(t), .. } if t == "p95-latency-plus-500ms")
    );
    assert_eq!(
        ds.last().map(|d| d.actions.clone()),
        Some(vec![
            Action::Rollback {
                mode: TriggerAction::CanaryOnly
            },
            Action::SetWeight { canary: 0 }
        ])
    );
}

#[test]
fn staged_trigger_halves_then_finishes_or_restores() {
    let (r, ds) = triggered(
        ArmModel {
            accuracy: 0.6,
            ..BASE
        },
        3,
    );
    let n = ds.len();
    assert!(matches!(
        ds[n - 2].to,
        RolloutState::RollingBack {
            restore_weight: 40,
            ..
        }
    ));
    assert_eq!(ds[n - 2].weights.canary, 20);
    assert!(matches!(r.state(), RolloutState::RolledBack { .. }));
    assert_eq!(r.weights().canary, 0);
    // a canary that recovers at half weight gets its weight back
    let spec = AnalysisSpec {
        metrics: vec![],
        ..spec()
    };
    let steps = vec![
        StepSpec::SetWeight(40),
        StepSpec::Pause { duration_s: None },
    ];
    let mut r = Rollout::new(spec, steps, default_triggers());
    let mut rng = Rng(4);
    let mut t = 0.0;
    while !matches!(r.state(), RolloutState::RollingBack { .. }) {
        assert!(t < 900.0, "the staged trigger fires");
        drive(&mut r, &mut rng, (t, t + 5.0), 20.0, |_| ArmModel {
            accuracy: 0.6,
            ..BASE
        });
        t += 5.0;
    }
    let ds = drive(&mut r, &mut rng, (t, t + 300.0), 20.0, |_| BASE);
    assert!(
        ds.iter()
            .any(|d| d.actions == vec![Action::SetWeight { canary: 40 }]),
        "{ds:?}"
    );
    assert!(
        matches!(r.state(), RolloutState::Paused { step: 1, .. }),
        "{ds:#?}"
    );
}

#[test]
fn no_data_holds_rolls_back_or_continues() {
    let steps = vec![StepSpec::SetWeight(10), StepSpec::Analysis];
    let mut r = Rollout::new(spec(), steps.clone(), vec![]);
    let mut out = Vec::new();
    for i in 0..=6 {
        out.extend(r.tick(f64::from(i) * 60.0));
    }
    assert!(
        matches!(
            r.state(),
            RolloutState::Paused {
                reason: PauseReason::NoData { .. },
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(out.last().map(|d| d.time), Some(300.0));
    assert!(out
        .last()
        .is_some_and(|d| d.verdicts.iter().all(|v| v.reason.starts_with("no data"))));
    r.command(Command::Resume, 301.0).expect("resumes");
    assert_eq!(r.state(), &RolloutState::Progressing { step: 1 });

    let mut r = Rollout::new(
        AnalysisSpec {
            on_no_data: GapAction::Rollback,
            ..spec()
        },
        steps.clone(),
        vec![],
    );
    for i in 0..=6 {
        r.tick(f64::from(i) * 60.0);
    }
    assert!(matches!(r.state(), RolloutState::RolledBack { .. }));

    let mut r = Rollout::new(
        AnalysisSpec {
            on_no_data: GapAction::Continue,
            ..spec()
        },
        steps,
        vec![],
    );
    r.tick(0.0);
    r.tick(60.0);
    assert_eq!(r.state(), &RolloutState::Promoted);
}

#[test]
fn failure_limit_and_critical_metrics() {
    let threshold = |failure_limit, critical| {
        let mut m = MetricSpec::new("latency-p95", MetricKind::Latency { quantile: 0.95 });
        m.critical = critical;
        AnalysisSpec {
            metrics: vec![m],
            method: Method::Threshold,
            failure_limit,
            ..spec()
        }
    };
    let steps = vec![
        StepSpec::SetWeight(50),
        StepSpec::Pause { duration_s: None },
    ];
    let slow = ArmModel {
        median_ms: 70.0,
        ..BASE
    };
    // Without a limit, failed looks are counted and nothing rolls back.
    let mut r = Rollout::new(threshold(None, false), steps.clone(), vec![]);
    drive(&mut r, &mut Rng(5), (0.0, 600.0), 20.0, |_| slow);
    assert!(
        matches!(r.state(), RolloutState::Paused { .. }),
        "{:?}",
        r.state()
    );
    assert_eq!(r.counters().get("latency-p95").map(|c| c.failed), Some(10));
    let mut r = Rollout::new(threshold(Some(2), false), steps.clone(), vec![]);
    let ds = drive(&mut r, &mut Rng(5), (0.0, 600.0), 20.0, |_| slow);
    assert!(matches!(
        r.state(),
        RolloutState::RolledBack { trigger: None, .. }
    ));
    assert_eq!(r.counters().get("latency-p95").map(|c| c.failed), Some(3));
    assert_eq!(ds.last().map(|d| d.time), Some(180.0));
    let mut r = Rollout::new(threshold(Some(5), true), steps, vec![]);
    let ds = drive(&mut r, &mut Rng(5), (0.0, 600.0), 20.0, |_| slow);
    assert_eq!(ds.last().map(|d| d.time), Some(60.0));
    assert!(ds
        .last()
        .is_some_and(|d| d.verdicts[0].critical && d.verdicts[0].is_fail()));
}

#[test]
fn kayenta_marginal_score_is_inconclusive_and_holds() {
    let metrics = vec![
        MetricSpec::new("latency-p95", MetricKind::Latency { quantile: 0.95 }),
        MetricSpec::new("error-rate", MetricKind::ErrorRate),
        MetricSpec::new("accuracy", MetricKind::Accuracy),
    ];
    let scoring = Some(ScoringSpec {
        group_weights: vec![],
        pass: 90.0,
        marginal: 50.0,
    });
    // A marginal score cannot pass: the gate waits until its time bound, then holds.
    let spec = AnalysisSpec {
        metrics,
        method: Method::Threshold,
        scoring,
        max_duration_s: Some(240.0),
        ..spec()
    };
    let steps = vec![StepSpec::SetWeight(50), StepSpec::Analysis];
    let mut r = Rollout::new(spec, steps, vec![]);
    let slow = ArmModel {
        median_ms: 70.0,
        error_rate: 0.0,
        accuracy: 0.95,
        ..BASE
    };
    let ds = drive(&mut r, &mut Rng(6), (0.0, 300.0), 20.0, |_| slow);
    assert_eq!(r.state(), &RolloutState::Inconclusive { step: 1 }, "{ds:?}");
    assert_eq!(
        ds.last().map(|d| d.time),
        Some(240.0),
        "at the gate's time bound"
    );
    let record = r.gates().last().expect("the gate's record");
    assert_eq!(
        (record.step, record.outcome.as_str()),
        (1, "inconclusive: held for a human")
    );
    let score = r
        .verdicts()
        .iter()
        .find(|v| v.metric == "score")
        .expect("score");
    assert_eq!(
        (score.metric.as_str(), score.statistic),
        ("score", Some(66.67))
    );
    r.command(Command::Promote, 300.0)
        .expect("a human promotes");
    assert_eq!(r.state(), &RolloutState::Promoted);
}

#[test]
fn commands_pause_resume_abort_retry_and_promote_full() {
    let steps = vec![
        StepSpec::SetWeight(20),
        StepSpec::Pause {
            duration_s: Some(600.0),
        },
        StepSpec::SetWeight(50),
    ];
    let mut r = Rollout::new(spec(), steps, vec![]);
    r.tick(0.0);
    let d = r.command(Command::Pause, 10.0).expect("pauses");
    assert_eq!(
        d.to,
        RolloutState::Paused {
            step: 1,
            reason: PauseReason::Manual
        }
    );
    assert!(r.command(Command::Pause, 11.0).is_err());
    assert!(
        r.tick(700.0).is_empty(),
        "a paused rollout does not advance"
    );
    r.command(Command::Resume, 701.0).expect("resumes");
    assert_eq!(r.tick(702.0).last().map(|d| d.weights.canary), Some(100));
    assert!(
        r.command(Command::Abort, 703.0).is_err(),
        "already promoted"
    );
    let mut r = Rollout::new(
        spec(),
        vec![
            StepSpec::SetWeight(20),
            StepSpec::Pause { duration_s: None },
        ],
        vec![],
    );
    r.tick(0.0);
    let d = r.command(Command::Abort, 5.0).expect("aborts");
    assert!(matches!(d.to, RolloutState::Aborted { .. }) && d.weights.canary == 0);
    let d = r.command(Command::Retry, 6.0).expect("retries");
    assert_eq!(
        (d.to.clone(), d.weights.canary),
        (
            RolloutState::Paused {
                step: 1,
                reason: PauseReason::ManualGate
            },
            20
        )
    );
    let d = r.command(Command::PromoteFull, 7.0).expect("promotes");
    assert_eq!((d.to, d.weights.canary), (RolloutState::Promoted, 100));
    assert_eq!(r.history().count(), 4);
}

/// A `setHeaderRoute` without `match` (Argo's way) removes the named route at its step; the
/// rollout goes on with the others.
#[test]
fn a_header_route_step_without_match_removes_the_route() {
    let steps = vec![
        StepSpec::SetHeaderRoute {
            name: "beta".into(),
        },
        StepSpec::SetHeaderRoute {
            name: "internal".into(),
        },
        StepSpec::Pause { duration_s: None },
        StepSpec::RemoveHeaderRoute {
            name: "beta".into(),
        },
        StepSpec::SetWeight(50),
        StepSpec::Pause { duration_s: None },
    ];
    let mut r = Rollout::new(spec(), steps, vec![]);
    r.tick(0.0);
    let mut routes: Vec<&str> = r.header_routes().collect();
    routes.sort_unstable();
    assert_eq!(routes, ["beta", "internal"]);
    let d = r
        .command(Command::Promote, 1.0)
        .expect("promotes past the pause");
    assert!(
        d.actions.contains(&Action::RemoveHeaderRoute {
            name: "beta".into()
        }),
        "{:?}",
        d.actions
    );
    assert_eq!(r.header_routes().collect::<Vec<_>>(), ["internal"]);
    assert!(
        matches!(r.state(), RolloutState::Paused { step: 5, .. }),
        "went on to the next pause: {:?}",
        r.state()
    );
}

/// Abort is one transition, from where the rollout stood to Aborted, whose actions take the
/// canary out of the traffic: weight 0, header route and mirror removed.
#[test]
fn abort_is_one_transition_that_removes_the_canary() {
    let steps = vec![
        StepSpec::SetHeaderRoute { name: "h".into() },
        StepSpec::SetMirrorRoute {
            name: "m".into(),
            percent: 10,
        },
        StepSpec::SetWeight(20),
        StepSpec::Pause { duration_s: None },
    ];
    let mut r = Rollout::new(spec(), steps, vec![]);
    r.tick(0.0);
    let before = r.history().count();
    let d = r.command(Command::Abort, 5.0).expect("aborts");
    let paused = RolloutState::Paused {
        step: 3,
        reason: PauseReason::ManualGate,
    };
    let aborted = RolloutState::Aborted {
        reason: "command: abort".into(),
    };
    assert_eq!((&d.from, &d.to), (&paused, &aborted));
    assert_eq!(
        d.actions,
        vec![
            Action::Rollback {
                mode: TriggerAction::Immediate
            },
            Action::SetWeight { canary: 0 },
            Action::RemoveHeaderRoute { name: "h".into() },
            Action::RemoveMirror { name: "m".into() },
        ]
    );
    assert_eq!(r.state(), &aborted);
    assert_eq!(r.history().count(), before + 1, "one decision recorded");
    assert_eq!(r.history().last(), Some(&d));
    assert!(r.command(Command::Abort, 6.0).is_err(), "already aborted");
}

#[test]
fn a_gate_with_its_own_spec_judges_with_it() {
    let steps = || vec![StepSpec::SetWeight(50), StepSpec::Analysis];
    let base = || AnalysisSpec {
        metrics: metrics(),
        min_samples: 50,
        interval_s: 30.0,
        on_no_data: GapAction::Hold,
        consecutive_error_limit: -1,
        ..AnalysisSpec::default()
    };
    let strict = AnalysisSpec {
        min_samples: 1_000_000,
        ..base()
    };
    let mut plain = Rollout::new(base(), steps(), Vec::new());
    let mut gated = Rollout::new(base(), steps(), Vec::new()).with_gate_analysis(1, strict);
    assert_eq!(
        gated.active_analysis().min_samples,
        50,
        "not at the gate yet"
    );
    let (mut rng_a, mut rng_b) = (Rng(11), Rng(11));
    drive(&mut plain, &mut rng_a, (0.0, 900.0), 20.0, |_| BASE);
    drive(&mut gated, &mut rng_b, (0.0, 900.0), 20.0, |_| BASE);
    assert_eq!(
        plain.state(),
        &RolloutState::Promoted,
        "the base spec passes the gate"
    );
    assert_eq!(gated.state(), &RolloutState::Progressing { step: 1 });
    assert_eq!(gated.active_analysis().min_samples, 1_000_000);
    assert!(
        gated
            .verdicts()
            .iter()
            .filter(|v| v.metric != augur_analyzer::rollout::SAMPLE_RATIO_METRIC)
            .all(|v| v.outcome == augur_analyzer::verdict::Outcome::NoData),
        "the gate's minSamples holds every metric at NoData: {:?}",
        gated.verdicts()
    );
    // a gate override on a step that is not an Analysis step is ignored
    let r =
        Rollout::new(base(), steps(), Vec::new()).with_gate_analysis(0, AnalysisSpec::default());
    assert_eq!(r.active_analysis(), &base());
}

/// What people read is words with steps counted from 1: a refused command and the states, not
/// Rust's Debug text; JSON keeps the 0-based index.
#[test]
fn refusals_and_states_read_as_words_with_steps_from_one() {
    let paused = RolloutState::Paused {
        step: 1,
        reason: PauseReason::ManualGate,
    };
    assert_eq!(
        paused.to_string(),
        "paused at step 2 (waiting for promotion)"
    );
    let err = augur_analyzer::rollout::CommandError {
        command: Command::Resume,
        state: RolloutState::Progressing { step: 0 },
        detail: None,
    };
    assert_eq!(
        err.to_string(),
        "cannot resume: the rollout is progressing at step 1"
    );
    let no_data = RolloutState::Paused {
        step: 3,
        reason: PauseReason::NoData {
            metric: "error-rate".into(),
        },
    };
    assert_eq!(
        no_data.to_string(),
        "paused at step 4 (no data for error-rate)"
    );
    assert_eq!(
        serde_json::to_value(&paused).expect("JSON")["step"],
        1,
        "JSON keeps the index"
    );
    assert_eq!(
        augur_analyzer::rollout::Weights::canary(5).to_string(),
        "stable 95%, canary 5%"
    );
    assert_eq!(augur_analyzer::rollout::format_seconds(600.0), "10m0s");
    assert_eq!(augur_analyzer::rollout::format_seconds(45.0), "45s");
    assert_eq!(augur_analyzer::rollout::format_seconds(5400.0), "1h30m0s");
}

/// What a decision says to people is words: through a timed pause, an analysis gate, a manual
/// gate, pause and resume commands, a staged rollback (halving, then finishing), an abort and a
/// retry, no decision reason and no state it moves between shows Rust's Debug text
/// (`Paused { step: 1, reason: ManualGate }`, `Some("…")`, `DropBy(0.05)`), and their steps
/// count from 1 (#18's "a reason string prints Rust's Debug").
#[test]
fn no_decision_reason_shows_debug_text() {
    let steps = vec![
        StepSpec::SetWeight(10),
        StepSpec::Pause {
            duration_s: Some(60.0),
        },
        StepSpec::Analysis,
        StepSpec::Pause { duration_s: None },
        StepSpec::SetWeight(40),
        StepSpec::Pause {
            duration_s: Some(7200.0),
        },
    ];
    let mut r = Rollout::new(spec(), steps, default_triggers());
    let mut rng = Rng(11);
    let mut ds = r.tick(0.0);
    // The timed pause, then the gate, which opens on evidence, then the manual gate.
    ds.extend(drive(&mut r, &mut rng, (0.0, 1500.0), 20.0, |_| BASE));
    assert_eq!(
        r.state(),
        &RolloutState::Paused {
            step: 3,
            reason: PauseReason::ManualGate
        },
        "{ds:#?}"
    );
    ds.push(r.command(Command::Promote, 1500.0).expect("promotes"));
    ds.push(r.command(Command::Pause, 1501.0).expect("pauses"));
    ds.push(r.command(Command::Resume, 1502.0).expect("resumes"));
    // The canary's accuracy drops: the continuous analysis rolls it back.
    let bad = ArmModel {
        accuracy: 0.6,
        ..BASE
    };
    ds.extend(drive(&mut r, &mut rng, (1502.0, 3000.0), 20.0, |_| bad));
    assert!(
        matches!(r.state(), RolloutState::RolledBack { .. }),
        "{ds:#?}"
    );
    ds.push(r.command(Command::Retry, 3000.0).expect("retries"));
    ds.push(r.command(Command::Abort, 3001.0).expect("aborts"));
    // Triggers alone: a staged one (halving, then finishing) and an immediate one.
    let (r, staged) = triggered(bad, 3);
    assert!(matches!(r.state(), RolloutState::RolledBack { .. }));
    assert!(staged
        .iter()
        .any(|d| matches!(d.to, RolloutState::RollingBack { .. })));
    let errors = ArmModel {
        error_rate: 0.5,
        ..BASE
    };
    let (_, immediate) = triggered(errors, 1);
    ds.extend(staged.into_iter().chain(immediate));
    let reasons: Vec<&str> = ds.iter().map(|d| d.reason.as_str()).collect();
    for words in [
        "paused 1m0s",
        "analysis passed",
        "promote",
        "pause",
        "resume",
        "analysis failed",
        "accuracy-drop-5-points",
        "error-rate-above-10pct",
        "retry",
        "abort",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(words)),
            "{words}: {reasons:#?}"
        );
    }
    for d in &ds {
        for text in [d.reason.clone(), d.from.to_string(), d.to.to_string()] {
            for debug in [
                "{",
                "}",
                "Some(",
                "None",
                "Pause",
                "Progressing",
                "RollingBack",
                "DropBy",
                "Above(",
                "IncreaseBy",
                "step:",
                "ManualGate",
            ] {
                assert!(!text.contains(debug), "{debug:?} in {text:?}");
            }
        }
        if let Some(step) = d.to.step() {
            assert!(
                d.to.to_string().contains(&format!("step {}", step + 1)),
                "{}",
                d.to
            );
        }
    }
}
