//! What evidence costs, before a rollout starts: for a canary as good as stable, how many canary
//! requests each gate needs and how long it waits at a given request rate
//! (`augur policy explain --rate R`, `augur policy check --rate R`).
//!
//! Contract: the estimate uses the judge's own statistics — the same confidence sequences
//! ([`crate::stats::confseq`]), mixing scales, Bonferroni split, allowances and minimum samples
//! — on the counts a canary identical to stable is expected to give: the estimate at its
//! expected value (no difference) and the variances of the assumed [`Baseline`]. A gate opens
//! at the first look where every metric's bound is inside its allowance, which for such a
//! canary happens around the sample count where the bound's radius equals the allowance's
//! distance: the estimate is a median, not a guarantee (`analyzer/SIMULATIONS.md` compares it
//! with the simulated distribution). Evidence is cumulative over the rollout, as the judge's.

use serde::Serialize;
use statrs::distribution::ContinuousCDF;

use crate::spec::{Allowed, AnalysisSpec, MetricKind, MetricSpec, StepSpec};
use crate::stats::confseq::one_sided_radius;
use crate::stats::std_normal;
use crate::window::RELATIVE_ACCURACY;

/// What a canary as good as stable looks like, for the estimate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Baseline {
    /// Requests per second through the driven routes (both arms).
    pub rate: f64,
    /// Both arms' error rate (0–1).
    pub error_rate: f64,
    /// Both arms' accuracy against ground truth (0–1).
    pub accuracy: f64,
    /// Both arms' agreement with the shadow model (0–1).
    pub agreement: f64,
    /// The spread of `ln(latency)` (a log-normal's σ; 0.5 is a p95 2.3 times the median).
    pub log_latency_sd: f64,
    /// The share of predictions whose ground truth arrives (0–1).
    pub label_share: f64,
    /// The share of predictions compared with the shadow model (0–1).
    pub shadow_share: f64,
}

impl Baseline {
    /// The defaults `augur policy explain --rate` assumes unless told otherwise: 1% errors, 90%
    /// accuracy, 95% agreement, σ = 0.5, every prediction labelled, 10% shadowed.
    pub fn at_rate(rate: f64) -> Self {
        Baseline {
            rate,
            error_rate: 0.01,
            accuracy: 0.90,
            agreement: 0.95,
            log_latency_sd: 0.5,
            label_share: 1.0,
            shadow_share: 0.10,
        }
    }
}

/// One metric's need.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricNeed {
    /// The metric.
    pub metric: String,
    /// Canary requests (cumulative) before its bound is inside its allowance; `None` when it
    /// never is (an allowance of 0, or a metric that is not a test).
    pub canary_requests: Option<u64>,
    /// Why not, when `None`.
    pub note: Option<String>,
}

/// One gate's estimate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateEstimate {
    /// The gate's step index.
    pub step: usize,
    /// The canary weight at the gate, percent.
    pub weight: u8,
    /// Each metric's need.
    pub metrics: Vec<MetricNeed>,
    /// The canary requests (since the start) the gate needs: the largest need; `None` = never.
    pub canary_requests: Option<u64>,
    /// Seconds the rollout waits at this gate (0 when earlier steps gathered enough).
    pub wait_s: Option<f64>,
    /// Seconds from the start of the rollout until the gate opens.
    pub opens_after_s: Option<f64>,
    /// The gate's time bound, seconds.
    pub max_duration_s: Option<f64>,
}

/// Largest canary count searched: beyond it, "never".
const NEVER: u64 = 1_000_000_000;

/// The canary samples of a tested metric at canary share `w` before its bound is inside its
/// allowance, for a canary identical to stable.
fn need(
    metric: &MetricSpec,
    spec: &AnalysisSpec,
    base: &Baseline,
    w: f64,
    tested: usize,
) -> MetricNeed {
    let alpha = spec.alpha / tested.max(1) as f64;
    let ratio = (1.0 - w) / w.max(1e-9); // stable samples per canary sample
    let (per_request, passes): (f64, Box<dyn Fn(f64) -> bool>) = match metric.kind {
        MetricKind::ErrorRate | MetricKind::Accuracy | MetricKind::ShadowAgreement => {
            let (p, share) = match metric.kind {
                MetricKind::ErrorRate => (base.error_rate, 1.0),
                MetricKind::Accuracy => (base.accuracy, base.label_share),
                _ => (base.agreement, base.shadow_share),
            };
            let theta0 = match metric.allowed {
                Allowed::Absolute(a) => a.abs(),
                Allowed::Relative(r) => (r * p).abs(),
            };
            let tau = metric.tau_for(theta0);
            (
                share,
                Box::new(move |n: f64| {
                    let v = p * (1.0 - p) / n + p * (1.0 - p) / (n * ratio);
                    theta0 > 0.0 && one_sided_radius(v, tau, alpha).is_ok_and(|r| r < theta0)
                }),
            )
        }
        MetricKind::LatencyShift => {
            let s2 = base.log_latency_sd.powi(2);
            let theta0 = match metric.allowed {
                Allowed::Relative(r) => r.abs().ln_1p(),
                Allowed::Absolute(_) => 0.0,
            };
            let tau = metric.tau_for(theta0);
            (
                1.0,
                Box::new(move |n: f64| {
                    let v = s2 / n + s2 / (n * ratio);
                    theta0 > 0.0 && one_sided_radius(v, tau, alpha).is_ok_and(|r| r < theta0)
                }),
            )
        }
        MetricKind::Latency { quantile: q } => {
            let sigma = base.log_latency_sd;
            let r = match metric.allowed {
                Allowed::Relative(r) => r.abs(),
                Allowed::Absolute(_) => 0.0,
            };
            let tail = 1.0 - q;
            let tau = metric.tau_for(tail.min(q) / 2.0);
            let normal = std_normal();
            let bucket = ((1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)).ln();
            (
                1.0,
                Box::new(move |n: f64| {
                    let ns = n * ratio;
                    let Ok(rs) = one_sided_radius(q * (1.0 - q) / ns, 0.025, alpha / 2.0) else {
                        return false;
                    };
                    if q - rs <= 0.0 || r <= 0.0 {
                        return false;
                    }
                    // the share of an identical canary above the pass threshold
                    let z = normal.inverse_cdf(q - rs) + ((1.0 + r).ln() - bucket) / sigma;
                    let share = 1.0 - normal.cdf(z);
                    let p = (share * n + 0.5) / (n + 1.0);
                    one_sided_radius(p * (1.0 - p) / n, tau, alpha / 2.0)
                        .is_ok_and(|radius| share + radius < tail)
                }),
            )
        }
        MetricKind::Calibration | MetricKind::PredictionDrift => {
            return MetricNeed {
                metric: metric.name.clone(),
                canary_requests: None,
                note: Some("not estimated for this kind".to_owned()),
            }
        }
    };
    let min = spec.min_samples.max(1) as f64;
    let ok = |n_requests: f64| {
        let n = n_requests * per_request;
        n >= min && n * ratio >= min && passes(n)
    };
    if per_request <= 0.0 || !ok(NEVER as f64) {
        return MetricNeed {
            metric: metric.name.clone(),
            canary_requests: None,
            note: Some(
                if metric.allowed == Allowed::Absolute(0.0)
                    || metric.allowed == Allowed::Relative(0.0)
                {
                    "never: an allowance of 0 cannot be shown".to_owned()
                } else {
                    "never at these assumptions".to_owned()
                },
            ),
        };
    }
    let (mut lo, mut hi) = (1u64, 1u64);
    while !ok(hi as f64) {
        lo = hi;
        hi = hi.saturating_mul(2);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid as f64) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    MetricNeed {
        metric: metric.name.clone(),
        canary_requests: Some(hi),
        note: None,
    }
}

