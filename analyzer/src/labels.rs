//! Joining delayed ground-truth labels (or shadow answers) to predictions by request id.
//!
//! Contract: [`LabelJoin`] holds at most `capacity` predictions, each for at most `ttl_s`
//! seconds after it was recorded (time is passed in, never read). A label arriving for a held
//! request id is joined and returned; a label for an unknown (never seen, expired or already
//! joined) id is counted as unmatched. Predictions that time out are counted as expired, those
//! pushed out by the capacity bound as evicted. [`LabelJoin::label_rate`] is the share of
//! predictions that got their label: a low rate means accuracy is judged on a biased subset
//! (Seldon MPM's caveat, `reference/canary-analysis.md` §5), so the proxy can surface it.
//!
//! The same structure joins the shadow model's answer to the serving arm's prediction of the
//! same request (the shadow's label plays the truth), for the agreement metric. The shadow may
//! answer before the serving arm does (it scores the request's body while the upstream is still
//! working), so [`LabelJoin::answer`] holds an early answer, under the same TTL and capacity,
//! until [`LabelJoin::record_prediction_or_join`] brings its prediction.

use std::collections::{BTreeMap, VecDeque};

use augur_model::{Arm, Sample};
use serde::{Deserialize, Serialize};

/// A prediction waiting for its label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingPrediction {
    /// The arm that answered.
    pub arm: Arm,
    /// The predicted label.
    pub label: Option<String>,
    /// The positive-class score.
    pub score: Option<f64>,
    /// When it was recorded, seconds.
    pub t: f64,
}

/// A prediction joined with its label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JoinedLabel {
    /// The request id.
    pub request_id: String,
    /// The prediction.
    pub prediction: PendingPrediction,
    /// The label that arrived (ground truth, or the shadow's answer).
    pub truth: String,
}

/// Counters of the join.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCounts {
    /// Predictions recorded.
    pub predictions: u64,
    /// Labels joined to a prediction.
    pub joined: u64,
    /// Predictions that timed out without a label.
    pub expired: u64,
    /// Predictions dropped by the capacity bound.
    pub evicted: u64,
    /// Labels with no held prediction.
    pub unmatched: u64,
}

/// A bounded, TTL-limited join of predictions and later labels by request id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelJoin {
    ttl_s: f64,
    capacity: usize,
    pending: BTreeMap<String, PendingPrediction>,
    order: VecDeque<(f64, String)>,
    counts: JoinCounts,
    /// Answers that arrived before their prediction (shadow joins only): id → (when, label).
    #[serde(default)]
    early: BTreeMap<String, (f64, String)>,
    /// Their arrival order, oldest first.
    #[serde(default)]
    early_order: VecDeque<(f64, String)>,
}

impl LabelJoin {
    /// A join holding at most `capacity` predictions for `ttl_s` seconds each.
    pub fn new(ttl_s: f64, capacity: usize) -> Self {
        LabelJoin {
            ttl_s: if ttl_s.is_finite() {
                ttl_s.max(0.0)
            } else {
                0.0
            },
            capacity: capacity.max(1),
            pending: BTreeMap::new(),
            order: VecDeque::new(),
            counts: JoinCounts::default(),
            early: BTreeMap::new(),
            early_order: VecDeque::new(),
        }
    }

    /// Joins an answer (the shadow's) to the held prediction of `request_id`; when the
    /// prediction has not arrived yet, holds the answer for it instead (see
    /// [`LabelJoin::record_prediction_or_join`]), at most `capacity` answers for `ttl_s` each.
    pub fn answer(&mut self, request_id: &str, answer: &str, now: f64) -> Option<JoinedLabel> {
        if self.holds(request_id) {
            return self.join(request_id, answer, now);
        }
        self.expire(now);
        while self.early.len() >= self.capacity {
            let Some((t, id)) = self.early_order.pop_front() else {
                break;
            };
            if self.early.get(&id).is_some_and(|(held, _)| *held == t) {
                self.early.remove(&id);
            }
        }
        self.early
            .insert(request_id.to_owned(), (now, answer.to_owned()));
        self.early_order.push_back((now, request_id.to_owned()));
        None
    }

