//! The three-way decision of the sequential method: a metric passes when its anytime-valid bound
//! of `canary − stable` lies inside the allowance, fails when the bound on the other side lies
//! beyond it, and is inconclusive otherwise.
//!
//! Contract: `theta0` is the allowance signed toward the bad direction ([`super::margin`]).
//! For an increase-is-bad metric, **Pass** ⟺ `upper < θ₀` and **Fail** ⟺ `lower > θ₀`; a
//! decrease-is-bad metric mirrors it. Each bound holds at every look with probability ≥ `1 − α`
//! ([`crate::stats::confseq`]), so a metric worse than its allowance passes at some look with
//! probability ≤ α, and one within its allowance fails at some look with probability ≤ α,
//! however often the judge looks. The e-value reported is the one-sided mixture against
//! `θ = θ₀` toward the bad side; `1/e` is an always-valid p-value for "beyond the allowance".

use crate::spec::Direction;
use crate::stats::confseq;
use crate::stats::StatsError;
use crate::verdict::{finite, Outcome, TestUsed, Verdict};

use super::margin;

/// A decision with the numbers behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judged {
    /// Pass, Fail or Inconclusive.
    pub outcome: Outcome,
    /// The estimate.
    pub estimate: f64,
    /// The lower bound.
    pub lower: f64,
    /// The upper bound.
    pub upper: f64,
    /// The bound compared with the allowance for a Pass.
    pub bound: f64,
    /// The allowance `θ₀`.
    pub theta0: f64,
    /// The e-value toward the bad side at `θ₀`.
    pub e_bad: f64,
}

/// Decides from `(estimate, variance)` of `canary − stable` against `theta0` at level `alpha`
/// per side, with mixing scale `tau`.
pub fn decide(
    direction: Direction,
    estimate: f64,
    variance: f64,
    theta0: f64,
    tau: f64,
    alpha: f64,
) -> Result<Judged, StatsError> {
    let b = confseq::bounds(estimate, variance, tau, alpha)?;
    Ok(judged(direction, estimate, b.lower, b.upper, theta0, {
        let ln_e = match direction {
            Direction::Increase => confseq::log_e_above(estimate, variance, theta0, tau)?,
            Direction::Decrease => confseq::log_e_below(estimate, variance, theta0, tau)?,
        };
        ln_e.min(700.0).exp()
    }))
}

/// The decision for given bounds (also used by the fixed-horizon methods' intervals).
pub fn judged(
    direction: Direction,
    estimate: f64,
    lower: f64,
    upper: f64,
    theta0: f64,
    e_bad: f64,
) -> Judged {
    let (pass, fail, bound) = match direction {
        Direction::Increase => (upper < theta0, lower > theta0, upper),
        Direction::Decrease => (lower > theta0, upper < theta0, lower),
    };
    let outcome = if fail {
        Outcome::Fail {
            side: margin::bad_side(direction),
        }
    } else if pass {
        Outcome::Pass
    } else {
        Outcome::Inconclusive
    };
    Judged {
        outcome,
        estimate,
        lower,
        upper,
        bound,
        theta0,
        e_bad,
    }
}

impl Judged {
    /// The words for the outcome, for reasons.
    pub fn words(&self) -> &'static str {
        match self.outcome {
            Outcome::Pass => "shown within the allowance",
            Outcome::Fail { .. } => "shown beyond the allowance",
            _ => "not shown either way yet: collecting",
        }
    }

    /// A verdict carrying these numbers (values and counts are set by the caller).
    pub fn verdict(&self, metric: &str, test: TestUsed, measure: &str, reason: String) -> Verdict {
        let mut v = Verdict::new(metric, self.outcome, test, reason);
        v.estimate = finite(self.estimate);
        v.interval = Some((self.lower, self.upper)).filter(|(a, b)| a.is_finite() && b.is_finite());
        v.bound = finite(self.bound);
        v.allowance = finite(self.theta0);
        v.measure = Some(measure.to_owned());
        v.e_value = finite(self.e_bad);
        v.p_value = finite((1.0 / self.e_bad).min(1.0));
        v
    }
}

/// A rate with half an event added to each side (`(x + ½)/(n + 1)`), so that a rate of 0 or 1
/// still has a variance; the plug-in variance `p̃(1−p̃)/n` of the confidence sequences.
pub fn smoothed_rate(x: u64, n: u64) -> f64 {
    (x as f64 + 0.5) / (n as f64 + 1.0)
}

/// The plug-in variance of a rate estimate from `x` of `n`.
pub fn rate_variance(x: u64, n: u64) -> f64 {
    let p = smoothed_rate(x, n);
    p * (1.0 - p) / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ways() {
        let d = |est: f64, var: f64| {
            decide(Direction::Increase, est, var, 0.01, 0.01, 0.05)
                .expect("valid")
                .outcome
        };
        assert_eq!(d(0.0, 1e-6), Outcome::Pass);
        assert_eq!(d(0.0, 1e-4), Outcome::Inconclusive);
        assert!(matches!(d(0.05, 1e-6), Outcome::Fail { .. }));
        let dec = decide(Direction::Decrease, -0.1, 1e-5, -0.02, 0.02, 0.05).expect("valid");
        assert!(matches!(dec.outcome, Outcome::Fail { .. }) && dec.e_bad > 20.0);
        assert_eq!(dec.bound, dec.lower);
    }
}
