//! Rollback triggers: conditions on the canary over sliding time windows, with error control.
//!
//! Contract: each trigger keeps time buckets of width `window_s / 8` (counters, plus a latency
//! histogram per arm only for latency triggers), retaining two windows, so memory is bounded
//! whatever the traffic. [`Triggers::evaluate`] fires a trigger only when its condition is
//! **shown**, not when raw values cross it:
//! 1. the trigger has observed the whole window (its first sample is at least `window_s` old);
//! 2. the window holds at least `min_samples` canary samples (labelled ones for accuracy,
//!    compared ones for agreement; stable too for relative conditions);
//! 3. a one-sided bound over the whole window shows the condition: for "canary error rate above
//!    10%" the exact (Clopper-Pearson) lower bound of the canary's rate is above 10%; for
//!    "accuracy 5 points below stable" Newcombe's lower bound of `stable − canary` is above 5
//!    points; for latency conditions, bounds of the quantiles from order statistics. Each check
//!    is at level `alpha / 3600`, and checks happen at most once a second
//!    ([`crate::rollout::Rollout::tick`]), so a canary that does not meet the condition fires
//!    it in a given hour with probability ≤ `alpha` (a union bound over the hour's checks;
//!    `trigger_false_firing` in `analyzer/tests/simulation.rs` measures it, for an identical
//!    canary and for one exactly at the condition);
//! 4. no whole eighth of the window **contradicts** it: a bucket lying entirely inside the window
//!    whose own bound at 90% shows the condition not holding (for example 0 errors in 75 canary
//!    requests against "above 10%") vetoes the firing. This is "holds for the whole window", as
//!    Prometheus' `for:`: a burst shorter than half the window always leaves a clean eighth in
//!    it, so it does not fire, whatever the traffic; at low traffic a bucket is too small to
//!    contradict anything, and the bound of 3. decides alone.
//!
//! [`Triggers::cleared_since`] is the evidence a staged rollback needs to restore the weight:
//! the data since the halving shows, at the trigger's `alpha`, that the condition does not hold.
//! Triggers are the fast path for gross breakage; the judge's tests handle subtle regressions.

use std::collections::VecDeque;

use augur_model::{Arm, Sample};
use serde::{Deserialize, Serialize};
use statrs::distribution::ContinuousCDF;

use crate::rollout::format_seconds;
use crate::spec::{TriggerAction, TriggerCondition, TriggerMetric, TriggerSpec};
use crate::stats::binomial::{clopper_pearson_lower, clopper_pearson_upper, newcombe};
use crate::window::{LatencyHistogram, RELATIVE_ACCURACY};

/// Buckets per trigger window.
pub const SUB_WINDOWS: usize = 8;
/// Seconds in the period a trigger's `alpha` is a budget for.
pub const HOUR_S: f64 = 3600.0;
/// The level at which a bucket inside the window contradicts the condition (75% one-sided).
const VETO_ALPHA: f64 = 0.25;

/// One arm's counters in one bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmCounters {
    requests: u64,
    errors: u64,
    labelled: u64,
    correct: u64,
    compared: u64,
    agreed: u64,
    latency: Option<LatencyHistogram>,
}

