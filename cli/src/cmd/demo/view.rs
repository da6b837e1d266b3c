//! The live terminal view: steps with progress bars, weights, per-arm latency, errors, accuracy
//! and agreement with the shadow model, the last verdicts and the last decision. On a terminal
//! the screen is redrawn; otherwise (CI) progress is printed as plain lines.

use std::fmt::Write as _;
use std::time::Duration;

use augur_analyzer::rollout::{
    format_seconds, Decision, RolloutState, Weights, SAMPLE_RATIO_METRIC,
};
use augur_analyzer::spec::StepSpec;
use augur_analyzer::verdict::Verdict;
use augur_rollout::history::{outcome_name, ArmPoint};
use augur_rollout::status::{RolloutHistory, RolloutStatus};

use super::traffic::Stats;

/// Everything one frame shows.
pub(super) struct Frame<'a> {
    /// The fixed lines at the top (scenario, models, the caveat, the dashboard's address).
    pub(super) header: &'a [String],
    /// Since the demo started.
    pub(super) elapsed: Duration,
    /// Unix time the demo started (decision times are shown relative to it).
    pub(super) started_unix: f64,
    /// The rollout, as `GET /rollouts` shows it.
    pub(super) rollout: &'a RolloutStatus,
    /// Its history, as `GET /rollouts/{name}/history` shows it.
    pub(super) history: &'a RolloutHistory,
    /// The traffic generator's counters.
    pub(super) stats: &'a Stats,
    /// In the fleet scenario: each sidecar's name and the canary weight it applies now
    /// (`None` when it did not answer).
    pub(super) sidecars: &'a [(String, Option<f64>)],
}

/// `m:ss`.
pub(super) fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |x| format!("{:.1}%", x * 100.0))
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |x| format!("{x:.0}"))
}

/// The outcome's name (`pass`, `fail`, `no_data`, `inconclusive`).
fn outcome(v: &Verdict) -> &'static str {
    outcome_name(&v.outcome)
}

/// The verdicts the gate waits on (the sample-ratio check is informational).
fn gate_verdicts(r: &RolloutStatus) -> Vec<&Verdict> {
    r.verdicts
        .iter()
        .filter(|v| v.metric != SAMPLE_RATIO_METRIC)
        .collect()
}

/// How far the current analysis gate is from opening, 0–1 (the share of its metrics shown
/// within their allowances), and why it waits: each metric's bound against its allowance.
fn gate_progress(r: &RolloutStatus) -> (f64, String) {
    let verdicts = gate_verdicts(r);
    if verdicts.is_empty() {
        return (0.0, "waiting for the first look".to_owned());
    }
    let passed = verdicts.iter().filter(|v| outcome(v) == "pass").count();
    let parts: Vec<String> = verdicts
        .iter()
        .map(|v| {
            let (name, n) = (&v.metric, v.n_canary);
            match (v.bound, v.allowance) {
                (Some(b), Some(a)) => format!(
                    "{name} {} ({b:+.3} vs {a:+.3}, n {n})",
                    match outcome(v) {
                        "inconclusive" => "collecting".to_owned(),
                        o => o.replace('_', " "),
                    }
                ),
                _ => format!("{name} {} (n {n})", outcome(v).replace('_', " ")),
            }
        })
        .collect();
    (passed as f64 / verdicts.len() as f64, parts.join(" · "))
}

/// The two arms the view compares side by side.
#[derive(Clone, Copy)]
enum Arm {
    Stable,
    Canary,
}

impl Arm {
    fn as_str(self) -> &'static str {
        match self {
            Arm::Stable => "stable",
            Arm::Canary => "canary",
        }
    }
}

/// One arm of a history point.
fn arm_point(p: &augur_rollout::history::Point, arm: Arm) -> &ArmPoint {
    match arm {
        Arm::Stable => &p.stable,
        Arm::Canary => &p.canary,
    }
}

/// Each arm's requests and errors summed over the history's points.
fn errors(history: &RolloutHistory, arm: Arm) -> Option<f64> {
    let (mut requests, mut errors) = (0u64, 0u64);
    for p in &history.points {
        requests += arm_point(p, arm).requests;
        errors += arm_point(p, arm).errors;
    }
    (requests > 0).then(|| errors as f64 / requests as f64)
}

fn verdict_of<'a>(r: &'a RolloutStatus, name: &str) -> Option<&'a Verdict> {
    r.verdicts.iter().find(|v| v.metric == name)
}

/// The rollout's weights (the demo's policy always has a rollout; a shadow-only entry would
/// leave all traffic to stable).
fn weights(r: &RolloutStatus) -> Weights {
    r.weights.unwrap_or(Weights::canary(0))
}

/// The arm's weight.
fn weight(r: &RolloutStatus, arm: Arm) -> u8 {
    match arm {
        Arm::Stable => weights(r).stable,
        Arm::Canary => weights(r).canary,
    }
}

