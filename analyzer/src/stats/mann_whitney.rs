//! Mann-Whitney U (Wilcoxon rank-sum) test, matching `scipy.stats.mannwhitneyu`.
//!
//! Contract: `U1 = R1 − n1(n1+1)/2` is the statistic of the first sample (ranks averaged over
//! ties). The p-value uses `U1` for `Greater`, `U2 = n1·n2 − U1` for `Less` and
//! `max(U1, U2)` doubled for `TwoSided`, clipped to `[0, 1]`.
//! - *Exact*: the null distribution of U without ties ([`super::u_dist`]); rejected when ties
//!   are present, because the tabled distribution then no longer applies.
//! - *Asymptotic*: `z = (U − n1·n2/2 − 0.5) / σ` with the tie-corrected
//!   `σ² = n1·n2/12 · ((n+1) − Σ(t³−t)/(n(n−1)))`; the `0.5` is the continuity correction and
//!   can be turned off.
//! - *Auto* (scipy's rule): exact when one sample has at most 8 values and there are no ties.
//!
//! Why rank-based: latency is skewed and heavy-tailed, and a rank test is invariant to monotone
//! transforms (ms vs log ms) and robust to outliers, which is why Kayenta's judge uses it.

use statrs::distribution::ContinuousCDF;

use super::rank::rank;
use super::u_dist::UDistribution;
use super::{check_sample, std_normal, Alternative, StatsError};

/// How the p-value of a Mann-Whitney test is computed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MwuMethod {
    /// Exact if one sample has ≤ 8 values and there are no ties, otherwise asymptotic.
    Auto,
    /// The exact null distribution (no ties allowed).
    Exact,
    /// The normal approximation with tie correction.
    Asymptotic,
}

/// The result of [`mann_whitney_u`].
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct MannWhitneyResult {
    /// `U1`, the U statistic of the first sample (scipy's `statistic`).
    pub u1: f64,
    /// The p-value under the chosen alternative.
    pub p_value: f64,
    /// The method actually used (never `Auto`).
    pub method: MwuMethod,
    /// The standardised statistic, for the asymptotic method.
    pub z: Option<f64>,
}

/// Options of [`mann_whitney_u`]; the default is scipy's (two-sided, auto, continuity on).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MwuOptions {
    /// The alternative hypothesis (first sample vs second).
    pub alternative: Alternative,
    /// Exact, asymptotic or automatic.
    pub method: MwuMethod,
    /// Whether to apply the 0.5 continuity correction in the normal approximation.
    pub continuity: bool,
}

impl Default for MwuOptions {
    fn default() -> Self {
        MwuOptions {
            alternative: Alternative::TwoSided,
            method: MwuMethod::Auto,
            continuity: true,
        }
    }
}

/// The tie-corrected standard deviation of U under the null hypothesis.
pub(crate) fn u_sigma(n1: f64, n2: f64, tie_term: f64) -> f64 {
    let n = n1 + n2;
    let tie = if n > 1.0 {
        tie_term / (n * (n - 1.0))
    } else {
        0.0
    };
    (n1 * n2 / 12.0 * ((n + 1.0) - tie)).max(0.0).sqrt()
}

/// Whether scipy's `auto` rule picks the exact method.
pub(crate) fn auto_is_exact(n1: usize, n2: usize, has_ties: bool) -> bool {
    (n1 <= 8 || n2 <= 8) && !has_ties
}

/// Mann-Whitney U test of `x` against `y` (see the module docs for the exact contract).
///
/// Errors: an empty or non-finite sample; `Exact` with ties; an exact distribution too large;
/// every value tied in the asymptotic method (σ = 0, the test is undefined).
pub fn mann_whitney_u(
    x: &[f64],
    y: &[f64],
    options: MwuOptions,
) -> Result<MannWhitneyResult, StatsError> {
    check_sample(x, "x")?;
    check_sample(y, "y")?;
    let (n1, n2) = (x.len(), y.len());
    let ranked = rank(x, y);
    let has_ties = !ranked.ties.is_empty();
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u1 = ranked.rank_sum_x - f1 * (f1 + 1.0) / 2.0;
    let u2 = f1 * f2 - u1;
    let (u, factor) = match options.alternative {
        Alternative::Greater => (u1, 1.0),
        Alternative::Less => (u2, 1.0),
        Alternative::TwoSided => (u1.max(u2), 2.0),
    };
    let method = match options.method {
        MwuMethod::Auto if auto_is_exact(n1, n2, has_ties) => MwuMethod::Exact,
        MwuMethod::Auto => MwuMethod::Asymptotic,
        other => other,
    };
    let (p, z) = match method {
        MwuMethod::Exact => {
            if has_ties {
                return Err(StatsError::ExactWithTies);
            }
            let dist = UDistribution::new(n1, n2)?;
            // U is an integer without ties.
            (dist.sf(u.round() as i64), None)
        }
        _ => {
            let sigma = u_sigma(f1, f2, ranked.tie_term());
            if sigma <= 0.0 {
                return Err(StatsError::ZeroVariance("every value is tied"));
            }
            let mut numerator = u - f1 * f2 / 2.0;
            if options.continuity {
                numerator -= 0.5;
            }
            let z = numerator / sigma;
            (std_normal().sf(z), Some(z))
        }
    };
    Ok(MannWhitneyResult {
        u1,
        p_value: (p * factor).clamp(0.0, 1.0),
        method,
        z,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_all_tied_are_errors() {
        let opts = MwuOptions::default();
        assert!(matches!(
            mann_whitney_u(&[], &[1.0], opts),
            Err(StatsError::EmptySample { which: "x" })
        ));
        let tied = [2.0; 10];
        assert!(matches!(
            mann_whitney_u(&tied, &tied, opts),
            Err(StatsError::ZeroVariance(_))
        ));
        let exact = MwuOptions {
            method: MwuMethod::Exact,
            ..opts
        };
        assert_eq!(
            mann_whitney_u(&[1.0, 2.0], &[2.0, 3.0], exact),
            Err(StatsError::ExactWithTies)
        );
    }

    #[test]
    fn exact_extreme_is_one_over_choose() {
        // x entirely above y: P(U ≥ 9) = 1/C(6,3) = 0.05 one-sided.
        let opts = MwuOptions {
            alternative: Alternative::Greater,
            ..MwuOptions::default()
        };
        let r = mann_whitney_u(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0], opts).expect("valid");
        assert_eq!(r.method, MwuMethod::Exact);
        assert_eq!(r.u1, 9.0);
        assert!((r.p_value - 0.05).abs() < 1e-15);
    }
}
