//! `replay` over a recorded JSON-lines stream: the same decisions as driving the rollout live,
//! whole-second ticks, inline ground truth, delayed labels and shadow answers by id.

mod common;

use augur_analyzer::replay::{replay, replay_events, Event};
use augur_analyzer::rollout::{Rollout, RolloutState};
use augur_analyzer::spec::{
    default_triggers, Allowed, AnalysisSpec, MetricKind, MetricSpec, StepSpec,
};
use augur_analyzer::verdict::Outcome;
use augur_model::{Arm, Sample};
use common::{request, request_labelled, ArmModel, Rng, BASE};

/// p95 latency (+20%), error rate (+2 points) and accuracy (−5 points).
fn spec() -> AnalysisSpec {
    let mut latency = MetricSpec::new("latency-p95", MetricKind::Latency { quantile: 0.95 });
    latency.allowed = Allowed::Relative(0.2);
    let mut errors = MetricSpec::new("error-rate", MetricKind::ErrorRate);
    errors.allowed = Allowed::Absolute(0.02);
    let mut accuracy = MetricSpec::new("accuracy", MetricKind::Accuracy);
    accuracy.allowed = Allowed::Absolute(0.05);
    AnalysisSpec {
        metrics: vec![latency, errors, accuracy],
        ..AnalysisSpec::default()
    }
}

fn recording(canary: ArmModel, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut lines = String::new();
    for i in 0..24_000 {
        let t = 0.039 + f64::from(i) * 0.05;
        let arm = if rng.uniform() < 0.3 {
            Arm::Canary
        } else {
            Arm::Stable
        };
        let model = if arm == Arm::Canary { canary } else { BASE };
        let sample = request(&mut rng, t, arm, model);
        lines.push_str(&serde_json::to_string(&sample).expect("serializes"));
        lines.push('\n');
    }
    lines
}

fn steps() -> Vec<StepSpec> {
    vec![
        StepSpec::SetWeight(30),
        StepSpec::Pause {
            duration_s: Some(600.0),
        },
        StepSpec::Analysis,
    ]
}

fn run(jsonl: &str) -> Vec<augur_analyzer::rollout::Decision> {
    let samples = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<Sample>(l).ok());
    replay(spec(), steps(), default_triggers(), samples)
}

#[test]
fn replay_promotes_a_good_canary_and_rolls_back_a_slow_one() {
    let good = run(&recording(BASE, 1));
    let last = good.last().expect("decisions");
    assert_eq!(last.to, RolloutState::Promoted, "{good:#?}");
    assert!(last
        .verdicts
        .iter()
        .filter(|v| v.metric != "sample-ratio")
        .all(|v| v.outcome == Outcome::Pass && v.bound.is_some() && v.allowance.is_some()));
    assert_eq!(good, run(&recording(BASE, 1)), "deterministic");
    let slow = run(&recording(
        ArmModel {
            median_ms: 75.0,
            ..BASE
        },
        2,
    ));
    let last = slow.last().expect("a decision");
    assert!(
        matches!(last.to, RolloutState::RolledBack { .. }),
        "{last:#?}"
    );
    assert!(last.time < 600.0 && last.reason.contains("latency-p95"));
    assert!(last.verdicts.iter().any(|v| v.e_value.is_some()));
}

#[test]
fn looks_fall_on_whole_seconds_from_the_start() {
    // The stream starts at 0.039 s: the rollout starts at second 0 and looks at 60, 120, ...
    let text = recording(BASE, 3);
    let events = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok());
    let rollout = Rollout::new(
        AnalysisSpec {
            min_samples: 1_000_000,
            ..spec()
        },
        vec![StepSpec::SetWeight(30), StepSpec::Analysis],
        vec![],
    );
    let mut r = rollout.clone();
    let ds = replay_events(rollout, events, None);
    assert_eq!(ds.first().map(|d| d.time), Some(0.0));
    // Replaying the events one by one, looks happen exactly at the whole minutes.
    let mut looks = Vec::new();
    let mut rng = Rng(3);
    let mut judged = 0;
    for i in 0..2_400 {
        let t = 0.039 + f64::from(i) * 0.05;
        r.tick(t);
        if r.verdicts().len() != judged {
            judged = r.verdicts().len();
            looks.push(t.floor());
        }
        r.observe(&request(&mut rng, t, Arm::Stable, BASE));
    }
    assert_eq!(looks, vec![60.0], "the first look at +60 s, not later");
}