impl ArmCounters {
    fn merge(&mut self, other: &ArmCounters) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.labelled += other.labelled;
        self.correct += other.correct;
        self.compared += other.compared;
        self.agreed += other.agreed;
        if let Some(theirs) = &other.latency {
            self.latency
                .get_or_insert_with(LatencyHistogram::new)
                .merge(theirs);
        }
    }

    /// `(events, total)` of a rate metric.
    fn counts(&self, metric: TriggerMetric) -> (u64, u64) {
        match metric {
            TriggerMetric::ErrorRate => (self.errors, self.requests),
            TriggerMetric::Accuracy => (self.correct, self.labelled),
            TriggerMetric::ShadowAgreement => (self.agreed, self.compared),
            _ => (0, self.latency.as_ref().map_or(0, LatencyHistogram::count)),
        }
    }

    /// Samples behind `metric`.
    fn samples(&self, metric: TriggerMetric) -> u64 {
        self.counts(metric).1
    }

    /// The point value of `metric`, for reports.
    fn value(&self, metric: TriggerMetric) -> Option<f64> {
        let (x, n) = self.counts(metric);
        match quantile_of(metric) {
            Some(q) => self.latency.as_ref()?.quantile(q),
            None => (n > 0).then(|| x as f64 / n as f64),
        }
    }

    /// One-sided `(lower, upper)` bounds of the value at level `alpha` each: exact for rates,
    /// from order statistics for latency quantiles (outside the data they are 0 and ∞).
    fn bounds(&self, metric: TriggerMetric, alpha: f64) -> Option<(f64, f64)> {
        let (x, n) = self.counts(metric);
        if n == 0 {
            return None;
        }
        match quantile_of(metric) {
            None => Some((
                clopper_pearson_lower(x, n, alpha).ok()?,
                clopper_pearson_upper(x, n, alpha).ok()?,
            )),
            Some(q) => {
                let h = self.latency.as_ref()?;
                // The rank of the true q-quantile among n samples is Binomial(n, q): its
                // normal bound, with a continuity correction of one sample.
                let z = crate::stats::std_normal().inverse_cdf(1.0 - alpha);
                let nf = n as f64;
                let r = z * (q * (1.0 - q) / nf).sqrt() + 1.0 / nf;
                let lower = if q - r <= 0.0 {
                    0.0
                } else {
                    h.quantile(q - r)? * (1.0 - RELATIVE_ACCURACY)
                };
                let upper = if q + r >= 1.0 {
                    f64::INFINITY
                } else {
                    h.quantile(q + r)? * (1.0 + RELATIVE_ACCURACY)
                };
                Some((lower, upper))
            }
        }
    }
}

fn quantile_of(metric: TriggerMetric) -> Option<f64> {
    match metric {
        TriggerMetric::LatencyP50 => Some(0.5),
        TriggerMetric::LatencyP95 => Some(0.95),
        TriggerMetric::LatencyP99 => Some(0.99),
        _ => None,
    }
}

/// One time bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Bucket {
    index: i64,
    stable: ArmCounters,
    canary: ArmCounters,
}

/// A trigger's specification and its buckets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriggerState {
    spec: TriggerSpec,
    bucket_s: f64,
    keep_s: f64,
    first_t: Option<f64>,
    buckets: VecDeque<Bucket>,
}

/// A trigger that fired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// The trigger's name.
    pub trigger: String,
    /// Its action.
    pub action: TriggerAction,
    /// The canary's value over the window.
    pub canary: f64,
    /// Stable's value over the window, when it has one.
    pub stable: Option<f64>,
    /// Canary samples in the window.
    pub samples: u64,
    /// The bound that showed the condition (of the canary's value, or of the difference).
    #[serde(default)]
    pub bound: Option<f64>,
    /// Why, in words.
    pub reason: String,
}

/// Whether the data shows the condition (`Some(true)`), shows it does not hold
/// (`Some(false)`), or neither (`None`), with the bound that decided.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Shown {
    holds: Option<bool>,
    bound_holds: f64,
    bound_not: f64,
}

impl TriggerState {
    fn new(spec: &TriggerSpec, keep_s: f64) -> Self {
        let window = if spec.window_s.is_finite() && spec.window_s > 0.0 {
            spec.window_s
        } else {
            1.0
        };
        TriggerState {
            spec: spec.clone(),
            bucket_s: window / SUB_WINDOWS as f64,
            keep_s: keep_s.max(window),
            first_t: None,
            buckets: VecDeque::new(),
        }
    }

    fn index(&self, t: f64) -> i64 {
        (t / self.bucket_s).floor() as i64
    }

    fn counters(&mut self, arm: Arm, t: f64) -> Option<&mut ArmCounters> {
        if !t.is_finite() || !matches!(arm, Arm::Stable | Arm::Canary) {
            return None;
        }
        self.first_t = Some(self.first_t.map_or(t, |f| f.min(t)));
        let index = self.index(t);
        let pos = match self.buckets.iter().rposition(|b| b.index == index) {
            Some(p) => p,
            None => {
                let at = self.buckets.partition_point(|b| b.index < index);
                let b = Bucket {
                    index,
                    stable: ArmCounters::default(),
                    canary: ArmCounters::default(),
                };
                self.buckets.insert(at, b);
                let newest = self.buckets.back().map_or(index, |b| b.index);
                let keep = ((self.spec.window_s + self.keep_s) / self.bucket_s).ceil() as i64 + 1;
                while self
                    .buckets
                    .front()
                    .is_some_and(|b| b.index < newest - keep)
                {
                    self.buckets.pop_front();
                }
                self.buckets.iter().rposition(|b| b.index == index)?
            }
        };
        let bucket = self.buckets.get_mut(pos)?;
        Some(if arm == Arm::Stable {
            &mut bucket.stable
        } else {
            &mut bucket.canary
        })
    }

