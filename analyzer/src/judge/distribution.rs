//! Threshold metrics on the predictions' distribution: drift (PSI) and calibration (Brier).
//!
//! - Prediction drift: the population stability index between stable's (reference) and the
//!   canary's score histograms, `PSI = Σ (c_i − s_i)·ln(c_i / s_i)` over [`SCORE_BINS`] equal
//!   bins of `[0, 1]`, each share smoothed by `1e-4` so empty bins stay finite. Fails High above
//!   the allowed value (conventional bands: < 0.1 none, 0.1–0.25 moderate, > 0.25 significant;
//!   these are convention, not derived — see `reference/canary-analysis.md` §5).
//! - Calibration: the Brier score `mean (score − 1{truth = positive})²` per arm over labelled
//!   predictions (Brier 1950), judged like the other comparative metrics: a confidence sequence
//!   on the difference of the arms' mean Brier scores (plug-in variances) against the allowed
//!   difference, Pass / Fail / Inconclusive ([`super::bound`]); the other methods compare the
//!   point values.
//!
//! Drift is a point comparison, not a test: it passes on its value alone, and is reported with
//! it for a human.

use crate::spec::{Allowed, AnalysisSpec, Method, MetricSpec};
use crate::stats::msprt::MixtureSprt;
use crate::verdict::{finite, Outcome, Side, TestUsed, Verdict};

use super::bound;
use super::evidence::{Evidence, SCORE_BINS};
use super::margin;

/// The PSI of `live` against `reference` histograms (smoothed; 0 when either is empty).
pub fn psi(reference: &[u64; SCORE_BINS], live: &[u64; SCORE_BINS]) -> f64 {
    const EPS: f64 = 1e-4;
    let (nr, nl) = (
        reference.iter().sum::<u64>() as f64,
        live.iter().sum::<u64>() as f64,
    );
    if nr == 0.0 || nl == 0.0 {
        return 0.0;
    }
    reference
        .iter()
        .zip(live)
        .map(|(&r, &l)| {
            let (r, l) = ((r as f64 / nr).max(EPS), (l as f64 / nl).max(EPS));
            (l - r) * (l / r).ln()
        })
        .sum()
}

/// Judges prediction drift between the arms.
pub fn judge_drift(metric: &MetricSpec, spec: &AnalysisSpec, evidence: &Evidence) -> Verdict {
    let (s, c) = (&evidence.stable.scores, &evidence.canary.scores);
    let (ns, nc) = (s.iter().sum::<u64>(), c.iter().sum::<u64>());
    if ns < spec.min_samples.max(1) || nc < spec.min_samples.max(1) {
        return Verdict::no_data(&metric.name, ns, nc, spec.min_samples);
    }
    let limit = match metric.allowed {
        Allowed::Absolute(a) | Allowed::Relative(a) => a.abs(),
    };
    let value = psi(s, c);
    let outcome = if value > limit {
        Outcome::Fail { side: Side::High }
    } else {
        Outcome::Pass
    };
    let mut v = Verdict::new(
        &metric.name,
        outcome,
        TestUsed::Psi,
        format!("PSI of canary scores against stable {value:.4}, allowed {limit:.4} (point value, no test)"),
    );
    v.statistic = finite(value);
    v.estimate = finite(value);
    v.bound = finite(value);
    v.allowance = finite(limit);
    v.measure = Some("PSI of canary scores against stable's".to_owned());
    v.n_stable = ns;
    v.n_canary = nc;
    v
}

/// Judges calibration (Brier score) of the canary against stable.
pub fn judge_calibration(metric: &MetricSpec, spec: &AnalysisSpec, evidence: &Evidence) -> Verdict {
    let (s, c) = (&evidence.stable.brier, &evidence.canary.brier);
    if s.count() < spec.min_samples.max(1) || c.count() < spec.min_samples.max(1) {
        let mut v = Verdict::no_data(&metric.name, s.count(), c.count(), spec.min_samples);
        v.reason = format!("no data: {} (labelled, scored)", v.reason);
        return v;
    }
    let delta = c.mean() - s.mean();
    let theta0 = margin::linear(metric.allowed, metric.direction, s.mean());
    let measure = "canary − stable Brier score";
    let judged = (spec.method == Method::Sequential)
        .then(|| {
            MixtureSprt::mean_difference(s, c, None).and_then(|(d, v)| {
                bound::decide(
                    metric.direction,
                    d,
                    v.max(1e-12),
                    theta0,
                    metric.tau_for(theta0),
                    spec.alpha,
                )
            })
        })
        .and_then(Result::ok);
    let mut v = match judged {
        Some(j) => {
            let reason = format!(
                "Brier score canary {:.4} vs stable {:.4} ({delta:+.4}); anytime-valid bounds [{:+.4}, {:+.4}] vs allowed {theta0:+.4}: {} (α = {:.3})",
                c.mean(),
                s.mean(),
                j.lower,
                j.upper,
                j.words(),
                spec.alpha
            );
            j.verdict(&metric.name, TestUsed::CsRate, measure, reason)
        }
        None => {
            let outcome = if margin::beyond(delta, theta0, metric.direction) {
                Outcome::Fail {
                    side: margin::bad_side(metric.direction),
                }
            } else {
                Outcome::Pass
            };
            let mut v = Verdict::new(
                &metric.name,
                outcome,
                TestUsed::Brier,
                format!(
                    "Brier score canary {:.4} vs stable {:.4} ({delta:+.4}, allowed {theta0:+.4}; point comparison)",
                    c.mean(),
                    s.mean()
                ),
            );
            v.bound = finite(delta);
            v.allowance = finite(theta0);
            v.measure = Some(measure.to_owned());
            v
        }
    };
    v.estimate = finite(delta);
    v.measured(s.mean(), c.mean(), s.count(), c.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_for_equal_shapes_and_grows_with_shift() {
        let a = [10, 20, 30, 40, 50, 50, 40, 30, 20, 10];
        let b = a.map(|x| x * 3);
        assert!(psi(&a, &b).abs() < 1e-12);
        let shifted = [0, 10, 20, 30, 40, 50, 50, 40, 30, 20];
        let p = psi(&a, &shifted);
        assert!(p > 0.1 && p.is_finite(), "{p}");
    }
}
