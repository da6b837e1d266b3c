//! The anytime-valid guarantee of the mSPRT, checked by simulation with peeking after every
//! batch, next to the fixed-horizon z-test that the same peeking breaks.

use augur_analyzer::stats::moments::Moments;
use augur_analyzer::stats::msprt::{MixtureSprt, SequentialMonitor};

/// SplitMix64 with Box-Muller: a small deterministic normal generator for the simulation.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Fraction of runs that reject at some look: (mSPRT, naive repeated z-test at 1.96).
fn rejection_rates(effect: f64, runs: usize, looks: usize, batch: usize) -> (f64, f64) {
    let alpha = 0.05;
    let mut rng = Rng(42);
    let (mut msprt_rejects, mut naive_rejects) = (0, 0);
    for _ in 0..runs {
        let test = MixtureSprt::new(0.1, 0.0).expect("valid");
        let mut monitor = SequentialMonitor::new(test, alpha).expect("valid");
        let (mut control, mut canary) = (Moments::new(), Moments::new());
        let (mut msprt_hit, mut naive_hit) = (false, false);
        for _ in 0..looks {
            for _ in 0..batch {
                control.push(rng.normal());
                canary.push(rng.normal() + effect);
            }
            let (d, v) =
                MixtureSprt::mean_difference(&control, &canary, Some((1.0, 1.0))).expect("valid");
            msprt_hit |= monitor.look(d, v).expect("valid").rejected;
            naive_hit |= (d / v.sqrt()).abs() > 1.96;
        }
        msprt_rejects += usize::from(msprt_hit);
        naive_rejects += usize::from(naive_hit);
    }
    (
        msprt_rejects as f64 / runs as f64,
        naive_rejects as f64 / runs as f64,
    )
}

#[test]
fn peeking_keeps_false_rollbacks_below_alpha() {
    // 50 looks of 20 requests per arm under H0.
    let (msprt, naive) = rejection_rates(0.0, 1000, 50, 20);
    assert!(msprt <= 0.05, "mSPRT false-rejection rate {msprt}");
    // The same peeking with a fixed-horizon test is far above alpha (the motivating failure).
    assert!(naive > 0.15, "naive rate {naive}");
}

#[test]
fn a_real_regression_is_caught() {
    let (msprt, _) = rejection_rates(0.5, 200, 50, 20);
    assert!(msprt > 0.95, "power {msprt}");
}

#[test]
fn p_value_never_increases() {
    let test = MixtureSprt::new(1.0, 0.0).expect("valid");
    let mut monitor = SequentialMonitor::new(test, 0.05).expect("valid");
    let mut last = 1.0;
    for (d, v) in [(0.5, 0.1), (0.0, 0.05), (0.9, 0.04), (0.1, 0.03)] {
        let look = monitor.look(d, v).expect("valid");
        assert!(look.p_value <= last && look.p_value > 0.0);
        last = look.p_value;
    }
    assert!(monitor.look(0.0, 0.0).is_err());
    assert_eq!(monitor.p_value(), last);
}
