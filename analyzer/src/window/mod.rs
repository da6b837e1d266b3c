//! Bounded-memory per-arm windows: what the judge compares, without keeping raw samples.
//!
//! A sidecar sees every request; keeping them all would grow without bound. Each arm instead
//! keeps a fixed-footprint summary: a log-bucketed latency histogram ([`LatencyHistogram`],
//! relative error ≤ 1% on quantiles), running moments of `ln(latency)` and of the score (for the
//! mean tests and the mSPRT), error and request counters, and counters of predicted labels and of
//! correct predictions when the ground truth is known. Windows merge, so per-interval windows can
//! be combined into a cumulative one. The footprint is independent of traffic: about 9 KiB for the
//! histogram plus at most [`MAX_LABELS`] label counters per arm.

mod histogram;

use std::collections::BTreeMap;

use augur_model::{Arm, Sample};

pub use histogram::{LatencyHistogram, MAX_LATENCY_MS, MIN_LATENCY_MS, RELATIVE_ACCURACY};

use crate::stats::moments::Moments;

/// The most distinct predicted labels counted by name per arm; later ones go to `other_labels`.
pub const MAX_LABELS: usize = 64;

/// The summary of one arm's requests.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArmWindow {
    /// Requests recorded.
    pub requests: u64,
    /// Requests that failed (5xx or no response, [`Sample::is_error`]).
    pub errors: u64,
    /// Latency of every request, in milliseconds.
    pub latency: LatencyHistogram,
    /// Moments of `ln(latency_ms)` over requests with a positive latency.
    pub log_latency: Moments,
    /// Moments of the prediction score, over requests that carried one.
    pub score: Moments,
    /// Counts of predicted labels by name (at most [`MAX_LABELS`] names).
    pub labels: BTreeMap<String, u64>,
    /// Predicted labels not counted by name because [`MAX_LABELS`] was reached.
    pub other_labels: u64,
    /// Requests with both a predicted label and a ground-truth label.
    pub labelled: u64,
    /// Of those, the ones whose prediction equals the truth.
    pub correct: u64,
}

impl Default for ArmWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ArmWindow {
    /// An empty window.
    pub fn new() -> Self {
        ArmWindow {
            requests: 0,
            errors: 0,
            latency: LatencyHistogram::new(),
            log_latency: Moments::new(),
            score: Moments::new(),
            labels: BTreeMap::new(),
            other_labels: 0,
            labelled: 0,
            correct: 0,
        }
    }

    /// Records one sample (its arm is not checked; see [`Windows`]).
    pub fn record(&mut self, sample: &Sample) {
        self.requests += 1;
        if sample.is_error() {
            self.errors += 1;
        }
        self.latency.record(sample.latency_ms);
        if sample.latency_ms.is_finite() && sample.latency_ms > 0.0 {
            self.log_latency.push(sample.latency_ms.ln());
        }
        if let Some(score) = sample.score {
            self.score.push(score);
        }
        if let Some(label) = &sample.label {
            self.count_label(label, 1);
            if let Some(truth) = &sample.truth {
                self.labelled += 1;
                if truth == label {
                    self.correct += 1;
                }
            }
        }
    }

    fn count_label(&mut self, label: &str, count: u64) {
        if let Some(n) = self.labels.get_mut(label) {
            *n += count;
        } else if self.labels.len() < MAX_LABELS {
            self.labels.insert(label.to_owned(), count);
        } else {
            self.other_labels += count;
        }
    }

    /// Adds another window of the same arm into this one.
    pub fn merge(&mut self, other: &ArmWindow) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
        self.log_latency.merge(&other.log_latency);
        self.score.merge(&other.score);
        for (label, &n) in &other.labels {
            self.count_label(label, n);
        }
        self.other_labels += other.other_labels;
        self.labelled += other.labelled;
        self.correct += other.correct;
    }
}

/// One [`ArmWindow`] per [`Arm`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Windows {
    arms: [ArmWindow; 4],
}

impl Windows {
    /// Empty windows for every arm.
    pub fn new() -> Self {
        Self::default()
    }

    fn index(arm: Arm) -> usize {
        match arm {
            Arm::Stable => 0,
            Arm::Canary => 1,
            Arm::Mirror => 2,
            Arm::Shadow => 3,
        }
    }

    /// Records a sample in its arm's window.
    pub fn record(&mut self, sample: &Sample) {
        self.arms[Self::index(sample.arm)].record(sample);
    }

    /// The window of `arm`.
    pub fn arm(&self, arm: Arm) -> &ArmWindow {
        &self.arms[Self::index(arm)]
    }

    /// Adds other windows into these, arm by arm.
    pub fn merge(&mut self, other: &Windows) {
        for (mine, theirs) in self.arms.iter_mut().zip(&other.arms) {
            mine.merge(theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        arm: Arm,
        status: u16,
        latency_ms: f64,
        label: Option<&str>,
        truth: Option<&str>,
    ) -> Sample {
        Sample {
            score: Some(0.5),
            label: label.map(str::to_owned),
            truth: truth.map(str::to_owned),
            ..Sample::new(0.0, arm, status, latency_ms)
        }
    }

    #[test]
    fn counts_by_arm() {
        let mut w = Windows::new();
        w.record(&sample(Arm::Canary, 503, 10.0, Some("A"), Some("A")));
        w.record(&sample(Arm::Canary, 200, 20.0, Some("B"), Some("A")));
        w.record(&sample(Arm::Stable, 200, 30.0, None, None));
        let c = w.arm(Arm::Canary);
        assert_eq!((c.requests, c.errors, c.labelled, c.correct), (2, 1, 2, 1));
        assert_eq!(c.labels.get("A"), Some(&1));
        assert_eq!(c.latency.count(), 2);
        assert_eq!(w.arm(Arm::Stable).requests, 1);
        assert_eq!(w.arm(Arm::Shadow).requests, 0);
        let mut total = Windows::new();
        total.merge(&w);
        total.merge(&w);
        assert_eq!(total.arm(Arm::Canary).requests, 4);
        assert_eq!(total.arm(Arm::Canary).labels.get("B"), Some(&2));
    }

    #[test]
    fn windows_round_trip_through_json() {
        let mut w = Windows::new();
        let json = serde_json::to_string(&w).expect("serializes");
        assert_eq!(serde_json::from_str::<Windows>(&json).expect("parses"), w);
        w.record(&sample(Arm::Canary, 200, 12.5, Some("A"), Some("B")));
        w.record(&sample(Arm::Stable, 503, 0.3, None, None));
        let json = serde_json::to_string(&w).expect("serializes");
        assert_eq!(serde_json::from_str::<Windows>(&json).expect("parses"), w);
    }

    #[test]
    fn label_names_are_capped() {
        let mut w = ArmWindow::new();
        for i in 0..(MAX_LABELS + 10) {
            w.record(&sample(Arm::Canary, 200, 1.0, Some(&format!("l{i}")), None));
        }
        assert_eq!(w.labels.len(), MAX_LABELS);
        assert_eq!(w.other_labels, 10);
    }
}
