//! What every sidecar exports so that the controller can judge the fleet from Prometheus: per
//! CanaryPolicy and arm, the counts and histograms each of the analyzer's metrics needs.
//!
//! | Metric | For |
//! |---|---|
//! | `augur_rollout_requests_total{policy,arm,outcome}` | error rate (`outcome`: `success`, `error` = 5xx or no answer) |
//! | `augur_rollout_latency_milliseconds{policy,arm}` (histogram) | latency, its quantiles and its shift |
//! | `augur_rollout_score{policy,arm}` (histogram, the analyzer's 10 bins of `[0, 1]`) | prediction drift (PSI) |
//! | `augur_rollout_labelled_total`, `augur_rollout_correct_total{policy,arm}` | accuracy against delayed labels |
//! | `augur_rollout_brier_sum`, `augur_rollout_brier_count`, `augur_rollout_brier_squares_sum{policy,arm}` | calibration (the Brier score is the sum over the count of scored labelled predictions; the squares give its variance) |
//! | `augur_rollout_shadow_compared_total`, `augur_rollout_shadow_agreed_total{policy,arm}` | agreement with the shadow model |
//!
//! Every label value is a closed set: the policies loaded and the arms `stable` and `canary`;
//! request ids and labels themselves never become label values. Predictions wait for their
//! labels (and for the shadow's answer) in the analyzer's bounded, TTL-limited
//! [`LabelJoin`], one per policy. A policy's counters are created at zero with its first sample,
//! both arms and outcomes, so that Prometheus' `increase()` counts their first events too (it
//! needs a sample before the first increment).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use augur_analyzer::labels::{JoinedLabel, LabelJoin};
use augur_model::Arm;
use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::policy_store::PolicyStore;
use crate::sample::RoutedSample;

/// Latency buckets (ms): finer than Envoy's, so that a quantile is read within a few percent.
pub const LATENCY_BUCKETS_MS: [f64; 36] = [
    1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 75.0, 100.0, 125.0,
    150.0, 175.0, 200.0, 250.0, 300.0, 350.0, 400.0, 500.0, 600.0, 750.0, 1000.0, 1250.0, 1500.0,
    2000.0, 2500.0, 3000.0, 4000.0, 5000.0, 7500.0, 10000.0,
];

/// The analyzer's score bins (drift), as histogram bounds.
pub const SCORE_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// How long a prediction waits for its label or the shadow's answer, and how many wait.
const JOIN_TTL_S: f64 = 3600.0;
const JOIN_CAPACITY: usize = 100_000;

/// The exported metrics.
#[derive(Clone)]
pub struct EvidenceMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    score: HistogramVec,
    labelled: IntCounterVec,
    correct: IntCounterVec,
    brier: CounterVec,
    brier_count: IntCounterVec,
    brier_squares: CounterVec,
    compared: IntCounterVec,
    agreed: IntCounterVec,
}

