//! Evidence known only by its counts: what a fleet's counters (read from Prometheus) say about
//! one arm's labelled and shadow-compared predictions over a span of time, without the
//! requests themselves.
//!
//! Contract: a [`Tally`] feeds the analyzer the same statistics the per-request path builds.
//! Accuracy and agreement are counts; the Brier score is kept as moments, and count, sum and
//! sum of squares determine them exactly ([`Moments::from_sums`]), so the judge's tests see
//! the same mean and variance as if every labelled prediction had been pushed. For the
//! time-windowed parts (triggers, transient bursts) the events are spread evenly over the span
//! ([`spread`]), hits interleaved: the span is the finest time the counts resolve.

use augur_model::Arm;
use serde::{Deserialize, Serialize};

use crate::stats::moments::Moments;

/// One arm's predictions, labels and shadow comparisons over `[from, to)`, by count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Start of the span, seconds.
    pub from: f64,
    /// End of the span (exclusive), seconds.
    pub to: f64,
    /// The arm (stable or canary; others are ignored).
    pub arm: Arm,
    /// Predictions made in the span (the denominator of the label rate).
    #[serde(default)]
    pub predictions: u64,
    /// Predictions that got their ground-truth label in the span.
    #[serde(default)]
    pub labelled: u64,
    /// Of those, the correct ones.
    #[serde(default)]
    pub correct: u64,
    /// Labelled predictions that carried a score (the Brier score's count).
    #[serde(default)]
    pub brier_count: u64,
    /// Sum of `(score − 1{truth = positive})²` over them.
    #[serde(default)]
    pub brier_sum: f64,
    /// Sum of the squares of those terms (for the variance).
    #[serde(default)]
    pub brier_squares: f64,
    /// Predictions compared with the shadow model's answer.
    #[serde(default)]
    pub compared: u64,
    /// Of those, the ones the shadow agreed with.
    #[serde(default)]
    pub agreed: u64,
}

impl Tally {
    /// An empty tally of `arm` over `[from, to)`.
    pub fn new(arm: Arm, from: f64, to: f64) -> Self {
        Tally {
            from,
            to,
            arm,
            predictions: 0,
            labelled: 0,
            correct: 0,
            brier_count: 0,
            brier_sum: 0.0,
            brier_squares: 0.0,
            compared: 0,
            agreed: 0,
        }
    }

    /// Whether it counts nothing.
    pub fn is_empty(&self) -> bool {
        self.predictions == 0 && self.labelled == 0 && self.brier_count == 0 && self.compared == 0
    }

    /// The Brier terms' moments.
    pub fn brier(&self) -> Moments {
        Moments::from_sums(self.brier_count, self.brier_sum, self.brier_squares)
    }
}

