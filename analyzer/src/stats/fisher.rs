//! Fisher's exact test of a 2×2 table, matching `scipy.stats.fisher_exact`.
//!
//! The table is `[[a, b], [c, d]]` (rows: arms, columns: e.g. errors / successes). Conditional on
//! the margins, `a` is hypergeometric; `Less` is `P(A ≤ a)`, `Greater` is `P(A ≥ a)`, and the
//! two-sided p-value sums the probabilities of all tables no more likely than the observed one
//! (with a relative tolerance of 1e-7, as R, so ties of equal probability are counted). The
//! statistic is the sample odds ratio `ad/(bc)` (∞ when `bc = 0`). Exact at any size, so it is the
//! right test for the small error counts of a young canary.

use statrs::function::factorial::ln_binomial;

use super::{Alternative, StatsError, TestResult};

/// Relative tolerance for "no more likely than the observed table".
const RELATIVE_TOLERANCE: f64 = 1e-7;

/// Fisher's exact test of `[[a, b], [c, d]]`.
///
/// A zero row or column margin gives scipy's answer: odds ratio `NaN`, p-value 1. Errors: an
/// empty table.
pub fn fisher_exact(
    table: [[u64; 2]; 2],
    alternative: Alternative,
) -> Result<TestResult, StatsError> {
    let [[a, b], [c, d]] = table;
    let total = a + b + c + d;
    if total == 0 {
        return Err(StatsError::EmptySample { which: "table" });
    }
    let (row1, row2, col1) = (a + b, c + d, a + c);
    if row1 == 0 || row2 == 0 || col1 == 0 || b + d == 0 {
        return Ok(TestResult {
            statistic: f64::NAN,
            p_value: 1.0,
        });
    }
    let odds_ratio = if b > 0 && c > 0 {
        (a as f64 * d as f64) / (b as f64 * c as f64)
    } else {
        f64::INFINITY
    };
    // A ~ Hypergeometric(total, row1, col1) on [lo, hi].
    let lo = col1.saturating_sub(row2);
    let hi = col1.min(row1);
    let ln_denominator = ln_binomial(total, col1);
    let pmf = |x: u64| (ln_binomial(row1, x) + ln_binomial(row2, col1 - x) - ln_denominator).exp();
    let p = match alternative {
        Alternative::Less => (lo..=a).map(pmf).sum::<f64>(),
        Alternative::Greater => (a..=hi).map(pmf).sum::<f64>(),
        Alternative::TwoSided => {
            let observed = pmf(a);
            let threshold = observed * (1.0 + RELATIVE_TOLERANCE);
            (lo..=hi).map(pmf).filter(|&p| p <= threshold).sum::<f64>()
        }
    };
    Ok(TestResult {
        statistic: odds_ratio,
        p_value: p.clamp(0.0, 1.0),
    })
}
