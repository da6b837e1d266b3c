//! Rates (error rate, accuracy, shadow agreement): canary against stable by the spec's method.
//!
//! - `Sequential` (default): mSPRT on `p̂_canary − p̂_stable` with plug-in variance
//!   (`MixtureSprt::rate_difference`), null value = the allowed difference; valid at every look.
//!   Zero events in both arms (no variance) passes: there is no evidence of a regression.
//! - `MannWhitney` (fixed horizon): one-sided Fisher's exact test when an expected cell count is
//!   below 5 (small counts, the usual young-canary case), otherwise the pooled two-proportion
//!   z-test; fails when `p < α` *and* the difference is beyond the allowed one (practical
//!   significance, as Kayenta's effect-size band).
//! - `Threshold`: fails when the difference is beyond the allowed one.

use crate::spec::{AnalysisSpec, Direction, Method, MetricSpec};
use crate::stats::fisher::fisher_exact;
use crate::stats::msprt::MixtureSprt;
use crate::stats::proportions::two_proportion_z_test;
use crate::stats::Alternative;
use crate::verdict::{finite, Outcome, TestUsed, Verdict};

use super::margin;
use super::sequential::SequentialState;

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

/// Judges a rate metric from its counts.
pub fn judge_rate(
    metric: &MetricSpec,
    spec: &AnalysisSpec,
    counts: RateCounts,
    state: &mut SequentialState,
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
    let fail = Outcome::Fail {
        side: margin::bad_side(metric.direction),
    };
    let mut verdict = match spec.method {
        Method::Sequential => {
            let tau = metric.tau.unwrap_or_else(|| metric.default_tau());
            let look = MixtureSprt::rate_difference(x_stable, n_stable, x_canary, n_canary)
                .and_then(|(d, v)| state.look(tau, theta0, d, v, metric.direction, spec.alpha));
            match look {
                Ok(look) => {
                    let (outcome, what) = if look.rejected {
                        (fail, "regression beyond the allowed difference shown")
                    } else {
                        (Outcome::Pass, "no regression shown")
                    };
                    let mut v = Verdict::new(
                        &metric.name,
                        outcome,
                        TestUsed::MsprtRate,
                        format!(
                            "canary {:.4} vs stable {:.4} ({delta:+.4}, allowed {theta0:+.4}): {what} (always-valid p = {:.3e}, α = {})",
                            pc, ps, look.p_value, spec.alpha
                        ),
                    );
                    v.p_value = finite(look.p_value);
                    v.e_value = finite(look.e_value);
                    v
                }
                Err(_)
                    if x_stable + x_canary == 0 || x_stable + x_canary == n_stable + n_canary =>
                {
                    Verdict::new(
                        &metric.name,
                        Outcome::Pass,
                        TestUsed::MsprtRate,
                        format!("both arms at rate {ps:.4}: no variance, no regression shown"),
                    )
                }
                Err(e) => Verdict::new(
                    &metric.name,
                    Outcome::Inconclusive,
                    TestUsed::MsprtRate,
                    format!("mSPRT on rates undefined: {e}"),
                ),
            }
        }
        Method::MannWhitney => fixed(metric, spec, counts, delta, theta0, fail),
        Method::Threshold => {
            let failed = margin::beyond(delta, theta0, metric.direction);
            Verdict::new(
                &metric.name,
                if failed { fail } else { Outcome::Pass },
                TestUsed::RateThreshold,
                format!("canary {pc:.4} vs stable {ps:.4}: difference {delta:+.4}, allowed {theta0:+.4}"),
            )
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
    fail: Outcome,
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
    match result {
        Ok(r) => {
            let failed = r.p_value < spec.alpha && margin::beyond(delta, theta0, metric.direction);
            let mut v = Verdict::new(
                &metric.name,
                if failed { fail } else { Outcome::Pass },
                test,
                format!(
                    "difference {delta:+.4} (allowed {theta0:+.4}), one-sided p = {:.3e} at α = {}",
                    r.p_value, spec.alpha
                ),
            );
            v.statistic = finite(r.statistic);
            v.p_value = finite(r.p_value);
            v
        }
        Err(e) => Verdict::new(
            &metric.name,
            Outcome::Pass,
            test,
            format!("test undefined ({e}): equal degenerate rates, no regression shown"),
        ),
    }
}
