//! The judge: one [`Verdict`] per metric, canary against stable, from the cumulative evidence.
//!
//! Contract: [`Judge::evaluate`] is called once per analysis interval with the evidence gathered
//! since the analysis started; it dispatches each metric to its module by kind and method, keeps
//! the per-metric sequential state between looks (so the sequential tests stay anytime-valid),
//! and marks critical metrics. Below `min_samples` a metric is NoData, never a silent pass or
//! fail. The spec's `alpha` is the rollout-wide false-failure budget: each of the `m` metrics
//! decided by a test is judged at `alpha / m` (Bonferroni), so the probability that *any* metric
//! fails an unchanged canary over the whole rollout stays ≤ `alpha` for the sequential method. With Kayenta scoring configured, [`Judge::score`] adds the aggregate verdict.
//!
//! - [`evidence`]: the bounded per-arm inputs;
//! - [`latency`], [`rates`], [`distribution`]: the metric judges;
//! - [`sequential`], [`margin`]: the mSPRT bookkeeping and the allowed differences;
//! - [`scoring`]: Kayenta's weighted score.

pub mod distribution;
pub mod evidence;
pub mod latency;
pub mod margin;
pub mod rates;
pub mod scoring;
pub mod sequential;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{AnalysisSpec, MetricKind};
use crate::verdict::Verdict;

pub use evidence::{ArmEvidence, Evidence, Reservoir, RESERVOIR_CAPACITY};
use rates::RateCounts;
use sequential::SequentialState;

/// The judge's state between looks: each metric's sequential test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Judge {
    sequential: BTreeMap<String, SequentialState>,
}

impl Judge {
    /// A judge before any look.
    pub fn new() -> Self {
        Self::default()
    }

    /// One look: a verdict per metric of `spec`, in the spec's order.
    pub fn evaluate(&mut self, spec: &AnalysisSpec, evidence: &Evidence) -> Vec<Verdict> {
        let tested = spec
            .metrics
            .iter()
            .filter(|m| {
                !matches!(
                    m.kind,
                    MetricKind::PredictionDrift | MetricKind::Calibration
                )
            })
            .count()
            .max(1);
        let mut per_metric = spec.clone();
        per_metric.alpha = spec.alpha / tested as f64;
        let spec = &per_metric;
        spec.metrics
            .iter()
            .map(|metric| {
                let state = self.sequential.entry(metric.name.clone()).or_default();
                let (s, c) = (&evidence.stable, &evidence.canary);
                let mut verdict = match metric.kind {
                    MetricKind::Latency { quantile } => {
                        latency::judge_latency(metric, quantile, spec, evidence, state)
                    }
                    MetricKind::ErrorRate => rates::judge_rate(
                        metric,
                        spec,
                        RateCounts {
                            x_stable: s.window.errors,
                            n_stable: s.window.requests,
                            x_canary: c.window.errors,
                            n_canary: c.window.requests,
                        },
                        state,
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
                        state,
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
                        state,
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

    /// The Kayenta aggregate verdict, when the spec configures scoring.
    pub fn score(spec: &AnalysisSpec, verdicts: &[Verdict]) -> Option<Verdict> {
        spec.scoring
            .as_ref()
            .map(|scoring| scoring::kayenta_score(spec, scoring, verdicts))
    }
}
