//! Seeded simulations of whole rollouts: the false-rollback rate of A/A canaries and the power
//! against injected regressions, through the real `Rollout` (judge, triggers, limits).
//!
//! The long version with the fixed-horizon comparison is `sequential_vs_fixed_table`
//! (`cargo test --release -p augur-analyzer --test simulation -- --ignored --nocapture`).

mod common;

use augur_analyzer::rollout::RolloutState;
use augur_analyzer::spec::{default_triggers, AnalysisSpec, StepSpec};
use common::{simulate, ArmModel, BASE};

fn steps(pause_s: f64) -> Vec<StepSpec> {
    vec![
        StepSpec::SetWeight(50),
        StepSpec::Pause {
            duration_s: Some(pause_s),
        },
        StepSpec::Analysis,
    ]
}

/// (share of runs rolled back — by `metric` when given —, mean requests to that rollback).
fn rolled_back(
    canary: ArmModel,
    metric: Option<&str>,
    runs: u64,
    seed: u64,
    rate: f64,
    pause_s: f64,
) -> (f64, f64) {
    let mut backs = 0u64;
    let mut requests = 0u64;
    for i in 0..runs {
        let r = simulate(
            seed + i,
            AnalysisSpec::default(),
            steps(pause_s),
            default_triggers(),
            (BASE, canary),
            rate,
            pause_s + 600.0,
        );
        let by_metric = r
            .decisions
            .last()
            .is_some_and(|d| metric.is_none_or(|m| d.reason.contains(m)));
        if matches!(r.final_state, RolloutState::RolledBack { .. }) && by_metric {
            backs += 1;
            requests += r.requests;
        }
    }
    (
        backs as f64 / runs as f64,
        requests as f64 / backs.max(1) as f64,
    )
}

#[test]
fn a_a_false_rollback_rate_is_below_alpha() {
    let (rate, _) = rolled_back(BASE, None, 500, 1_000, 8.0, 600.0);
    eprintln!("A/A false rollback rate {rate}");
    assert!(rate <= 0.05, "false rollback rate {rate}");
}

#[test]
fn latency_regression_is_caught() {
    let slow = ArmModel {
        median_ms: BASE.median_ms * 1.1,
        ..BASE
    };
    let (power, requests) = rolled_back(slow, Some("latency-p95"), 100, 2_000, 30.0, 1200.0);
    eprintln!("p95 +10%: power {power}, mean requests to rollback {requests:.0}");
    assert!(power >= 0.95, "power {power}");
}

#[test]
fn error_rate_regression_is_caught() {
    let failing = ArmModel {
        error_rate: 0.02,
        ..BASE
    };
    let (power, requests) = rolled_back(failing, Some("error-rate"), 100, 3_000, 30.0, 1200.0);
    eprintln!("errors 1% -> 2%: power {power}, mean requests to rollback {requests:.0}");
    assert!(power >= 0.95, "power {power}");
}

#[test]
fn accuracy_regression_is_caught() {
    let worse = ArmModel {
        accuracy: 0.87,
        ..BASE
    };
    let (power, requests) = rolled_back(worse, Some("accuracy"), 100, 4_000, 30.0, 1200.0);
    eprintln!("accuracy -3 points: power {power}, mean requests to rollback {requests:.0}");
    assert!(power >= 0.95, "power {power}");
}