/// Estimates every gate of `steps` at the baseline's rate (gates with their own spec use it).
pub fn estimate(
    base_spec: &AnalysisSpec,
    gates: &[(usize, AnalysisSpec)],
    steps: &[StepSpec],
    base: &Baseline,
) -> Vec<GateEstimate> {
    let mut out = Vec::new();
    let (mut weight, mut clock, mut canary, mut stuck) = (0u8, 0.0f64, 0.0f64, false);
    for (i, step) in steps.iter().enumerate() {
        match step {
            StepSpec::SetWeight(w) => weight = *w,
            StepSpec::Pause {
                duration_s: Some(d),
            } => {
                clock += d;
                canary += d * base.rate * f64::from(weight) / 100.0;
            }
            StepSpec::Analysis => {
                let spec = gates
                    .iter()
                    .find(|(s, _)| *s == i)
                    .map_or(base_spec, |(_, g)| g);
                let tested = spec
                    .metrics
                    .iter()
                    .filter(|m| m.kind != MetricKind::PredictionDrift)
                    .count();
                let w = f64::from(weight) / 100.0;
                let metrics: Vec<MetricNeed> = spec
                    .metrics
                    .iter()
                    .filter(|m| m.kind != MetricKind::PredictionDrift)
                    .map(|m| need(m, spec, base, w, tested))
                    .collect();
                let needs: Option<Vec<u64>> = metrics
                    .iter()
                    .filter(|m| m.note.as_deref() != Some("not estimated for this kind"))
                    .map(|m| m.canary_requests)
                    .collect();
                let gate_need = needs.and_then(|n| n.into_iter().max()).filter(|_| w > 0.0);
                let per_s = base.rate * w;
                let interval = spec.interval_s.max(1.0);
                let wait = gate_need.filter(|_| !stuck && per_s > 0.0).map(|n| {
                    let short = (n as f64 - canary).max(0.0) / per_s;
                    // a gate opens at a look: the next whole interval
                    (short / interval).ceil().max(1.0) * interval
                });
                if let Some(wait) = wait {
                    clock += wait;
                    canary += wait * per_s;
                } else {
                    stuck = true;
                }
                out.push(GateEstimate {
                    step: i,
                    weight,
                    metrics,
                    canary_requests: gate_need,
                    wait_s: wait,
                    opens_after_s: wait.map(|_| clock),
                    max_duration_s: spec.max_duration_s,
                });
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(allowed: f64) -> AnalysisSpec {
        let mut m = MetricSpec::new("error-rate", MetricKind::ErrorRate);
        m.allowed = Allowed::Absolute(allowed);
        AnalysisSpec {
            metrics: vec![m],
            ..AnalysisSpec::default()
        }
    }

    #[test]
    fn more_traffic_or_room_passes_sooner_and_zero_never() {
        let steps = [StepSpec::SetWeight(10), StepSpec::Analysis];
        let at = |rate: f64, allowed: f64| {
            estimate(&spec(allowed), &[], &steps, &Baseline::at_rate(rate))[0].clone()
        };
        let slow = at(20.0, 0.01);
        let fast = at(100.0, 0.01);
        let n = slow.canary_requests.expect("passes");
        assert_eq!(fast.canary_requests, Some(n), "the same requests");
        let (ws, wf) = (slow.wait_s.expect("waits"), fast.wait_s.expect("waits"));
        assert!(ws >= 4.0 * wf, "{ws} vs {wf} ({n} canary requests)");
        assert!(at(20.0, 0.02).canary_requests.expect("passes") < n / 2);
        let never = at(20.0, 0.0);
        assert_eq!(never.canary_requests, None);
        assert!(never.metrics[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("allowance of 0")));
    }
}
