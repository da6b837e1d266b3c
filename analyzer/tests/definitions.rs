//! The statistics checked against their definitions, computed another way than the library
//! does (the reference vectors in `vectors/` retype the library's own closed forms in Python,
//! so they cannot catch a wrong formula):
//! - the mSPRT's `Λ` against a numerical integral of the likelihood ratio over the normal
//!   mixing distribution (its definition; the library uses the closed form);
//! - Hodges-Lehmann against the sorted list of all `m·n` pairwise differences (the library
//!   bisects without listing them), on seeded random samples with and without ties;
//! - the exact interval's index `k` against the null distribution of U counted by enumerating
//!   every assignment of ranks (the library uses a recurrence).
//!
//! Ville's bound for the mSPRT and the coverage of the confidence sequence are checked by
//! seeded simulation in `sequential.rs` and `stats/confseq.rs`.

use augur_analyzer::stats::hodges_lehmann::{hodges_lehmann, CiMethod};
use augur_analyzer::stats::msprt::MixtureSprt;

/// SplitMix64 with Box-Muller normals.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// `ln Λ` by its definition: for an estimate `θ̂ ~ N(θ, V)`, the likelihood ratio of `θ`
/// against `θ₀` averaged over `θ ~ N(θ₀, τ²)`, integrated with Simpson's rule on a grid wide
/// enough for both the mixing density and the likelihood, summed in log space.
fn ln_lambda_by_quadrature(estimate: f64, variance: f64, theta0: f64, tau2: f64) -> f64 {
    let tau = tau2.sqrt();
    let width = 12.0 * tau.max(variance.sqrt());
    let (lo, hi) = (estimate.min(theta0) - width, estimate.max(theta0) + width);
    let n = 400_000; // even
    let h = (hi - lo) / n as f64;
    let ln_integrand = |theta: f64| {
        let ln_ratio =
            ((estimate - theta0).powi(2) - (estimate - theta).powi(2)) / (2.0 * variance);
        let ln_prior = -(theta - theta0).powi(2) / (2.0 * tau2)
            - (tau * (2.0 * std::f64::consts::PI).sqrt()).ln();
        ln_ratio + ln_prior
    };
    let terms: Vec<f64> = (0..=n)
        .map(|i| {
            let weight: f64 = if i == 0 || i == n {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            ln_integrand(lo + i as f64 * h) + weight.ln()
        })
        .collect();
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    max + sum.ln() + (h / 3.0).ln()
}

#[test]
fn the_mixture_ratio_is_the_mixture_of_likelihood_ratios() {
    // (estimate, variance, θ₀, τ²): no evidence, some, a lot, against θ₀ ≠ 0, and τ far
    // wider and far narrower than the estimate's error.
    let cases = [
        (0.0, 0.1, 0.0, 0.1),
        (0.3, 0.02, 0.0, 0.1),
        (-0.8, 0.05, 0.0, 0.25),
        (1.2, 0.01, 0.0, 0.1),
        (0.45, 4e-4, 0.4, 1e-4),
        (0.02, 1e-4, 0.0, 1.0),
        (5.0, 2.0, 1.0, 0.01),
    ];
    for (estimate, variance, theta0, tau2) in cases {
        let test = MixtureSprt::new(tau2, theta0).expect("valid");
        let closed = test
            .likelihood_ratio(estimate, variance)
            .expect("valid")
            .ln();
        let integral = ln_lambda_by_quadrature(estimate, variance, theta0, tau2);
        assert!(
            (closed - integral).abs() < 1e-6,
            "ln Λ({estimate}, V {variance}, θ₀ {theta0}, τ² {tau2}): closed form {closed}, integral {integral}"
        );
    }
}

/// Every `y_j − x_i`, sorted.
fn all_differences(x: &[f64], y: &[f64]) -> Vec<f64> {
    let mut d: Vec<f64> = y
        .iter()
        .flat_map(|b| x.iter().map(move |a| b - a))
        .collect();
    d.sort_by(f64::total_cmp);
    d
}

/// A seeded sample of `n` values: normal, or rounded to a coarse grid (ties) when `ties`.
fn sample(rng: &mut Rng, n: usize, shift: f64, ties: bool) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let v = 10.0 * rng.normal() + shift;
            if ties {
                (v / 4.0).round() * 4.0
            } else {
                v
            }
        })
        .collect()
}