    fn record(&mut self, sample: &Sample) {
        let latency = quantile_of(self.spec.metric).is_some();
        if let Some(c) = self.counters(sample.arm, sample.t) {
            c.requests += 1;
            c.errors += u64::from(sample.is_error());
            if latency {
                c.latency
                    .get_or_insert_with(LatencyHistogram::new)
                    .record(sample.latency_ms);
            }
        }
    }

    /// The level of one check: the hour's budget shared by the hour's 3,600 checks.
    fn check_alpha(&self) -> f64 {
        (self.spec.alpha / HOUR_S).clamp(1e-12, 0.5)
    }

    /// Whether `stable`/`canary` show the condition or its opposite, each at level `alpha`.
    fn shown(&self, stable: &ArmCounters, canary: &ArmCounters, alpha: f64) -> Option<Shown> {
        let metric = self.spec.metric;
        let relative = !matches!(self.spec.condition, TriggerCondition::Above(_));
        let (holds_bound, not_bound, threshold) = match self.spec.condition {
            TriggerCondition::Above(x) => {
                let (lo, hi) = canary.bounds(metric, alpha)?;
                (lo, hi, x)
            }
            TriggerCondition::DropBy(d) | TriggerCondition::IncreaseBy(d) => {
                // `diff` = stable − canary for a drop, canary − stable for an increase.
                let drop = matches!(self.spec.condition, TriggerCondition::DropBy(_));
                let (lo, hi) = match quantile_of(metric) {
                    None => {
                        let (xs, ns) = stable.counts(metric);
                        let (xc, nc) = canary.counts(metric);
                        if ns == 0 || nc == 0 {
                            return None;
                        }
                        if drop {
                            newcombe(xs, ns, xc, nc, alpha).ok()?
                        } else {
                            newcombe(xc, nc, xs, ns, alpha).ok()?
                        }
                    }
                    Some(_) => {
                        let (sl, su) = stable.bounds(metric, alpha / 2.0)?;
                        let (cl, cu) = canary.bounds(metric, alpha / 2.0)?;
                        if drop {
                            (sl - cu, su - cl)
                        } else {
                            (cl - su, cu - sl)
                        }
                    }
                };
                (lo, hi, d)
            }
        };
        if relative && stable.samples(metric) == 0 {
            return None;
        }
        let holds = if holds_bound > threshold {
            Some(true)
        } else if not_bound < threshold {
            Some(false)
        } else {
            None
        };
        Some(Shown {
            holds,
            bound_holds: holds_bound,
            bound_not: not_bound,
        })
    }

    /// Aggregates buckets with `from ≤ index ≤ to`.
    fn aggregate(&self, from: i64, to: i64) -> (ArmCounters, ArmCounters) {
        let (mut s, mut c) = (ArmCounters::default(), ArmCounters::default());
        for b in self
            .buckets
            .iter()
            .filter(|b| b.index >= from && b.index <= to)
        {
            s.merge(&b.stable);
            c.merge(&b.canary);
        }
        (s, c)
    }

