//! Closed-loop seeded simulations of whole rollouts of the example policy
//! (`policies/examples/canary-pneumonia.yaml`): Poisson traffic at 2, 20 and 100 req/s, each
//! request sent to the canary with the weight the rollout decided at that moment, 75% of
//! requests labelled, through the real `Rollout` (judge, gates, triggers, limits).
//!
//! The fast part runs in the normal `cargo test`; the full tables of `analyzer/SIMULATIONS.md`
//! (200 runs per case and rate, the Kayenta-style comparison, the triggers' false-firing rates)
//! come from the ignored tests:
//! `cargo test --release -p augur-analyzer --test simulation -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;

use augur_analyzer::rollout::{Rollout, RolloutState};
use augur_analyzer::spec::Method;
use augur_analyzer::stats::binomial::{clopper_pearson_lower, clopper_pearson_upper};
use common::{run_closed_loop, ArmModel, PolicySpec, BASE};

/// Share of requests whose ground truth arrives (inline).
const LABEL_SHARE: f64 = 0.75;
/// When spikes and the sustained failure start, seconds after the rollout started (before the
/// first gate opens at every rate).
const ONSET_S: f64 = 120.0;
/// How long a run may last: longer than three gates at their 4 h bound.
const HORIZON_S: f64 = 13.0 * 3600.0;

/// The canaries of issue 19 §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Canary {
    Identical,
    Slower,
    TailOnly,
    Errors4,
    /// Just beyond the allowance: where repeated fixed-horizon looks pass a bad canary.
    Errors25,
    AccuracyDrop,
    Spike60,
    Spike150,
    Sustained30,
}

impl Canary {
    const ALL: [Canary; 8] = [
        Canary::Identical,
        Canary::Slower,
        Canary::TailOnly,
        Canary::Errors4,
        Canary::AccuracyDrop,
        Canary::Spike60,
        Canary::Spike150,
        Canary::Sustained30,
    ];

    fn name(self) -> &'static str {
        match self {
            Canary::Identical => "identical to stable",
            Canary::Slower => "latency ×1.5",
            Canary::TailOnly => "p95 +50%, median unchanged",
            Canary::Errors4 => "errors 1% → 4%",
            Canary::Errors25 => "errors 1% → 2.5% (1.5× the allowance)",
            Canary::AccuracyDrop => "accuracy −10 points",
            Canary::Spike60 => "60-s spike of 30% errors",
            Canary::Spike150 => "150-s spike of 30% errors",
            Canary::Sustained30 => "30% errors from 2 min on",
        }
    }

    /// Worse than its allowance for good (a promotion is a wrong call).
    fn is_bad(self) -> bool {
        matches!(
            self,
            Canary::Slower
                | Canary::TailOnly
                | Canary::Errors4
                | Canary::Errors25
                | Canary::AccuracyDrop
                | Canary::Sustained30
        )
    }

    fn model(self, t: f64) -> ArmModel {
        let errors = |e| ArmModel {
            error_rate: e,
            ..BASE
        };
        match self {
            Canary::Identical => BASE,
            Canary::Slower => ArmModel {
                median_ms: BASE.median_ms * 1.5,
                ..BASE
            },
            // Same median, a wider log-spread: p95 = median·exp(1.645σ) is 1.5× stable's.
            Canary::TailOnly => ArmModel {
                log_sd: BASE.log_sd + 1.5f64.ln() / 1.644_853_6,
                ..BASE
            },
            Canary::Errors4 => errors(0.04),
            Canary::Errors25 => errors(0.025),
            Canary::AccuracyDrop => ArmModel {
                accuracy: BASE.accuracy - 0.10,
                ..BASE
            },
            Canary::Spike60 if (ONSET_S..ONSET_S + 60.0).contains(&t) => errors(0.30),
            Canary::Spike150 if (ONSET_S..ONSET_S + 150.0).contains(&t) => errors(0.30),
            Canary::Sustained30 if t >= ONSET_S => errors(0.30),
            Canary::Spike60 | Canary::Spike150 | Canary::Sustained30 => BASE,
        }
    }

    /// Runs that only ask what the spike or the failure does stop 15 minutes after its onset.
    fn horizon(self) -> f64 {
        match self {
            Canary::Spike60 | Canary::Spike150 | Canary::Sustained30 => ONSET_S + 900.0,
            _ => HORIZON_S,
        }
    }
}

