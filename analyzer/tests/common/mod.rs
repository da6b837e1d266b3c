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

    /// An exponential gap with mean `1 / rate` (Poisson arrivals).
    pub fn gap(&mut self, rate: f64) -> f64 {
        -(1.0 - self.uniform()).ln() / rate
    }
}

/// One arm's behaviour: lognormal latency (plus a constant), error and accuracy rates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArmModel {
    pub median_ms: f64,
    pub log_sd: f64,
    pub error_rate: f64,
    pub accuracy: f64,
    /// Added to every latency, ms.
    pub extra_ms: f64,
}

pub const BASE: ArmModel = ArmModel {
    median_ms: 50.0,
    log_sd: 0.3,
    error_rate: 0.01,
    accuracy: 0.90,
    extra_ms: 0.0,
};

/// A request at `t` on `arm`, with an inline ground truth.
pub fn request(rng: &mut Rng, t: f64, arm: Arm, m: ArmModel) -> Sample {
    request_labelled(rng, t, arm, m, 1.0)
}

/// A request at `t` on `arm`; its ground truth is inline with probability `label_share`.
pub fn request_labelled(rng: &mut Rng, t: f64, arm: Arm, m: ArmModel, label_share: f64) -> Sample {
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
    let latency_ms = m.median_ms * (m.log_sd * rng.normal()).exp() + m.extra_ms;
    let labelled = rng.uniform() < label_share;
    Sample {
        score: Some(score),
        label: Some(label.to_owned()),
        truth: labelled.then(|| truth.to_owned()),
        ..Sample::new(t, arm, status, latency_ms)
    }
}

/// The outcome of one simulated rollout.
pub struct RunResult {
    pub decisions: Vec<Decision>,
    pub final_state: RolloutState,
    /// Requests (both arms) seen when the rollout ended.
    pub requests: u64,
    /// Canary requests seen when the rollout ended.
    pub canary_requests: u64,
    /// When the rollout ended (or the horizon), seconds.
    pub end_s: f64,
}

/// The example policy as the proxy maps it (kept equal to
/// `policies/examples/canary-pneumonia.yaml` by the proxy's `example_policy_spec` test).
#[derive(serde::Deserialize)]
pub struct PolicySpec {
    pub analysis: AnalysisSpec,
    pub steps: Vec<StepSpec>,
    pub triggers: Vec<TriggerSpec>,
    pub gates: Vec<(usize, AnalysisSpec)>,
}

impl PolicySpec {
    pub fn example() -> Self {
        let text = include_str!("../policies/canary-pneumonia.json");
        serde_json::from_str(text).expect("the example policy's spec parses")
    }

    pub fn rollout(&self) -> Rollout {
        let mut r = Rollout::new(
            self.analysis.clone(),
            self.steps.clone(),
            self.triggers.clone(),
        );
        for (step, spec) in &self.gates {
            r = r.with_gate_analysis(*step, spec.clone());
        }
        r
    }
}

/// Closed loop: Poisson arrivals at `rate`/s, each sent to the canary with the rollout's current
/// weight, the canary behaving as `canary(t)`; ticked before every request as the proxy does,
/// until the rollout ends, holds for a human, or `max_s` passes.
pub fn run_closed_loop(
    seed: u64,
    mut rollout: Rollout,
    rate: f64,
    canary: &dyn Fn(f64) -> ArmModel,
    label_share: f64,
    max_s: f64,
) -> RunResult {
    let mut rng = Rng(seed);
    let mut decisions = rollout.tick(0.0);
    let (mut t, mut requests, mut canary_requests) = (0.0, 0u64, 0u64);
    let waiting_for_a_human = |r: &Rollout| {
        matches!(
            r.state(),
            RolloutState::Inconclusive { .. } | RolloutState::Paused { .. }
        )
    };
    loop {
        t += rng.gap(rate);
        if t >= max_s {
            decisions.extend(rollout.tick(max_s));
            break;
        }
        decisions.extend(rollout.tick(t));
        if rollout.state().is_terminal() || waiting_for_a_human(&rollout) {
            break;
        }
        let w = f64::from(rollout.weights().canary) / 100.0;
        let (arm, model) = if rng.uniform() < w {
            canary_requests += 1;
            (Arm::Canary, canary(t))
        } else {
            (Arm::Stable, BASE)
        };
        rollout.observe(&request_labelled(&mut rng, t, arm, model, label_share));
        requests += 1;
    }
    let end_s = decisions.last().map_or(t.min(max_s), |d| d.time);
    RunResult {
        decisions,
        final_state: rollout.state().clone(),
        requests,
        canary_requests,
        end_s,
    }
}

/// Drives a rollout with `rate` requests/s split by the rollout's weight, ticking before every
/// request, until it ends or `max_s` passes (every request labelled).
pub fn simulate(
    seed: u64,
    spec: AnalysisSpec,
    steps: Vec<StepSpec>,
    triggers: Vec<TriggerSpec>,
    (_stable, canary): (ArmModel, ArmModel),
    rate: f64,
    max_s: f64,
) -> RunResult {
    let rollout = Rollout::new(spec, steps, triggers);
    run_closed_loop(seed, rollout, rate, &|_| canary, 1.0, max_s)
}