impl EvidenceMetrics {
    /// Creates and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let by_arm = ["policy", "arm"];
        let requests = counter(
            "augur_rollout_requests_total",
            "Requests of a rollout's routes, by arm and outcome (error: 5xx or no answer).",
            &["policy", "arm", "outcome"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "augur_rollout_latency_milliseconds",
                "Latency of a rollout's requests, by arm.",
            )
            .buckets(LATENCY_BUCKETS_MS.to_vec()),
            &by_arm,
        )?;
        let score = HistogramVec::new(
            HistogramOpts::new(
                "augur_rollout_score",
                "Positive-class scores the models answered, by arm.",
            )
            .buckets(SCORE_BUCKETS.to_vec()),
            &by_arm,
        )?;
        let labelled = counter(
            "augur_rollout_labelled_total",
            "Predictions joined to their ground-truth label, by arm.",
            &by_arm,
        )?;
        let correct = counter(
            "augur_rollout_correct_total",
            "Labelled predictions that were right, by arm.",
            &by_arm,
        )?;
        let brier = CounterVec::new(
            Opts::new(
                "augur_rollout_brier_sum",
                "Sum of (score - 1{truth = positive})^2 over labelled predictions, by arm.",
            ),
            &by_arm,
        )?;
        let brier_count = counter(
            "augur_rollout_brier_count",
            "Labelled predictions that carried a score (the Brier sum's count), by arm.",
            &by_arm,
        )?;
        let brier_squares = CounterVec::new(
            Opts::new(
                "augur_rollout_brier_squares_sum",
                "Sum of the squares of those Brier terms (their variance, for the test), by arm.",
            ),
            &by_arm,
        )?;
        let compared = counter(
            "augur_rollout_shadow_compared_total",
            "Predictions compared with the shadow model's answer to the same request, by arm.",
            &by_arm,
        )?;
        let agreed = counter(
            "augur_rollout_shadow_agreed_total",
            "Of those, the ones the shadow model agreed with, by arm.",
            &by_arm,
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(score.clone()))?;
        registry.register(Box::new(labelled.clone()))?;
        registry.register(Box::new(correct.clone()))?;
        registry.register(Box::new(brier.clone()))?;
        registry.register(Box::new(brier_count.clone()))?;
        registry.register(Box::new(brier_squares.clone()))?;
        registry.register(Box::new(compared.clone()))?;
        registry.register(Box::new(agreed.clone()))?;
        Ok(Self {
            requests,
            latency,
            score,
            labelled,
            correct,
            brier,
            brier_count,
            brier_squares,
            compared,
            agreed,
        })
    }

    /// Creates every counter of `policy` at zero (both arms, both outcomes).
    fn touch(&self, policy: &str) {
        for arm in ["stable", "canary"] {
            for outcome in ["success", "error"] {
                self.requests.with_label_values(&[policy, arm, outcome]);
            }
            self.labelled.with_label_values(&[policy, arm]);
            self.correct.with_label_values(&[policy, arm]);
            self.brier.with_label_values(&[policy, arm]);
            self.brier_count.with_label_values(&[policy, arm]);
            self.brier_squares.with_label_values(&[policy, arm]);
            self.compared.with_label_values(&[policy, arm]);
            self.agreed.with_label_values(&[policy, arm]);
        }
    }
}

/// One policy's waiting predictions.
struct Joins {
    truth: LabelJoin,
    shadow: LabelJoin,
    positive_label: String,
}

/// Turns samples and labels into the exported evidence.
pub struct Evidence {
    metrics: EvidenceMetrics,
    joins: Mutex<HashMap<String, Joins>>,
}

