//! One request, as the analyzer sees it.

use serde::{Deserialize, Serialize};

use crate::Arm;

/// What a model answered, read from its response by the CanaryPolicy's JSON pointers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The score of the positive class, in `[0, 1]` when the model reports a probability.
    pub score: Option<f64>,
    /// The predicted label, e.g. `PNEUMONIA`.
    pub label: Option<String>,
}

/// One request seen by the proxy: the analyzer's only input.
///
/// The JSON form is the one `augur analyze --samples` reads (keys `t`, `arm`, `latency_ms`,
/// `status`, `score`, `label`, `truth`, `request_id`); proxy-only fields are optional there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the start of the recording (or of the process).
    pub t: f64,
    /// The request id (`x-request-id`), used to join delayed ground-truth labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The route name (VirtualService route `name`, or its index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Which version answered.
    pub arm: Arm,
    /// The upstream address that answered, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// HTTP status sent to the client (0 when no response was produced).
    pub status: u16,
    /// Envoy response flags (`-` when none), e.g. `UF`, `UT`, `NR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_flags: Option<String>,
    /// Time from the first request byte to the last response byte, in milliseconds.
    pub latency_ms: f64,
    /// Response body bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The positive-class score read from the response, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The predicted label read from the response, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The ground-truth label, when it is known (it usually arrives later, by request id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<String>,
}

impl Sample {
    /// A sample with only the always-present fields; the optional ones are `None` (set them with
    /// struct update syntax: `Sample { label: Some(..), ..Sample::new(t, arm, 200, 12.5) }`).
    pub fn new(t: f64, arm: Arm, status: u16, latency_ms: f64) -> Self {
        Sample {
            t,
            request_id: None,
            route: None,
            arm,
            upstream: None,
            status,
            response_flags: None,
            latency_ms,
            bytes: None,
            score: None,
            label: None,
            truth: None,
        }
    }

    /// Whether the request failed from the client's point of view (5xx or no response).
    pub fn is_error(&self) -> bool {
        self.status == 0 || self.status >= 500
    }

    /// The prediction carried by this sample, when it has one.
    pub fn prediction(&self) -> Option<Prediction> {
        if self.score.is_none() && self.label.is_none() {
            return None;
        }
        Some(Prediction {
            score: self.score,
            label: self.label.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_analyze_jsonl_form() {
        let line = r#"{"t": 1.5, "arm": "canary", "latency_ms": 42.0, "status": 503,
                       "score": 0.9, "label": "PNEUMONIA", "request_id": "r1"}"#;
        let sample: Sample = serde_json::from_str(line).unwrap();
        assert_eq!(sample.arm, Arm::Canary);
        assert!(sample.is_error());
        assert_eq!(
            sample.prediction().unwrap().label.as_deref(),
            Some("PNEUMONIA")
        );
        assert_eq!(sample.truth, None);
    }

    #[test]
    fn rejects_an_unknown_arm() {
        let line = r#"{"t": 0, "arm": "blue", "latency_ms": 1, "status": 200}"#;
        assert!(serde_json::from_str::<Sample>(line).is_err());
    }

    #[test]
    fn success_is_not_an_error() {
        let line = r#"{"t": 0, "arm": "stable", "latency_ms": 1, "status": 200}"#;
        let sample: Sample = serde_json::from_str(line).unwrap();
        assert!(!sample.is_error());
        assert_eq!(sample.prediction(), None);
    }
}