    fn evaluate(&self, now: f64) -> Option<Firing> {
        if self.first_t? > now - self.spec.window_s {
            return None;
        }
        let metric = self.spec.metric;
        let start = now - self.spec.window_s;
        let (first, last) = (self.index(start), self.index(now));
        let (s, c) = self.aggregate(first, last);
        let samples = c.samples(metric);
        if samples < self.spec.min_samples.max(1) {
            return None;
        }
        let alpha = self.check_alpha();
        let shown = self.shown(&s, &c, alpha)?;
        if shown.holds != Some(true) {
            return None;
        }
        // A whole bucket inside the window that contradicts the condition vetoes the firing.
        for i in first..=last {
            let inside =
                i as f64 * self.bucket_s >= start && (i + 1) as f64 * self.bucket_s <= now + 1e-9;
            if !inside {
                continue;
            }
            let (bs, bc) = self.aggregate(i, i);
            if self
                .shown(&bs, &bc, VETO_ALPHA)
                .is_some_and(|b| b.holds == Some(false))
            {
                return None;
            }
        }
        let (canary, stable) = (c.value(metric).unwrap_or(f64::NAN), s.value(metric));
        let level = |v: f64| value_text(metric, v);
        let bound = match self.spec.condition {
            TriggerCondition::Above(_) => level(shown.bound_holds),
            TriggerCondition::DropBy(_) | TriggerCondition::IncreaseBy(_) => {
                change_text(metric, shown.bound_holds)
            }
        };
        Some(Firing {
            trigger: self.spec.name.clone(),
            action: self.spec.action,
            canary,
            stable,
            samples,
            bound: Some(shown.bound_holds),
            reason: format!(
                "trigger {}: canary {} {} (stable {}) over the last {} ({samples} samples); its bound {bound} shows the condition ({}) at the per-check level {alpha:.1e} (α = {} per hour), and no eighth of the window contradicts it",
                self.spec.name,
                metric_name(metric),
                level(canary),
                stable.map_or_else(|| "n/a".to_owned(), level),
                format_seconds(self.spec.window_s),
                condition_text(metric, self.spec.condition),
                self.spec.alpha,
            ),
        })
    }
}

fn metric_name(metric: TriggerMetric) -> &'static str {
    match metric {
        TriggerMetric::ErrorRate => "error rate",
        TriggerMetric::Accuracy => "accuracy",
        TriggerMetric::LatencyP50 => "p50 latency",
        TriggerMetric::LatencyP95 => "p95 latency",
        TriggerMetric::LatencyP99 => "p99 latency",
        TriggerMetric::ShadowAgreement => "agreement with the shadow",
    }
}

/// A trigger's condition in the policy's units, worded as `augur policy explain` words it:
/// `> 10%` and `> 500ms` (levels), `drops by 5 points below stable` (a difference of rates, in
/// percentage points) and `increases by 200ms above stable` (of latencies, a duration).
pub fn condition_text(metric: TriggerMetric, condition: TriggerCondition) -> String {
    match condition {
        TriggerCondition::Above(x) => format!("> {}", value_text(metric, x)),
        TriggerCondition::DropBy(d) => format!("drops by {} below stable", change_text(metric, d)),
        TriggerCondition::IncreaseBy(d) => {
            format!("increases by {} above stable", change_text(metric, d))
        }
    }
}

/// A value of `metric` in the policy's units: a rate in percent (`12.5%`), a latency (ms) as
/// a duration (`712.5ms`, `1.5s`).
fn value_text(metric: TriggerMetric, v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    match quantile_of(metric) {
        Some(_) => millis_text(v),
        None => format!("{}%", decimals(v * 100.0, 2)),
    }
}

/// A difference between the arms: percentage points for rates (`5 points`, `1 point`), a
/// duration for latencies.
fn change_text(metric: TriggerMetric, d: f64) -> String {
    if !d.is_finite() {
        return "n/a".to_owned();
    }
    match quantile_of(metric) {
        Some(_) => millis_text(d),
        None => {
            let points = decimals(d * 100.0, 2);
            if points == "1" {
                "1 point".to_owned()
            } else {
                format!("{points} points")
            }
        }
    }
}

/// Milliseconds as Go writes a duration (`500ms`, `712.5ms`, `1.5s`, `2m0s`), as policies and
/// `augur policy explain` write them; [`format_seconds`] from a minute on.
fn millis_text(ms: f64) -> String {
    let sign = if ms < 0.0 { "-" } else { "" };
    let ms = ms.abs();
    if ms < 1000.0 {
        format!("{sign}{}ms", decimals(ms, 1))
    } else if ms < 60_000.0 {
        format!("{sign}{}s", decimals(ms / 1000.0, 3))
    } else {
        format!("{sign}{}", format_seconds(ms / 1000.0))
    }
}

/// `v` with at most `places` decimals and no trailing zeros (`5`, `12.5`).
fn decimals(v: f64, places: usize) -> String {
    let text = format!("{v:.places$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// What the data since a staged rollback's halving says about its trigger's condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Clearance {
    /// `Some(true)` when shown not to hold (restore), `Some(false)` when not shown so (finish),
    /// `None` with fewer than `min_samples` canary samples.
    pub cleared: Option<bool>,
    /// Canary samples since the halving.
    pub samples: u64,
    /// The bound that decided (of the canary's value, or of the difference).
    pub bound: Option<f64>,
}

/// All rollback triggers of a rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Triggers {
    states: Vec<TriggerState>,
}

