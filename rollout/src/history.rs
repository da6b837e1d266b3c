//! A rollout's recent history for the dashboard (`GET /rollouts/{name}/history`): one point per
//! period with the weights, each arm's latency quantiles and error rate over that period, each
//! arm's agreement with the shadow model so far, and the values of the last analysis look.
//!
//! It is fed from the rollout driver's thread (the samples the rollout already receives, and its
//! ticks), never from the request path, and its memory is bounded: [`MAX_POINTS`] points and at
//! most [`MAX_PENDING`] predictions waiting for their shadow answer.

use std::borrow::Cow;
use std::collections::VecDeque;

use augur_analyzer::rollout::{Rollout, Weights};
use augur_analyzer::window::{ArmWindow, Windows};
use augur_model::{Arm, Sample};
use serde::{Deserialize, Serialize};

use crate::agreement::AgreementJoin;

/// Points kept per rollout (at one per analysis interval, capped at 10 s, two hours or more).
pub const MAX_POINTS: usize = 720;
/// Predictions (or shadow answers) waiting for their other half, at most.
pub const MAX_PENDING: usize = crate::agreement::MAX_PENDING;
/// The longest time between points, seconds.
const MAX_PERIOD_S: f64 = 10.0;

/// One arm over one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArmPoint {
    /// Requests in the period.
    pub requests: u64,
    /// Failed requests (5xx or no response) in the period.
    pub errors: u64,
    /// `errors / requests`, when there were requests.
    pub error_rate: Option<f64>,
    /// Median latency in the period, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency in the period, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency in the period, ms.
    pub p99_ms: Option<f64>,
    /// Share of this arm's predictions the shadow model agreed with, since the rollout started.
    pub shadow_agreement: Option<f64>,
    /// Predictions compared with the shadow model since the rollout started.
    pub shadow_compared: u64,
}

/// One metric's value at the last analysis look.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// The metric's name.
    pub metric: String,
    /// `pass`, `fail`, `inconclusive` or `no_data`.
    pub outcome: Cow<'static, str>,
    /// Stable's measured value.
    pub stable: Option<f64>,
    /// The canary's measured value.
    pub canary: Option<f64>,
}

/// The rollout at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Seconds since the Unix epoch.
    pub t: f64,
    /// The rollout's phase (`progressing`, `paused`, `promoted`, ...).
    pub phase: String,
    /// The current step, while not ended.
    pub step: Option<usize>,
    /// The weights.
    pub weights: Weights,
    /// Stable over the period.
    pub stable: ArmPoint,
    /// The canary over the period.
    pub canary: ArmPoint,
    /// The last look's measured values.
    pub metrics: Vec<MetricPoint>,
}

/// The history of one rollout.
#[derive(Debug)]
pub struct History {
    period_s: f64,
    next_point: Option<f64>,
    period: Windows,
    points: VecDeque<Point>,
    /// Predictions joined with the shadow's answers since the history started.
    agreement: AgreementJoin,
}

impl History {
    /// An empty history taking a point every `interval_s` (the analysis interval), at most every
    /// 10 s and at least every second.
    pub fn new(interval_s: f64) -> Self {
        let period_s = if interval_s.is_finite() {
            interval_s.clamp(1.0, MAX_PERIOD_S)
        } else {
            MAX_PERIOD_S
        };
        Self {
            period_s,
            next_point: None,
            period: Windows::new(),
            points: VecDeque::new(),
            agreement: AgreementJoin::new(),
        }
    }

    /// Records one sample: stable and canary requests count in the period; predictions are
    /// joined with the shadow model's answers by request id.
    pub fn observe(&mut self, sample: &Sample) {
        if matches!(sample.arm, Arm::Stable | Arm::Canary) {
            self.period.record(sample);
        }
        self.agreement.observe(sample);
    }

    /// Takes a point when the period is over, or at once when `changed` (a transition).
    pub fn tick(&mut self, now: f64, rollout: &Rollout, changed: bool) {
        let due = self.next_point.is_none_or(|t| now >= t);
        if !due && !changed {
            return;
        }
        self.next_point = Some(now + self.period_s);
        let metrics = rollout
            .verdicts()
            .iter()
            .map(|v| MetricPoint {
                metric: v.metric.clone(),
                outcome: Cow::Borrowed(outcome_name(&v.outcome)),
                stable: v.stable,
                canary: v.canary,
            })
            .collect();
        let point = Point {
            t: now,
            phase: rollout.state().phase().to_owned(),
            step: rollout.state().step(),
            weights: rollout.weights(),
            stable: self.arm_point(Arm::Stable),
            canary: self.arm_point(Arm::Canary),
            metrics,
        };
        self.period = Windows::new();
        self.points.push_back(point);
        while self.points.len() > MAX_POINTS {
            self.points.pop_front();
        }
    }