#[test]
fn hodges_lehmann_is_the_median_of_all_pairwise_differences() {
    let mut rng = Rng(2024);
    let mut exact = 0;
    for case in 0..300 {
        let m = 1 + rng.below(40) as usize;
        let n = 1 + rng.below(40) as usize;
        let ties = case % 3 == 0;
        let x = sample(&mut rng, m, 0.0, ties);
        let shift = 3.0 * rng.normal();
        let y = sample(&mut rng, n, shift, ties);
        let Ok(r) = hodges_lehmann(&x, &y, 0.95) else {
            // Only an interval that cannot exist is refused: every value tied.
            assert!(x.iter().chain(&y).all(|v| *v == x[0]), "{x:?} {y:?}");
            continue;
        };
        exact += usize::from(r.method == CiMethod::Exact);
        let d = all_differences(&x, &y);
        let mn = d.len();
        let median = if mn % 2 == 1 {
            d[mn / 2]
        } else {
            (d[mn / 2 - 1] + d[mn / 2]) / 2.0
        };
        let k = r.k as usize;
        assert!(k >= 1 && k <= mn.div_ceil(2), "k {k} of {mn}");
        let ctx = format!("m {m} n {n} ties {ties}");
        assert_eq!(r.estimate, median, "estimate, {ctx}");
        assert_eq!(r.lower, d[k - 1], "lower = D(k), {ctx}");
        assert_eq!(r.upper, d[mn - k], "upper = D(mn+1-k), {ctx}");
    }
    assert!(exact > 20, "the exact method ran in only {exact} cases");
}

/// `P(U ≤ u)` for every `u`, with `U` the number of pairs `(x, y)` with `x` ranked below `y`,
/// counted over every choice of which `m` of the `m + n` ranks are the x sample.
fn u_cdf_by_enumeration(m: usize, n: usize) -> Vec<f64> {
    let total = m + n;
    let mut counts = vec![0u64; m * n + 1];
    for mask in 0u32..(1 << total) {
        if mask.count_ones() as usize != m {
            continue;
        }
        // Walking the ranks upwards: each y rank is above every x rank seen so far.
        let (mut xs_below, mut u) = (0, 0);
        for rank in 0..total {
            if mask & (1 << rank) != 0 {
                xs_below += 1;
            } else {
                u += xs_below;
            }
        }
        counts[u] += 1;
    }
    let all: u64 = counts.iter().sum();
    let mut cdf = Vec::with_capacity(counts.len());
    let mut below = 0;
    for c in counts {
        below += c;
        cdf.push(below as f64 / all as f64);
    }
    cdf
}

#[test]
fn the_exact_interval_index_comes_from_the_null_distribution_of_u() {
    let mut rng = Rng(7);
    for (m, n) in [(1, 5), (3, 4), (4, 4), (5, 8), (8, 8), (2, 16), (6, 12)] {
        let cdf = u_cdf_by_enumeration(m, n);
        let mn = m * n;
        for confidence in [0.8, 0.9, 0.95, 0.98] {
            let x = sample(&mut rng, m, 0.0, false);
            let y = sample(&mut rng, n, 1.0, false);
            let r = hodges_lehmann(&x, &y, confidence).expect("valid");
            assert_eq!(r.method, CiMethod::Exact);
            // The largest k ≥ 1 (at most mn/2 + 1) with P(U ≤ k − 1) ≤ α/2, else 1.
            let half_alpha = (1.0 - confidence) / 2.0;
            let k = (1..=mn / 2 + 1)
                .filter(|&k| cdf[k - 1] <= half_alpha)
                .max()
                .unwrap_or(1);
            assert_eq!(r.k as usize, k, "m {m} n {n} confidence {confidence}");
            let achieved = 1.0 - 2.0 * cdf[k - 1];
            assert!(
                (r.achieved_confidence - achieved.clamp(0.0, 1.0)).abs() < 1e-12,
                "achieved {} vs {achieved}, m {m} n {n}",
                r.achieved_confidence
            );
        }
    }
}
