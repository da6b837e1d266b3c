//! Agreement with the shadow model: each stable or canary prediction joined by request id with
//! the shadow model's answer to the same request (in either order), counted per arm, and shown
//! as a rate with its 95% Wilson interval. It is measured whatever the canary's weight, so a
//! shadow-only policy, or a rollout whose canary has 0%, still shows stable's agreement.

use augur_analyzer::labels::LabelJoin;
use augur_model::{Arm, Sample};
use serde::{Deserialize, Serialize};

/// Predictions (or shadow answers) waiting for their other half, at most.
pub const MAX_PENDING: usize = 16_384;

/// Confidence of [`Agreement::ci95`].
const CONFIDENCE: f64 = 0.95;

/// How long a prediction (or an early shadow answer) waits for the other, seconds.
const JOIN_TTL_S: f64 = 300.0;

/// Joins predictions with shadow answers by request id, in either order (the analyzer's
/// [`LabelJoin`]), and counts them per arm; memory bounded by [`MAX_PENDING`] and the TTL.
#[derive(Debug)]
pub struct AgreementJoin {
    join: LabelJoin,
    /// Compared and agreed predictions, stable then canary.
    compared: [u64; 2],
    agreed: [u64; 2],
}

impl Default for AgreementJoin {
    fn default() -> Self {
        Self {
            join: LabelJoin::new(JOIN_TTL_S, MAX_PENDING),
            compared: [0, 0],
            agreed: [0, 0],
        }
    }
}

impl AgreementJoin {
    /// Nothing compared yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a sample: a labelled stable or canary prediction, or a shadow (mirror) answer;
    /// samples without a request id or label are ignored.
    pub fn observe(&mut self, sample: &Sample) {
        let joined = match sample.arm {
            Arm::Stable | Arm::Canary => self.join.record_prediction_or_join(sample, sample.t),
            Arm::Shadow | Arm::Mirror => match (&sample.request_id, &sample.label) {
                (Some(id), Some(label)) => self.join.answer(id, label, sample.t),
                _ => None,
            },
        };
        if let Some(j) = joined {
            let i = usize::from(j.prediction.arm == Arm::Canary);
            self.compared[i] += 1;
            self.agreed[i] += u64::from(j.prediction.label.as_deref() == Some(j.truth.as_str()));
        }
    }

    /// `(compared, agreed)` of `arm` (stable or canary) so far.
    pub fn counts(&self, arm: Arm) -> (u64, u64) {
        let i = usize::from(arm == Arm::Canary);
        (self.compared[i], self.agreed[i])
    }

    /// Predictions waiting for their shadow answer.
    pub fn pending(&self) -> usize {
        self.join.pending()
    }
}

/// One arm's agreement with the shadow, as `GET /rollouts` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Predictions compared with the shadow's answer to the same request.
    pub compared: u64,
    /// Of those, the ones where the shadow gave the same label.
    pub agreed: u64,
    /// `agreed / compared`, when anything was compared.
    pub rate: Option<f64>,
    /// The rate's 95% Wilson interval `[lower, upper]` (one look; not adjusted for looking
    /// again), when anything was compared.
    pub ci95: Option<[f64; 2]>,
}

impl Agreement {
    /// The agreement of `agreed` out of `compared`.
    pub fn of(compared: u64, agreed: u64) -> Self {
        let agreed = agreed.min(compared);
        let ci95 =
            augur_analyzer::stats::proportions::wilson_interval(agreed, compared, CONFIDENCE)
                .ok()
                .and_then(|i| Some([i.lower?, i.upper?]));
        Self {
            compared,
            agreed,
            rate: (compared > 0).then(|| agreed as f64 / compared as f64),
            ci95,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(arm: Arm, id: &str, label: &str) -> Sample {
        Sample {
            request_id: Some(id.to_owned()),
            label: Some(label.to_owned()),
            ..Sample::new(1.0, arm, 200, 1.0)
        }
    }

    #[test]
    fn answers_join_in_either_order_per_arm() {
        let mut j = AgreementJoin::new();
        j.observe(&sample(Arm::Stable, "a", "NORMAL"));
        j.observe(&sample(Arm::Shadow, "a", "NORMAL"));
        j.observe(&sample(Arm::Shadow, "b", "PNEUMONIA"));
        j.observe(&sample(Arm::Stable, "b", "NORMAL"));
        j.observe(&sample(Arm::Canary, "c", "PNEUMONIA"));
        j.observe(&sample(Arm::Shadow, "c", "PNEUMONIA"));
        // a prediction without a shadow answer is not compared
        j.observe(&sample(Arm::Stable, "d", "NORMAL"));
        assert_eq!(j.counts(Arm::Stable), (2, 1));
        assert_eq!(j.counts(Arm::Canary), (1, 1));
        assert_eq!(j.pending(), 1);
    }

    #[test]
    fn the_rate_comes_with_its_wilson_interval() {
        // 40 of 50: Wilson 95% interval [0.6696, 0.8876] (z = 1.96).
        let a = Agreement::of(50, 40);
        assert_eq!(a.rate, Some(0.8));
        let [lo, hi] = a.ci95.expect("an interval");
        assert!(
            (lo - 0.6696).abs() < 1e-3 && (hi - 0.8876).abs() < 1e-3,
            "{lo} {hi}"
        );
        let none = Agreement::of(0, 0);
        assert_eq!((none.rate, none.ci95), (None, None));
        assert_eq!(Agreement::of(10, 10).ci95.map(|c| c[1]), Some(1.0));
    }

    #[test]
    fn memory_is_bounded() {
        let mut j = AgreementJoin::new();
        for i in 0..(MAX_PENDING + 10) {
            j.observe(&sample(Arm::Stable, &i.to_string(), "NORMAL"));
        }
        assert!(j.pending() <= MAX_PENDING);
    }
}
