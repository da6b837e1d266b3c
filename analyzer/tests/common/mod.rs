//! A deterministic traffic simulator shared by the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use augur_analyzer::rollout::{Decision, Rollout, RolloutState};
use augur_analyzer::spec::{AnalysisSpec, StepSpec, TriggerSpec};
use augur_model::{Arm, Sample};

/// SplitMix64 with Box-Muller normals.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// One arm's behaviour: lognormal latency, error and accuracy rates.
#[derive(Clone, Copy, Debug)]
pub struct ArmModel {
    pub median_ms: f64,
    pub log_sd: f64,
    pub error_rate: f64,
    pub accuracy: f64,
}

pub const BASE: ArmModel = ArmModel {
    median_ms: 50.0,
    log_sd: 0.3,
    error_rate: 0.01,
    accuracy: 0.90,
};

/// A request at `t` on `arm`, with an inline ground truth.
pub fn request(rng: &mut Rng, t: f64, arm: Arm, m: ArmModel) -> Sample {
    let truth = if rng.uniform() < 0.5 {
        "PNEUMONIA"
    } else {
        "NORMAL"
    };
    let correct = rng.uniform() < m.accuracy;
    let label = if correct == (truth == "PNEUMONIA") {
        "PNEUMONIA"
    } else {
        "NORMAL"
    };
    let score = if label == "PNEUMONIA" {
        0.5 + 0.5 * rng.uniform()
    } else {
        0.5 * rng.uniform()
    };
    let status = if rng.uniform() < m.error_rate {
        503
    } else {
        200
    };
    let latency_ms = m.median_ms * (m.log_sd * rng.normal()).exp();
    Sample {
        score: Some(score),
        label: Some(label.to_owned()),
        truth: Some(truth.to_owned()),
        ..Sample::new(t, arm, status, latency_ms)
    }
}

/// The outcome of one simulated rollout.
pub struct RunResult {
    pub decisions: Vec<Decision>,
    pub final_state: RolloutState,
    /// Requests (both arms) seen when the rollout ended.
    pub requests: u64,
}

/// Drives a rollout with `rate` requests/s split by the rollout's weight, ticking every
/// `tick_s`, until it ends or `max_s` passes.
pub fn simulate(
    seed: u64,
    spec: AnalysisSpec,
    steps: Vec<StepSpec>,
    triggers: Vec<TriggerSpec>,
    (stable, canary): (ArmModel, ArmModel),
    rate: f64,
    max_s: f64,
) -> RunResult {
    let mut rng = Rng(seed);
    let tick_s = augur_analyzer::replay::tick_period(&spec, &triggers);
    let mut rollout = Rollout::new(spec, steps, triggers);
    let mut decisions = rollout.tick(0.0);
    let (mut t, mut next_tick, mut requests) = (0.0, tick_s, 0u64);
    let dt = 1.0 / rate;
    while t < max_s && !rollout.state().is_terminal() {
        t += dt;
        while next_tick <= t {
            decisions.extend(rollout.tick(next_tick));
            next_tick += tick_s;
        }
        let w = f64::from(rollout.weights().canary) / 100.0;
        let (arm, model) = if rng.uniform() < w {
            (Arm::Canary, canary)
        } else {
            (Arm::Stable, stable)
        };
        rollout.observe(&request(&mut rng, t, arm, model));
        requests += 1;
    }
    RunResult {
        decisions,
        final_state: rollout.state().clone(),
        requests,
    }
}