    fn arm_point(&self, arm: Arm) -> ArmPoint {
        let w: &ArmWindow = self.period.arm(arm);
        let (compared, agreed) = self.agreement.counts(arm);
        ArmPoint {
            requests: w.requests,
            errors: w.errors,
            error_rate: (w.requests > 0).then(|| w.errors as f64 / w.requests as f64),
            p50_ms: w.latency.quantile(0.5),
            p95_ms: w.latency.quantile(0.95),
            p99_ms: w.latency.quantile(0.99),
            shadow_agreement: (compared > 0).then(|| agreed as f64 / compared as f64),
            shadow_compared: compared,
        }
    }

    /// `(compared, agreed)` predictions of `arm` joined with the shadow's answers since the
    /// history started, whatever the rollout's state.
    pub fn agreement(&self, arm: Arm) -> (u64, u64) {
        self.agreement.counts(arm)
    }

    /// The points, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    /// Seconds between points.
    pub fn period_s(&self) -> f64 {
        self.period_s
    }
}

/// The verdict outcome as its snake-case name (`pass`, `fail`, ...), as the JSON shows it.
pub fn outcome_name(outcome: &augur_analyzer::verdict::Outcome) -> &'static str {
    use augur_analyzer::verdict::Outcome;
    match outcome {
        Outcome::Pass => "pass",
        Outcome::Fail { .. } => "fail",
        Outcome::Inconclusive => "inconclusive",
        Outcome::NoData => "no_data",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_analyzer::spec::{AnalysisSpec, StepSpec};

    fn sample(arm: Arm, id: &str, label: &str, status: u16, latency_ms: f64) -> Sample {
        Sample {
            request_id: Some(id.to_owned()),
            label: Some(label.to_owned()),
            ..Sample::new(1.0, arm, status, latency_ms)
        }
    }

    fn rollout() -> Rollout {
        Rollout::new(
            AnalysisSpec::default(),
            vec![StepSpec::SetWeight(20), StepSpec::Analysis],
            Vec::new(),
        )
    }

    #[test]
    fn points_hold_each_period_and_agreement_since_the_start() {
        let mut r = rollout();
        r.tick(100.0);
        let mut h = History::new(5.0);
        h.observe(&sample(Arm::Stable, "a", "NORMAL", 200, 10.0));
        h.observe(&sample(Arm::Stable, "b", "NORMAL", 503, 30.0));
        h.observe(&sample(Arm::Canary, "c", "PNEUMONIA", 200, 50.0));
        // shadow answers in either order relative to the prediction
        h.observe(&sample(Arm::Shadow, "a", "NORMAL", 200, 1.0));
        h.observe(&sample(Arm::Shadow, "d", "NORMAL", 200, 1.0));
        h.observe(&sample(Arm::Canary, "d", "PNEUMONIA", 200, 70.0));
        h.tick(100.0, &r, false);
        let p = h.points().last().expect("a point").clone();
        assert_eq!(p.weights.canary, 20);
        assert_eq!(p.phase, "progressing");
        assert_eq!((p.stable.requests, p.stable.errors), (2, 1));
        assert_eq!(p.stable.error_rate, Some(0.5));
        assert_eq!(p.canary.requests, 2);
        assert_eq!(p.stable.shadow_agreement, Some(1.0));
        assert_eq!(p.canary.shadow_agreement, Some(0.0));
        assert_eq!(p.canary.shadow_compared, 1);
        let p95 = p.canary.p95_ms.expect("latency");
        assert!((49.0..=71.0).contains(&p95), "{p95}");

        // the next period starts empty; no point before it is due unless something changed
        h.tick(102.0, &r, false);
        assert_eq!(h.points().count(), 1);
        h.tick(102.0, &r, true);
        assert_eq!(h.points().count(), 2);
        let last = h.points().last().expect("a point");
        assert_eq!(last.stable.requests, 0);
        assert_eq!(
            last.stable.shadow_agreement,
            Some(1.0),
            "agreement is cumulative"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let r = rollout();
        let mut h = History::new(0.0);
        assert_eq!(h.period_s(), 1.0);
        for i in 0..(MAX_PENDING + 10) {
            h.observe(&sample(Arm::Stable, &i.to_string(), "NORMAL", 200, 5.0));
        }
        assert!(h.agreement.pending() <= MAX_PENDING);
        for i in 0..(MAX_POINTS + 5) {
            h.tick(i as f64 * 2.0, &r, false);
        }
        assert_eq!(h.points().count(), MAX_POINTS);
    }
}
