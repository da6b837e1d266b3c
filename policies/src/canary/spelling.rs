//! How a policy file spells the shared metric names: camelCase (`errorRate`, `latencyP95`),
//! where `augur-model`'s serde form is the analyzer's snake_case.
//!
//! `augur policy explain` shows the names as the author wrote them, and the validated policy
//! serializes with them, so that its serde form, and the rollout fingerprint hashed from it
//! ([`crate::fingerprint`]), are what they were when these types were the policy crate's own.

use augur_model::metric::{MetricKind, TriggerMetric};
use serde::ser::{SerializeStructVariant, Serializer};

/// The policy file's name of a metric kind (`kind:`), without a latency's quantile.
pub(crate) const fn kind_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Latency { .. } => "latency",
        MetricKind::LatencyShift => "latencyShift",
        MetricKind::ErrorRate => "errorRate",
        MetricKind::Accuracy => "accuracy",
        MetricKind::ShadowAgreement => "shadowAgreement",
        MetricKind::PredictionDrift => "predictionDrift",
        MetricKind::Calibration => "calibration",
    }
}

/// The policy file's name of a trigger metric (`metric:`).
pub(crate) const fn trigger_metric_name(metric: TriggerMetric) -> &'static str {
    match metric {
        TriggerMetric::ErrorRate => "errorRate",
        TriggerMetric::Accuracy => "accuracy",
        TriggerMetric::LatencyP50 => "latencyP50",
        TriggerMetric::LatencyP95 => "latencyP95",
        TriggerMetric::LatencyP99 => "latencyP99",
        TriggerMetric::ShadowAgreement => "shadowAgreement",
    }
}

/// Serializes a kind as an externally tagged camelCase enum (`"errorRate"`,
/// `{"latency":{"quantile":0.95}}`).
pub(crate) fn serialize_kind<S: Serializer>(kind: &MetricKind, s: S) -> Result<S::Ok, S::Error> {
    let index = kind_index(*kind);
    match *kind {
        MetricKind::Latency { quantile } => {
            let mut v = s.serialize_struct_variant("MetricKind", index, kind_name(*kind), 1)?;
            v.serialize_field("quantile", &quantile)?;
            v.end()
        }
        other => s.serialize_unit_variant("MetricKind", index, kind_name(other)),
    }
}

/// Serializes a trigger metric as its camelCase name.
pub(crate) fn serialize_trigger_metric<S: Serializer>(
    metric: &TriggerMetric,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_unit_variant(
        "TriggerMetric",
        *metric as u32,
        trigger_metric_name(*metric),
    )
}

/// The variant's position in [`MetricKind`], as serde's derive would pass it.
const fn kind_index(kind: MetricKind) -> u32 {
    match kind {
        MetricKind::Latency { .. } => 0,
        MetricKind::LatencyShift => 1,
        MetricKind::ErrorRate => 2,
        MetricKind::Accuracy => 3,
        MetricKind::ShadowAgreement => 4,
        MetricKind::PredictionDrift => 5,
        MetricKind::Calibration => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::raw::{RawMetricKind, RawTriggerMetric};
    use crate::canary::{
        Amount, Direction, Metric, RollbackTrigger, TriggerAction, TriggerCondition,
    };

    const KINDS: [MetricKind; 7] = [
        MetricKind::Latency { quantile: 0.95 },
        MetricKind::LatencyShift,
        MetricKind::ErrorRate,
        MetricKind::Accuracy,
        MetricKind::ShadowAgreement,
        MetricKind::PredictionDrift,
        MetricKind::Calibration,
    ];

    const TRIGGER_METRICS: [TriggerMetric; 6] = [
        TriggerMetric::ErrorRate,
        TriggerMetric::Accuracy,
        TriggerMetric::LatencyP50,
        TriggerMetric::LatencyP95,
        TriggerMetric::LatencyP99,
        TriggerMetric::ShadowAgreement,
    ];

    /// Every name here is the one a policy file writes for that metric: the raw types (and so
    /// the JSON Schema) read it as the variant of the same name.
    #[test]
    fn every_name_is_the_policy_files() {
        let variant = |debug: String| debug.split(' ').next().unwrap_or_default().to_owned();
        for kind in KINDS {
            let raw: RawMetricKind = serde_json::from_value(serde_json::json!(kind_name(kind)))
                .unwrap_or_else(|e| panic!("{}: {e}", kind_name(kind)));
            assert_eq!(variant(format!("{raw:?}")), variant(format!("{kind:?}")));
        }
        for metric in TRIGGER_METRICS {
            let name = trigger_metric_name(metric);
            let raw: RawTriggerMetric = serde_json::from_value(serde_json::json!(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(format!("{raw:?}"), format!("{metric:?}"));
        }
    }

    /// The validated policy's serde form (what the fingerprint hashes) spells the names as
    /// the policy file does.
    #[test]
    fn the_validated_form_keeps_the_camel_case_shape() {
        let metric = |kind| Metric {
            name: "m".to_owned(),
            kind,
            direction: Direction::Increase,
            allowed_change: None,
            critical: false,
            group: None,
        };
        let json = |m: &Metric| serde_json::to_value(m).expect("serializes")["kind"].to_string();
        assert_eq!(
            json(&metric(MetricKind::Latency { quantile: 0.95 })),
            r#"{"latency":{"quantile":0.95}}"#
        );
        assert_eq!(
            json(&metric(MetricKind::ShadowAgreement)),
            r#""shadowAgreement""#
        );
        let trigger = RollbackTrigger {
            name: "t".to_owned(),
            metric: TriggerMetric::LatencyP95,
            condition: TriggerCondition::Above(Amount::Percent(1.0)),
            window: std::time::Duration::from_secs(60),
            action: TriggerAction::Immediate,
            alpha: 0.01,
        };
        let value = serde_json::to_value(&trigger).expect("serializes");
        assert_eq!(value["metric"], "latencyP95");
    }
}
