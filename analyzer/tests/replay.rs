//! `replay` over a recorded JSON-lines stream, and delayed labels / shadow answers by id.

mod common;

use augur_analyzer::replay::replay;
use augur_analyzer::rollout::{Rollout, RolloutState};
use augur_analyzer::spec::{default_triggers, AnalysisSpec, MetricKind, MetricSpec, StepSpec};
use augur_model::{Arm, Sample};
use common::{request, ArmModel, Rng, BASE};

fn recording(canary: ArmModel, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut lines = String::new();
    for i in 0..24_000 {
        let t = f64::from(i) * 0.05;
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

fn run(jsonl: &str) -> Vec<augur_analyzer::rollout::Decision> {
    let samples = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<Sample>(l).ok());
    let steps = vec![
        StepSpec::SetWeight(30),
        StepSpec::Pause {
            duration_s: Some(600.0),
        },
        StepSpec::Analysis,
    ];
    replay(AnalysisSpec::default(), steps, default_triggers(), samples)
}

#[test]
fn replay_promotes_a_good_canary_and_rolls_back_a_slow_one() {
    let good = run(&recording(BASE, 1));
    assert_eq!(
        good.last().map(|d| d.to.clone()),
        Some(RolloutState::Promoted),
        "{good:#?}"
    );
    assert_eq!(good, run(&recording(BASE, 1)), "deterministic");
    let slow = run(&recording(
        ArmModel {
            median_ms: 60.0,
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
    assert!(last
        .verdicts
        .iter()
        .any(|v| v.p_value.is_some() && v.e_value.is_some()));
}

#[test]
fn delayed_labels_and_shadow_answers_join_by_request_id() {
    let spec = AnalysisSpec {
        metrics: vec![
            MetricSpec::new("accuracy", MetricKind::Accuracy),
            MetricSpec::new("agreement", MetricKind::ShadowAgreement),
            MetricSpec::new("calibration", MetricKind::Calibration),
            MetricSpec::new("drift", MetricKind::PredictionDrift),
        ],
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
