//! Quantiles (p50/p95/p99) with distribution-free confidence intervals from order statistics.
//!
//! Method: the number of observations below the true `p`-quantile is Binomial(n, p), whatever
//! the distribution (for continuous data). The two-sided interval at level `c` is
//! `[x_(l), x_(h)]` (0-based order statistics) with `l = F⁻¹(α/2) − 1` and `h = S⁻¹(α/2)`,
//! where `F⁻¹` is the binomial quantile (smallest `k` with `P(B ≤ k) ≥ α/2`) and `S⁻¹` the
//! inverse survival function (smallest `k` with `P(B > k) ≤ α/2`), `α = 1 − c`: exactly
//! `scipy.stats.quantile_test(x, p=p).confidence_interval(c)`. An end that needs an order
//! statistic outside the sample is `None` (e.g. a p99 upper bound with fewer than ~300 values
//! at 95%): the data cannot bound it, and the judge must treat that as "not enough data".
//!
//! The point estimate is the linear interpolation of numpy's default (`np.quantile`, type 7).
//!
//! [`compare_quantiles`] compares two arms by their intervals, each at level `1 − α/2` so that
//! both hold together with probability ≥ `1 − α` (Bonferroni): the canary is `Higher` when its
//! lower end is above the control's upper end. This is conservative but needs no assumption
//! about the shape of latency distributions.

use statrs::function::factorial::ln_binomial;

use super::{check_level, check_sample, StatsError};

/// A quantile estimate and its confidence interval.
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct QuantileEstimate {
    /// The quantile's probability, e.g. 0.99.
    pub p: f64,
    /// The type-7 (numpy default) point estimate.
    pub estimate: f64,
    /// The lower end, `None` when the sample is too small to bound it.
    pub lower: Option<f64>,
    /// The upper end, `None` when the sample is too small to bound it.
    pub upper: Option<f64>,
    /// The confidence level of the interval.
    pub confidence: f64,
    /// The sample size.
    pub n: usize,
}

/// The order of two arms' quantiles as decided by their intervals.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantileOrder {
    /// The experiment's quantile is above the control's (intervals disjoint).
    Higher,
    /// The experiment's quantile is below the control's (intervals disjoint).
    Lower,
    /// The intervals overlap: no difference shown.
    Overlap,
    /// An interval end is missing: too little data to decide.
    Undetermined,
}

/// Two arms' quantile estimates and their order.
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct QuantileComparison {
    /// The control's estimate (interval at the Bonferroni-adjusted level).
    pub control: QuantileEstimate,
    /// The experiment's estimate (interval at the Bonferroni-adjusted level).
    pub experiment: QuantileEstimate,
    /// `experiment.estimate − control.estimate`.
    pub difference: f64,
    /// The decision at the requested joint confidence.
    pub order: QuantileOrder,
}

/// The `p`-quantile of `sample` with a two-sided `confidence` interval (see the module docs).
pub fn quantile_ci(
    sample: &[f64],
    p: f64,
    confidence: f64,
) -> Result<QuantileEstimate, StatsError> {
    check_sample(sample, "sample")?;
    check_level(confidence)?;
    if !(p > 0.0 && p < 1.0) {
        return Err(StatsError::InvalidParameter {
            name: "p",
            value: p,
        });
    }
    let mut sorted = sample.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let tail = (1.0 - confidence) / 2.0;
    let pmf = binomial_pmf(n as u64, p);
    // ppf: smallest k with CDF(k) ≥ tail.
    let mut cdf = 0.0;
    let mut ppf = n;
    for (k, q) in pmf.iter().enumerate() {
        cdf += q;
        if cdf >= tail {
            ppf = k;
            break;
        }
    }
    // isf: smallest k with SF(k) = P(B > k) ≤ tail, summed from the right for accuracy.
    let mut sf = 0.0;
    let mut isf = 0;
    for k in (0..=n).rev() {
        // here sf = P(B > k)
        if sf > tail {
            isf = k + 1;
            break;
        }
        sf += pmf[k];
    }
    let lower = ppf.checked_sub(1).and_then(|i| sorted.get(i)).copied();
    let upper = sorted.get(isf).copied();
    Ok(QuantileEstimate {
        p,
        estimate: type7(&sorted, p),
        lower,
        upper,
        confidence,
        n,
    })
}

/// Compares the `p`-quantiles of two arms at joint `confidence` (see the module docs).
pub fn compare_quantiles(
    control: &[f64],
    experiment: &[f64],
    p: f64,
    confidence: f64,
) -> Result<QuantileComparison, StatsError> {
    check_level(confidence)?;
    let each = 1.0 - (1.0 - confidence) / 2.0;
    let control = quantile_ci(control, p, each)?;
    let experiment = quantile_ci(experiment, p, each)?;
    let order = match (
        control.lower,
        control.upper,
        experiment.lower,
        experiment.upper,
    ) {
        (_, Some(c_hi), Some(e_lo), _) if e_lo > c_hi => QuantileOrder::Higher,
        (Some(c_lo), _, _, Some(e_hi)) if e_hi < c_lo => QuantileOrder::Lower,
        (Some(_), Some(_), Some(_), Some(_)) => QuantileOrder::Overlap,
        _ => QuantileOrder::Undetermined,
    };
    Ok(QuantileComparison {
        difference: experiment.estimate - control.estimate,
        control,
        experiment,
        order,
    })
}

/// numpy's default (linear, type 7) quantile of a sorted, non-empty slice.
pub(crate) fn type7(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let i = h.floor() as usize;
    let frac = h - i as f64;
    match (sorted.get(i), sorted.get(i + 1)) {
        (Some(&a), Some(&b)) => a + (b - a) * frac,
        (Some(&a), None) => a,
        _ => f64::NAN,
    }
}

/// The Binomial(n, p) probabilities of 0..=n, from log-space terms.
fn binomial_pmf(n: u64, p: f64) -> Vec<f64> {
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    (0..=n)
        .map(|k| (ln_binomial(n, k) + k as f64 * ln_p + (n - k) as f64 * ln_q).exp())
        .collect()
}