/// `n` event times spread evenly over `[from, to)` (at the middles of `n` equal slices), each
/// with whether it is one of the `hits` (exactly `min(hits, n)` of them, interleaved evenly:
/// every stretch of the span gets its share).
pub fn spread(n: u64, hits: u64, from: f64, to: f64) -> impl Iterator<Item = (f64, bool)> {
    let hits = hits.min(n);
    let width = if n == 0 { 0.0 } else { (to - from) / n as f64 };
    (0..n).map(move |i| {
        let t = from + (i as f64 + 0.5) * width;
        // Bresenham: the i-th event is a hit when the running share of hits steps up at it.
        let hit = (i + 1) * hits / n > i * hits / n;
        (t, hit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_covers_the_span_and_interleaves_hits() {
        let events: Vec<(f64, bool)> = spread(8, 2, 100.0, 116.0).collect();
        let times: Vec<f64> = events.iter().map(|e| e.0).collect();
        assert_eq!(
            times,
            [101.0, 103.0, 105.0, 107.0, 109.0, 111.0, 113.0, 115.0]
        );
        let hits: Vec<bool> = events.iter().map(|e| e.1).collect();
        assert_eq!(
            hits,
            [false, false, false, true, false, false, false, true],
            "one hit in each half"
        );
        // Every quarter of a long span holds its quarter of the hits.
        let events: Vec<(f64, bool)> = spread(1000, 300, 0.0, 60.0).collect();
        for q in 0..4 {
            let in_q = events
                .iter()
                .filter(|(t, hit)| *hit && (*t / 15.0).floor() as usize == q)
                .count();
            assert_eq!(in_q, 75, "quarter {q}");
        }
        assert_eq!(spread(3, 9, 0.0, 3.0).filter(|e| e.1).count(), 3);
        assert_eq!(spread(0, 0, 0.0, 3.0).count(), 0);
    }

    #[test]
    fn brier_moments_from_sums_equal_pushing_every_term() {
        let terms = [0.01, 0.25, 0.64, 0.09, 0.0, 0.81, 0.36];
        let pushed = Moments::from_slice(&terms);
        let mut t = Tally::new(Arm::Canary, 0.0, 60.0);
        t.brier_count = terms.len() as u64;
        t.brier_sum = terms.iter().sum();
        t.brier_squares = terms.iter().map(|b| b * b).sum();
        let summed = t.brier();
        assert_eq!(summed.count(), pushed.count());
        assert!((summed.mean() - pushed.mean()).abs() < 1e-12);
        assert!((summed.variance() - pushed.variance()).abs() < 1e-12);
    }

    /// The judge sees the same accuracy, calibration and agreement from tallies as from the
    /// same predictions labelled one by one.
    #[test]
    fn a_rollout_judges_tallies_as_the_predictions_they_count() {
        use crate::rollout::Rollout;
        use crate::spec::{AnalysisSpec, MetricKind, MetricSpec, StepSpec};
        use augur_model::Sample;

        let spec = AnalysisSpec {
            metrics: vec![
                MetricSpec::new("accuracy", MetricKind::Accuracy),
                MetricSpec::new("calibration", MetricKind::Calibration),
                MetricSpec::new("agreement", MetricKind::ShadowAgreement),
            ],
            min_samples: 20,
            interval_s: 60.0,
            ..AnalysisSpec::default()
        };
        let new = || {
            let mut r = Rollout::new(spec.clone(), vec![StepSpec::Analysis], Vec::new());
            r.tick(0.0);
            r
        };
        let (mut live, mut counted) = (new(), new());
        for arm in [Arm::Stable, Arm::Canary] {
            let mut tally = Tally::new(arm, 0.0, 50.0);
            for i in 0..200u64 {
                let t = i as f64 * 0.25;
                // Scores spread over [0, 1); the canary is right less often.
                let score = (i % 20) as f64 / 20.0;
                let wrong = if arm == Arm::Canary {
                    i % 5 == 0
                } else {
                    i % 10 == 0
                };
                let truth = if wrong { "NORMAL" } else { "PNEUMONIA" };
                let id = format!("{arm:?}-{i}");
                let sample = Sample {
                    request_id: Some(id.clone()),
                    score: Some(score),
                    label: Some("PNEUMONIA".into()),
                    ..Sample::new(t, arm, 200, 10.0)
                };
                live.observe(&sample);
                live.record_label(&id, truth, t);
                let shadow = Sample {
                    request_id: Some(id),
                    label: Some(if i % 7 == 0 { "NORMAL" } else { "PNEUMONIA" }.into()),
                    ..Sample::new(t, Arm::Shadow, 200, 10.0)
                };
                live.observe(&shadow);
                counted.observe(&Sample {
                    score: Some(score),
                    label: Some("PNEUMONIA".into()),
                    ..Sample::new(t, arm, 200, 10.0)
                });
                let b = (score - if wrong { 0.0 } else { 1.0 }).powi(2);
                tally.predictions += 1;
                tally.labelled += 1;
                tally.correct += u64::from(!wrong);
                tally.brier_count += 1;
                tally.brier_sum += b;
                tally.brier_squares += b * b;
                tally.compared += 1;
                tally.agreed += u64::from(i % 7 != 0);
            }
            counted.record_tally(&tally);
        }
        live.tick(60.0);
        counted.tick(60.0);
        let (a, b) = (live.verdicts(), counted.verdicts());
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.metric, y.metric);
            assert_eq!(x.outcome, y.outcome, "{}", x.metric);
            assert_eq!(
                (x.n_stable, x.n_canary),
                (y.n_stable, y.n_canary),
                "{}",
                x.metric
            );
            let close = |p: Option<f64>, q: Option<f64>| match (p, q) {
                (Some(p), Some(q)) => (p - q).abs() < 1e-9,
                (p, q) => p == q,
            };
            assert!(
                close(x.estimate, y.estimate),
                "{}: {x:?} vs {y:?}",
                x.metric
            );
            assert!(close(x.bound, y.bound), "{}: {x:?} vs {y:?}", x.metric);
        }
        assert!(
            a.iter().any(|v| v.bound.is_some()),
            "some metric was tested"
        );
    }
}