impl Triggers {
    /// Triggers for `specs`, each retaining at least one window (and `keep_s`) beyond its window,
    /// for [`Triggers::cleared_since`].
    pub fn new(specs: &[TriggerSpec], keep_s: f64) -> Self {
        Triggers {
            states: specs.iter().map(|s| TriggerState::new(s, keep_s)).collect(),
        }
    }

    /// Records a request (its time is `sample.t`).
    pub fn record(&mut self, sample: &Sample) {
        for s in &mut self.states {
            s.record(sample);
        }
    }

    /// Records a labelled prediction of `arm` at `t`.
    pub fn record_labelled(&mut self, arm: Arm, correct: bool, t: f64) {
        for s in &mut self.states {
            if let Some(c) = s.counters(arm, t) {
                c.labelled += 1;
                c.correct += u64::from(correct);
            }
        }
    }

    /// Records whether the shadow agreed with `arm`'s prediction at `t`.
    pub fn record_agreement(&mut self, arm: Arm, agreed: bool, t: f64) {
        for s in &mut self.states {
            if let Some(c) = s.counters(arm, t) {
                c.compared += 1;
                c.agreed += u64::from(agreed);
            }
        }
    }

    /// The first trigger (in spec order) that fires at `now`.
    pub fn evaluate(&self, now: f64) -> Option<Firing> {
        self.states.iter().find_map(|s| s.evaluate(now))
    }

    /// Whether the data of the buckets that start at or after `since` shows, at the trigger's
    /// `alpha` (one decision), that the named trigger's condition does not hold.
    pub fn cleared_since(&self, name: &str, since: f64) -> Option<Clearance> {
        let s = self.states.iter().find(|s| s.spec.name == name)?;
        let first = (since / s.bucket_s).ceil() as i64;
        let (stable, canary) = s.aggregate(first, i64::MAX);
        let samples = canary.samples(s.spec.metric);
        if samples < s.spec.min_samples.max(1) {
            return Some(Clearance {
                cleared: None,
                samples,
                bound: None,
            });
        }
        let alpha = s.spec.alpha.clamp(1e-12, 0.5);
        let shown = s.shown(&stable, &canary, alpha);
        Some(Clearance {
            cleared: Some(shown.is_some_and(|b| b.holds == Some(false))),
            samples,
            bound: shown.map(|b| b.bound_not),
        })
    }

    /// The window of the named trigger, seconds.
    pub fn window_s(&self, name: &str) -> Option<f64> {
        self.states
            .iter()
            .find(|s| s.spec.name == name)
            .map(|s| s.spec.window_s)
    }

