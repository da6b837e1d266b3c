//! Welch's unequal-variance t-test, matching `scipy.stats.ttest_ind(equal_var=False)`.
//!
//! `t = (x̄ − ȳ) / sqrt(s²ₓ/nₓ + s²ᵧ/nᵧ)` with the Welch–Satterthwaite degrees of freedom; the
//! p-value is from Student's t (through the regularized incomplete beta function). Used for
//! means of roughly symmetric metrics (scores, log-latency); prefer the rank test for raw latency.

use super::moments::Moments;
use super::{check_sample, Alternative, StatsError};

/// The result of [`welch_t_test`].
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct WelchResult {
    /// The t statistic (positive when the first mean is larger).
    pub statistic: f64,
    /// The p-value under the chosen alternative.
    pub p_value: f64,
    /// The Welch–Satterthwaite degrees of freedom.
    pub df: f64,
}

/// Welch's t-test of `x` against `y` from raw samples.
pub fn welch_t_test(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
) -> Result<WelchResult, StatsError> {
    check_sample(x, "x")?;
    check_sample(y, "y")?;
    welch_from_moments(
        &Moments::from_slice(x),
        &Moments::from_slice(y),
        alternative,
    )
}

/// Welch's t-test from summaries (count, mean, variance), e.g. from bounded windows.
///
/// Errors: fewer than 2 values in a sample, or both variances zero.
pub fn welch_from_moments(
    x: &Moments,
    y: &Moments,
    alternative: Alternative,
) -> Result<WelchResult, StatsError> {
    for (m, which) in [(x, "x"), (y, "y")] {
        if m.count() < 2 {
            return Err(StatsError::TooFew {
                which,
                got: m.count() as usize,
                needed: 2,
            });
        }
    }
    let (nx, ny) = (x.count() as f64, y.count() as f64);
    let (vx, vy) = (x.variance() / nx, y.variance() / ny);
    let se2 = vx + vy;
    if se2 <= 0.0 || !se2.is_finite() {
        return Err(StatsError::ZeroVariance("both samples are constant"));
    }
    let t = (x.mean() - y.mean()) / se2.sqrt();
    let df = se2 * se2 / (vx * vx / (nx - 1.0) + vy * vy / (ny - 1.0));
    Ok(WelchResult {
        statistic: t,
        p_value: t_p_value(t, df, alternative),
        df,
    })
}

/// The p-value of a t statistic with `df` degrees of freedom.
pub(crate) fn t_p_value(t: f64, df: f64, alternative: Alternative) -> f64 {
    // P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2), accurate in the far tail.
    let two_tail = statrs::function::beta::beta_reg(df / 2.0, 0.5, df / (df + t * t));
    let upper = |t: f64| {
        if t > 0.0 {
            two_tail / 2.0
        } else {
            1.0 - two_tail / 2.0
        }
    };
    let p = match alternative {
        Alternative::TwoSided => two_tail,
        Alternative::Greater => upper(t),
        Alternative::Less => upper(-t),
    };
    p.clamp(0.0, 1.0)
}