/// One latency stream judged at every interval by the sequential judge and by a fixed-horizon
/// one-sided Mann-Whitney on the cumulative data. Returns, per run, the request count at the
/// mSPRT's first failure (if any) and the Mann-Whitney p-value at every look.
fn latency_looks(
    seed: u64,
    ratio: f64,
    looks: usize,
    per_look: usize,
) -> (Option<u64>, Vec<(u64, f64)>) {
    use augur_analyzer::judge::{Evidence, Judge};
    use augur_analyzer::spec::{MetricKind, MetricSpec};
    use augur_analyzer::stats::mann_whitney::{mann_whitney_u, MwuOptions};
    use augur_analyzer::stats::Alternative;
    use augur_model::Arm;

    let spec = AnalysisSpec {
        metrics: vec![MetricSpec::new(
            "latency",
            MetricKind::Latency { quantile: 0.95 },
        )],
        ..AnalysisSpec::default()
    };
    let mut rng = common::Rng(seed);
    let (mut judge, mut evidence) = (Judge::new(), Evidence::default());
    let canary = ArmModel {
        median_ms: BASE.median_ms * ratio,
        ..BASE
    };
    let (mut first_fail, mut mw) = (None, Vec::new());
    let mut requests = 0u64;
    for _ in 0..looks {
        for _ in 0..per_look {
            let (arm, model) = if rng.uniform() < 0.5 {
                (Arm::Canary, canary)
            } else {
                (Arm::Stable, BASE)
            };
            evidence.record(&common::request(&mut rng, 0.0, arm, model), "PNEUMONIA");
            requests += 1;
        }
        let v = &judge.evaluate(&spec, &evidence)[0];
        if v.is_fail() && first_fail.is_none() {
            first_fail = Some(requests);
        }
        let options = MwuOptions {
            alternative: Alternative::Less,
            ..MwuOptions::default()
        };
        let p = mann_whitney_u(
            evidence.stable.reservoir.values(),
            evidence.canary.reservoir.values(),
            options,
        )
        .map_or(1.0, |r| r.p_value);
        if requests >= 2 * spec.min_samples {
            mw.push((requests, p));
        }
    }
    (first_fail, mw)
}

/// The table of `SIMULATIONS.md`: run with
/// `cargo test --release -p augur-analyzer --test simulation -- --ignored --nocapture`.
#[test]
#[ignore = "long: prints the sequential vs fixed-horizon table of SIMULATIONS.md"]
fn sequential_vs_fixed_table() {
    let (runs, looks, per_look) = (1000u64, 20usize, 240usize);
    let aa: Vec<_> = (0..runs)
        .map(|i| latency_looks(10_000 + i, 1.0, looks, per_look))
        .collect();
    let msprt_fa = aa.iter().filter(|r| r.0.is_some()).count() as f64 / runs as f64;
    let naive_fa = aa
        .iter()
        .filter(|r| r.1.iter().any(|&(_, p)| p < 0.05))
        .count() as f64
        / runs as f64;
    // the per-look level that gives the Mann-Whitney the same 5% false-alarm rate over the looks
    let mut min_p: Vec<f64> = aa
        .iter()
        .map(|r| r.1.iter().map(|x| x.1).fold(1.0, f64::min))
        .collect();
    min_p.sort_by(f64::total_cmp);
    let level = min_p[(0.05 * runs as f64) as usize];
    println!("A/A, {runs} runs of {looks} looks x {per_look} requests (50/50):");
    println!("  mSPRT false-rollback rate {msprt_fa:.3}; MW at 0.05 per look {naive_fa:.3}; MW per-look level for 5%: {level:.5}");
    for ratio in [1.05, 1.10, 1.20] {
        let rs: Vec<_> = (0..runs / 2)
            .map(|i| latency_looks(20_000 + i, ratio, looks, per_look))
            .collect();
        let n = rs.len() as f64;
        let msprt: Vec<u64> = rs.iter().filter_map(|r| r.0).collect();
        let fixed: Vec<u64> = rs
            .iter()
            .filter_map(|r| r.1.iter().find(|&&(_, p)| p <= level).map(|x| x.0))
            .collect();
        let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
        println!(
            "  +{:.0}% latency: mSPRT power {:.3}, mean requests {:.0}; calibrated MW power {:.3}, mean requests {:.0}",
            (ratio - 1.0) * 100.0,
            msprt.len() as f64 / n,
            mean(&msprt),
            fixed.len() as f64 / n,
            mean(&fixed)
        );
    }
}