impl Evidence {
    /// An exporter into `metrics`.
    pub fn new(metrics: EvidenceMetrics) -> Self {
        Self {
            metrics,
            joins: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one sample of a rollout's route; `positive_label` is the policy's positive
    /// class (for calibration). Samples of no policy, and of the mirror arm, count nothing.
    pub fn observe(&self, routed: &RoutedSample, positive_label: &str, now: f64) {
        let Some(policy) = routed.policy.as_deref() else {
            return;
        };
        let s = &routed.sample;
        let Ok(mut joins) = self.joins.lock() else {
            return;
        };
        let joins = joins.entry(policy.to_owned()).or_insert_with(|| {
            self.metrics.touch(policy);
            Joins {
                truth: LabelJoin::new(JOIN_TTL_S, JOIN_CAPACITY),
                shadow: LabelJoin::new(JOIN_TTL_S, JOIN_CAPACITY),
                positive_label: positive_label.to_owned(),
            }
        });
        match s.arm {
            Arm::Stable | Arm::Canary => {
                let arm = s.arm.as_str();
                let outcome = if s.is_error() { "error" } else { "success" };
                let m = &self.metrics;
                m.requests.with_label_values(&[policy, arm, outcome]).inc();
                m.latency
                    .with_label_values(&[policy, arm])
                    .observe(s.latency_ms);
                if let Some(score) = s.score.filter(|v| v.is_finite()) {
                    m.score
                        .with_label_values(&[policy, arm])
                        .observe(score.clamp(0.0, 1.0));
                }
                joins.truth.record_prediction(s, now);
                if let Some(joined) = joins.shadow.record_prediction_or_join(s, now) {
                    self.agreement(policy, &joined);
                }
            }
            Arm::Shadow => {
                if let (Some(id), Some(label)) = (&s.request_id, &s.label) {
                    if let Some(joined) = joins.shadow.answer(id, label, now) {
                        self.agreement(policy, &joined);
                    }
                }
            }
            Arm::Mirror => {}
        }
    }

    /// A ground-truth label for `request_id`: joined to the prediction of whichever policy
    /// holds it. Returns whether one did.
    pub fn label(&self, request_id: &str, truth: &str, now: f64) -> bool {
        let Ok(mut joins) = self.joins.lock() else {
            return false;
        };
        for (policy, j) in joins.iter_mut() {
            if let Some(joined) = j.truth.join(request_id, truth, now) {
                self.labelled(policy, &joined, &j.positive_label);
                return true;
            }
        }
        false
    }

    fn labelled(&self, policy: &str, joined: &JoinedLabel, positive: &str) {
        let arm = joined.prediction.arm.as_str();
        let m = &self.metrics;
        m.labelled.with_label_values(&[policy, arm]).inc();
        if joined.prediction.label.as_deref() == Some(joined.truth.as_str()) {
            m.correct.with_label_values(&[policy, arm]).inc();
        }
        if let Some(score) = joined.prediction.score.filter(|v| v.is_finite()) {
            let y = if joined.truth == positive { 1.0 } else { 0.0 };
            let term = (score.clamp(0.0, 1.0) - y).powi(2);
            m.brier.with_label_values(&[policy, arm]).inc_by(term);
            m.brier_count.with_label_values(&[policy, arm]).inc();
            m.brier_squares
                .with_label_values(&[policy, arm])
                .inc_by(term * term);
        }
    }

    fn agreement(&self, policy: &str, joined: &JoinedLabel) {
        let arm = joined.prediction.arm.as_str();
        let m = &self.metrics;
        m.compared.with_label_values(&[policy, arm]).inc();
        if joined.prediction.label.as_deref() == Some(joined.truth.as_str()) {
            m.agreed.with_label_values(&[policy, arm]).inc();
        }
    }
}

/// Counts `routed` with its policy's positive class, as the serving policies name it.
pub fn observe_serving(evidence: &Evidence, store: &PolicyStore, routed: &RoutedSample) {
    let Some(policy) = routed.policy.as_deref() else {
        return;
    };
    let snapshot = store.snapshot();
    let positive = snapshot
        .loaded
        .set
        .canary_policies
        .iter()
        .find(|p| augur_policies::policy_key(p) == policy)
        .and_then(|p| p.prediction.as_ref())
        .map_or("", |p| p.positive_label.as_str());
    evidence.observe(routed, positive, crate::sample::now());
}

/// A sidecar that follows a controller runs no rollout: this background service takes its
/// samples and exports them as evidence, for the controller to read through Prometheus.
pub struct EvidenceFeed {
    evidence: Arc<Evidence>,
    store: Arc<PolicyStore>,
    samples: Mutex<Option<mpsc::Receiver<RoutedSample>>>,
}

impl EvidenceFeed {
    /// A feed of `samples` into `evidence`.
    pub fn new(
        evidence: Arc<Evidence>,
        store: Arc<PolicyStore>,
        samples: mpsc::Receiver<RoutedSample>,
    ) -> Self {
        Self {
            evidence,
            store,
            samples: Mutex::new(Some(samples)),
        }
    }
}

#[async_trait]
impl BackgroundService for EvidenceFeed {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.samples.lock().ok().and_then(|mut s| s.take());
        let Some(mut samples) = taken else {
            return;
        };
        loop {
            tokio::select! {
                Some(s) = samples.recv() => {
                    observe_serving(&self.evidence, &self.store, &s);
                    augur_rollout::driver::gather(&mut samples, |s| {
                        observe_serving(&self.evidence, &self.store, s);
                    })
                    .await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// A sample as the tests build them.
#[cfg(test)]
fn sample(arm: Arm, id: &str, status: u16, label: &str, score: f64) -> RoutedSample {
    RoutedSample {
        policy: Some("ns/p".into()),
        sample: augur_model::Sample {
            t: 0.0,
            request_id: Some(id.into()),
            route: None,
            arm,
            upstream: None,
            status,
            response_flags: None,
            latency_ms: 42.0,
            bytes: None,
            score: Some(score),
            label: Some(label.into()),
            truth: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum of the series of `name` (a counter, or a histogram's `_count`) that carry every
    /// one of `labels`, read from the text exposition Prometheus scrapes.
    fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encode");
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        text.lines()
            .filter(|l| {
                (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name}_count{{")))
                    && pairs.iter().all(|p| l.contains(p.as_str()))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    #[test]
    fn requests_labels_and_shadow_answers_become_per_arm_evidence() {
        let registry = Registry::new();
        let e = Evidence::new(EvidenceMetrics::register(&registry).expect("metrics"));
        e.observe(
            &sample(Arm::Stable, "a", 200, "PNEUMONIA", 0.9),
            "PNEUMONIA",
            1.0,
        );
        e.observe(
            &sample(Arm::Canary, "b", 200, "NORMAL", 0.2),
            "PNEUMONIA",
            1.0,
        );
        e.observe(
            &sample(Arm::Canary, "c", 503, "NORMAL", 0.3),
            "PNEUMONIA",
            1.0,
        );
        assert!(e.label("a", "PNEUMONIA", 2.0));
        assert!(e.label("b", "PNEUMONIA", 2.0));
        assert!(!e.label("unknown", "NORMAL", 2.0));
        e.observe(
            &sample(Arm::Shadow, "c", 200, "NORMAL", 0.3),
            "PNEUMONIA",
            3.0,
        );
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encode");
        assert!(
            text.contains(
                "augur_rollout_requests_total{arm=\"stable\",outcome=\"error\",policy=\"ns/p\"} 0"
            ),
            "a policy's counters exist at zero before their first event: {text}"
        );
        let v = |name: &str, arm: &str| value(&registry, name, &[("policy", "ns/p"), ("arm", arm)]);
        assert_eq!(
            value(
                &registry,
                "augur_rollout_requests_total",
                &[("arm", "canary"), ("outcome", "error")]
            ),
            1.0
        );
        assert_eq!(v("augur_rollout_latency_milliseconds", "canary"), 2.0);
        assert_eq!(
            (
                v("augur_rollout_labelled_total", "stable"),
                v("augur_rollout_correct_total", "stable")
            ),
            (1.0, 1.0)
        );
        assert_eq!(
            (
                v("augur_rollout_labelled_total", "canary"),
                v("augur_rollout_correct_total", "canary")
            ),
            (1.0, 0.0)
        );
        assert!(
            (v("augur_rollout_brier_sum", "canary") - 0.64).abs() < 1e-9,
            "(0.2 - 1)^2"
        );
        assert!(
            (v("augur_rollout_brier_squares_sum", "canary") - 0.64 * 0.64).abs() < 1e-9,
            "((0.2 - 1)^2)^2"
        );
        assert_eq!(v("augur_rollout_brier_count", "canary"), 1.0);
        assert_eq!(
            (
                v("augur_rollout_shadow_compared_total", "canary"),
                v("augur_rollout_shadow_agreed_total", "canary")
            ),
            (1.0, 1.0)
        );
    }
}
