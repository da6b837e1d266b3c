//! Small-sample bounds for rates over a fixed window: exact binomial (Clopper-Pearson) bounds
//! for one rate, Newcombe's hybrid score bounds for a difference of two rates.
//!
//! - [`upper_tail`]: `P(X ≥ k)` for `X ~ Binomial(n, p)`, as the regularized incomplete beta
//!   `I_p(k, n−k+1)` (the identity behind `scipy.stats.binom.sf(k−1, n, p)`).
//! - [`clopper_pearson_lower`] / [`clopper_pearson_upper`]: one-sided exact bounds (Clopper &
//!   Pearson 1934): `P(p < lower) ≤ α` whatever `n`, even 3 samples with 1 event. These are what
//!   a rollback trigger needs on a window of a few dozen canary requests, where a normal
//!   approximation is far off.
//! - [`newcombe`]: bounds of `p₁ − p₂` from the two Wilson score intervals (Newcombe 1998,
//!   method 10), which keeps close to its level at small counts, unlike the Wald interval.

use statrs::function::beta::checked_beta_reg;

use super::proportions::{check_counts, wilson_interval};
use super::StatsError;

/// `P(X ≥ k)` for `X ~ Binomial(n, p)`.
pub fn upper_tail(k: u64, n: u64, p: f64) -> Result<f64, StatsError> {
    check_counts(k.min(n), n, "rate")?;
    if !(0.0..=1.0).contains(&p) {
        return Err(StatsError::InvalidParameter {
            name: "p",
            value: p,
        });
    }
    if k == 0 {
        return Ok(1.0);
    }
    if k > n {
        return Ok(0.0);
    }
    if p <= 0.0 {
        return Ok(0.0);
    }
    if p >= 1.0 {
        return Ok(1.0);
    }
    checked_beta_reg(k as f64, (n - k + 1) as f64, p).map_err(|_| StatsError::InvalidParameter {
        name: "p",
        value: p,
    })
}

fn check_alpha(alpha: f64) -> Result<(), StatsError> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name: "alpha",
            value: alpha,
        })
    }
}

/// The exact one-sided lower bound of a rate from `k` events in `n` trials: the `p` with
/// `P(X ≥ k | p) = alpha` (0 when `k = 0`).
pub fn clopper_pearson_lower(k: u64, n: u64, alpha: f64) -> Result<f64, StatsError> {
    check_counts(k, n, "rate")?;
    check_alpha(alpha)?;
    if k == 0 {
        return Ok(0.0);
    }
    // P(X ≥ k | p) increases with p: bisect for the p where it reaches α.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if upper_tail(k, n, mid)? < alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The exact one-sided upper bound of a rate from `k` events in `n` trials (1 when `k = n`).
pub fn clopper_pearson_upper(k: u64, n: u64, alpha: f64) -> Result<f64, StatsError> {
    check_counts(k, n, "rate")?;
    Ok(1.0 - clopper_pearson_lower(n - k, n, alpha)?)
}

/// One-sided bounds `(lower, upper)` of `x1/n1 − x2/n2`, each at level `alpha`, by Newcombe's
/// hybrid score method.
pub fn newcombe(x1: u64, n1: u64, x2: u64, n2: u64, alpha: f64) -> Result<(f64, f64), StatsError> {
    check_alpha(alpha)?;
    if alpha >= 0.5 {
        return Err(StatsError::InvalidParameter {
            name: "alpha",
            value: alpha,
        });
    }
    let a = wilson_interval(x1, n1, 1.0 - 2.0 * alpha)?;
    let b = wilson_interval(x2, n2, 1.0 - 2.0 * alpha)?;
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let (l1, u1) = (a.lower.unwrap_or(0.0), a.upper.unwrap_or(1.0));
    let (l2, u2) = (b.lower.unwrap_or(0.0), b.upper.unwrap_or(1.0));
    let d = p1 - p2;
    Ok((
        d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_and_exact_bounds() {
        // P(X ≥ 4 | n = 12, p = 0.1) = 1 − P(X ≤ 3) = 0.025637...
        let tail = upper_tail(4, 12, 0.1).expect("valid");
        assert!((tail - 0.025_637_7).abs() < 1e-6, "{tail}");
        assert_eq!(upper_tail(0, 5, 0.3), Ok(1.0));
        // scipy.stats.beta.ppf(0.025, 4, 9) = 0.09924609...
        let lo = clopper_pearson_lower(4, 12, 0.025).expect("valid");
        assert!((lo - 0.099_246).abs() < 1e-5, "{lo}");
        // 0 of n: the upper bound is 1 − α^(1/n)
        let up = clopper_pearson_upper(0, 15, 0.1).expect("valid");
        assert!((up - (1.0 - 0.1f64.powf(1.0 / 15.0))).abs() < 1e-9, "{up}");
        assert_eq!(clopper_pearson_lower(0, 10, 0.05), Ok(0.0));
        assert_eq!(clopper_pearson_upper(10, 10, 0.05), Ok(1.0));
    }

    #[test]
    fn newcombe_brackets_the_difference() {
        // Newcombe (1998) Table II, example (a): 56/70 − 48/80, 95%: [0.0524, 0.3339]
        let (lo, hi) = newcombe(56, 70, 48, 80, 0.025).expect("valid");
        assert!(
            (lo - 0.0524).abs() < 1e-4 && (hi - 0.3339).abs() < 1e-4,
            "{lo} {hi}"
        );
        // example (h): 0/10 − 0/20: [−0.1611, 0.2775]
        let (lo, hi) = newcombe(0, 10, 0, 20, 0.025).expect("valid");
        assert!(
            (lo + 0.1611).abs() < 1e-4 && (hi - 0.2775).abs() < 1e-4,
            "{lo} {hi}"
        );
    }
}
