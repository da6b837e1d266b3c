//! The analyzer's own plain configuration types: what to measure, how to judge it, the rollout
//! steps and the rollback triggers.
//!
//! Contract: these types are the analyzer's input vocabulary and do not depend on the policy
//! crate; the rollout crate maps a CanaryPolicy onto them. The names of what is measured
//! ([`MetricKind`], [`Direction`], [`TriggerMetric`]) are `augur-model`'s, shared with the
//! policy crate. Every default lives here, in one place ([`AnalysisSpec::default`],
//! [`MetricSpec::new`], [`default_triggers`]). Argo Rollouts semantics for the limits
//! (`failureLimit` 0, `inconclusiveLimit` 0, `consecutiveErrorLimit` 4;
//! `argo-rollouts:pkg/apis/rollouts/v1alpha1/analysis_types.go`) and Kayenta's scoring
//! thresholds (pass/marginal, `kayenta-core CanaryClassifierThresholdsConfig`).

pub use augur_model::metric::{Direction, MetricKind, TriggerMetric};
use serde::{Deserialize, Serialize};

/// How much worse than stable the canary may be before it fails.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allowed {
    /// An absolute difference in the metric's unit (a rate, a PSI, a Brier score).
    Absolute(f64),
    /// A relative difference, e.g. 0.1 for 10% (latency, and rates as a share of stable's).
    Relative(f64),
}

/// The statistical method for comparative metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Anytime-valid mSPRT (the default): safe to look at every interval.
    Sequential,
    /// Fixed-horizon tests (Mann-Whitney + Hodges-Lehmann 98% CI, z / Fisher), Kayenta style.
    MannWhitney,
    /// Point comparison of quantiles and rates against the allowed difference, no test.
    Threshold,
}

/// What to do when a metric has no data, or a verdict is inconclusive, past its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapAction {
    /// Pause the rollout for a human.
    Hold,
    /// Roll back.
    Rollback,
    /// Carry on, recording the gap in the decision.
    Continue,
}

/// One judged metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    /// The metric's name, unique in the analysis.
    pub name: String,
    /// What is measured.
    pub kind: MetricKind,
    /// Which change is bad.
    pub direction: Direction,
    /// The tolerated change.
    pub allowed: Allowed,
    /// A critical metric's failure rolls back at once, ignoring `failure_limit`.
    pub critical: bool,
    /// Kayenta scoring group (default: the metric's own name).
    pub group: Option<String>,
    /// The mixing scale `τ` of the confidence sequence in the tested quantity's unit; `None`
    /// picks [`MetricSpec::tau_for`].
    pub tau: Option<f64>,
}

impl MetricSpec {
    /// A metric with the usual direction and a zero tolerance for its kind, not critical.
    pub fn new(name: &str, kind: MetricKind) -> Self {
        let direction = kind.default_direction();
        let allowed = match kind {
            MetricKind::PredictionDrift => Allowed::Absolute(0.2),
            MetricKind::Calibration => Allowed::Absolute(0.02),
            MetricKind::Latency { .. } | MetricKind::LatencyShift => Allowed::Relative(0.0),
            _ => Allowed::Absolute(0.0),
        };
        MetricSpec {
            name: name.to_owned(),
            kind,
            direction,
            allowed,
            critical: false,
            group: None,
            tau: None,
        }
    }

    /// The mixing scale `τ` for an allowance `theta0` (in the tested unit): the configured one,
    /// else the allowance itself, so that the bound is tightest where the decision is made
    /// ([`crate::stats::confseq`]), with a floor per kind for a zero allowance: 0.05 for
    /// log-latency, 0.025 for a quantile's tail share, 0.005 for error rate and Brier score,
    /// 0.01 for accuracy and agreement.
    pub fn tau_for(&self, theta0: f64) -> f64 {
        if let Some(t) = self.tau.filter(|t| t.is_finite() && *t > 0.0) {
            return t;
        }
        let floor = match self.kind {
            MetricKind::LatencyShift => 0.05,
            MetricKind::Latency { .. } => 0.025,
            MetricKind::ErrorRate | MetricKind::Calibration => 0.005,
            _ => 0.01,
        };
        if theta0.is_finite() {
            theta0.abs().max(floor)
        } else {
            floor
        }
    }
}

/// Kayenta-compatible scoring: the weighted share of passing metrics per group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoringSpec {
    /// Group weights (totalling 100); groups not listed share the rest equally.
    pub group_weights: Vec<(String, f64)>,
    /// A score at or above this passes (Argo's example: 90).
    pub pass: f64,
    /// A score at or above this (and below `pass`) is marginal, i.e. inconclusive (75).
    pub marginal: f64,
}

