//! The live terminal view: steps with progress bars, weights, per-arm latency, errors, accuracy
//! and agreement with the shadow model, the last verdicts and the last decision. On a terminal
//! the screen is redrawn; otherwise (CI) progress is printed as plain lines.

use std::fmt::Write as _;
use std::time::Duration;

use augur_analyzer::rollout::SAMPLE_RATIO_METRIC;
use serde_json::Value;

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
    pub(super) rollout: &'a Value,
    /// Its history, as `GET /rollouts/{name}/history` shows it.
    pub(super) history: &'a Value,
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
pub(super) fn outcome(v: &Value) -> String {
    match &v["outcome"] {
        Value::String(s) => s.clone(),
        other => other
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default(),
    }
}

/// A step as the policy writes it.
pub(super) fn step_text(step: &Value) -> String {
    if let Some(w) = step.get("set_weight") {
        return format!("setWeight {w}%");
    }
    if let Some(p) = step.get("pause") {
        return match p["duration_s"].as_f64() {
            Some(s) => format!("pause {s:.0}s"),
            None => "pause".to_owned(),
        };
    }
    match step.as_str() {
        Some("analysis") => "analysis".to_owned(),
        Some(other) => other.to_owned(),
        None => step.to_string(),
    }
}

/// The verdicts the gate waits on (the sample-ratio check is informational).
fn gate_verdicts(r: &Value) -> Vec<&Value> {
    r["verdicts"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|v| v["metric"] != SAMPLE_RATIO_METRIC)
                .collect()
        })
        .unwrap_or_default()
}

