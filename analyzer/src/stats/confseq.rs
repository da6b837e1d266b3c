//! Anytime-valid confidence sequences: one-sided normal-mixture bounds, the dual of the mSPRT.
//!
//! Source: Howard, Ramdas, McAuliffe, Sekhon, "Time-uniform, nonparametric, nonasymptotic
//! confidence sequences", Ann. Statist. 49(2), 2021 (the normal-mixture boundary, §3 and
//! Proposition 5's one-sided form). Take an estimate `θ̂ₙ` of a difference `θ` whose error
//! `θ̂ₙ − θ` behaves like a Gaussian martingale with variance `Vₙ` (the same model as the mSPRT of
//! [`super::msprt`]). Write `Sₙ = (θ̂ₙ − θ)/Vₙ` and `vₙ = 1/Vₙ` (the information). For every
//! `λ`, `exp(λSₙ − λ²vₙ/2)` is a nonnegative martingale with mean 1; mixing `λ` over a
//! **half**-normal with scale `1/τ` (only `λ > 0`) gives
//!
//! `Mₙ(θ) = 2 · sqrt(Vₙ/(Vₙ+τ²)) · exp(z²/2) · Φ(z)`, with `z = (θ̂ₙ − θ)·τ / sqrt(Vₙ(Vₙ+τ²))`,
//!
//! again a nonnegative martingale with mean 1 at the true `θ`. Ville's inequality gives
//! `P(∃n: Mₙ(θ) ≥ 1/α) ≤ α`, so the **lower bound** `Lₙ = inf{θ: Mₙ(θ) < 1/α}` satisfies
//! `P(∃n: θ < Lₙ) ≤ α`: it holds at every look at once, however often one looks and whenever one
//! stops. The upper bound is the mirror image. Mixing over the whole real line instead of half of
//! it gives exactly the mSPRT's `Λₙ`; the set `{θ₀ : Λₙ(θ₀) < 1/α}` is its two-sided dual
//! ([`two_sided_radius`]). The one-sided form is tighter for a one-sided question (roughly level
//! `2α` of the two-sided form at the same guarantee), and a gate asks one-sided questions: "is
//! the canary shown within its allowance?" and "is it shown beyond it?".
//!
//! `z*` solving `ln 2 + ½ ln(V/(V+τ²)) + z²/2 + ln Φ(z) = ln(1/α)` is unique (the left side is
//! increasing in `z`, since `φ(z)/Φ(z) > −z`), so `Lₙ = θ̂ₙ − z*·sqrt(Vₙ(Vₙ+τ²))/τ`.
//!
//! Conditions, as for the mSPRT: the guarantee is exact for Gaussian increments with known
//! variance; with a plug-in variance (sample variances, `p̂(1−p̂)` for rates) it holds
//! asymptotically. `τ` sets where the bound is tightest: it is narrowest when `Vₙ` is near
//! `τ²/(2 ln(1/α))`, so `τ` near the allowance makes a decision at the allowance quickest.

use statrs::distribution::ContinuousCDF;

use super::{std_normal, StatsError};

/// A one-sided bound of a time-uniform confidence sequence and its e-value at a tested value.
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct Bounds {
    /// The estimate `θ̂`.
    pub estimate: f64,
    /// `θ̂ − radius`: `θ ≥ lower` at every look with probability ≥ `1 − α`.
    pub lower: f64,
    /// `θ̂ + radius`: `θ ≤ upper` at every look with probability ≥ `1 − α`.
    pub upper: f64,
}

fn check(variance: f64, tau: f64, alpha: f64) -> Result<(), StatsError> {
    if !(variance.is_finite() && variance > 0.0) {
        return Err(StatsError::ZeroVariance("the estimate has no variance"));
    }
    if !(tau.is_finite() && tau > 0.0) {
        return Err(StatsError::InvalidParameter {
            name: "tau",
            value: tau,
        });
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::InvalidParameter {
            name: "alpha",
            value: alpha,
        });
    }
    Ok(())
}

