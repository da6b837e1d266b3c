//! The sample-ratio check and the minimum label rate.

mod common;

use augur_analyzer::rollout::{Rollout, RolloutState, SAMPLE_RATIO_METRIC};
use augur_analyzer::spec::{AnalysisSpec, MetricKind, MetricSpec, StepSpec};
use augur_analyzer::verdict::Outcome;
use augur_model::Arm;
use common::{request, Rng, BASE};

fn rollout(spec: AnalysisSpec) -> Rollout {
    let steps = vec![
        StepSpec::SetWeight(20),
        StepSpec::Pause { duration_s: None },
    ];
    Rollout::new(spec, steps, vec![])
}

/// Feeds `n` requests over 50 s with the given canary share, then takes a look at 61 s.
fn feed(r: &mut Rollout, share: f64, n: usize, strip_truth: bool) -> Vec<augur_model::Sample> {
    let mut rng = Rng(11);
    r.tick(0.0);
    let mut sent = Vec::new();
    for i in 0..n {
        let t = 50.0 * i as f64 / n as f64;
        let arm = if rng.uniform() < share {
            Arm::Canary
        } else {
            Arm::Stable
        };
        let mut s = request(&mut rng, t, arm, BASE);
        s.request_id = Some(format!("r{i}"));
        let truth = s.truth.clone();
        if strip_truth {
            s.truth = None;
        }
        r.observe(&s);
        s.truth = truth;
        sent.push(s);
    }
    sent
}

fn srm(r: &Rollout) -> Option<Outcome> {
    r.verdicts()
        .iter()
        .find(|v| v.metric == SAMPLE_RATIO_METRIC)
        .map(|v| v.outcome)
}

#[test]
fn a_split_that_does_not_match_the_weight_is_flagged_without_deciding() {
    let spec = AnalysisSpec {
        min_samples: 50,
        ..AnalysisSpec::default()
    };
    let mut healthy = rollout(spec.clone());
    feed(&mut healthy, 0.2, 2000, false);
    healthy.tick(61.0);
    assert_eq!(srm(&healthy), Some(Outcome::Pass));

    let mut broken = rollout(spec);
    feed(&mut broken, 0.5, 2000, false);
    broken.tick(61.0);
    assert_eq!(
        srm(&broken),
        Some(Outcome::Inconclusive),
        "{:?}",
        broken.verdicts()
    );
    let v = broken
        .verdicts()
        .iter()
        .find(|v| v.metric == SAMPLE_RATIO_METRIC)
        .unwrap();
    assert!(v.reason.contains("check the routing") && v.p_value.unwrap() < 1e-3);
    assert!(
        matches!(broken.state(), RolloutState::Paused { .. }),
        "informational only"
    );
}

#[test]
fn accuracy_waits_for_enough_ground_truth() {
    let spec = AnalysisSpec {
        min_samples: 20,
        min_label_rate: 0.5,
        metrics: vec![MetricSpec::new("accuracy", MetricKind::Accuracy)],
        ..AnalysisSpec::default()
    };
    let mut r = rollout(spec);
    let sent = feed(&mut r, 0.2, 1000, true);
    // Only every fifth prediction gets its label: 20% < 50%.
    for s in sent.iter().step_by(5) {
        let truth = s.truth.as_deref().unwrap();
        assert!(r.record_label(s.request_id.as_deref().unwrap(), truth, 55.0));
    }
    r.tick(61.0);
    let accuracy = r
        .verdicts()
        .iter()
        .find(|v| v.metric == "accuracy")
        .unwrap();
    assert_eq!(accuracy.outcome, Outcome::NoData);
    assert!(
        accuracy
            .reason
            .contains("label rate 20.0% is below the minimum 50.0%"),
        "{}",
        accuracy.reason
    );
}
