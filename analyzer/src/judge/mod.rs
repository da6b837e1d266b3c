//! The judge: one [`Verdict`] per metric, canary against stable, from the cumulative evidence.
//!
//! Contract: [`Judge::evaluate`] is called once per analysis interval with the evidence gathered
//! since the analysis started and dispatches each metric to its module by kind and method.
//! With the sequential method (the default) a verdict is **evidence**: **Pass** means the
//! metric's anytime-valid bound of `canary − stable` lies inside its allowed change, **Fail**
//! that the bound on the other side lies beyond it, **Inconclusive** that neither is shown yet
//! (keep collecting), and below `min_samples` a metric is **NoData**, never a silent pass or
//! fail ([`bound`]). The spec's `alpha` is the rollout-wide budget of each wrong call: each of
//! the `m` metrics decided by a test is judged at `alpha / m` per side (Bonferroni), so the
//! probability that *any* metric fails a canary within its allowances over the whole rollout is
//! ≤ `alpha`, and a canary beyond its allowance on a metric passes that metric with probability
//! ≤ `alpha / m`, however often the judge looks. With Kayenta scoring configured,
//! [`Judge::score`] adds the aggregate verdict.
//!
//! - [`evidence`]: the bounded per-arm inputs;
//! - [`latency`], [`rates`], [`distribution`]: the metric judges;
//! - [`bound`], [`margin`]: the three-way decision and the allowed differences;
//! - [`scoring`]: Kayenta's weighted score.

pub mod bound;
pub mod distribution;
pub mod evidence;
pub mod latency;
pub mod margin;
pub mod rates;
pub mod scoring;
pub mod transient;

use serde::{Deserialize, Serialize};

use crate::spec::{AnalysisSpec, MetricKind};
use crate::verdict::Verdict;

pub use evidence::{ArmEvidence, Evidence, Reservoir, RESERVOIR_CAPACITY};
use rates::RateCounts;
use transient::Quantity;

/// The judge between looks. The confidence sequences need no state beyond the evidence; the
/// judge counts its looks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Judge {
    #[serde(default)]
    looks: u64,
}

impl Judge {
    /// A judge before any look.
    pub fn new() -> Self {
        Self::default()
    }

    /// One look: a verdict per metric of `spec`, in the spec's order.
    pub fn evaluate(&mut self, spec: &AnalysisSpec, evidence: &Evidence) -> Vec<Verdict> {
        self.looks += 1;
        let tested = spec
            .metrics
            .iter()
            .filter(|m| m.kind != MetricKind::PredictionDrift)
            .count()
            .max(1);
        let mut per_metric = spec.clone();
        per_metric.alpha = spec.alpha / tested as f64;
        let spec = &per_metric;
        spec.metrics
            .iter()
            .map(|metric| {
                let (s, c) = (&evidence.stable, &evidence.canary);
                let up = metric.direction == crate::spec::Direction::Increase;
                let worst = |q: Quantity| {
                    let w = evidence.transients.worst(q, up);
                    RateCounts {
                        x_stable: w.x_stable,
                        n_stable: w.n_stable,
                        x_canary: w.x_canary,
                        n_canary: w.n_canary,
                    }
                };
                let mut verdict = match metric.kind {
                    MetricKind::Latency { quantile } => {
                        latency::judge_latency(metric, quantile, spec, evidence)
                    }
                    MetricKind::LatencyShift => latency::judge_shift(metric, spec, evidence),
                    MetricKind::ErrorRate => rates::judge_rate(
                        metric,
                        spec,
                        RateCounts {
                            x_stable: s.window.errors,
                            n_stable: s.window.requests,
                            x_canary: c.window.errors,
                            n_canary: c.window.requests,
                        },
                        worst(Quantity::Errors),
                    ),
                    MetricKind::Accuracy => rates::judge_rate(
                        metric,
                        spec,
                        RateCounts {
                            x_stable: s.correct,
                            n_stable: s.labelled,
                            x_canary: c.correct,
                            n_canary: c.labelled,
                        },
                        worst(Quantity::Correct),
                    ),
                    MetricKind::ShadowAgreement => rates::judge_rate(
                        metric,
                        spec,
                        RateCounts {
                            x_stable: s.agreed,
                            n_stable: s.compared,
                            x_canary: c.agreed,
                            n_canary: c.compared,
                        },
                        worst(Quantity::Agreed),
                    ),
                    MetricKind::PredictionDrift => {
                        distribution::judge_drift(metric, spec, evidence)
                    }
                    MetricKind::Calibration => {
                        distribution::judge_calibration(metric, spec, evidence)
                    }
                };
                verdict.critical = metric.critical;
                verdict
            })
            .collect()
    }

    /// Looks taken so far.
    pub fn looks(&self) -> u64 {
        self.looks
    }

    /// The Kayenta aggregate verdict, when the spec configures scoring.
    pub fn score(spec: &AnalysisSpec, verdicts: &[Verdict]) -> Option<Verdict> {
        spec.scoring
            .as_ref()
            .map(|scoring| scoring::kayenta_score(spec, scoring, verdicts))
    }
}