/// How one run ended.
#[derive(Clone, Debug, PartialEq)]
enum End {
    Promoted,
    RolledBack { cause: String },
    Held,
}

#[derive(Clone, Debug)]
struct Run {
    end: End,
    /// When the rollout was promoted or rolled back, seconds.
    decided_s: Option<f64>,
    canary_requests: u64,
}

fn cause(state: &RolloutState) -> String {
    let RolloutState::RolledBack { reason, trigger } = state else {
        return String::new();
    };
    if let Some(t) = trigger {
        return format!("trigger {t}");
    }
    ["p95-latency", "error-rate", "accuracy"]
        .iter()
        .find(|m| reason.contains(*m))
        .map_or_else(|| "analysis".to_owned(), |m| format!("analysis {m}"))
}

fn rollout(method: Method) -> Rollout {
    let mut p = PolicySpec::example();
    p.analysis.method = method;
    for (_, g) in &mut p.gates {
        g.method = method;
    }
    p.rollout()
}

fn one(canary: Canary, rate: f64, seed: u64, method: Method) -> Run {
    let r = run_closed_loop(
        seed,
        rollout(method),
        rate,
        &|t| canary.model(t),
        LABEL_SHARE,
        canary.horizon(),
    );
    // Spikes and failures are timed from their onset.
    let since = if canary.horizon() < HORIZON_S {
        ONSET_S
    } else {
        0.0
    };
    let decided_s = r
        .decisions
        .iter()
        .find(|d| d.to.is_terminal())
        .map(|d| d.time - since);
    let end = match &r.final_state {
        RolloutState::Promoted => End::Promoted,
        s @ RolloutState::RolledBack { .. } => End::RolledBack { cause: cause(s) },
        _ => End::Held,
    };
    Run {
        end,
        decided_s,
        canary_requests: r.canary_requests,
    }
}

/// One case's runs, summarised.
#[derive(Debug)]
struct Summary {
    runs: u64,
    promoted: u64,
    rolled_back: u64,
    held: u64,
    causes: BTreeMap<String, u64>,
    /// Times (s) and canary requests of the runs that were decided the expected way.
    times: Vec<f64>,
    canary: Vec<u64>,
}

fn summarise(canary: Canary, runs: &[Run]) -> Summary {
    let mut s = Summary {
        runs: runs.len() as u64,
        promoted: 0,
        rolled_back: 0,
        held: 0,
        causes: BTreeMap::new(),
        times: Vec::new(),
        canary: Vec::new(),
    };
    for r in runs {
        match &r.end {
            End::Promoted => s.promoted += 1,
            End::RolledBack { cause } => {
                s.rolled_back += 1;
                *s.causes.entry(cause.clone()).or_default() += 1;
            }
            End::Held => s.held += 1,
        }
        let expected = matches!(
            (&r.end, canary.is_bad()),
            (End::RolledBack { .. }, true) | (End::Promoted, false)
        );
        if let (true, Some(t)) = (expected, r.decided_s) {
            s.times.push(t);
            s.canary.push(r.canary_requests);
        }
    }
    s
}

fn run_case(canary: Canary, rate: f64, runs: u64, seed: u64, method: Method) -> Summary {
    let all: Vec<Run> = (0..runs)
        .map(|i| one(canary, rate, seed + i, method))
        .collect();
    summarise(canary, &all)
}

/// `k/n` with its exact (Clopper-Pearson) 95% interval, in percent.
fn rate_ci(k: u64, n: u64) -> String {
    let lo = clopper_pearson_lower(k, n, 0.025).unwrap_or(0.0);
    let hi = clopper_pearson_upper(k, n, 0.025).unwrap_or(1.0);
    format!(
        "{:.1}% [{:.1}, {:.1}]",
        100.0 * k as f64 / n as f64,
        100.0 * lo,
        100.0 * hi
    )
}

fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[((v.len() - 1) as f64 * q).round() as usize])
}

fn minutes(s: Option<f64>) -> String {
    match s {
        None => "–".to_owned(),
        Some(s) if s < 600.0 => format!("{s:.0} s"),
        Some(s) => format!("{:.0} min", s / 60.0),
    }
}