/// How far the current analysis gate is from opening, 0–1 (the share of its metrics shown
/// within their allowances), and why it waits: each metric's bound against its allowance.
fn gate_progress(r: &Value) -> (f64, String) {
    let verdicts = gate_verdicts(r);
    if verdicts.is_empty() {
        return (0.0, "waiting for the first look".to_owned());
    }
    let passed = verdicts.iter().filter(|v| outcome(v) == "pass").count();
    let parts: Vec<String> = verdicts
        .iter()
        .map(|v| {
            let name = v["metric"].as_str().unwrap_or("?");
            let n = v["n_canary"].as_u64().unwrap_or(0);
            match (v["bound"].as_f64(), v["allowance"].as_f64()) {
                (Some(b), Some(a)) => format!(
                    "{name} {} ({b:+.3} vs {a:+.3}, n {n})",
                    match outcome(v).as_str() {
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

/// Each arm's requests and errors summed over the history's points.
fn errors(history: &Value, arm: &str) -> Option<f64> {
    let (mut requests, mut errors) = (0u64, 0u64);
    for p in history["points"].as_array().into_iter().flatten() {
        requests += p[arm]["requests"].as_u64().unwrap_or(0);
        errors += p[arm]["errors"].as_u64().unwrap_or(0);
    }
    (requests > 0).then(|| errors as f64 / requests as f64)
}

fn verdict_of<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["verdicts"]
        .as_array()?
        .iter()
        .find(|v| v["metric"].as_str() == Some(name))
}

fn arm_row(f: &Frame<'_>, arm: &str, version: &str) -> String {
    let r = f.rollout;
    let client = f.stats.versions.get(version);
    let accuracy = verdict_of(r, "accuracy").map_or_else(
        || "–".to_owned(),
        |v| {
            let n = v[format!("n_{arm}")].as_u64().unwrap_or(0);
            format!("{} (n={n})", pct(v[arm].as_f64()))
        },
    );
    let last = f.history["points"]
        .as_array()
        .and_then(|p| p.last())
        .map(|p| &p[arm]);
    let agreement = last.map_or_else(
        || "–".to_owned(),
        |a| {
            format!(
                "{} (n={})",
                pct(a["shadow_agreement"].as_f64()),
                a["shadow_compared"].as_u64().unwrap_or(0)
            )
        },
    );
    format!(
        " {:<10} {:>5}% {:>8} {:>7} {:>7} {:>7}  {:<17} {}",
        format!("{arm} {version}"),
        r["weights"][arm],
        client.map_or(0, |c| c.requests),
        ms(client.and_then(|c| c.quantile(0.5))),
        ms(client.and_then(|c| c.quantile(0.95))),
        pct(errors(f.history, arm)),
        accuracy,
        agreement
    )
}

/// The decision's reason and when it was taken, relative to the start.
fn decision_line(f: &Frame<'_>, d: &Value) -> String {
    let at = d["time"].as_f64().unwrap_or(f.started_unix) - f.started_unix;
    format!(
        "[{}] {} → {} (canary {}%): {}",
        clock(Duration::from_secs_f64(at.max(0.0))),
        d["from"]["phase"].as_str().unwrap_or("?"),
        d["to"]["phase"].as_str().unwrap_or("?"),
        d["weights"]["canary"],
        d["reason"].as_str().unwrap_or("")
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
    let phase = r["state"]["phase"].as_str().unwrap_or("?");
    let current = r["step"].as_u64();
    let _ = writeln!(
        out,
        "\n Rollout {}: {phase}",
        r["name"].as_str().unwrap_or("")
    );
    let steps = r["steps"].as_array().cloned().unwrap_or_default();
    for (i, s) in steps.iter().enumerate() {
        let i = i as u64;
        let done = phase == "promoted" || current.is_some_and(|c| i < c);
        let here = current == Some(i);
        let marker = if done {
            "✔"
        } else if here {
            "▶"
        } else {
            " "
        };
        let text = step_text(s);
        let pause = s["pause"]["duration_s"].as_f64();
        let progress = if here && phase == "rolling_back" {
            "staged rollback: observing at half weight".to_owned()
        } else if let (Some(d), true) = (pause, here) {
            let now = f.started_unix + f.elapsed.as_secs_f64();
            let since = r["decisions"][0]["time"].as_f64().unwrap_or(now);
            let baked = (now - since).clamp(0.0, d);
            format!("{}  baking {baked:.0}/{d:.0} s", bar(baked / d, 20))
        } else if pause.is_some() && done {
            bar(1.0, 20)
        } else if pause.is_some() {
            bar(0.0, 20)
        } else if text != "analysis" {
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
        r["weights"]["stable"],
        bar(r["weights"]["canary"].as_f64().unwrap_or(0.0) / 100.0, 30),
        r["weights"]["canary"]
    );
    if !f.sidecars.is_empty() {
        let each: Vec<String> = f
            .sidecars
            .iter()
            .map(|(name, w)| match w {
                Some(w) => format!("{name} {w:.0}%"),
                None => format!("{name} ?"),
            })
            .collect();
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
    let _ = writeln!(out, "{}", arm_row(f, "stable", "v1"));
    let _ = writeln!(out, "{}", arm_row(f, "canary", "v2"));
    let _ = writeln!(
        out,
        " (latency as the client sees it over the last 30 s; accuracy as the analysis judged it)"
    );
    let looks: Vec<String> = r["verdicts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            format!(
                "{} {}",
                v["metric"].as_str().unwrap_or("?"),
                outcome(v).replace('_', " ")
            )
        })
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
    if let Some(d) = r["decisions"].as_array().and_then(|d| d.first()) {
        let _ = writeln!(out, " last decision: {}", decision_line(f, d));
    }
    out
}

/// One plain progress line (for logs and CI).
pub(super) fn progress_line(f: &Frame<'_>) -> String {
    let r = f.rollout;
    let arm = |arm: &str, version: &str| {
        let client = f.stats.versions.get(version);
        let accuracy = verdict_of(r, "accuracy").and_then(|v| v[arm].as_f64());
        format!(
            "{arm} {}% p95 {} ms err {} acc {}",
            r["weights"][arm],
            ms(client.and_then(|c| c.quantile(0.95))),
            pct(errors(f.history, arm)),
            pct(accuracy)
        )
    };
    let steps = r["steps"].as_array().map_or(0, Vec::len);
    let step = r["step"]
        .as_u64()
        .map_or_else(|| "-".to_owned(), |s| (s + 1).to_string());
    let gate = if r["state"]["phase"] == "progressing" {
        format!(" | gate: {}", gate_progress(r).1)
    } else {
        String::new()
    };
    let sidecars = if f.sidecars.is_empty() {
        String::new()
    } else {
        let each: Vec<String> = f
            .sidecars
            .iter()
            .map(|(name, w)| {
                format!(
                    "{name} {}",
                    w.map_or("?".to_owned(), |w| format!("{w:.0}%"))
                )
            })
            .collect();
        format!(" | sidecars {}", each.join(" "))
    };
    format!(
        "[{}] {} step {step}/{steps} | sent {} failed {} labels {} | {} | {}{sidecars}{gate}",
        clock(f.elapsed),
        r["state"]["phase"].as_str().unwrap_or("?"),
        f.stats.sent,
        f.stats.failed,
        f.stats.labels_sent,
        arm("stable", "v1"),
        arm("canary", "v2")
    )
}

/// The decisions taken since `seen` of them were shown, oldest first, as lines.
pub(super) fn new_decisions(f: &Frame<'_>, seen: &mut usize) -> Vec<String> {
    let all = f.history["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let fresh: Vec<String> = all
        .iter()
        .skip(*seen)
        .map(|d| decision_line(f, d))
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
        let r = serde_json::json!({"verdicts": [
            {"metric": "p95-latency", "outcome": "pass", "n_canary": 120, "bound": 0.021, "allowance": 0.05},
            {"metric": "accuracy", "outcome": "inconclusive", "n_canary": 80, "bound": -0.31, "allowance": -0.2},
            {"metric": "error-rate", "outcome": "no_data", "n_canary": 4},
            {"metric": SAMPLE_RATIO_METRIC, "outcome": "pass", "n_canary": 0},
        ]});
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
