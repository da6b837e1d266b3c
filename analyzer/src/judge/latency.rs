//! Latency: canary against stable by the spec's method.
//!
//! Two metric kinds:
//! - **`Latency { quantile }`** tests the quantile itself. Sequential (default): the canary's
//!   `q`-quantile is within its allowance ⟺ at most `1 − q` of canary requests are slower than
//!   `t = (1 + allowed) × stable's q-quantile` (or `+ allowed` ms). The judge bounds stable's
//!   quantile from its histogram (the share of stable requests below the true quantile is
//!   exactly `q`, so a confidence sequence on that share brackets it, as in Howard & Ramdas,
//!   "Sequential estimation of quantiles", Bernoulli 2022), and bounds the share of canary
//!   requests beyond `t` with a confidence sequence on a rate. **Pass** when the share's upper
//!   bound, at the threshold built from stable's *lower* quantile bound, is below `1 − q`;
//!   **Fail** when its lower bound, at the threshold built from stable's *upper* quantile bound, is
//!   above `1 − q`. Half of the metric's α goes to stable's quantile, half to the canary's share.
//!   Thresholds move one histogram bucket (2%) to the safe side, so the 1% histogram error never
//!   helps a decision. A tail-only regression with the median unchanged is seen; the median
//!   moving with the tail unchanged is not (that is [`MetricKind::LatencyShift`]'s job).
//!   The threshold moves with stable's estimate, so the guarantee is the plug-in one of the
//!   confidence sequences (checked by the seeded simulations).
//! - **`LatencyShift`** tests the whole distribution's shift: the difference of the arms' mean
//!   `ln(latency)` (the log of the ratio of geometric means) against `ln(1 + allowed)`, with a
//!   confidence sequence on a difference of means with plug-in variances.
//!
//! The `MannWhitney` method (Kayenta's judge, `NetflixACAJudge` / `MannWhitneyClassifier`)
//! compares whole distributions for both kinds: the Hodges-Lehmann shift (ms) with its 98%
//! interval on the per-arm reservoirs; Pass when the interval's bad-side end is inside the
//! allowance (relative allowances are taken of stable's median), Fail when the other end is
//! beyond it. Fixed-horizon: valid at one look; repeated looks inflate both errors. The
//! `Threshold` method compares point values with no test.
//!
//! [`MetricKind::LatencyShift`]: crate::spec::MetricKind::LatencyShift

use crate::spec::{Allowed, AnalysisSpec, Direction, Method, MetricSpec};
use crate::stats::confseq;
use crate::stats::hodges_lehmann::hodges_lehmann;
use crate::stats::mann_whitney::{mann_whitney_u, MwuOptions};
use crate::stats::msprt::MixtureSprt;
use crate::stats::Alternative;
use crate::verdict::{finite, Outcome, TestUsed, Verdict};
use crate::window::{ArmWindow, LatencyHistogram, RELATIVE_ACCURACY};

use super::bound::{self, rate_variance};
use super::evidence::Evidence;
use super::margin;

/// One histogram bucket's width as a factor (`γ` of the histogram).
const BUCKET: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);

/// Judges a latency quantile metric.
pub fn judge_latency(
    metric: &MetricSpec,
    quantile: f64,
    spec: &AnalysisSpec,
    evidence: &Evidence,
) -> Verdict {
    let (s, c) = (&evidence.stable.window, &evidence.canary.window);
    let (ns, nc) = (s.latency.count(), c.latency.count());
    if ns < spec.min_samples.max(2) || nc < spec.min_samples.max(2) {
        return Verdict::no_data(&metric.name, ns, nc, spec.min_samples);
    }
    let qs = s.latency.quantile(quantile).unwrap_or(f64::NAN);
    let qc = c.latency.quantile(quantile).unwrap_or(f64::NAN);
    let verdict = match spec.method {
        Method::Sequential => quantile_share(metric, quantile, spec, s, c),
        Method::MannWhitney => mann_whitney(metric, evidence),
        Method::Threshold => threshold(metric, &format!("p{}", pct(quantile)), qs, qc),
    };
    verdict.measured(qs, qc, ns, nc)
}

/// Judges the shift of the whole latency distribution.
pub fn judge_shift(metric: &MetricSpec, spec: &AnalysisSpec, evidence: &Evidence) -> Verdict {
    let (s, c) = (
        &evidence.stable.window.log_latency,
        &evidence.canary.window.log_latency,
    );
    let (ns, nc) = (s.count(), c.count());
    if ns < spec.min_samples.max(2) || nc < spec.min_samples.max(2) {
        return Verdict::no_data(&metric.name, ns, nc, spec.min_samples);
    }
    let (gs, gc) = (s.mean().exp(), c.mean().exp());
    let verdict = match spec.method {
        Method::Sequential => shift(metric, spec, evidence),
        Method::MannWhitney => mann_whitney(metric, evidence),
        Method::Threshold => threshold(metric, "geometric-mean latency", gs, gc),
    };
    verdict.measured(gs, gc, ns, nc)
}