fn row(canary: Canary, rate: f64, s: &Summary) -> String {
    let causes: Vec<String> = s.causes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    let canary_requests: Vec<f64> = s.canary.iter().map(|&c| c as f64).collect();
    format!(
        "| {rate} | {} | {} | {} | {} | {} | {} / {} | {} | {} |",
        canary.name(),
        s.runs,
        rate_ci(s.promoted, s.runs),
        rate_ci(s.rolled_back, s.runs),
        rate_ci(s.held, s.runs),
        minutes(quantile(&s.times, 0.5)),
        minutes(quantile(&s.times, 0.95)),
        quantile(&canary_requests, 0.5).map_or("–".to_owned(), |c| format!("{c:.0}")),
        causes.join(", ")
    )
}

const HEADER: &str = "| req/s | canary | runs | promoted [95% CI] | rolled back [95% CI] | held [95% CI] | time to the decision (from the onset), median / p95 | canary requests to it, median | rollback causes |\n|---|---|---|---|---|---|---|---|---|";

/// The stated time of issue 19's goal "an identical canary is promoted ≥ 95% of the time
/// within a stated time at 20 req/s": 90 minutes (the 200-run table's p95 is 63).
const PROMOTED_WITHIN_S: f64 = 90.0 * 60.0;

/// Checks issue 19's goals on a summary; returns the broken ones.
fn goals(canary: Canary, rate: f64, s: &Summary) -> Vec<String> {
    let share = |k: u64| k as f64 / s.runs as f64;
    let mut broken = Vec::new();
    match canary {
        Canary::Identical => {
            if share(s.rolled_back) > 0.05 {
                broken.push(format!(
                    "identical rolled back {:.3} at {rate}",
                    share(s.rolled_back)
                ));
            }
            let in_time = s.times.iter().filter(|&&t| t <= PROMOTED_WITHIN_S).count() as u64;
            if rate == 20.0 && share(in_time) < 0.95 {
                broken.push(format!(
                    "identical promoted within {} min {:.3} at 20",
                    PROMOTED_WITHIN_S / 60.0,
                    share(in_time)
                ));
            }
        }
        Canary::Spike60 if s.rolled_back > 0 => {
            broken.push(format!(
                "a 60-s spike rolled back {} runs at {rate}",
                s.rolled_back
            ));
        }
        c if c.is_bad() && share(s.promoted) > 0.01 => {
            broken.push(format!(
                "{} promoted {:.3} at {rate}",
                c.name(),
                share(s.promoted)
            ));
        }
        _ => {}
    }
    if canary == Canary::Sustained30 && rate >= 20.0 {
        let late = s.times.iter().filter(|&&t| t > 120.0).count();
        if s.rolled_back < s.runs || late > 0 {
            broken.push(format!(
                "sustained 30%: {} of {} rolled back, {late} later than 2 min at {rate}",
                s.rolled_back, s.runs
            ));
        }
    }
    broken
}

