//! What the judge reads: cumulative per-arm evidence since the analysis started.
//!
//! Contract: bounded memory whatever the traffic. Per arm (stable and canary only; mirror and
//! shadow samples are compared through [`crate::labels::LabelJoin`] and recorded here as
//! agreement): the [`ArmWindow`] summary (histogram, log-latency moments, error counts), a
//! latency [`Reservoir`] of at most [`RESERVOIR_CAPACITY`] values for rank tests, accuracy
//! counters over labelled predictions, the Brier score's moments and a 10-bin score histogram
//! for PSI. Everything is serde so a persisted rollout resumes with the same evidence.

use augur_model::{Arm, Sample};
use serde::{Deserialize, Serialize};

use crate::stats::moments::Moments;
use crate::window::ArmWindow;

use super::transient::{Quantity, Transients};

/// The most latencies kept per arm for rank tests (uniform reservoir sample, Vitter's
/// Algorithm R): 2,048 values, 16 KiB per arm.
pub const RESERVOIR_CAPACITY: usize = 2048;

/// Bins of the score histogram used for PSI (equal width on `[0, 1]`).
pub const SCORE_BINS: usize = 10;

/// A uniform sample of at most [`RESERVOIR_CAPACITY`] values with a seeded generator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reservoir {
    values: Vec<f64>,
    seen: u64,
    rng: u64,
}

impl Reservoir {
    /// Offers one value (non-finite values are ignored).
    pub fn offer(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.seen += 1;
        if self.values.len() < RESERVOIR_CAPACITY {
            self.values.push(value);
            return;
        }
        let slot = splitmix64(&mut self.rng) % self.seen;
        if let Some(v) = self.values.get_mut(slot as usize) {
            *v = value;
        }
    }

    /// The kept values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// How many values were offered.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny deterministic generator.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One arm's evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmEvidence {
    /// Requests, errors, latency histogram and log-latency moments.
    pub window: ArmWindow,
    /// A bounded uniform sample of latencies (ms).
    pub reservoir: Reservoir,
    /// Predictions joined with a ground-truth label.
    pub labelled: u64,
    /// Of those, the correct ones.
    pub correct: u64,
    /// Moments of `(score − 1{truth = positive})²` over labelled predictions with a score.
    pub brier: Moments,
    /// Predictions compared with the shadow's answer to the same request.
    pub compared: u64,
    /// Of those, the ones the shadow agreed with.
    pub agreed: u64,
    /// Counts of scores in [`SCORE_BINS`] equal bins of `[0, 1]`.
    pub scores: [u64; SCORE_BINS],
}

impl ArmEvidence {
    /// Records a request (and its inline ground truth, when present).
    pub fn record(&mut self, sample: &Sample, positive_label: &str) {
        self.window.record(sample);
        self.reservoir.offer(sample.latency_ms);
        if let Some(score) = sample.score.filter(|s| s.is_finite()) {
            let bin = ((score.clamp(0.0, 1.0) * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1);
            self.scores[bin] += 1;
        }
        if let Some(truth) = &sample.truth {
            self.record_labelled(sample.label.as_deref(), sample.score, truth, positive_label);
        }
    }

    /// Records a prediction joined with its ground-truth label.
    pub fn record_labelled(
        &mut self,
        label: Option<&str>,
        score: Option<f64>,
        truth: &str,
        positive_label: &str,
    ) {
        if let Some(label) = label {
            self.labelled += 1;
            self.correct += u64::from(label == truth);
        }
        if let Some(score) = score.filter(|s| s.is_finite()) {
            let y = if truth == positive_label { 1.0 } else { 0.0 };
            self.brier.push((score.clamp(0.0, 1.0) - y).powi(2));
        }
    }

    /// Records whether the shadow agreed with this arm's prediction.
    pub fn record_agreement(&mut self, agreed: bool) {
        self.compared += 1;
        self.agreed += u64::from(agreed);
    }
}

/// Stable's and the canary's evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The control.
    pub stable: ArmEvidence,
    /// The experiment.
    pub canary: ArmEvidence,
    /// The worst short windows of the rates ([`super::transient`]).
    #[serde(default)]
    pub transients: Transients,
}

