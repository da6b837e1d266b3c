//! Latency: canary against stable by the spec's method.
//!
//! - `Sequential` (default): mSPRT on the mean of `ln(latency)` with plug-in variances
//!   ([`crate::stats::msprt`] module docs: a multiplicative slowdown is a shift of the log, and
//!   the log tames the heavy tail). The null value is `ln(1 + allowed)`. Valid at every look.
//! - `MannWhitney` (Kayenta's judge, `NetflixACAJudge` / `MannWhitneyClassifier`): one-sided
//!   Mann-Whitney U on the per-arm reservoirs plus the Hodges-Lehmann 98% interval of the shift;
//!   fails High when the interval's lower end is above the allowed shift (ms). Fixed-horizon:
//!   repeated looks inflate its false-alarm rate.
//! - `Threshold`: the spec's quantile from each arm's histogram (±1%), failing when the canary's
//!   exceeds stable's by more than allowed.
//!
//! Values reported are the arms' `quantile` latencies in ms from the histograms.

use crate::spec::{AnalysisSpec, Direction, Method, MetricSpec};
use crate::stats::hodges_lehmann::hodges_lehmann;
use crate::stats::mann_whitney::{mann_whitney_u, MwuOptions};
use crate::stats::msprt::MixtureSprt;
use crate::stats::Alternative;
use crate::verdict::{finite, Outcome, TestUsed, Verdict};

use super::evidence::Evidence;
use super::margin;
use super::sequential::SequentialState;

/// Judges a latency metric at `quantile`.
pub fn judge_latency(
    metric: &MetricSpec,
    quantile: f64,
    spec: &AnalysisSpec,
    evidence: &Evidence,
    state: &mut SequentialState,
) -> Verdict {
    let (s, c) = (&evidence.stable.window, &evidence.canary.window);
    let (ns, nc) = (s.log_latency.count(), c.log_latency.count());
    if ns < spec.min_samples.max(2) || nc < spec.min_samples.max(2) {
        return Verdict::no_data(&metric.name, ns, nc, spec.min_samples);
    }
    let qs = s.latency.quantile(quantile).unwrap_or(f64::NAN);
    let qc = c.latency.quantile(quantile).unwrap_or(f64::NAN);
    let verdict = match spec.method {
        Method::Sequential => sequential(metric, spec, evidence, state),
        Method::MannWhitney => mann_whitney(metric, evidence),
        Method::Threshold => threshold(metric, quantile, qs, qc),
    };
    verdict.measured(qs, qc, ns, nc)
}

fn sequential(
    metric: &MetricSpec,
    spec: &AnalysisSpec,
    evidence: &Evidence,
    state: &mut SequentialState,
) -> Verdict {
    let (s, c) = (
        &evidence.stable.window.log_latency,
        &evidence.canary.window.log_latency,
    );
    let theta0 = margin::log_ratio(metric.allowed, metric.direction, s.mean().exp());
    let tau = metric.tau.unwrap_or_else(|| metric.default_tau());
    let look = MixtureSprt::mean_difference(s, c, None).and_then(|(d, v)| {
        state
            .look(tau, theta0, d, v, metric.direction, spec.alpha)
            .map(|l| (d, v, l))
    });
    let (d, v, look) = match look {
        Ok(x) => x,
        Err(e) => {
            return Verdict::new(
                &metric.name,
                Outcome::Inconclusive,
                TestUsed::MsprtLogLatency,
                format!("mSPRT on log-latency undefined: {e}"),
            )
        }
    };
    let ratio = (d.exp() - 1.0) * 100.0;
    let (outcome, reason) = if look.rejected {
        (
            Outcome::Fail {
                side: margin::bad_side(metric.direction),
            },
            format!(
                "geometric-mean latency {ratio:+.1}% vs stable, beyond the allowed {:+.1}% (always-valid p = {:.3e} ≤ α = {})",
                (theta0.exp() - 1.0) * 100.0,
                look.p_value,
                spec.alpha
            ),
        )
    } else {
        (
            Outcome::Pass,
            format!(
                "geometric-mean latency {ratio:+.1}% vs stable; no regression shown (always-valid p = {:.3}, α = {})",
                look.p_value, spec.alpha
            ),
        )
    };
    let mut verdict = Verdict::new(&metric.name, outcome, TestUsed::MsprtLogLatency, reason);
    verdict.estimate = finite(d);
    verdict.statistic = finite(d / v.sqrt());
    verdict.p_value = finite(look.p_value);
    verdict.e_value = finite(look.e_value);
    let half = 1.96 * v.sqrt();
    verdict.interval = Some((d - half, d + half)).filter(|(a, b)| a.is_finite() && b.is_finite());
    verdict
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
    let failed = match metric.direction {
        Direction::Increase => shift.lower > theta0,
        Direction::Decrease => shift.upper < theta0,
    };
    let outcome = margin::outcome(failed, metric.direction);
    let reason = format!(
        "Hodges-Lehmann shift {:+.2} ms, 98% CI [{:.2}, {:.2}] vs allowed {:+.2} ms; one-sided Mann-Whitney p = {:.3e} ({} and {} kept samples)",
        shift.estimate, shift.lower, shift.upper, theta0, test.p_value, x.len(), y.len()
    );
    let mut verdict = Verdict::new(&metric.name, outcome, TestUsed::MannWhitney, reason);
    verdict.estimate = finite(shift.estimate);
    verdict.statistic = finite(test.u1);
    verdict.p_value = finite(test.p_value);
    verdict.interval = Some((shift.lower, shift.upper));
    verdict
}

fn threshold(metric: &MetricSpec, quantile: f64, qs: f64, qc: f64) -> Verdict {
    let theta0 = margin::linear(metric.allowed, metric.direction, qs);
    let delta = qc - qs;
    let failed = margin::beyond(delta, theta0, metric.direction);
    let outcome = margin::outcome(failed, metric.direction);
    let reason = format!(
        "p{:.0} canary {qc:.2} ms vs stable {qs:.2} ms: difference {delta:+.2} ms, allowed {theta0:+.2} ms",
        quantile * 100.0
    );
    let mut verdict = Verdict::new(&metric.name, outcome, TestUsed::QuantileThreshold, reason);
    verdict.estimate = finite(delta);
    verdict
}