#[test]
fn inline_truth_counts_as_labelled_for_the_minimum_label_rate() {
    // The example policy's setting: accuracy needs 5% of predictions labelled; 75% carry
    // their truth in the recording.
    let spec = AnalysisSpec {
        min_label_rate: 0.05,
        min_samples: 50,
        ..spec()
    };
    let mut rng = Rng(4);
    let samples: Vec<Sample> = (0..6_000)
        .map(|i| {
            let arm = if i % 3 == 0 { Arm::Canary } else { Arm::Stable };
            request_labelled(&mut rng, f64::from(i) * 0.05, arm, BASE, 0.75)
        })
        .collect();
    let mut r = Rollout::new(
        spec,
        vec![StepSpec::SetWeight(33), StepSpec::Analysis],
        vec![],
    );
    for s in &samples {
        r.tick(s.t);
        r.observe(s);
    }
    r.tick(300.0);
    let accuracy = r
        .verdicts()
        .iter()
        .find(|v| v.metric == "accuracy")
        .expect("judged");
    assert_ne!(accuracy.outcome, Outcome::NoData, "{}", accuracy.reason);
    assert!(accuracy.n_canary > 500);
    let rate = r.label_rate().expect("labels resolved");
    assert!(
        (rate - 1.0).abs() < 1e-9,
        "inline truth is a label joined at once: {rate}"
    );
}

#[test]
fn delayed_labels_and_shadow_answers_join_by_request_id() {
    let mut metrics = vec![
        MetricSpec::new("accuracy", MetricKind::Accuracy),
        MetricSpec::new("agreement", MetricKind::ShadowAgreement),
        MetricSpec::new("calibration", MetricKind::Calibration),
        MetricSpec::new("drift", MetricKind::PredictionDrift),
    ];
    metrics[0].allowed = Allowed::Absolute(0.2);
    metrics[1].allowed = Allowed::Absolute(0.2);
    metrics[2].allowed = Allowed::Absolute(0.2);
    let spec = AnalysisSpec {
        metrics,
        min_samples: 20,
        ..AnalysisSpec::default()
    };
    let mut r = Rollout::new(
        spec,
        vec![StepSpec::SetWeight(50), StepSpec::Analysis],
        vec![],
    );
    r.tick(0.0);
    let mut rng = Rng(3);
    for i in 0..400u32 {
        let t = f64::from(i) * 0.1;
        let arm = if i % 2 == 0 { Arm::Canary } else { Arm::Stable };
        let mut s = request(&mut rng, t, arm, BASE);
        let truth = s.truth.take().expect("truth");
        s.request_id = Some(format!("r{i}"));
        r.observe(&s);
        let mut shadow = s.clone();
        shadow.arm = Arm::Shadow;
        r.observe(&shadow);
        if i % 10 != 0 {
            assert!(r.record_label(&format!("r{i}"), &truth, t + 1.0));
        }
    }
    assert!(!r.record_label("unknown", "NORMAL", 50.0));
    let ds = r.tick(60.0);
    assert_eq!(r.state(), &RolloutState::Promoted, "{ds:#?}");
    let v = r.verdicts();
    assert_eq!(v.len(), 5, "four metrics and the sample-ratio check");
    assert_eq!(v[4].metric, augur_analyzer::rollout::SAMPLE_RATIO_METRIC);
    assert_eq!(
        (v[1].stable, v[1].canary),
        (Some(1.0), Some(1.0)),
        "the shadow agrees"
    );
    assert_eq!(v[0].n_canary, 160);
    let _ = r.tick(4000.0);
    assert_eq!(r.label_rate(), Some(0.9));
}
