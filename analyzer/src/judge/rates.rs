//! Rates (error rate, accuracy, shadow agreement): canary against stable by the spec's method.
//!
//! - `Sequential` (default): a confidence sequence on `p̂_canary − p̂_stable` with the plug-in
//!   variance of each arm's smoothed rate (`(x + ½)/(n + 1)`, so that zero errors in both arms
//!   still has a variance and passes only once the counts are large enough); **Pass** when the
//!   bound is inside the allowed difference, **Fail** when the other bound is beyond it
//!   ([`super::bound`]). No errors in either arm is *not* a pass on its own: it takes enough
//!   requests for the upper bound to come under the allowance.
//! - `MannWhitney` (Kayenta-style, fixed horizon): Newcombe's interval of the difference at the
//!   look's level (`α` per side), decided the same way, with the one-sided Fisher's exact test
//!   (small counts) or pooled z-test p-value reported. Valid at one look only.
//! - `Threshold`: fails when the point difference is beyond the allowed one; no test.

use crate::spec::{AnalysisSpec, Direction, Method, MetricSpec};
use crate::stats::binomial::newcombe;
use crate::stats::fisher::fisher_exact;
use crate::stats::proportions::two_proportion_z_test;
use crate::stats::Alternative;
use crate::verdict::{finite, Outcome, TestUsed, Verdict};

use super::bound::{self, rate_variance, smoothed_rate};
use super::margin;

/// Event counts of the two arms: `x` events out of `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateCounts {
    /// Stable's events.
    pub x_stable: u64,
    /// Stable's total.
    pub n_stable: u64,
    /// The canary's events.
    pub x_canary: u64,
    /// The canary's total.
    pub n_canary: u64,
}

/// What a rate metric measures, for reports: `canary − stable error rate`.
fn measure(metric: &MetricSpec) -> String {
    let what = match metric.kind {
        crate::spec::MetricKind::ErrorRate => "error rate",
        crate::spec::MetricKind::Accuracy => "accuracy",
        crate::spec::MetricKind::ShadowAgreement => "agreement with the shadow",
        _ => "rate",
    };
    format!("canary − stable {what}")
}

/// Judges a rate metric from its counts; a Fail of the sequential method rests on the counts
/// without those of `burst`, the worst short window ([`super::transient`]).
pub fn judge_rate(
    metric: &MetricSpec,
    spec: &AnalysisSpec,
    counts: RateCounts,
    burst: RateCounts,
) -> Verdict {
    let RateCounts {
        x_stable,
        n_stable,
        x_canary,
        n_canary,
    } = counts;
    if n_stable < spec.min_samples.max(1) || n_canary < spec.min_samples.max(1) {
        return Verdict::no_data(&metric.name, n_stable, n_canary, spec.min_samples);
    }
    let (ps, pc) = (
        x_stable as f64 / n_stable as f64,
        x_canary as f64 / n_canary as f64,
    );
    let delta = pc - ps;
    let theta0 = margin::linear(metric.allowed, metric.direction, ps);
    let mut verdict = match spec.method {
        Method::Sequential => {
            let tau = metric.tau_for(theta0);
            let cs = |c: RateCounts| {
                let variance =
                    rate_variance(c.x_stable, c.n_stable) + rate_variance(c.x_canary, c.n_canary);
                let estimate =
                    smoothed_rate(c.x_canary, c.n_canary) - smoothed_rate(c.x_stable, c.n_stable);
                bound::decide(
                    metric.direction,
                    estimate,
                    variance,
                    theta0,
                    tau,
                    spec.alpha,
                )
                .map(|j| (j, estimate, variance))
            };
            let rest = RateCounts {
                x_stable: x_stable - burst.x_stable.min(x_stable),
                n_stable: n_stable - burst.n_stable.min(n_stable),
                x_canary: x_canary - burst.x_canary.min(x_canary),
                n_canary: n_canary - burst.n_canary.min(n_canary),
            };
            let decided = cs(counts).map(|(full, estimate, variance)| {
                // The Fail side from the counts without the worst burst (when enough remain).
                let fail_side = (burst.n_canary > 0
                    && rest.n_canary >= spec.min_samples.max(1)
                    && rest.n_stable >= spec.min_samples.max(1))
                .then(|| cs(rest).ok())
                .flatten();
                let j = match fail_side {
                    Some((r, ..)) => {
                        let (lower, upper) = match metric.direction {
                            Direction::Increase => (r.lower, full.upper),
                            Direction::Decrease => (full.lower, r.upper),
                        };
                        bound::judged(
                            metric.direction,
                            full.estimate,
                            lower,
                            upper,
                            theta0,
                            r.e_bad,
                        )
                    }
                    None if burst.n_canary > 0 => {
                        // Too little outside the burst to fail on: a Pass is still possible.
                        let j = full;
                        let outcome = if j.outcome == Outcome::Pass {
                            Outcome::Pass
                        } else {
                            Outcome::Inconclusive
                        };
                        bound::Judged { outcome, ..j }
                    }
                    None => full,
                };
                (j, estimate, variance)
            });
            match decided {
                Ok((j, estimate, variance)) => {
                    let burst_note = if burst.n_canary > 0 {
                        format!(
                            "; the worst {} burst ({} of {} canary) left out of a Fail",
                            crate::rollout::format_seconds(spec.transient_s),
                            burst.x_canary,
                            burst.n_canary
                        )
                    } else {
                        String::new()
                    };
                    let reason = format!(
                        "canary {pc:.4} vs stable {ps:.4} ({delta:+.4}); anytime-valid bounds [{:+.4}, {:+.4}] vs allowed {theta0:+.4}: {} (α = {:.3}){burst_note}",
                        j.lower,
                        j.upper,
                        j.words(),
                        spec.alpha
                    );
                    let mut v = j.verdict(&metric.name, TestUsed::CsRate, &measure(metric), reason);
                    v.statistic = finite((estimate - theta0) / variance.sqrt());
                    v
                }
                Err(e) => Verdict::new(
                    &metric.name,
                    Outcome::Inconclusive,
                    TestUsed::CsRate,
                    format!("confidence sequence on rates undefined: {e}"),
                ),
            }
        }
        Method::MannWhitney => fixed(metric, spec, counts, delta, theta0),
        Method::Threshold => {
            let failed = margin::beyond(delta, theta0, metric.direction);
            let mut v = Verdict::new(
                &metric.name,
                margin::outcome(failed, metric.direction),
                TestUsed::RateThreshold,
                format!("canary {pc:.4} vs stable {ps:.4}: difference {delta:+.4}, allowed {theta0:+.4} (point comparison, no test)"),
            );
            v.bound = finite(delta);
            v.allowance = finite(theta0);
            v.measure = Some(measure(metric));
            v
        }
    };
    verdict.estimate = finite(delta);
    verdict.measured(ps, pc, n_stable, n_canary)
}

