//! Where a sample is recorded: one [`Sample`] per proxied request, with the model's prediction
//! read from the response body, sent to the analyzer without ever blocking the request.

use augur_policies::Prediction;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// The largest response body kept to read a prediction from (model answers are small JSON).
pub const MAX_PREDICTION_BODY: usize = 64 * 1024;

pub use augur_rollout::sample::{now, RoutedSample};

/// The sending side of the analyzer's sample queue.
#[derive(Clone)]
pub struct SampleSink {
    tx: mpsc::Sender<RoutedSample>,
}

impl SampleSink {
    /// A bounded queue of `capacity` samples; the receiver goes to the rollout driver.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<RoutedSample>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    /// Queues a sample; when the queue is full the sample is dropped and counted.
    pub fn record(&self, sample: RoutedSample, metrics: &Metrics) {
        if self.tx.try_send(sample).is_err() {
            metrics.samples_dropped.inc();
        }
    }
}

/// Reads the score and label at the policy's JSON pointers from a model response body.
/// Anything unreadable gives `(None, None)`: a sample without a prediction, never an error.
pub fn read_prediction(body: &[u8], how: &Prediction) -> (Option<f64>, Option<String>) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let score = json
        .pointer(&how.score_pointer)
        .and_then(serde_json::Value::as_f64);
    let label = json
        .pointer(&how.label_pointer)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    (score, label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_model::Sample;

    fn how() -> Prediction {
        Prediction {
            score_pointer: "/confidence".into(),
            label_pointer: "/prediction".into(),
            positive_label: "PNEUMONIA".into(),
        }
    }

    #[test]
    fn reads_the_seed_services_answer() {
        let body = br#"{"prediction": "PNEUMONIA", "confidence": 0.93, "model_version": "v2"}"#;
        assert_eq!(
            read_prediction(body, &how()),
            (Some(0.93), Some("PNEUMONIA".into()))
        );
    }

    #[test]
    fn unreadable_bodies_give_no_prediction() {
        assert_eq!(read_prediction(b"<html>", &how()), (None, None));
        assert_eq!(
            read_prediction(br#"{"confidence": "high"}"#, &how()),
            (None, None)
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let metrics = Metrics::new(crate::identity::Workload::from_lookup(|_| None)).unwrap();
        let (sink, _rx) = SampleSink::channel(1);
        let sample = |t| RoutedSample {
            policy: None,
            sample: Sample {
                t,
                request_id: None,
                route: None,
                arm: augur_model::Arm::Stable,
                upstream: None,
                status: 200,
                response_flags: None,
                latency_ms: 1.0,
                bytes: None,
                score: None,
                label: None,
                truth: None,
            },
        };
        sink.record(sample(0.0), &metrics);
        sink.record(sample(1.0), &metrics);
        assert_eq!(metrics.samples_dropped.get(), 1);
    }
}