/// The fast part: every case at every rate, a few runs each, with the goals checked.
#[test]
fn the_example_policy_meets_its_goals_in_closed_loop() {
    let mut broken = Vec::new();
    for (i, canary) in Canary::ALL.into_iter().enumerate() {
        for (j, rate) in [2.0, 20.0, 100.0].into_iter().enumerate() {
            let runs = if canary == Canary::Identical { 20 } else { 10 };
            let seed = 1_000_000 * (i as u64 + 1) + 10_000 * j as u64;
            let s = run_case(canary, rate, runs, seed, Method::Sequential);
            eprintln!("{}", row(canary, rate, &s));
            broken.extend(goals(canary, rate, &s));
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// The full table of `SIMULATIONS.md` and `docs/analysis.md` (200 runs per case and rate).
#[test]
#[ignore = "long: the full closed-loop table of SIMULATIONS.md"]
fn closed_loop_table() {
    let runs: u64 = std::env::var("AUGUR_SIM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    println!("{HEADER}");
    let mut broken = Vec::new();
    for (i, canary) in Canary::ALL.into_iter().enumerate() {
        for (j, rate) in [2.0, 20.0, 100.0].into_iter().enumerate() {
            let seed = 7_000_000_000 + 1_000_000 * i as u64 + 100_000 * j as u64;
            let s = run_case(canary, rate, runs, seed, Method::Sequential);
            println!("{}", row(canary, rate, &s));
            broken.extend(goals(canary, rate, &s));
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// The same runs (same seeds) judged by a Kayenta-style fixed-horizon judge repeated every
/// interval: Hodges-Lehmann 98% interval for latency, Newcombe's for rates, a gate passing at
/// the first look where every interval is inside its allowance.
#[test]
#[ignore = "long: the Kayenta-style comparison of SIMULATIONS.md"]
fn kayenta_style_comparison() {
    let runs: u64 = std::env::var("AUGUR_SIM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    println!("| judge | {}", &HEADER[2..]);
    let only: Option<usize> = std::env::var("AUGUR_SIM_CASE")
        .ok()
        .and_then(|v| v.parse().ok());
    for canary in [
        Canary::Identical,
        Canary::Slower,
        Canary::TailOnly,
        Canary::Errors4,
        Canary::Errors25,
        Canary::AccuracyDrop,
    ]
    .into_iter()
    .filter(|c| only.is_none_or(|i| *c as usize == i))
    {
        for (j, rate) in [2.0, 20.0, 100.0].into_iter().enumerate() {
            let seed = 9_000_000_000 + 100_000 * j as u64 + 1_000_000 * canary as u64;
            for (name, method) in [
                ("sequential", Method::Sequential),
                ("Kayenta-style", Method::MannWhitney),
            ] {
                let s = run_case(canary, rate, runs, seed, method);
                println!("| {name} {}", row(canary, rate, &s));
            }
        }
    }
}

/// Hours (of `hours`) in which the example's trigger `which` fired on Poisson traffic at `rate`
/// with the canary at `weight` behaving as `canary`; the trigger restarts after a firing.
fn trigger_hours(
    which: usize,
    canary: ArmModel,
    rate: f64,
    weight: f64,
    hours: u64,
    seed: u64,
) -> u64 {
    use augur_analyzer::triggers::Triggers;
    use augur_model::Arm;
    let spec = PolicySpec::example().triggers[which].clone();
    let mut fired_hours = 0;
    for h in 0..hours {
        let mut rng = common::Rng(seed + h);
        let mut triggers = Triggers::new(std::slice::from_ref(&spec), 60.0);
        let (mut t, mut next_check, mut fired) = (0.0, 1.0, false);
        while t < 3600.0 {
            t += rng.gap(rate);
            while next_check <= t.min(3600.0) {
                if triggers.evaluate(next_check).is_some() {
                    fired = true;
                    triggers.clear();
                }
                next_check += 1.0;
            }
            let (arm, model) = if rng.uniform() < weight {
                (Arm::Canary, canary)
            } else {
                (Arm::Stable, BASE)
            };
            let s = common::request_labelled(&mut rng, t, arm, model, LABEL_SHARE);
            triggers.record(&s);
            if let (Some(label), Some(truth)) = (&s.label, &s.truth) {
                triggers.record_labelled(arm, label == truth, t);
            }
        }
        fired_hours += u64::from(fired);
    }
    fired_hours
}

/// The example triggers' canaries: identical, and exactly at each trigger's condition.
fn at_condition(which: usize) -> ArmModel {
    match which {
        0 => ArmModel {
            error_rate: 0.10,
            ..BASE
        },
        1 => ArmModel {
            accuracy: BASE.accuracy - 0.05,
            ..BASE
        },
        _ => ArmModel {
            extra_ms: 500.0,
            ..BASE
        },
    }
}

fn trigger_table(hours: u64) -> (String, Vec<String>) {
    let names = [
        "error-rate-above-10",
        "accuracy-drop",
        "p95-latency-increase",
    ];
    let mut out = String::from(
        "| trigger | canary | req/s | hours | hours with a firing [95% CI] |\n|---|---|---|---|---|\n",
    );
    let mut broken = Vec::new();
    for (which, name) in names.iter().enumerate() {
        for (what, canary) in [
            ("identical", BASE),
            ("at the condition", at_condition(which)),
        ] {
            for (j, rate) in [2.0, 20.0, 100.0].into_iter().enumerate() {
                let seed = 3_000_000_000 + 10_000_000 * which as u64 + 1_000_000 * j as u64;
                let k = trigger_hours(which, canary, rate, 0.5, hours, seed);
                out.push_str(&format!(
                    "| {name} | {what} | {rate} | {hours} | {} |\n",
                    rate_ci(k, hours)
                ));
                if what == "identical" && k as f64 > 0.01 * hours as f64 {
                    broken.push(format!(
                        "{name} fired in {k} of {hours} identical hours at {rate}"
                    ));
                }
            }
        }
    }
    (out, broken)
}

/// The triggers' false firings per hour, fast part: identical canaries only (the part with a
/// goal: within each trigger's α of 1% per hour).
#[test]
fn triggers_do_not_fire_on_an_identical_canary() {
    let mut broken = Vec::new();
    for which in 0..3 {
        for rate in [2.0, 20.0, 100.0] {
            let k = trigger_hours(which, BASE, rate, 0.5, 3, 77 + which as u64);
            if k > 0 {
                broken.push(format!("trigger {which} fired in {k} of 3 hours at {rate}"));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:?}");
}

/// The full table of the triggers' false firings (`SIMULATIONS.md`).
#[test]
#[ignore = "long: the triggers' false-firing table of SIMULATIONS.md"]
fn trigger_false_firing() {
    let hours = std::env::var("AUGUR_SIM_HOURS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let (table, broken) = trigger_table(hours);
    println!("{table}");
    assert!(broken.is_empty(), "{broken:?}");
}

/// One case at one rate, for exploring: `AUGUR_SIM_CASE` (the case's index, 0–8, in the order
/// of `Canary`),
/// `AUGUR_SIM_RATE`, `AUGUR_SIM_RUNS`, `AUGUR_SIM_METHOD` (`sequential` or `kayenta`).
#[test]
#[ignore = "exploration: one case, chosen by environment variables"]
fn one_case() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let all = [
        Canary::Identical,
        Canary::Slower,
        Canary::TailOnly,
        Canary::Errors4,
        Canary::Errors25,
        Canary::AccuracyDrop,
        Canary::Spike60,
        Canary::Spike150,
        Canary::Sustained30,
    ];
    let canary = all[env("AUGUR_SIM_CASE", "0").parse::<usize>().unwrap_or(0) % all.len()];
    let rate: f64 = env("AUGUR_SIM_RATE", "20").parse().unwrap_or(20.0);
    let runs: u64 = env("AUGUR_SIM_RUNS", "20").parse().unwrap_or(20);
    let method = match env("AUGUR_SIM_METHOD", "sequential").as_str() {
        "kayenta" => Method::MannWhitney,
        _ => Method::Sequential,
    };
    let s = run_case(canary, rate, runs, 5_000_000, method);
    println!("{HEADER}\n{}", row(canary, rate, &s));
    let mut times = s.times.clone();
    times.sort_by(f64::total_cmp);
    println!("decision times (s): {times:?}");
    println!("goals broken: {:?}", goals(canary, rate, &s));
}

/// `augur policy explain --rate` estimates a median from the judge's statistics: for the example
/// policy and the simulated traffic it lands near the simulated median time to promotion.
#[test]
fn the_explain_estimate_is_near_the_simulated_median() {
    use augur_analyzer::plan::{estimate, Baseline};
    let p = PolicySpec::example();
    for (j, rate) in [20.0, 100.0].into_iter().enumerate() {
        let base = Baseline {
            log_latency_sd: BASE.log_sd,
            label_share: LABEL_SHARE,
            ..Baseline::at_rate(rate)
        };
        let gates = estimate(&p.analysis, &p.gates, &p.steps, &base);
        let estimated = gates
            .last()
            .and_then(|g| g.opens_after_s)
            .expect("the last gate opens");
        let s = run_case(
            Canary::Identical,
            rate,
            20,
            11_000_000 + 1_000 * j as u64,
            Method::Sequential,
        );
        let simulated = quantile(&s.times, 0.5).expect("promotions");
        eprintln!(
            "{rate} req/s: estimated {estimated} s, simulated median {simulated} s; {gates:?}"
        );
        assert!(
            estimated > 0.5 * simulated && estimated < 2.0 * simulated,
            "{rate} req/s: estimated {estimated} s, simulated median {simulated} s"
        );
    }
}
