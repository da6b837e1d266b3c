//! Sample-ratio mismatch: is the observed split of requests between arms the configured one?
//!
//! Pearson's χ² goodness of fit of the observed counts against `total · wᵢ/Σw`
//! (`scipy.stats.chisquare(observed, f_exp)`), with `k − 1` degrees of freedom. A tiny p-value
//! (the usual SRM alarm is p < 0.001) means the routing, the sampling or the recording is biased
//! and every other comparison between the arms is suspect. Arms with weight 0 and no requests
//! are left out; an arm with weight 0 but requests is an infinite mismatch (p = 0).

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{StatsError, TestResult};

/// χ² goodness of fit of `observed` counts to configured `weights` (any positive scale).
///
/// The statistic is Pearson's χ². Errors: mismatched lengths, a negative or non-finite weight,
/// a zero total, or fewer than two arms with positive weight.
pub fn sample_ratio_mismatch(observed: &[u64], weights: &[f64]) -> Result<TestResult, StatsError> {
    if observed.len() != weights.len() {
        return Err(StatsError::LengthMismatch {
            left: observed.len(),
            right: weights.len(),
        });
    }
    if let Some(&w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(StatsError::InvalidParameter {
            name: "weight",
            value: w,
        });
    }
    let total: u64 = observed.iter().sum();
    if total == 0 {
        return Err(StatsError::EmptySample { which: "observed" });
    }
    let weight_sum: f64 = weights.iter().sum();
    let arms = weights.iter().filter(|w| **w > 0.0).count();
    if arms < 2 {
        return Err(StatsError::TooFew {
            which: "weighted arms",
            got: arms,
            needed: 2,
        });
    }
    let mut statistic = 0.0;
    for (&o, &w) in observed.iter().zip(weights) {
        if w == 0.0 {
            if o > 0 {
                return Ok(TestResult {
                    statistic: f64::INFINITY,
                    p_value: 0.0,
                });
            }
            continue;
        }
        let expected = total as f64 * w / weight_sum;
        let diff = o as f64 - expected;
        statistic += diff * diff / expected;
    }
    let dist = ChiSquared::new((arms - 1) as f64).map_err(|_| StatsError::InvalidParameter {
        name: "degrees of freedom",
        value: (arms - 1) as f64,
    })?;
    Ok(TestResult {
        statistic,
        p_value: dist.sf(statistic).clamp(0.0, 1.0),
    })
}