/// `ln Φ(z)`, accurate in the far lower tail (where `Φ` underflows) through the asymptotic
/// series of the Mills ratio.
fn ln_phi_cdf(z: f64) -> f64 {
    if z > -30.0 {
        return std_normal().cdf(z).ln();
    }
    // Φ(z) ≈ φ(z)/|z| · (1 − 1/z² + 3/z⁴) for z → −∞.
    let z2 = z * z;
    -0.5 * z2 - (2.0 * std::f64::consts::PI).sqrt().ln() - (-z).ln()
        + (1.0 - 1.0 / z2 + 3.0 / (z2 * z2)).ln()
}

/// The natural log of the one-sided mixture e-value `M` for evidence that `θ > theta0`, given an
/// estimate with `variance` and mixing scale `tau` (see the module docs). Large when the estimate
/// lies well above `theta0`; below 0 when it lies below.
pub fn log_e_above(estimate: f64, variance: f64, theta0: f64, tau: f64) -> Result<f64, StatsError> {
    check(variance, tau, 0.5)?;
    if !(estimate.is_finite() && theta0.is_finite()) {
        return Err(StatsError::NonFinite { which: "estimate" });
    }
    let t2 = tau * tau;
    let scale = (variance * (variance + t2)).sqrt() / tau;
    let z = (estimate - theta0) / scale;
    Ok(std::f64::consts::LN_2
        + 0.5 * (variance / (variance + t2)).ln()
        + 0.5 * z * z
        + ln_phi_cdf(z))
}

/// The natural log of the one-sided mixture e-value for evidence that `θ < theta0`.
pub fn log_e_below(estimate: f64, variance: f64, theta0: f64, tau: f64) -> Result<f64, StatsError> {
    log_e_above(-estimate, variance, -theta0, tau)
}

/// The radius of the one-sided bound at level `alpha`: `θ̂ ± radius` are the lower and upper
/// bounds, each holding at every look with probability ≥ `1 − alpha`.
pub fn one_sided_radius(variance: f64, tau: f64, alpha: f64) -> Result<f64, StatsError> {
    check(variance, tau, alpha)?;
    let t2 = tau * tau;
    let target = (1.0 / alpha).ln();
    let offset = std::f64::consts::LN_2 + 0.5 * (variance / (variance + t2)).ln();
    let f = |z: f64| offset + 0.5 * z * z + ln_phi_cdf(z) - target;
    // f(0) < 0 and f(z) ≥ 0 once z² ≥ 2·ln(1/α) + ln((V+τ²)/V) (ln 2 + ln Φ(z) ≥ 0 for z ≥ 0).
    let (mut lo, mut hi) = (
        0.0,
        (2.0 * target + ((variance + t2) / variance).ln()).sqrt() + 1.0,
    );
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-12 * hi.max(1.0) {
            break;
        }
    }
    Ok(hi * (variance * (variance + t2)).sqrt() / tau)
}

/// Both one-sided bounds at level `alpha` each.
pub fn bounds(estimate: f64, variance: f64, tau: f64, alpha: f64) -> Result<Bounds, StatsError> {
    if !estimate.is_finite() {
        return Err(StatsError::NonFinite { which: "estimate" });
    }
    let r = one_sided_radius(variance, tau, alpha)?;
    Ok(Bounds {
        estimate,
        lower: estimate - r,
        upper: estimate + r,
    })
}

/// The radius of the mSPRT's two-sided dual at level `alpha`: `{θ₀ : Λ(θ₀) < 1/α}` is
/// `θ̂ ± radius`, with `radius² = V(V+τ²)/τ² · (2 ln(1/α) + ln((V+τ²)/V))` (solving the mSPRT
/// formula of [`super::msprt`] for `θ̂ − θ₀`).
pub fn two_sided_radius(variance: f64, tau: f64, alpha: f64) -> Result<f64, StatsError> {
    check(variance, tau, alpha)?;
    let t2 = tau * tau;
    let r2 = variance * (variance + t2) / t2
        * (2.0 * (1.0 / alpha).ln() + ((variance + t2) / variance).ln());
    Ok(r2.sqrt())
}

