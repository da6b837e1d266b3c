//! Crash and resume: the whole rollout state through JSON at every tick, and the audit record.

mod common;

use augur_analyzer::rollout::{Decision, Rollout, RolloutState};
use augur_analyzer::spec::{
    default_triggers, Allowed, AnalysisSpec, MetricKind, MetricSpec, StepSpec,
};
use augur_model::Arm;
use common::{request, ArmModel, Rng, BASE};

fn spec() -> AnalysisSpec {
    let mut latency = MetricSpec::new("latency-p95", MetricKind::Latency { quantile: 0.95 });
    latency.allowed = Allowed::Relative(0.1);
    let mut errors = MetricSpec::new("error-rate", MetricKind::ErrorRate);
    errors.allowed = Allowed::Absolute(0.03);
    let mut accuracy = MetricSpec::new("accuracy", MetricKind::Accuracy);
    accuracy.allowed = Allowed::Absolute(0.08);
    AnalysisSpec {
        metrics: vec![latency, errors, accuracy],
        min_samples: 50,
        ..AnalysisSpec::default()
    }
}

/// Feeds traffic from `from` to `to` s at `rate`/s, ticking every 5 s.
fn drive(
    r: &mut Rollout,
    rng: &mut Rng,
    (from, to): (f64, f64),
    rate: f64,
    canary: ArmModel,
) -> Vec<Decision> {
    let mut out = Vec::new();
    let (mut t, mut next_tick) = (from, from);
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
        let model = if arm == Arm::Canary { canary } else { BASE };
        r.observe(&request(rng, t, arm, model));
        t += 1.0 / rate;
    }
    out.extend(r.tick(to));
    out
}

/// Runs a scenario twice, once persisting and restoring the whole state at every tick.
fn resume_identically(canary: ArmModel, seed: u64, judge: bool) -> RolloutState {
    let spec = if judge {
        spec()
    } else {
        AnalysisSpec {
            metrics: vec![],
            ..spec()
        }
    };
    let steps = vec![
        StepSpec::SetHeaderRoute { name: "h".into() },
        StepSpec::SetWeight(20),
        StepSpec::Pause {
            duration_s: Some(300.0),
        },
        StepSpec::SetWeight(50),
        StepSpec::Analysis,
        StepSpec::Pause {
            duration_s: Some(300.0),
        },
    ];
    let run = |persist: bool| {
        let mut r = Rollout::new(spec.clone(), steps.clone(), default_triggers());
        let mut rng = Rng(seed);
        let mut out = Vec::new();
        for k in 0..240 {
            let (from, to) = (f64::from(k) * 5.0, f64::from(k + 1) * 5.0);
            out.extend(drive(&mut r, &mut rng, (from, to), 20.0, canary));
            if persist {
                let json = serde_json::to_string(&r).expect("serializes");
                r = serde_json::from_str(&json).expect("resumes");
            }
        }
        (out, r)
    };
    let (plain, a) = run(false);
    let (persisted, b) = run(true);
    assert_eq!(plain, persisted);
    assert_eq!(a, b);
    assert!(plain.len() >= 2, "{plain:#?}");
    a.state().clone()
}

#[test]
fn crash_and_resume_at_every_step_continues_identically() {
    assert_eq!(resume_identically(BASE, 8, true), RolloutState::Promoted);
    let slow = ArmModel {
        median_ms: 60.0,
        ..BASE
    };
    let end = resume_identically(slow, 9, true);
    assert!(matches!(
        end,
        RolloutState::RolledBack { trigger: None, .. }
    ));
    // a staged trigger: persisted while rolling back at half weight too
    let broken = ArmModel {
        accuracy: 0.5,
        ..BASE
    };
    let end = resume_identically(broken, 10, false);
    assert!(
        matches!(end, RolloutState::RolledBack { trigger: Some(ref t), .. } if t == "accuracy-drop-5-points")
    );
}

#[test]
fn decisions_are_json_lines() {
    let mut r = Rollout::new(spec(), vec![StepSpec::SetWeight(5)], vec![]);
    let d = r.tick(0.0).pop().expect("promoted");
    let line = serde_json::to_string(&d).expect("serializes");
    assert!(
        line.contains(r#""phase":"promoted""#) && line.contains(r#""action":"set_weight""#),
        "{line}"
    );
    assert_eq!(serde_json::from_str::<Decision>(&line).expect("parses"), d);
}