    /// Forgets all observations (a retried rollout).
    pub fn clear(&mut self) {
        for s in &mut self.states {
            s.buckets.clear();
            s.first_t = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::default_triggers;

    fn sample(arm: Arm, t: f64, status: u16, latency_ms: f64) -> Sample {
        Sample::new(t, arm, status, latency_ms)
    }

    #[test]
    fn error_rate_fires_only_after_the_whole_window() {
        let mut t = Triggers::new(&default_triggers(), 60.0);
        for i in 0..240 {
            let time = i as f64 * 0.5;
            t.record(&sample(
                Arm::Canary,
                time,
                if i % 3 == 0 { 503 } else { 200 },
                10.0,
            ));
            t.record(&sample(Arm::Stable, time, 200, 10.0));
            if time < 90.0 {
                assert_eq!(t.evaluate(time), None, "at {time}");
            }
        }
        let f = t.evaluate(120.0).expect("fires after 2 minutes");
        assert_eq!(
            (f.action, f.trigger.as_str()),
            (TriggerAction::Immediate, "error-rate-above-10pct")
        );
        assert!((f.canary - 1.0 / 3.0).abs() < 0.02);
        assert!(f.bound.is_some_and(|b| b > 0.1 && b < f.canary));
        // The reason is in the policy's units: percent, the window as a duration.
        assert!(
            f.reason.starts_with(
                "trigger error-rate-above-10pct: canary error rate 33.33% (stable 0%) over the last 2m0s (240 samples); its bound "
            ) && f.reason.contains("% shows the condition (> 10%) at the per-check level"),
            "{}",
            f.reason
        );
    }

    /// Conditions read in the policy's units, as `augur policy explain` words them, never the
    /// analyzer's fractions (`above: 5` is `> 5%`, not `> 0.05`).
    #[test]
    fn conditions_read_in_the_policys_units() {
        use TriggerCondition::{Above, DropBy, IncreaseBy};
        use TriggerMetric::{Accuracy, ErrorRate, LatencyP95, ShadowAgreement};
        for (metric, condition, text) in [
            (ErrorRate, Above(0.05), "> 5%"),
            (ErrorRate, Above(0.001), "> 0.1%"),
            (ErrorRate, Above(0.07), "> 7%"),
            (Accuracy, DropBy(0.05), "drops by 5 points below stable"),
            (Accuracy, DropBy(0.01), "drops by 1 point below stable"),
            (
                ShadowAgreement,
                DropBy(0.025),
                "drops by 2.5 points below stable",
            ),
            (
                ErrorRate,
                IncreaseBy(0.02),
                "increases by 2 points above stable",
            ),
            (LatencyP95, Above(500.0), "> 500ms"),
            (
                LatencyP95,
                IncreaseBy(1500.0),
                "increases by 1.5s above stable",
            ),
            (
                LatencyP95,
                IncreaseBy(90_000.0),
                "increases by 1m30s above stable",
            ),
        ] {
            assert_eq!(condition_text(metric, condition), text);
        }
    }

    #[test]
    fn few_samples_over_the_threshold_do_not_fire() {
        // 3 errors in 20 canary requests is 15%, above 10%, but shows nothing.
        let mut t = Triggers::new(&default_triggers(), 60.0);
        for i in 0..20 {
            let time = i as f64 * 6.0;
            t.record(&sample(
                Arm::Canary,
                time,
                if i < 3 { 503 } else { 200 },
                10.0,
            ));
            t.record(&sample(Arm::Stable, time, 200, 10.0));
        }
        assert_eq!(t.evaluate(121.0), None);
    }

    #[test]
    fn a_burst_does_not_fire_and_memory_is_bounded() {
        let mut t = Triggers::new(&default_triggers(), 60.0);
        // 50 canary requests a second; every canary request fails for 60 s of a 120-s window.
        for i in 0..100_000 {
            let time = i as f64 * 0.01;
            let status = if (30_000..36_000).contains(&i) {
                503
            } else {
                200
            };
            t.record(&sample(Arm::Canary, time, status, 10.0));
            t.record(&sample(Arm::Stable, time, 200, 10.0));
            if i % 100 == 0 {
                assert_eq!(t.evaluate(time), None, "at {time}");
            }
        }
        assert!(t
            .states
            .iter()
            .all(|s| s.buckets.len() <= 3 * SUB_WINDOWS + 3));
    }

    #[test]
    fn latency_increase_and_accuracy_drop() {
        let mut t = Triggers::new(&default_triggers(), 60.0);
        for i in 0..400 {
            let time = i as f64;
            t.record(&sample(Arm::Canary, time, 200, 900.0 + (i % 7) as f64));
            t.record(&sample(Arm::Stable, time, 200, 100.0 + (i % 5) as f64));
            t.record_labelled(Arm::Canary, i % 10 < 5, time);
            t.record_labelled(Arm::Stable, i % 10 < 9, time);
        }
        let f = t.evaluate(399.0).expect("fires");
        assert_eq!(f.trigger, "accuracy-drop-5-points");
        assert_eq!(f.action, TriggerAction::Staged);
        assert_eq!(
            f.reason,
            "trigger accuracy-drop-5-points: canary accuracy 49.23% (stable 89.85%) over the last \
             5m0s (325 samples); its bound 24.71 points shows the condition (drops by 5 points \
             below stable) at the per-check level 2.8e-6 (α = 0.01 per hour), and no eighth of \
             the window contradicts it"
        );
        let c = t
            .cleared_since("p95-latency-plus-500ms", 300.0)
            .expect("known");
        assert_eq!(c.cleared, Some(false), "the increase still holds");
        assert_eq!(
            t.cleared_since("p95-latency-plus-500ms", 395.0)
                .map(|c| c.cleared),
            Some(None),
            "too few samples"
        );
    }
}