fn measured(v: &Verdict, arm: Arm) -> (Option<f64>, u64) {
    match arm {
        Arm::Stable => (v.stable, v.n_stable),
        Arm::Canary => (v.canary, v.n_canary),
    }
}

fn arm_row(f: &Frame<'_>, arm: Arm, version: &str) -> String {
    let r = f.rollout;
    let client = f.stats.versions.get(version);
    let accuracy = verdict_of(r, "accuracy").map_or_else(
        || "–".to_owned(),
        |v| {
            let (value, n) = measured(v, arm);
            format!("{} (n={n})", pct(value))
        },
    );
    let agreement = f.history.points.last().map_or_else(
        || "–".to_owned(),
        |p| {
            let a = arm_point(p, arm);
            format!("{} (n={})", pct(a.shadow_agreement), a.shadow_compared)
        },
    );
    format!(
        " {:<10} {:>5}% {:>8} {:>7} {:>7} {:>7}  {:<17} {}",
        format!("{} {version}", arm.as_str()),
        weight(r, arm),
        client.map_or(0, |c| c.requests),
        ms(client.and_then(|c| c.quantile(0.5))),
        ms(client.and_then(|c| c.quantile(0.95))),
        pct(errors(f.history, arm)),
        accuracy,
        agreement
    )
}

/// Each sidecar's name and the canary weight it applies (`?` when it did not answer).
pub(super) fn sidecar_weights(sidecars: &[(String, Option<f64>)]) -> Vec<String> {
    sidecars
        .iter()
        .map(|(name, w)| match w {
            Some(w) => format!("{name} {w:.0}%"),
            None => format!("{name} ?"),
        })
        .collect()
}

/// A decision as a line: when it was taken relative to `started_unix`, the transition and why.
pub(super) fn decision_line(d: &Decision, started_unix: f64) -> String {
    format!(
        "[{}] {} → {} (canary {}%): {}",
        clock(Duration::from_secs_f64((d.time - started_unix).max(0.0))),
        d.from.phase(),
        d.to.phase(),
        d.weights.canary,
        d.reason
    )
}

/// The full-screen view.
pub(super) fn render(f: &Frame<'_>) -> String {
    let r = f.rollout;
    let mut out = String::new();
    for line in f.header {
        let _ = writeln!(out, "{line}");
    }
    let secs = f.elapsed.as_secs_f64().max(1e-3);
    let _ = writeln!(
        out,
        "\n elapsed {}   requests {} ({:.1}/s)   failed {}   labels posted {} (matched {})",
        clock(f.elapsed),
        f.stats.sent,
        f.stats.sent as f64 / secs,
        f.stats.failed,
        f.stats.labels_sent,
        f.stats.labels_matched
    );
    let phase = r.state.phase();
    let current = r.step;
    let _ = writeln!(out, "\n Rollout {}: {phase}", r.name);
    for (i, s) in r.steps.iter().enumerate() {
        let done =
            r.state.rollout() == Some(&RolloutState::Promoted) || current.is_some_and(|c| i < c);
        let here = current == Some(i);
        let marker = if done {
            "✔"
        } else if here {
            "▶"
        } else {
            " "
        };
        let text = s.to_string();
        let pause = match s {
            StepSpec::Pause { duration_s } => Some(*duration_s),
            _ => None,
        };
        let progress =
            if here && matches!(r.state.rollout(), Some(RolloutState::RollingBack { .. })) {
                "staged rollback: observing at half weight".to_owned()
            } else if let (Some(Some(d)), true) = (pause, here) {
                let now = f.started_unix + f.elapsed.as_secs_f64();
                let since = r.decisions.first().map_or(now, |d| d.time);
                let baked = (now - since).clamp(0.0, d);
                format!(
                    "{}  baking {}/{}",
                    bar(baked / d, 20),
                    format_seconds(baked),
                    format_seconds(d)
                )
            } else if pause.is_some() && done {
                bar(1.0, 20)
            } else if pause.is_some() {
                bar(0.0, 20)
            } else if *s != StepSpec::Analysis {
                String::new()
            } else if done {
                format!("{}  passed", bar(1.0, 20))
            } else if here {
                let (fraction, why) = gate_progress(r);
                format!("{}  {why}", bar(fraction, 20))
            } else {
                bar(0.0, 20)
            };
        let _ = writeln!(out, "   {marker} {:<2} {text:<15} {progress}", i + 1);
    }
    let _ = writeln!(
        out,
        "\n weights  stable {:>3}% [{}] canary {:>3}%",
        weight(r, Arm::Stable),
        bar(f64::from(weight(r, Arm::Canary)) / 100.0, 30),
        weight(r, Arm::Canary)
    );
    if !f.sidecars.is_empty() {
        let each = sidecar_weights(f.sidecars);
        let _ = writeln!(
            out,
            " sidecars (canary weight applied): {}",
            each.join("   ")
        );
    }
    let _ = writeln!(
        out,
        "\n {:<10} {:>6} {:>8} {:>7} {:>7} {:>7}  {:<17} AGREES WITH SHADOW",
        "ARM", "WEIGHT", "ANSWERS", "P50 ms", "P95 ms", "ERRORS", "ACCURACY"
    );
    let _ = writeln!(out, "{}", arm_row(f, Arm::Stable, "v1"));
    let _ = writeln!(out, "{}", arm_row(f, Arm::Canary, "v2"));
    let _ = writeln!(
        out,
        " (latency as the client sees it over the last 30s; accuracy as the analysis judged it)"
    );
    let looks: Vec<String> = r
        .verdicts
        .iter()
        .map(|v| format!("{} {}", v.metric, outcome(v).replace('_', " ")))
        .collect();
    let _ = writeln!(
        out,
        "\n last look:     {}",
        if looks.is_empty() {
            "none yet".to_owned()
        } else {
            looks.join(" · ")
        }
    );
    if let Some(d) = r.decisions.first() {
        let _ = writeln!(out, " last decision: {}", decision_line(d, f.started_unix));
    }
    out
}