fn fixed(
    metric: &MetricSpec,
    spec: &AnalysisSpec,
    c: RateCounts,
    delta: f64,
    theta0: f64,
) -> Verdict {
    // Stable first: "canary higher" is the first sample lower.
    let alternative = match metric.direction {
        Direction::Increase => Alternative::Less,
        Direction::Decrease => Alternative::Greater,
    };
    let total = (c.n_stable + c.n_canary) as f64;
    let events = (c.x_stable + c.x_canary) as f64;
    let smallest_margin = c.n_stable.min(c.n_canary) as f64;
    let expected_min = smallest_margin * events.min(total - events) / total;
    let (test, result) = if expected_min < 5.0 {
        let table = [
            [c.x_stable, c.n_stable - c.x_stable],
            [c.x_canary, c.n_canary - c.x_canary],
        ];
        (TestUsed::FisherExact, fisher_exact(table, alternative))
    } else {
        (
            TestUsed::TwoProportionZ,
            two_proportion_z_test(c.x_stable, c.n_stable, c.x_canary, c.n_canary, alternative),
        )
    };
    // canary − stable: Newcombe's bounds of x_canary/n_canary − x_stable/n_stable.
    let interval = newcombe(
        c.x_canary,
        c.n_canary,
        c.x_stable,
        c.n_stable,
        spec.alpha.min(0.49),
    );
    let Ok((lower, upper)) = interval else {
        return Verdict::new(
            &metric.name,
            Outcome::Inconclusive,
            TestUsed::Newcombe,
            "interval undefined".to_owned(),
        );
    };
    let judged = bound::judged(metric.direction, delta, lower, upper, theta0, f64::NAN);
    let p = result.as_ref().map(|r| r.p_value).unwrap_or(1.0);
    let reason = format!(
        "difference {delta:+.4}, Newcombe bounds [{lower:+.4}, {upper:+.4}] at α = {} per side vs allowed {theta0:+.4}: {} at this look (fixed horizon); one-sided {} p = {p:.3e}",
        spec.alpha,
        judged.words(),
        match test {
            TestUsed::FisherExact => "Fisher",
            _ => "z",
        }
    );
    let mut v = judged.verdict(&metric.name, test, &measure(metric), reason);
    v.e_value = None;
    v.p_value = finite(p);
    v.statistic = result.ok().and_then(|r| finite(r.statistic));
    v
}