/// The analysis: metrics, method, confidence and Argo-style limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSpec {
    /// The judged metrics.
    pub metrics: Vec<MetricSpec>,
    /// The method for comparative metrics.
    pub method: Method,
    /// The false-rollback probability (sequential) or per-look level (fixed).
    pub alpha: f64,
    /// Samples per arm (labelled samples for accuracy/calibration) below which a metric is NoData
    /// (reported as such, and waited for like an undecided metric).
    pub min_samples: u64,
    /// Share of predictions (0–1) that must have a ground-truth label for accuracy and
    /// calibration to be judged; below it they are NoData.
    #[serde(default)]
    pub min_label_rate: f64,
    /// Seconds between analysis looks.
    pub interval_s: f64,
    /// A burst shorter than this (seconds) is not held against the canary by the analysis: a
    /// rate metric's Fail rests on the evidence outside its worst such window
    /// ([`crate::judge::transient`]); bursts are the triggers' business. 0 disables.
    #[serde(default = "default_transient_s")]
    pub transient_s: f64,
    /// Failed looks tolerated before rolling back (Argo default 0); `None` never rolls back on
    /// failed looks (a critical metric's failure still does).
    #[serde(deserialize_with = "failure_limit_compat")]
    pub failure_limit: Option<u64>,
    /// How long an analysis gate waits for its metrics to be shown within their allowances,
    /// seconds; `None` waits without bound. Reaching it is one inconclusive measurement.
    #[serde(default)]
    pub max_duration_s: Option<f64>,
    /// Inconclusive measurements (gate periods of `max_duration_s` without a decision, or
    /// Kayenta-marginal scores) tolerated before `on_inconclusive` applies; each re-arms the
    /// gate for another period (Argo default 0).
    pub inconclusive_limit: i64,
    /// Consecutive looks at which a metric received no new sample in one of the arms (no
    /// traffic, or a failing metric source) before `on_no_data` applies (Argo's
    /// `consecutiveErrorLimit`, default 4). Too few samples while they keep arriving is not an
    /// error: the metric is NoData and the gate waits, within `max_duration_s`.
    pub consecutive_error_limit: i64,
    /// What a metric without new data past its limit does; `Continue` also lets an Analysis step
    /// pass over a NoData metric.
    pub on_no_data: GapAction,
    /// What an inconclusive gate past its limit does: `Hold` pauses it for a human (state
    /// Inconclusive), `Rollback` rolls back, `Continue` goes on to the next step.
    pub on_inconclusive: GapAction,
    /// Kayenta-compatible scoring instead of per-metric verdicts, when set.
    pub scoring: Option<ScoringSpec>,
    /// The label counted as positive for the Brier score.
    pub positive_label: String,
    /// Seconds a prediction waits for its ground-truth label (or shadow answer).
    pub label_ttl_s: f64,
}

impl Default for AnalysisSpec {
    /// p95 latency, error rate and accuracy, sequential at α = 0.05, 100 samples, 60 s looks.
    fn default() -> Self {
        AnalysisSpec {
            metrics: vec![
                MetricSpec::new("latency-p95", MetricKind::Latency { quantile: 0.95 }),
                MetricSpec::new("error-rate", MetricKind::ErrorRate),
                MetricSpec::new("accuracy", MetricKind::Accuracy),
            ],
            method: Method::Sequential,
            alpha: 0.05,
            min_samples: 100,
            min_label_rate: 0.0,
            interval_s: 60.0,
            transient_s: default_transient_s(),
            failure_limit: Some(0),
            max_duration_s: None,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            on_no_data: GapAction::Hold,
            on_inconclusive: GapAction::Hold,
            scoring: None,
            positive_label: "PNEUMONIA".to_owned(),
            label_ttl_s: 3600.0,
        }
    }
}

fn default_transient_s() -> f64 {
    crate::judge::transient::DEFAULT_WINDOW_S
}

/// Reads `failure_limit` also as persisted before it was an `Option`, when a negative number
/// meant "no limit".
fn failure_limit_compat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.and_then(|n| u64::try_from(n).ok()))
}

/// One step of a rollout (Argo Rollouts' canary steps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepSpec {
    /// Send this percentage of traffic to the canary.
    SetWeight(u8),
    /// Wait `duration_s`, or until promoted when `None`.
    Pause {
        /// Seconds to wait; `None` waits for a manual promote.
        duration_s: Option<f64>,
    },
    /// Block until the analysis passes (a gate); a failure rolls back.
    Analysis,
    /// Route requests matching the named header route to the canary.
    SetHeaderRoute {
        /// The managed route's name.
        name: String,
    },
    /// Remove the named header route (Argo's `setHeaderRoute` without `match`).
    RemoveHeaderRoute {
        /// The managed route's name.
        name: String,
    },
    /// Mirror a percentage of traffic to the canary through the named route.
    SetMirrorRoute {
        /// The managed route's name.
        name: String,
        /// The mirrored percentage.
        percent: u8,
    },
}

