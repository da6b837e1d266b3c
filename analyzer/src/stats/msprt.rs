//! Anytime-valid sequential tests: the normal-mixture SPRT (mSPRT).
//!
//! Source: Johari, Koomen, Pekelis, Walsh, "Peeking at A/B Tests: Why it matters, and what to do
//! about it", KDD 2017, and Johari, Pekelis, Walsh, "Always Valid Inference: Continuous Monitoring
//! of A/B Tests", Operations Research 70(3), 2022. For an estimate `θ̂ₙ` of a difference with
//! (known) variance `Vₙ` and a normal mixing distribution `N(θ₀, τ²)` over the alternative,
//! the mixture likelihood ratio against `H₀: θ = θ₀` is
//!
//! `Λₙ = sqrt(Vₙ / (Vₙ + τ²)) · exp( τ² (θ̂ₙ − θ₀)² / (2 Vₙ (Vₙ + τ²)) )`.
//!
//! With `n` observations per arm and per-observation variance `σ²`, `Vₙ = 2σ²/n` and this is
//! exactly the paper's `sqrt(2σ²/(2σ²+nτ²)) · exp(n²τ²(Ȳₙ−X̄ₙ−θ₀)² / (4σ²(2σ²+nτ²)))`.
//! Under `H₀`, `Λₙ` is a nonnegative martingale with mean 1, so by Ville's inequality
//! `P(∃n: Λₙ ≥ 1/α) ≤ α`: `Λₙ` is an e-value, and the running `pₙ = min(pₙ₋₁, 1/Λₙ)` is an
//! always-valid p-value. **Guarantee**: looking after every interval (or every request) and rolling
//! back the first time `pₙ ≤ α` keeps the false-rollback probability ≤ α, unlike re-running a
//! fixed-horizon test on a growing window (Kayenta, Argo), whose error tends to 1.
//!
//! Conditions: observations independent across time, and `V` known. With the plug-in variance
//! (sample variances, or `p̂(1−p̂)` for rates) the guarantee holds asymptotically (Johari et al.
//! 2022, §4); arms may have unequal sizes if the split is fixed, with `V = σ₁²/n₁ + σ₂²/n₂`.
//!
//! Latency: apply the mean test to `ln(latency)` (multiplicative slowdowns become shifts and the
//! heavy tail is tamed; θ̂ is the log of the ratio of geometric means), or the rate test to the
//! indicator "latency above the SLO threshold" fixed in the policy, which is a bounded metric
//! where the normal approximation is good. `τ` sets which effect sizes are detected fastest;
//! choose it near the smallest regression worth rolling back for.

use super::moments::Moments;
use super::proportions::check_counts;
use super::StatsError;

/// A normal-mixture SPRT for a difference `θ` against `H₀: θ = θ₀`.
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct MixtureSprt {
    tau2: f64,
    theta0: f64,
}

/// One look of an mSPRT monitor.
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct SequentialLook {
    /// The estimated difference `θ̂` (experiment − control).
    pub estimate: f64,
    /// The mixture likelihood ratio `Λₙ` at this look (an e-value).
    pub e_value: f64,
    /// The always-valid p-value `min over looks of 1/Λ`, in `(0, 1]`.
    pub p_value: f64,
    /// Whether `p ≤ α` has been reached at this or an earlier look.
    pub rejected: bool,
}

impl MixtureSprt {
    /// A test with mixing variance `tau2 > 0` centred on the null value `theta0`.
    pub fn new(tau2: f64, theta0: f64) -> Result<Self, StatsError> {
        if !(tau2.is_finite() && tau2 > 0.0) {
            return Err(StatsError::InvalidParameter {
                name: "tau2",
                value: tau2,
            });
        }
        if !theta0.is_finite() {
            return Err(StatsError::InvalidParameter {
                name: "theta0",
                value: theta0,
            });
        }
        Ok(MixtureSprt { tau2, theta0 })
    }

    /// `Λ` for an estimate with variance `variance > 0` (the general form above).
    pub fn likelihood_ratio(&self, estimate: f64, variance: f64) -> Result<f64, StatsError> {
        if !(variance.is_finite() && variance > 0.0) {
            return Err(StatsError::ZeroVariance("the estimate has no variance"));
        }
        if !estimate.is_finite() {
            return Err(StatsError::NonFinite { which: "estimate" });
        }
        let d = estimate - self.theta0;
        let v_t = variance + self.tau2;
        let ln = 0.5 * (variance / v_t).ln() + self.tau2 * d * d / (2.0 * variance * v_t);
        Ok(ln.exp())
    }

    /// `(θ̂, V)` for `mean(experiment) − mean(control)`; `known_variances` are the per-observation
    /// variances `(σ²_control, σ²_experiment)`, or `None` for the plug-in sample variances.
    pub fn mean_difference(
        control: &Moments,
        experiment: &Moments,
        known_variances: Option<(f64, f64)>,
    ) -> Result<(f64, f64), StatsError> {
        for (m, which) in [(control, "control"), (experiment, "experiment")] {
            if m.count() < 2 {
                return Err(StatsError::TooFew {
                    which,
                    got: m.count() as usize,
                    needed: 2,
                });
            }
        }
        let (s1, s2) = known_variances.unwrap_or((control.variance(), experiment.variance()));
        let v = s1 / control.count() as f64 + s2 / experiment.count() as f64;
        Ok((experiment.mean() - control.mean(), v))
    }

    /// `(θ̂, V)` for the rate difference `x2/n2 − x1/n1` (experiment second), with plug-in
    /// variance `p̂(1−p̂)/n` per arm; a rate of exactly 0 or 1 uses the pooled rate instead.
    pub fn rate_difference(x1: u64, n1: u64, x2: u64, n2: u64) -> Result<(f64, f64), StatsError> {
        check_counts(x1, n1, "control")?;
        check_counts(x2, n2, "experiment")?;
        let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
        let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
        let var = |p: f64| {
            if p > 0.0 && p < 1.0 {
                p * (1.0 - p)
            } else {
                pooled * (1.0 - pooled)
            }
        };
        Ok((p2 - p1, var(p1) / n1 as f64 + var(p2) / n2 as f64))
    }
}

/// A running always-valid p-value for one metric over the looks of a rollout.
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct SequentialMonitor {
    test: MixtureSprt,
    alpha: f64,
    p_value: f64,
}

impl SequentialMonitor {
    /// A monitor that rejects once the always-valid p-value reaches `alpha ∈ (0, 1)`.
    pub fn new(test: MixtureSprt, alpha: f64) -> Result<Self, StatsError> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(StatsError::InvalidParameter {
                name: "alpha",
                value: alpha,
            });
        }
        Ok(SequentialMonitor {
            test,
            alpha,
            p_value: 1.0,
        })
    }

    /// Records a look at the cumulative data summarised by `(estimate, variance)`.
    ///
    /// A look that cannot be evaluated (zero variance) is an error and leaves the state unchanged.
    pub fn look(&mut self, estimate: f64, variance: f64) -> Result<SequentialLook, StatsError> {
        let e_value = self.test.likelihood_ratio(estimate, variance)?;
        self.p_value = self.p_value.min(1.0 / e_value);
        Ok(SequentialLook {
            estimate,
            e_value,
            p_value: self.p_value,
            rejected: self.p_value <= self.alpha,
        })
    }

    /// The always-valid p-value so far (1 before any look).
    pub fn p_value(&self) -> f64 {
        self.p_value
    }
}