/// The quantile level (of the standard normal) at which a fixed-sample one-sided bound has the
/// same radius: `radius / sqrt(V)`, for reports ("the bound is a z = 3.1 bound at this n").
pub fn equivalent_z(variance: f64, tau: f64, alpha: f64) -> Result<f64, StatsError> {
    Ok(one_sided_radius(variance, tau, alpha)? / variance.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::msprt::MixtureSprt;

    #[test]
    fn the_bound_is_where_the_e_value_reaches_one_over_alpha() {
        let (v, tau, alpha) = (4e-4, 0.02, 0.01);
        let r = one_sided_radius(v, tau, alpha).expect("valid");
        let at = log_e_above(0.3, v, 0.3 - r, tau).expect("valid");
        assert!((at - (1.0 / alpha).ln()).abs() < 1e-9, "{at}");
        let below = log_e_below(0.3, v, 0.3 + r, tau).expect("valid");
        assert!((below - (1.0 / alpha).ln()).abs() < 1e-9);
        // inside the bound, no evidence reaches 1/α
        assert!(log_e_above(0.3, v, 0.3 - 0.9 * r, tau).expect("valid") < (1.0 / alpha).ln());
    }

    #[test]
    fn the_two_sided_dual_matches_the_msprt() {
        let (v, tau, alpha) = (2.5e-3, 0.1, 0.05);
        let r = two_sided_radius(v, tau, alpha).expect("valid");
        let test = MixtureSprt::new(tau * tau, 1.0).expect("valid");
        let lr = test.likelihood_ratio(1.0 + r, v).expect("valid");
        assert!((lr - 1.0 / alpha).abs() < 1e-9 * lr, "{lr}");
        // the one-sided bound is tighter than the two-sided one at the same α
        let one = one_sided_radius(v, tau, alpha).expect("valid");
        assert!(one < r && one > two_sided_radius(v, tau, 2.0 * alpha).expect("valid") * 0.9);
    }

    #[test]
    fn the_far_tail_is_finite() {
        // Far below θ₀ the one-sided mixture's e-value falls like 1/|z| (its mass near λ = 0),
        // not like exp(−z²/2): finite, and well below 1.
        let e = log_e_above(-1.0, 1e-6, 1.0, 0.01).expect("valid");
        assert!(e.is_finite() && e < -5.0, "{e}");
        assert!(one_sided_radius(0.0, 0.1, 0.05).is_err());
        assert!(one_sided_radius(1e-3, 0.1, 1.5).is_err());
    }

    /// Seeded check of the guarantee: Gaussian increments, a look after every observation for
    /// 2,000 observations, 2,000 runs; the bound must be crossed in at most α of the runs,
    /// judged by the 99.9% Wilson interval of the crossing rate (measured 0.0395, interval
    /// [0.0275, 0.0565]), which must also reach α/4 (a bound that is never crossed is useless).
    #[test]
    fn coverage_holds_at_every_look() {
        let mut state = 42u64;
        let mut uniform =
            || (crate::judge::evidence::splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        let (alpha, sigma, tau) = (0.05, 1.0, 0.2);
        let (runs, looks) = (2000u32, 2000u32);
        // The radius depends on n alone here: compute it once per n.
        let radius: Vec<f64> = (1..=looks)
            .map(|n| one_sided_radius(sigma * sigma / f64::from(n), tau, alpha).expect("valid"))
            .collect();
        let mut crossed = 0u32;
        for _ in 0..runs {
            let mut sum = 0.0;
            for (n, r) in (1..=looks).zip(&radius) {
                let u1 = uniform().max(f64::MIN_POSITIVE);
                let u2 = uniform();
                sum += sigma * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                if sum / f64::from(n) + r < 0.0 {
                    crossed += 1;
                    break;
                }
            }
        }
        let rate = f64::from(crossed) / f64::from(runs);
        let ci =
            crate::stats::proportions::wilson_interval(u64::from(crossed), u64::from(runs), 0.999)
                .expect("valid");
        let (lower, upper) = (ci.lower.unwrap_or(0.0), ci.upper.unwrap_or(1.0));
        assert!(
            lower <= alpha,
            "crossed in {rate} of runs, 99.9% CI [{lower}, {upper}]"
        );
        assert!(
            upper >= alpha / 4.0,
            "a bound this loose would be useless: {rate}"
        );
    }
}
