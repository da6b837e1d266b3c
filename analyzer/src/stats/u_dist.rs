//! The exact null distribution of the Mann-Whitney U statistic without ties.
//!
//! The number of arrangements giving `U = u` is the coefficient of `q^u` in the Gaussian
//! binomial `[m+n choose m]_q = Π_{i=1..m} (1 − q^{n+i}) / (1 − q^i)`. Each factor keeps the
//! coefficients integral, so they are computed exactly in `i128` and divided by `C(m+n, m)` once.

use super::StatsError;

/// The exact distribution of U for sample sizes `m`, `n` (symmetric about `m·n/2`).
pub(crate) struct UDistribution {
    /// `cdf[u] = P(U ≤ u)`.
    cdf: Vec<f64>,
    /// `pmf[u] = P(U = u)`.
    pmf: Vec<f64>,
}

/// The largest `ln C(m+n, m)` for which the counts fit in an `i128` with room to spare.
const MAX_LN_TOTAL: f64 = 120.0 * std::f64::consts::LN_2;
/// The largest support (`m·n + 1`) built, to bound memory.
const MAX_SUPPORT: usize = 4_000_000;

impl UDistribution {
    /// Builds the distribution, or fails when the counts would overflow or be too large.
    pub(crate) fn new(m: usize, n: usize) -> Result<Self, StatsError> {
        let (m, n) = (m.min(n), m.max(n));
        let ln_total = statrs::function::factorial::ln_binomial((m + n) as u64, m as u64);
        let support = m.checked_mul(n).and_then(|s| s.checked_add(1));
        let support = match support {
            Some(s) if s <= MAX_SUPPORT && ln_total <= MAX_LN_TOTAL => s,
            _ => return Err(StatsError::TooLarge("exact Mann-Whitney distribution")),
        };
        // intermediate products reach degree m·n + m before each division.
        let mut counts = vec![0i128; support + m];
        counts[0] = 1;
        let mut degree = 0usize;
        for i in 1..=m {
            // multiply by (1 − q^{n+i}); the new degree is degree + n + i.
            let shift = n + i;
            let new_degree = degree + shift;
            for d in (shift..=new_degree).rev() {
                counts[d] -= counts[d - shift];
            }
            // divide by (1 − q^i): running sum with stride i.
            for d in i..=new_degree {
                counts[d] += counts[d - i];
            }
            degree = new_degree - i;
        }
        counts.truncate(support);
        let total: i128 = counts.iter().sum();
        let total = total as f64;
        let pmf: Vec<f64> = counts.iter().map(|&c| c as f64 / total).collect();
        let mut cdf = Vec::with_capacity(pmf.len());
        let mut acc = 0.0;
        for p in &pmf {
            acc += p;
            cdf.push(acc);
        }
        Ok(UDistribution { cdf, pmf })
    }

    /// `P(U ≤ u)`; 0 below the support and 1 above it.
    pub(crate) fn cdf(&self, u: i64) -> f64 {
        if u < 0 {
            0.0
        } else {
            self.cdf.get(u as usize).copied().unwrap_or(1.0).min(1.0)
        }
    }

    /// `P(U ≥ u)`, summed from the nearer tail as scipy does.
    pub(crate) fn sf(&self, u: i64) -> f64 {
        let mn = self.pmf.len() as i64 - 1;
        let complement = mn - u;
        if u < complement {
            let pmf = if u >= 0 {
                self.pmf.get(u as usize).copied().unwrap_or(0.0)
            } else {
                0.0
            };
            1.0 - self.cdf(u) + pmf
        } else {
            self.cdf(complement)
        }
    }
}
