//! Rates: the pooled two-proportion z-test and the Wilson score interval.
//!
//! - [`two_proportion_z_test`]: `z = (p̂₁ − p̂₂) / sqrt(p̄(1−p̄)(1/n₁ + 1/n₂))` with the pooled
//!   `p̄ = (x₁+x₂)/(n₁+n₂)`; two-sided, `z²` is Pearson's χ² of the 2×2 table without Yates
//!   correction (`scipy.stats.chi2_contingency(correction=False)`). Good for large counts; use
//!   [`super::fisher`] when a cell is small.
//! - [`wilson_interval`]: Wilson (1927) score interval, as
//!   `scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`; unlike the Wald interval it
//!   stays inside `[0, 1]` and behaves at 0 errors, which is the common canary case.

use statrs::distribution::ContinuousCDF;

use super::{check_level, std_normal, Alternative, Interval, StatsError, TestResult};

/// Pooled two-proportion z-test of `x1/n1` against `x2/n2`; the statistic is `z`.
///
/// Errors: a zero total, a count above its total, or a pooled rate of 0 or 1 (no variance).
pub fn two_proportion_z_test(
    x1: u64,
    n1: u64,
    x2: u64,
    n2: u64,
    alternative: Alternative,
) -> Result<TestResult, StatsError> {
    check_counts(x1, n1, "first")?;
    check_counts(x2, n2, "second")?;
    let (f1, f2) = (n1 as f64, n2 as f64);
    let pooled = (x1 + x2) as f64 / (f1 + f2);
    let variance = pooled * (1.0 - pooled) * (1.0 / f1 + 1.0 / f2);
    if variance <= 0.0 {
        return Err(StatsError::ZeroVariance("the pooled rate is 0 or 1"));
    }
    let z = (x1 as f64 / f1 - x2 as f64 / f2) / variance.sqrt();
    let normal = std_normal();
    let p = match alternative {
        Alternative::TwoSided => 2.0 * normal.sf(z.abs()),
        Alternative::Greater => normal.sf(z),
        Alternative::Less => normal.cdf(z),
    };
    Ok(TestResult {
        statistic: z,
        p_value: p.clamp(0.0, 1.0),
    })
}

/// Wilson score interval for `k` successes in `n` trials at `confidence` (two-sided).
pub fn wilson_interval(k: u64, n: u64, confidence: f64) -> Result<Interval, StatsError> {
    check_counts(k, n, "rate")?;
    check_level(confidence)?;
    let z = std_normal().inverse_cdf(0.5 + 0.5 * confidence);
    let (nf, p) = (n as f64, k as f64 / n as f64);
    let denominator = 2.0 * (nf + z * z);
    let center = (2.0 * nf * p + z * z) / denominator;
    let delta = z * (4.0 * nf * p * (1.0 - p) + z * z).sqrt() / denominator;
    Ok(Interval {
        // scipy pins the ends at 0 and 1 when k is 0 or n.
        lower: Some(if k == 0 { 0.0 } else { center - delta }),
        upper: Some(if k == n { 1.0 } else { center + delta }),
    })
}

/// Rejects `n = 0` and `x > n`.
pub(crate) fn check_counts(x: u64, n: u64, which: &'static str) -> Result<(), StatsError> {
    if n == 0 {
        return Err(StatsError::EmptySample { which });
    }
    if x > n {
        return Err(StatsError::InvalidParameter {
            name: "count",
            value: x as f64,
        });
    }
    Ok(())
}