impl std::fmt::Display for StepSpec {
    /// The step as a policy author wrote it, e.g. `setWeight 20%` or `pause 45s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepSpec::SetWeight(w) => write!(f, "setWeight {w}%"),
            StepSpec::Pause {
                duration_s: Some(d),
            } => write!(f, "pause {}", crate::rollout::format_seconds(*d)),
            StepSpec::Pause { duration_s: None } => f.write_str("pause (until promoted)"),
            StepSpec::Analysis => f.write_str("analysis"),
            StepSpec::SetHeaderRoute { name } => write!(f, "setHeaderRoute {name}"),
            StepSpec::RemoveHeaderRoute { name } => {
                write!(f, "setHeaderRoute {name} without match (removes it)")
            }
            StepSpec::SetMirrorRoute { name, percent } => {
                write!(f, "setMirrorRoute {name} {percent}%")
            }
        }
    }
}

/// When a trigger's condition holds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerCondition {
    /// The canary's value is above this (a rate as a fraction, or ms).
    Above(f64),
    /// The canary's value is below stable's by more than this (fraction, 0.05 = 5 points).
    DropBy(f64),
    /// The canary's value is above stable's by more than this many ms (or rate units).
    IncreaseBy(f64),
}

/// What a fired trigger does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerAction {
    /// Canary weight 0, routes and mirrors removed.
    Immediate,
    /// Halve the canary weight and observe for one trigger window; restore the weight only when
    /// the data since the halving shows the condition cleared (at most once per trigger and
    /// rollout), otherwise finish the rollback.
    Staged,
    /// Canary weight 0, mirror and shadow kept.
    CanaryOnly,
}

/// A rollback trigger over a sliding time window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriggerSpec {
    /// The trigger's name, reported in the decision.
    pub name: String,
    /// The watched metric.
    pub metric: TriggerMetric,
    /// The condition.
    pub condition: TriggerCondition,
    /// The window the condition must hold over, seconds.
    pub window_s: f64,
    /// What firing does.
    pub action: TriggerAction,
    /// Canary samples (labelled ones for accuracy) needed in the window.
    pub min_samples: u64,
    /// The false-firing budget: the probability per hour that the trigger fires on a canary that
    /// does not meet its condition (checked once a second, each check at `alpha / 3600`).
    #[serde(default = "default_trigger_alpha")]
    pub alpha: f64,
}

/// The default false-firing budget of a trigger: 1% per hour.
pub const DEFAULT_TRIGGER_ALPHA: f64 = 0.01;

fn default_trigger_alpha() -> f64 {
    DEFAULT_TRIGGER_ALPHA
}

/// The seed triggers: error rate > 10% for 2 m → immediate; accuracy −5 points for 5 m →
/// staged; p95 +500 ms for 3 m → canary only; each needing 20 samples in its window and firing
/// falsely at most 1% of hours.
pub fn default_triggers() -> Vec<TriggerSpec> {
    vec![
        TriggerSpec {
            name: "error-rate-above-10pct".to_owned(),
            metric: TriggerMetric::ErrorRate,
            condition: TriggerCondition::Above(0.10),
            window_s: 120.0,
            action: TriggerAction::Immediate,
            min_samples: 20,
            alpha: DEFAULT_TRIGGER_ALPHA,
        },
        TriggerSpec {
            name: "accuracy-drop-5-points".to_owned(),
            metric: TriggerMetric::Accuracy,
            condition: TriggerCondition::DropBy(0.05),
            window_s: 300.0,
            action: TriggerAction::Staged,
            min_samples: 20,
            alpha: DEFAULT_TRIGGER_ALPHA,
        },
        TriggerSpec {
            name: "p95-latency-plus-500ms".to_owned(),
            metric: TriggerMetric::LatencyP95,
            condition: TriggerCondition::IncreaseBy(500.0),
            window_s: 180.0,
            action: TriggerAction::CanaryOnly,
            min_samples: 20,
            alpha: DEFAULT_TRIGGER_ALPHA,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rollout persisted while the limit was an `i64` (negative: none) resumes with the same
    /// limit.
    #[test]
    fn a_persisted_failure_limit_reads_as_before() {
        let spec = serde_json::to_value(AnalysisSpec::default()).expect("serializes");
        let read = |limit: serde_json::Value| {
            let mut json = spec.clone();
            json["failure_limit"] = limit;
            serde_json::from_value::<AnalysisSpec>(json)
                .expect("reads")
                .failure_limit
        };
        assert_eq!(read(serde_json::json!(3)), Some(3));
        assert_eq!(read(serde_json::json!(0)), Some(0));
        assert_eq!(read(serde_json::json!(-1)), None);
        assert_eq!(read(serde_json::Value::Null), None);
        assert_eq!(spec["failure_limit"], 0);
    }
}
