//! What a rollout measures: the kinds of metric an analysis judges, which change of them is bad,
//! and the metrics a rollback trigger watches.
//!
//! The policy crate validates these from a CanaryPolicy and the analyzer judges them; one
//! definition here keeps the two from drifting apart. The serde form is snake_case
//! (`error_rate`, `latency_p95`): the analyzer's persisted state and recordings use it. A policy
//! file spells the same names in camelCase (`errorRate`) through the policy crate's own raw
//! types, which its JSON Schema is generated from.

use serde::{Deserialize, Serialize};

/// What a metric measures.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A latency quantile, e.g. p95. The sequential method tests the quantile itself: the share
    /// of canary requests slower than `(1 + allowed)` × stable's quantile against `1 − quantile`
    /// (a tail-only regression with an unchanged median is seen). The Mann-Whitney method
    /// compares the whole distributions (Kayenta's judge); the threshold method the point values.
    Latency {
        /// The quantile, in (0, 1), e.g. 0.95.
        quantile: f64,
    },
    /// The shift of the whole latency distribution: the difference of the arms' mean
    /// `ln(latency)`, i.e. the ratio of their geometric means (a multiplicative slowdown).
    LatencyShift,
    /// Share of failed requests (5xx or no response).
    ErrorRate,
    /// Share of predictions equal to the delayed ground-truth label.
    Accuracy,
    /// Share of an arm's predictions that the shadow model (or mirror) agrees with.
    ShadowAgreement,
    /// Population stability index between the arms' score histograms.
    PredictionDrift,
    /// Brier score of the positive-class score against the ground truth.
    Calibration,
}

impl MetricKind {
    /// The change that is bad when a policy names none: a decrease for accuracy and agreement,
    /// an increase for everything else.
    pub const fn default_direction(self) -> Direction {
        match self {
            MetricKind::Accuracy | MetricKind::ShadowAgreement => Direction::Decrease,
            _ => Direction::Increase,
        }
    }

    /// The snake_case name, without a latency's quantile: the value of the `kind` label on the
    /// rollout metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Latency { .. } => "latency",
            MetricKind::LatencyShift => "latency_shift",
            MetricKind::ErrorRate => "error_rate",
            MetricKind::Accuracy => "accuracy",
            MetricKind::ShadowAgreement => "shadow_agreement",
            MetricKind::PredictionDrift => "prediction_drift",
            MetricKind::Calibration => "calibration",
        }
    }
}

/// Which change of the canary against stable is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// An increase is bad (latency, error rate, drift, Brier score).
    Increase,
    /// A decrease is bad (accuracy, agreement).
    Decrease,
}

/// The metric a rollback trigger watches (on the canary, or canary vs stable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMetric {
    /// Share of failed requests.
    ErrorRate,
    /// Share of correct predictions among labelled ones.
    Accuracy,
    /// Median latency.
    LatencyP50,
    /// 95th percentile latency.
    LatencyP95,
    /// 99th percentile latency.
    LatencyP99,
    /// Share of predictions the shadow agrees with.
    ShadowAgreement,
}

impl TriggerMetric {
    /// Whether the metric is a latency (its thresholds are durations, not rates).
    pub const fn is_latency(self) -> bool {
        matches!(
            self,
            TriggerMetric::LatencyP50 | TriggerMetric::LatencyP95 | TriggerMetric::LatencyP99
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).expect("serializes")
    }

    /// The serde form is the one the analyzer persisted before these types moved here: a
    /// resumed rollout and the committed recordings must still read.
    #[test]
    fn serde_names_are_snake_case() {
        assert_eq!(
            json(&MetricKind::Latency { quantile: 0.95 }),
            r#"{"latency":{"quantile":0.95}}"#
        );
        assert_eq!(json(&MetricKind::LatencyShift), r#""latency_shift""#);
        assert_eq!(json(&MetricKind::ShadowAgreement), r#""shadow_agreement""#);
        assert_eq!(json(&Direction::Decrease), r#""decrease""#);
        assert_eq!(json(&TriggerMetric::LatencyP95), r#""latency_p95""#);
        let back: MetricKind = serde_json::from_str(r#""prediction_drift""#).expect("reads");
        assert_eq!(back, MetricKind::PredictionDrift);
    }

    #[test]
    fn label_names_match_the_serde_names() {
        for kind in [
            MetricKind::LatencyShift,
            MetricKind::ErrorRate,
            MetricKind::Accuracy,
            MetricKind::ShadowAgreement,
            MetricKind::PredictionDrift,
            MetricKind::Calibration,
        ] {
            assert_eq!(json(&kind), format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(MetricKind::Latency { quantile: 0.5 }.as_str(), "latency");
    }

    #[test]
    fn accuracy_and_agreement_may_not_drop_the_rest_may_not_rise() {
        assert_eq!(
            MetricKind::Accuracy.default_direction(),
            Direction::Decrease
        );
        assert_eq!(
            MetricKind::ShadowAgreement.default_direction(),
            Direction::Decrease
        );
        assert_eq!(
            MetricKind::ErrorRate.default_direction(),
            Direction::Increase
        );
        assert_eq!(
            MetricKind::Latency { quantile: 0.99 }.default_direction(),
            Direction::Increase
        );
        assert!(TriggerMetric::LatencyP50.is_latency());
        assert!(!TriggerMetric::ShadowAgreement.is_latency());
    }
}