    /// Records the prediction of `sample` as [`LabelJoin::record_prediction`] does, unless an
    /// answer for it arrived first ([`LabelJoin::answer`]): then the two are joined and returned.
    pub fn record_prediction_or_join(&mut self, sample: &Sample, now: f64) -> Option<JoinedLabel> {
        self.expire(now);
        let early = sample
            .request_id
            .as_ref()
            .filter(|_| sample.label.is_some() || sample.score.is_some())
            .and_then(|id| Some((id, self.early.remove(id)?)));
        let Some((id, (_, answer))) = early else {
            self.record_prediction(sample, now);
            return None;
        };
        self.counts.predictions += 1;
        self.counts.joined += 1;
        Some(JoinedLabel {
            request_id: id.clone(),
            prediction: PendingPrediction {
                arm: sample.arm,
                label: sample.label.clone(),
                score: sample.score,
                t: now,
            },
            truth: answer,
        })
    }

    /// Holds the prediction of `sample` (needs a request id and a label or score); returns
    /// whether it was held. A repeated request id replaces the earlier prediction.
    pub fn record_prediction(&mut self, sample: &Sample, now: f64) -> bool {
        let Some(id) = sample.request_id.as_ref() else {
            return false;
        };
        if sample.label.is_none() && sample.score.is_none() {
            return false;
        }
        self.expire(now);
        while self.pending.len() >= self.capacity && !self.pending.contains_key(id) {
            if !self.pop_oldest() {
                break;
            }
            self.counts.evicted += 1;
        }
        self.counts.predictions += 1;
        self.pending.insert(
            id.clone(),
            PendingPrediction {
                arm: sample.arm,
                label: sample.label.clone(),
                score: sample.score,
                t: now,
            },
        );
        self.order.push_back((now, id.clone()));
        if self.order.len() > 2 * self.capacity {
            let pending = &self.pending;
            self.order
                .retain(|(t, id)| pending.get(id).is_some_and(|p| p.t == *t));
        }
        true
    }

    /// Counts a prediction that arrived with its ground truth (a recorded sample's `truth`): a
    /// prediction joined at once. Returns whether it counted (it needs a label or a score).
    pub fn record_inline(&mut self, sample: &Sample) -> bool {
        if sample.label.is_none() && sample.score.is_none() {
            return false;
        }
        self.counts.predictions += 1;
        self.counts.joined += 1;
        true
    }

    /// Counts predictions and labels known only by their numbers (a fleet's counters): they
    /// move the label rate `joined / predictions` but hold nothing to join.
    pub fn record_counted(&mut self, predictions: u64, joined: u64) {
        self.counts.predictions += predictions;
        self.counts.joined += joined;
    }

    /// Whether a prediction with this request id is held.
    pub fn holds(&self, request_id: &str) -> bool {
        self.pending.contains_key(request_id)
    }

    /// Joins a label to the held prediction of `request_id`, if any.
    pub fn join(&mut self, request_id: &str, truth: &str, now: f64) -> Option<JoinedLabel> {
        self.expire(now);
        match self.pending.remove(request_id) {
            Some(prediction) => {
                self.counts.joined += 1;
                Some(JoinedLabel {
                    request_id: request_id.to_owned(),
                    prediction,
                    truth: truth.to_owned(),
                })
            }
            None => {
                self.counts.unmatched += 1;
                None
            }
        }
    }

    /// Drops predictions older than the TTL at `now`, counting them as expired, and early
    /// answers as old (uncounted: no prediction came for them).
    pub fn expire(&mut self, now: f64) {
        while let Some((t, id)) = self.early_order.front() {
            if *t + self.ttl_s > now {
                break;
            }
            if self.early.get(id).is_some_and(|(held, _)| held == t) {
                self.early.remove(id);
            }
            self.early_order.pop_front();
        }
        while let Some((t, _)) = self.order.front() {
            if *t + self.ttl_s > now {
                break;
            }
            if self.pop_oldest() {
                self.counts.expired += 1;
            }
        }
    }

    /// Removes the oldest order entry; true when it still held a live prediction.
    fn pop_oldest(&mut self) -> bool {
        let Some((t, id)) = self.order.pop_front() else {
            return false;
        };
        if self.pending.get(&id).is_some_and(|p| p.t == t) {
            self.pending.remove(&id);
            true
        } else {
            false
        }
    }

    /// The share of resolved predictions that got a label: `joined / (joined + expired +
    /// evicted)`; `None` before any is resolved.
    pub fn label_rate(&self) -> Option<f64> {
        let c = self.counts;
        let resolved = c.joined + c.expired + c.evicted;
        (resolved > 0).then(|| c.joined as f64 / resolved as f64)
    }