/// One plain progress line (for logs and CI).
pub(super) fn progress_line(f: &Frame<'_>) -> String {
    let r = f.rollout;
    let arm = |arm: Arm, version: &str| {
        let client = f.stats.versions.get(version);
        let accuracy = verdict_of(r, "accuracy").and_then(|v| measured(v, arm).0);
        format!(
            "{} {}% p95 {} ms err {} acc {}",
            arm.as_str(),
            weight(r, arm),
            ms(client.and_then(|c| c.quantile(0.95))),
            pct(errors(f.history, arm)),
            pct(accuracy)
        )
    };
    let steps = r.steps.len();
    let step = r
        .step
        .map_or_else(|| "-".to_owned(), |s| (s + 1).to_string());
    let gate = if matches!(r.state.rollout(), Some(RolloutState::Progressing { .. })) {
        format!(" | gate: {}", gate_progress(r).1)
    } else {
        String::new()
    };
    let sidecars = if f.sidecars.is_empty() {
        String::new()
    } else {
        format!(" | sidecars {}", sidecar_weights(f.sidecars).join(" "))
    };
    format!(
        "[{}] {} step {step}/{steps} | sent {} failed {} labels {} | {} | {}{sidecars}{gate}",
        clock(f.elapsed),
        r.state.phase(),
        f.stats.sent,
        f.stats.failed,
        f.stats.labels_sent,
        arm(Arm::Stable, "v1"),
        arm(Arm::Canary, "v2")
    )
}

/// The decisions taken since `seen` of them were shown, oldest first, as lines.
pub(super) fn new_decisions(f: &Frame<'_>, seen: &mut usize) -> Vec<String> {
    let all = &f.history.decisions;
    let fresh: Vec<String> = all
        .iter()
        .skip(*seen)
        .map(|d| decision_line(d, f.started_unix))
        .collect();
    *seen = all.len().max(*seen);
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_clock() {
        assert_eq!(bar(0.5, 4), "██░░");
        assert_eq!(bar(2.0, 2), "██");
        assert_eq!(clock(Duration::from_secs(125)), "2:05");
    }

    #[test]
    fn the_gate_says_why_it_waits() {
        let verdict = |metric: &str, outcome: &str, n: u64, bounds: Option<(f64, f64)>| {
            let mut v = serde_json::json!({
                "metric": metric, "outcome": outcome, "critical": false, "n_stable": n,
                "n_canary": n, "test": "none", "reason": "",
            });
            if let Some((bound, allowance)) = bounds {
                v["bound"] = bound.into();
                v["allowance"] = allowance.into();
            }
            serde_json::from_value(v).expect("a verdict")
        };
        let r: RolloutStatus = serde_json::from_value(serde_json::json!({
            "name": "default/pneumonia", "policy_hash": "", "release": "", "archived_releases": 0,
            "state": {"phase": "progressing", "step": 1}, "gates": [], "steps": [],
            "weights": {"stable": 90, "canary": 10}, "verdicts": [], "counters": {},
            "decisions": [],
        }))
        .expect("a status");
        let r = RolloutStatus {
            verdicts: vec![
                verdict("p95-latency", "pass", 120, Some((0.021, 0.05))),
                verdict("accuracy", "inconclusive", 80, Some((-0.31, -0.2))),
                verdict("error-rate", "no_data", 4, None),
                verdict(SAMPLE_RATIO_METRIC, "pass", 0, None),
            ],
            ..r
        };
        let (fraction, why) = gate_progress(&r);
        assert!((fraction - 1.0 / 3.0).abs() < 1e-9);
        assert!(
            why.contains("accuracy collecting (-0.310 vs -0.200, n 80)"),
            "{why}"
        );
        assert!(why.contains("error-rate no data (n 4)"), "{why}");
        assert!(!why.contains(SAMPLE_RATIO_METRIC));
    }
}
