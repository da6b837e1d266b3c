//! One-sided bookkeeping of the mSPRT for a canary regression.
//!
//! Contract: the normal-mixture likelihood ratio `Λ` of [`crate::stats::msprt`] is evaluated at
//! every look against `H₀: θ = θ₀`, where `θ₀` is the allowed difference; the running p-value
//! `p = min 1/Λ` is updated only at looks whose estimate lies on the *bad* side of `θ₀`. Since
//! `P(∃n: Λₙ ≥ 1/α) ≤ α` under `H₀` (Ville's inequality; Johari, Pekelis, Walsh, "Always Valid
//! Inference", Oper. Res. 2022), the probability that this one-sided p ever reaches `α` is at
//! most `α`, and when the canary is truly better than `θ₀` it is smaller still. So a canary is
//! failed at most with probability `α` over the whole rollout, however often it is looked at.

use serde::{Deserialize, Serialize};

use crate::spec::Direction;
use crate::stats::msprt::MixtureSprt;
use crate::stats::StatsError;

/// The running state of one metric's sequential test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequentialState {
    /// The always-valid one-sided p-value so far (1 before any bad-side look).
    pub p_bad: f64,
    /// Looks taken.
    pub looks: u64,
}

impl Default for SequentialState {
    fn default() -> Self {
        SequentialState {
            p_bad: 1.0,
            looks: 0,
        }
    }
}

/// The result of one look.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Look {
    /// The likelihood ratio at this look.
    pub e_value: f64,
    /// The running one-sided p-value after this look.
    pub p_value: f64,
    /// Whether this look's estimate is on the bad side of `θ₀`.
    pub bad_side: bool,
    /// Whether the regression is shown (`p ≤ α`).
    pub rejected: bool,
}

impl SequentialState {
    /// Takes a look at `(estimate, variance)` of `canary − stable` against `theta0`.
    pub fn look(
        &mut self,
        tau: f64,
        theta0: f64,
        estimate: f64,
        variance: f64,
        direction: Direction,
        alpha: f64,
    ) -> Result<Look, StatsError> {
        let test = MixtureSprt::new(tau * tau, theta0)?;
        let e_value = test.likelihood_ratio(estimate, variance)?;
        let bad_side = match direction {
            Direction::Increase => estimate > theta0,
            Direction::Decrease => estimate < theta0,
        };
        self.looks += 1;
        if bad_side && e_value > 0.0 {
            self.p_bad = self.p_bad.min(1.0 / e_value);
        }
        Ok(Look {
            e_value,
            p_value: self.p_bad,
            bad_side,
            rejected: self.p_bad <= alpha,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_side_evidence_never_fails() {
        let mut s = SequentialState::default();
        let look = s
            .look(0.1, 0.0, -1.0, 0.001, Direction::Increase, 0.05)
            .expect("valid");
        assert!(!look.bad_side && !look.rejected && look.e_value > 1e6);
        let look = s
            .look(0.1, 0.0, 0.001, 0.001, Direction::Increase, 0.05)
            .expect("valid");
        assert!(look.bad_side && !look.rejected);
        let look = s
            .look(0.1, 0.0, 1.0, 0.001, Direction::Increase, 0.05)
            .expect("valid");
        assert!(look.rejected);
        assert_eq!(s.looks, 3);
    }
}