fn pct(q: f64) -> String {
    let p = q * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round())
    } else {
        format!("{p}")
    }
}

/// `(1 + allowed) × q` (or `q ± allowed` ms) toward the bad direction.
fn threshold_of(allowed: Allowed, direction: Direction, q: f64) -> f64 {
    let size = match allowed {
        Allowed::Relative(r) => r.abs() * q,
        Allowed::Absolute(a) => a.abs(),
    };
    match direction {
        Direction::Increase => q + size,
        Direction::Decrease => (q - size).max(0.0),
    }
}

/// Canary requests beyond `t` on the bad side: slower than `t` (increase), or not slower
/// (decrease), to the histogram's bucket resolution.
fn beyond(h: &LatencyHistogram, t: f64, direction: Direction) -> u64 {
    let at_most = h.count_at_most(t);
    match direction {
        Direction::Increase => h.count() - at_most,
        Direction::Decrease => at_most,
    }
}

fn quantile_share(
    metric: &MetricSpec,
    q: f64,
    spec: &AnalysisSpec,
    s: &ArmWindow,
    c: &ArmWindow,
) -> Verdict {
    let half = spec.alpha / 2.0;
    let (ns, nc) = (s.latency.count(), c.latency.count());
    // Stable's quantile: the share of stable requests at or below its true q-quantile is q.
    let rank_radius = confseq::one_sided_radius(q * (1.0 - q) / ns as f64, 0.025, half);
    let Ok(rank_radius) = rank_radius else {
        return Verdict::new(
            &metric.name,
            Outcome::Inconclusive,
            TestUsed::CsQuantileShare,
            format!("quantile {q} has no spread to bound"),
        );
    };
    let at = |level: f64| {
        if level >= 1.0 {
            s.latency.max()
        } else {
            s.latency.quantile(level.max(0.0))
        }
        .unwrap_or(f64::NAN)
    };
    let (q_low, q_high) = (at(q - rank_radius), at(q + rank_radius));
    let d = metric.direction;
    // The bad side's allowed share: 1 − q of canary requests slower (increase), or q of them
    // not slower (decrease), than the threshold.
    let allowed_share = match d {
        Direction::Increase => 1.0 - q,
        Direction::Decrease => q,
    };
    // A Pass must hold at the threshold that is hardest to pass, a Fail at the one hardest to
    // fail: the stable bound and one bucket toward the safe side.
    let (t_pass, t_fail) = match d {
        Direction::Increase => (
            threshold_of(metric.allowed, d, q_low) / BUCKET,
            threshold_of(metric.allowed, d, q_high) * BUCKET,
        ),
        Direction::Decrease => (
            threshold_of(metric.allowed, d, q_high) * BUCKET,
            threshold_of(metric.allowed, d, q_low) / BUCKET,
        ),
    };
    let (x_pass, x_fail) = (beyond(&c.latency, t_pass, d), beyond(&c.latency, t_fail, d));
    let tau = metric.tau_for(allowed_share.min(1.0 - allowed_share) / 2.0);
    let share = |x: u64| x as f64 / nc as f64;
    let checks = bound::decide(
        Direction::Increase,
        share(x_pass),
        rate_variance(x_pass, nc),
        allowed_share,
        tau,
        half,
    )
    .and_then(|p| {
        bound::decide(
            Direction::Increase,
            share(x_fail),
            rate_variance(x_fail, nc),
            allowed_share,
            tau,
            half,
        )
        .map(|f| (p, f))
    });
    let (pass, fail) = match checks {
        Ok(x) => x,
        Err(e) => {
            return Verdict::new(
                &metric.name,
                Outcome::Inconclusive,
                TestUsed::CsQuantileShare,
                format!("quantile bound undefined: {e}"),
            )
        }
    };
    // A share lies in [0, 1]: the bounds are clamped there (still valid).
    let (lower, upper) = (fail.lower.max(0.0), pass.upper.min(1.0));
    let judged = bound::judged(
        Direction::Increase,
        share(beyond(
            &c.latency,
            threshold_of(metric.allowed, d, s.latency.quantile(q).unwrap_or(f64::NAN)),
            d,
        )),
        lower,
        upper,
        allowed_share,
        fail.e_bad,
    );
    let side = match d {
        Direction::Increase => "slower than",
        Direction::Decrease => "at most",
    };
    let limit = match metric.allowed {
        Allowed::Relative(r) => format!("{:+}% of stable's p{}", r * 100.0, pct(q)),
        Allowed::Absolute(a) => format!("stable's p{} {:+} ms", pct(q), a),
    };
    let measure = format!("share of canary requests {side} {limit}");
    let reason = format!(
        "{x_pass} of {nc} canary requests {side} {t_pass:.1} ms ({limit}, stable's p{p} bounded to [{q_low:.1}, {q_high:.1}] ms over {ns} requests): share ≤ {:.4} vs allowed {:.4}, ≥ {:.4} at {t_fail:.1} ms; {} (α = {:.3})",
        upper,
        allowed_share,
        lower,
        judged.words(),
        spec.alpha,
        p = pct(q),
    );
    judged.verdict(&metric.name, TestUsed::CsQuantileShare, &measure, reason)
}

