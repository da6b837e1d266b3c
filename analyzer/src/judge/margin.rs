//! The allowed difference of a metric, turned into the null value `θ₀` of a test.
//!
//! Contract: `θ₀` is signed toward the bad direction (positive when an increase is bad), in the
//! tested difference's unit (`canary − stable`). A relative allowance is a share of stable's
//! measured value (a plug-in: the margin moves with stable's estimate, which is negligible once
//! `min_samples` are in).

use crate::spec::{Allowed, Direction};

/// `θ₀` for a difference in the metric's own unit, given stable's value.
pub fn linear(allowed: Allowed, direction: Direction, stable: f64) -> f64 {
    let size = match allowed {
        Allowed::Absolute(a) => a.abs(),
        Allowed::Relative(r) => (r * stable).abs(),
    };
    signed(size, direction)
}

/// `θ₀` for a difference of logs (latency): `ln(1 ± r)`, or an absolute allowance in ms
/// relative to stable's geometric mean `stable_gm`.
pub fn log_ratio(allowed: Allowed, direction: Direction, stable_gm: f64) -> f64 {
    let share = match allowed {
        Allowed::Relative(r) => r.abs(),
        Allowed::Absolute(a) if stable_gm > 0.0 => a.abs() / stable_gm,
        Allowed::Absolute(_) => 0.0,
    };
    match direction {
        Direction::Increase => share.ln_1p(),
        Direction::Decrease => (1.0 - share).max(1e-9).ln(),
    }
}

/// `size` signed toward the bad direction.
pub fn signed(size: f64, direction: Direction) -> f64 {
    match direction {
        Direction::Increase => size,
        Direction::Decrease => -size,
    }
}

/// Whether `delta = canary − stable` is beyond `theta0` on the bad side.
pub fn beyond(delta: f64, theta0: f64, direction: Direction) -> bool {
    match direction {
        Direction::Increase => delta > theta0,
        Direction::Decrease => delta < theta0,
    }
}

/// The failing side for a direction.
pub fn bad_side(direction: Direction) -> crate::verdict::Side {
    match direction {
        Direction::Increase => crate::verdict::Side::High,
        Direction::Decrease => crate::verdict::Side::Low,
    }
}

/// Fail on the bad side when `failed`, else Pass.
pub fn outcome(failed: bool, direction: Direction) -> crate::verdict::Outcome {
    if failed {
        crate::verdict::Outcome::Fail {
            side: bad_side(direction),
        }
    } else {
        crate::verdict::Outcome::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_point_to_the_bad_side() {
        assert_eq!(
            linear(Allowed::Absolute(0.01), Direction::Decrease, 0.9),
            -0.01
        );
        assert!((linear(Allowed::Relative(0.5), Direction::Increase, 0.02) - 0.01).abs() < 1e-15);
        assert!(
            (log_ratio(Allowed::Relative(0.1), Direction::Increase, 1.0) - 1.1f64.ln()).abs()
                < 1e-15
        );
        assert!(
            (log_ratio(Allowed::Absolute(10.0), Direction::Increase, 100.0) - 1.1f64.ln()).abs()
                < 1e-12
        );
        assert!(beyond(0.2, 0.1, Direction::Increase) && !beyond(0.2, 0.1, Direction::Decrease));
    }
}
