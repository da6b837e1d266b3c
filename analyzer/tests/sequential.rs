//! The anytime-valid guarantee of the mSPRT, checked by seeded simulation with peeking after
//! every batch (and after every pair: Ville's inequality on the e-process itself), next to the
//! fixed-horizon z-test that the same peeking breaks. Each rate is judged by its 99.9% Wilson
//! interval, not by its point value.

use augur_analyzer::stats::moments::Moments;
use augur_analyzer::stats::msprt::{MixtureSprt, SequentialMonitor};
use augur_analyzer::stats::proportions::wilson_interval;

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

/// The two-sided 99.9% Wilson interval of `k` in `n`.
fn interval(k: usize, n: usize) -> (f64, f64) {
    let ci = wilson_interval(k as u64, n as u64, 0.999).expect("valid");
    (ci.lower.unwrap_or(0.0), ci.upper.unwrap_or(1.0))
}

#[test]
fn peeking_keeps_false_rollbacks_below_alpha() {
    // 50 looks of 20 requests per arm under H0, 1,000 seeded runs.
    let (msprt, naive) = rejection_rates(0.0, 1000, 50, 20);
    let (lower, _) = interval((msprt * 1000.0).round() as usize, 1000);
    assert!(
        lower <= 0.05,
        "mSPRT false-rejection rate {msprt}, 99.9% CI from {lower}"
    );
    // The same peeking with a fixed-horizon test is far above alpha (the motivating failure).
    let (lower, _) = interval((naive * 1000.0).round() as usize, 1000);
    assert!(lower > 0.05, "naive rate {naive}, 99.9% CI from {lower}");
}

/// Ville's inequality on the e-process itself, with a look after every pair of observations
/// (the most peeking there is): under H0 (equal means, known unit variance, so `Λₙ` is an exact
/// martingale) the probability that `Λₙ` ever reaches `1/α` within 1,000 pairs is at most `α`.
/// 5,000 seeded runs at α = 0.05 and τ² = 0.1; the test fails when the 99.9% Wilson interval of
/// the crossing rate lies wholly above α. The rate is not far below α either (measured 0.0328,
/// interval [0.0255, 0.0422]): a `Λ` too small to ever cross would not pass.
#[test]
fn ville_bound_holds_when_looking_after_every_pair() {
    let (alpha, tau2, runs, pairs) = (0.05, 0.1, 5000, 1000);
    let test = MixtureSprt::new(tau2, 0.0).expect("valid");
    let mut rng = Rng(11);
    let mut crossed = 0;
    for _ in 0..runs {
        let mut sum = 0.0;
        for n in 1..=pairs {
            sum += rng.normal() - rng.normal();
            let variance = 2.0 / f64::from(n);
            let e = test
                .likelihood_ratio(sum / f64::from(n), variance)
                .expect("valid");
            if e >= 1.0 / alpha {
                crossed += 1;
                break;
            }
        }
    }
    let rate = crossed as f64 / runs as f64;
    let (lower, upper) = interval(crossed, runs);

    assert!(
        lower <= alpha,
        "crossed in {rate} of runs, 99.9% CI [{lower}, {upper}]"
    );
    assert!(
        upper >= alpha / 4.0,
        "never near 1/α: {rate}, 99.9% CI [{lower}, {upper}]"
    );
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