fn shift(metric: &MetricSpec, spec: &AnalysisSpec, evidence: &Evidence) -> Verdict {
    let (s, c) = (
        &evidence.stable.window.log_latency,
        &evidence.canary.window.log_latency,
    );
    let theta0 = margin::log_ratio(metric.allowed, metric.direction, s.mean().exp());
    let tau = metric.tau_for(theta0);
    let judged = MixtureSprt::mean_difference(s, c, None)
        .and_then(|(d, v)| bound::decide(metric.direction, d, v, theta0, tau, spec.alpha));
    let judged = match judged {
        Ok(j) => j,
        Err(e) => {
            return Verdict::new(
                &metric.name,
                Outcome::Inconclusive,
                TestUsed::CsLogLatency,
                format!("confidence sequence on log-latency undefined: {e}"),
            )
        }
    };
    let pct = |x: f64| (x.exp() - 1.0) * 100.0;
    let reason = format!(
        "geometric-mean latency {:+.1}% vs stable, anytime-valid bounds [{:+.1}%, {:+.1}%] vs allowed {:+.1}%: {} (α = {:.3})",
        pct(judged.estimate),
        pct(judged.lower),
        pct(judged.upper),
        pct(theta0),
        judged.words(),
        spec.alpha
    );
    let mut v = judged.verdict(
        &metric.name,
        TestUsed::CsLogLatency,
        "ln(canary / stable geometric-mean latency)",
        reason,
    );
    if let Ok((d, var)) = MixtureSprt::mean_difference(s, c, None) {
        v.statistic = finite(d / var.sqrt());
    }
    v
}

fn mann_whitney(metric: &MetricSpec, evidence: &Evidence) -> Verdict {
    let x = evidence.stable.reservoir.values();
    let y = evidence.canary.reservoir.values();
    let alternative = match metric.direction {
        Direction::Increase => Alternative::Less,
        Direction::Decrease => Alternative::Greater,
    };
    let options = MwuOptions {
        alternative,
        ..MwuOptions::default()
    };
    let test = mann_whitney_u(x, y, options).and_then(|t| Ok((t, hodges_lehmann(x, y, 0.98)?)));
    let (test, shift) = match test {
        Ok(r) => r,
        Err(e) => {
            return Verdict::new(
                &metric.name,
                Outcome::Inconclusive,
                TestUsed::MannWhitney,
                format!("Mann-Whitney undefined: {e}"),
            )
        }
    };
    let median = evidence.stable.window.latency.quantile(0.5).unwrap_or(0.0);
    let theta0 = margin::linear(metric.allowed, metric.direction, median);
    let judged = bound::judged(
        metric.direction,
        shift.estimate,
        shift.lower,
        shift.upper,
        theta0,
        f64::NAN,
    );
    let reason = format!(
        "Hodges-Lehmann shift {:+.2} ms, 98% CI [{:.2}, {:.2}] vs allowed {:+.2} ms: {} at this look (fixed horizon); one-sided Mann-Whitney p = {:.3e} ({} and {} kept samples)",
        shift.estimate,
        shift.lower,
        shift.upper,
        theta0,
        judged.words(),
        test.p_value,
        x.len(),
        y.len()
    );
    let mut verdict = judged.verdict(
        &metric.name,
        TestUsed::MannWhitney,
        "canary − stable latency shift (ms)",
        reason,
    );
    verdict.e_value = None;
    verdict.statistic = finite(test.u1);
    verdict.p_value = finite(test.p_value);
    verdict
}

fn threshold(metric: &MetricSpec, what: &str, vs: f64, vc: f64) -> Verdict {
    let theta0 = margin::linear(metric.allowed, metric.direction, vs);
    let delta = vc - vs;
    let failed = margin::beyond(delta, theta0, metric.direction);
    let outcome = margin::outcome(failed, metric.direction);
    let reason = format!(
        "{what} canary {vc:.2} ms vs stable {vs:.2} ms: difference {delta:+.2} ms, allowed {theta0:+.2} ms (point comparison, no test)"
    );
    let mut verdict = Verdict::new(&metric.name, outcome, TestUsed::QuantileThreshold, reason);
    verdict.estimate = finite(delta);
    verdict.bound = finite(delta);
    verdict.allowance = finite(theta0);
    verdict.measure = Some(format!("canary − stable {what} (ms)"));
    verdict
}