    /// The counters.
    pub fn counts(&self) -> JoinCounts {
        self.counts
    }

    /// Predictions currently held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction(id: &str, label: &str) -> Sample {
        Sample {
            request_id: Some(id.to_owned()),
            score: Some(0.8),
            label: Some(label.to_owned()),
            ..Sample::new(0.0, Arm::Canary, 200, 5.0)
        }
    }

    #[test]
    fn joins_expires_and_counts() {
        let mut j = LabelJoin::new(10.0, 100);
        assert!(j.record_prediction(&prediction("a", "PNEUMONIA"), 0.0));
        assert!(j.record_prediction(&prediction("b", "NORMAL"), 1.0));
        let joined = j.join("a", "NORMAL", 5.0).expect("held");
        assert_eq!(joined.prediction.label.as_deref(), Some("PNEUMONIA"));
        assert!(j.join("a", "NORMAL", 5.0).is_none());
        assert!(j.join("b", "NORMAL", 11.0).is_none());
        let c = j.counts();
        assert_eq!(
            (c.predictions, c.joined, c.expired, c.unmatched),
            (2, 1, 1, 2)
        );
        assert_eq!(j.label_rate(), Some(0.5));
        let mut no_id = prediction("x", "NORMAL");
        no_id.request_id = None;
        assert!(!j.record_prediction(&no_id, 12.0));
    }

    /// A shadow answer that comes before the serving arm's prediction is joined when the
    /// prediction arrives; early answers are bounded by the TTL and the capacity.
    #[test]
    fn an_answer_may_come_before_its_prediction() {
        let mut j = LabelJoin::new(10.0, 2);
        assert!(j.answer("a", "NORMAL", 0.0).is_none());
        let joined = j
            .record_prediction_or_join(&prediction("a", "PNEUMONIA"), 1.0)
            .expect("joined with the early answer");
        assert_eq!(
            (joined.prediction.label.as_deref(), joined.truth.as_str()),
            (Some("PNEUMONIA"), "NORMAL")
        );
        // The usual order still joins.
        assert!(j
            .record_prediction_or_join(&prediction("b", "NORMAL"), 2.0)
            .is_none());
        assert!(j.answer("b", "NORMAL", 3.0).is_some());
        let c = j.counts();
        assert_eq!((c.predictions, c.joined), (2, 2));
        // An early answer expires with the TTL, and the oldest goes beyond the capacity.
        j.answer("old", "NORMAL", 4.0);
        assert!(j
            .record_prediction_or_join(&prediction("old", "NORMAL"), 15.0)
            .is_none());
        for id in ["x", "y", "z"] {
            j.answer(id, "NORMAL", 16.0);
        }
        assert!(j.early.len() <= 2, "{:?}", j.early);
        assert!(j
            .record_prediction_or_join(&prediction("x", "NORMAL"), 17.0)
            .is_none());
        assert!(j
            .record_prediction_or_join(&prediction("z", "NORMAL"), 17.0)
            .is_some());
    }

    #[test]
    fn inline_truth_counts_as_labelled() {
        let mut j = LabelJoin::new(10.0, 100);
        let mut s = prediction("a", "NORMAL");
        s.truth = Some("NORMAL".to_owned());
        assert!(j.record_inline(&s));
        assert!(j.record_prediction(&prediction("b", "NORMAL"), 0.0));
        let c = j.counts();
        assert_eq!((c.predictions, c.joined), (2, 1));
        assert!(j.holds("b") && !j.holds("a"));
        let mut bare = Sample::new(0.0, Arm::Canary, 200, 5.0);
        bare.truth = Some("NORMAL".to_owned());
        assert!(!j.record_inline(&bare), "no prediction to label");
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let mut j = LabelJoin::new(1e9, 3);
        for i in 0..10 {
            j.record_prediction(&prediction(&format!("r{i}"), "NORMAL"), i as f64);
            j.join(&format!("r{i}"), "NORMAL", i as f64 + 0.5);
            j.record_prediction(&prediction(&format!("s{i}"), "NORMAL"), i as f64 + 0.5);
        }
        assert_eq!(j.pending(), 3);
        assert!(j.order.len() <= 6);
        assert_eq!(j.counts().evicted, 7);
        assert!(j.join("s9", "NORMAL", 20.0).is_some());
        assert!(j.join("s0", "NORMAL", 20.0).is_none());
    }
}