impl Evidence {
    /// Empty evidence whose rates leave bursts up to `transient_s` seconds out of a Fail.
    pub fn new(transient_s: f64) -> Self {
        Evidence {
            transients: Transients::new(transient_s),
            ..Evidence::default()
        }
    }

    /// Records a labelled prediction of `arm` at `t` (a delayed label).
    pub fn record_labelled(
        &mut self,
        arm: Arm,
        label: Option<&str>,
        score: Option<f64>,
        truth: &str,
        positive_label: &str,
        t: f64,
    ) {
        let Some(e) = self.arm_mut(arm) else {
            return;
        };
        e.record_labelled(label, score, truth, positive_label);
        if let Some(label) = label {
            self.transients
                .record(Quantity::Correct, arm, label == truth, t);
        }
    }

    /// Records whether the shadow agreed with `arm`'s prediction at `t`.
    pub fn record_agreement(&mut self, arm: Arm, agreed: bool, t: f64) {
        let Some(e) = self.arm_mut(arm) else {
            return;
        };
        e.record_agreement(agreed);
        self.transients.record(Quantity::Agreed, arm, agreed, t);
    }

    /// Records a tally of labelled and compared predictions: counts and Brier moments at once,
    /// the burst windows event by event over the tally's span.
    pub fn record_tally(&mut self, tally: &crate::tally::Tally) {
        let arm = tally.arm;
        let Some(e) = self.arm_mut(arm) else {
            return;
        };
        e.labelled += tally.labelled;
        e.correct += tally.correct.min(tally.labelled);
        e.brier.merge(&tally.brier());
        e.compared += tally.compared;
        e.agreed += tally.agreed.min(tally.compared);
        let (from, to) = (tally.from, tally.to);
        for (t, hit) in crate::tally::spread(tally.labelled, tally.correct, from, to) {
            self.transients.record(Quantity::Correct, arm, hit, t);
        }
        for (t, hit) in crate::tally::spread(tally.compared, tally.agreed, from, to) {
            self.transients.record(Quantity::Agreed, arm, hit, t);
        }
    }

    /// The evidence of `arm`, or `None` for mirror and shadow.
    pub fn arm_mut(&mut self, arm: Arm) -> Option<&mut ArmEvidence> {
        match arm {
            Arm::Stable => Some(&mut self.stable),
            Arm::Canary => Some(&mut self.canary),
            Arm::Mirror | Arm::Shadow => None,
        }
    }

    /// Records a stable or canary request; other arms are ignored.
    pub fn record(&mut self, sample: &Sample, positive_label: &str) {
        let Some(arm) = self.arm_mut(sample.arm) else {
            return;
        };
        arm.record(sample, positive_label);
        let (a, t) = (sample.arm, sample.t);
        self.transients
            .record(Quantity::Errors, a, sample.is_error(), t);
        if let (Some(label), Some(truth)) = (&sample.label, &sample.truth) {
            self.transients
                .record(Quantity::Correct, a, label == truth, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoir_is_bounded_and_deterministic() {
        let (mut a, mut b) = (Reservoir::default(), Reservoir::default());
        for i in 0..10_000 {
            a.offer(i as f64);
            b.offer(i as f64);
        }
        assert_eq!(a.values().len(), RESERVOIR_CAPACITY);
        assert_eq!(a.seen(), 10_000);
        assert_eq!(a, b);
        // a uniform sample: about a fifth of the kept values come from the last fifth.
        let late = a.values().iter().filter(|&&v| v >= 8_000.0).count();
        assert!((300..520).contains(&late), "{late}");
    }
}
