//! `augur rollout status|promote|abort|retry|pause|resume`: the admin API from the terminal,
//! with a table like `kubectl argo rollouts get rollout`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::admin_client;
use crate::args::{OutputFormat, RolloutCommand};

/// Runs one rollout subcommand against the admin API at `admin`.
pub fn run(admin: SocketAddr, command: RolloutCommand) -> anyhow::Result<ExitCode> {
    match command {
        RolloutCommand::Status {
            name,
            output,
            watch,
        } => loop {
            let (status, body) = admin_client::call(admin, "GET", "/rollouts", "")?;
            if status != 200 {
                anyhow::bail!("GET /rollouts answered {status}: {body}");
            }
            let json: Value =
                serde_json::from_str(&body).context("the admin API sent invalid JSON")?;
            let rollouts: Vec<&Value> = json["rollouts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|r| matches_name(r, name.as_deref()))
                        .collect()
                })
                .unwrap_or_default();
            if watch {
                print!("\x1b[2J\x1b[H");
            }
            match output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rollouts)?),
                OutputFormat::Table if rollouts.is_empty() => {
                    println!("No rollouts: no CanaryPolicy is loaded (see `augur policy explain`).")
                }
                OutputFormat::Table => {
                    for r in rollouts {
                        print!("{}", render(r));
                    }
                }
            }
            if !watch {
                return Ok(ExitCode::SUCCESS);
            }
            std::thread::sleep(Duration::from_secs(2));
        },
        RolloutCommand::Promote { name, full } => {
            command_call(admin, &name, if full { "promote-full" } else { "promote" })
        }
        RolloutCommand::Abort { name } => command_call(admin, &name, "abort"),
        RolloutCommand::Retry { name } => command_call(admin, &name, "retry"),
        RolloutCommand::Pause { name } => command_call(admin, &name, "pause"),
        RolloutCommand::Resume { name } => command_call(admin, &name, "resume"),
    }
}

fn matches_name(r: &Value, name: Option<&str>) -> bool {
    let Some(name) = name else { return true };
    let full = r["name"].as_str().unwrap_or("");
    full == name || full.rsplit('/').next() == Some(name)
}

fn command_call(admin: SocketAddr, name: &str, verb: &str) -> anyhow::Result<ExitCode> {
    let (status, body) =
        admin_client::call(admin, "POST", &format!("/rollouts/{name}/{verb}"), "")?;
    if status == 200 {
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let d = &json["decision"];
        println!(
            "{name}: {verb} done: {} -> {} (canary {}%): {}",
            phase(&d["from"]),
            phase(&d["to"]),
            d["weights"]["canary"],
            d["reason"].as_str().unwrap_or("")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("augur: {verb} {name} refused ({status}): {}", body.trim());
        if status == 409 && !body.contains("is shadow-only") {
            eprintln!("hint: `augur rollout status {name}` shows the state; `retry` restarts an ended rollout.");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The state in words, as `kubectl argo rollouts` shows it: `Paused (waiting for promotion)`,
/// `Paused (no data for error-rate)`, `Progressing`, `Promoted`.
fn phase(state: &Value) -> String {
    let p = state["phase"].as_str().unwrap_or("?");
    let reason = match &state["reason"] {
        Value::String(r) if r == "manual_gate" => Some("waiting for promotion".to_owned()),
        Value::String(r) if r == "manual" => Some("paused by a command".to_owned()),
        Value::Object(o) => o
            .get("no_data")
            .and_then(|n| n["metric"].as_str())
            .map(|m| format!("no data for {m}")),
        _ => None,
    };
    match (p, reason) {
        ("paused", Some(reason)) => format!("Paused ({reason})"),
        ("rolling_back", _) => format!(
            "RollingBack (staged, trigger {})",
            state["trigger"].as_str().unwrap_or("?")
        ),
        ("rolled_back", _) => "RolledBack".to_owned(),
        (p, _) => {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    }
}

/// The status line: a timed pause is shown as Paused with the time left; a shadow-only policy
/// as Shadowing with its share of requests.
fn status_line(r: &Value) -> String {
    if r["state"]["phase"] == "shadowing" {
        return format!(
            "Shadowing (scoring {} of requests in the shadow model; stable serves them all)",
            percent(&r["shadow"]["percentage"])
        );
    }
    match r["pause_deadline"].as_f64() {
        Some(deadline) => {
            let left = deadline - augur_proxy::sample::now();
            format!("Paused (timed pause, {} left)", duration(left))
        }
        None => phase(&r["state"]),
    }
}

fn step_text(step: &Value) -> String {
    if let Some(w) = step.get("set_weight") {
        return format!("setWeight {w}");
    }
    if let Some(p) = step.get("pause") {
        return match p["duration_s"].as_f64() {
            Some(s) => format!("pause {}", duration(s)),
            None => "pause (until promoted)".to_owned(),
        };
    }
    if let Some(h) = step.get("set_header_route") {
        return format!("setHeaderRoute {}", h["name"].as_str().unwrap_or(""));
    }
    if let Some(m) = step.get("set_mirror_route") {
        return format!(
            "setMirrorRoute {} {}%",
            m["name"].as_str().unwrap_or(""),
            m["percent"]
        );
    }
    step.as_str()
        .map_or_else(|| step.to_string(), str::to_owned)
}

/// `10%` (`12.5%`).
fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |p| format!("{p}%"))
}

/// A rate in 0..=1 as `97.3%`.
fn rate(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{:.1}%", x * 100.0))
}

/// The shadow model and each arm's agreement with it: how many predictions were compared, how
/// many the shadow agreed with, the rate and its 95% interval.
fn shadow_section(shadow: &Value) -> String {
    let mut out = format!(
        "\nShadow:   {} scores {} of requests\n",
        shadow["model"].as_str().unwrap_or(""),
        percent(&shadow["percentage"])
    );
    let rows: Vec<Vec<String>> = ["stable", "canary"]
        .iter()
        .filter_map(|arm| {
            let a = shadow["agreement"].get(*arm)?;
            let ci = a["ci95"].as_array().map_or_else(
                || "-".to_owned(),
                |c| format!("[{}, {}]", rate(&c[0]), rate(&c[1])),
            );
            Some(vec![
                (*arm).to_owned(),
                a["compared"].to_string(),
                a["agreed"].to_string(),
                rate(&a["rate"]),
                ci,
            ])
        })
        .collect();
    out.push_str(&columns(
        &["AGREEMENT", "COMPARED", "AGREED", "RATE", "95% CI"],
        &rows,
        &[false, true, true, true, false],
    ));
    out
}

fn num(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"))
}

fn signed(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{x:+.4}"))
}

/// `pass`, `fail (high)`, `inconclusive`, and for `no_data` the samples it waits for: `no_data
/// (186 of 200)`, the arm with fewer.
fn outcome(v: &Value) -> String {
    let o = &v["outcome"];
    match o {
        Value::String(s) if s == "no_data" => match v["needed"].as_u64() {
            Some(needed) => {
                let have = v["n_stable"]
                    .as_u64()
                    .unwrap_or(0)
                    .min(v["n_canary"].as_u64().unwrap_or(0));
                format!("no_data ({have} of {needed})")
            }
            None => s.clone(),
        },
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .next()
            .map(|(k, side)| format!("{k} ({})", side["side"].as_str().unwrap_or("")))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Durations as policies write them (`45s`, `3m20s`, `1h12m0s`): one format everywhere.
fn duration(s: f64) -> String {
    augur_analyzer::rollout::format_seconds(s)
}

/// Rows as columns, each as wide as its widest cell; `right` says which align right.
fn columns(header: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A Unix time as `HH:MM:SS UTC`.
fn unix_time(t: f64) -> String {
    let s = t.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, (s % 3600) / 60, s % 60)
}

/// The status of one rollout as text.
pub fn render(r: &Value) -> String {
    let mut out = String::new();
    let current = r["step"].as_u64();
    let steps = r["steps"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "Name:     {}", r["name"].as_str().unwrap_or(""));
    let _ = writeln!(out, "Status:   {}", status_line(r));
    if let Some(step) = current {
        let _ = writeln!(out, "Step:     {}/{}", step + 1, steps.len());
    }
    if r["weights"].is_null() {
        let _ = writeln!(
            out,
            "Weights:  unchanged (shadow-only: no canary, no steps; the routes' own weights apply)"
        );
    } else {
        let _ = writeln!(
            out,
            "Weights:  stable {}%  canary {}%",
            r["weights"]["stable"], r["weights"]["canary"]
        );
    }
    if let Some(rate) = r["label_rate"].as_f64() {
        let _ = writeln!(
            out,
            "Labels:   {:.1}% of predictions labelled",
            rate * 100.0
        );
    }
    if !steps.is_empty() {
        let _ = writeln!(out, "\n  STEP  ACTION");
    }
    for (i, s) in steps.iter().enumerate() {
        let marker = match current {
            Some(c) if c as usize == i => "▶",
            Some(c) if (i as u64) < c => "✔",
            _ => " ",
        };
        let _ = writeln!(out, "{marker} {:<5} {}", i + 1, step_text(s));
    }
    if r["shadow"].is_object() {
        out.push_str(&shadow_section(&r["shadow"]));
    }
    if let Some(deadline) = r["gate_deadline"].as_f64() {
        let left = deadline - augur_proxy::sample::now();
        let _ = writeln!(
            out,
            "\nThis gate waits for evidence until {} ({}): it opens when every metric's bound is inside its allowance.",
            unix_time(deadline),
            if left > 0.0 {
                format!("{} left", duration(left))
            } else {
                "due".to_owned()
            }
        );
    }
    if let Some(verdicts) = r["verdicts"].as_array().filter(|v| !v.is_empty()) {
        let rows: Vec<Vec<String>> = verdicts
            .iter()
            .map(|v| {
                let e = if v["e_value"].is_number() {
                    num(&v["e_value"])
                } else if v["p_value"].is_number() {
                    format!("p={}", num(&v["p_value"]))
                } else {
                    "-".to_owned()
                };
                vec![
                    v["metric"].as_str().unwrap_or("").to_owned(),
                    outcome(v),
                    num(&v["stable"]),
                    num(&v["canary"]),
                    signed(&v["bound"]),
                    signed(&v["allowance"]),
                    v["n_stable"].to_string(),
                    v["n_canary"].to_string(),
                    e,
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&columns(
            &[
                "METRIC", "VERDICT", "STABLE", "CANARY", "BOUND", "ALLOWED", "N STABLE",
                "N CANARY", "E-VALUE",
            ],
            &rows,
            &[false, false, true, true, true, true, true, true, true],
        ));
        let measures: Vec<String> = verdicts
            .iter()
            .filter_map(|v| {
                Some(format!(
                    "{}: {}",
                    v["metric"].as_str()?,
                    v["measure"].as_str()?
                ))
            })
            .collect();
        if !measures.is_empty() {
            let _ = writeln!(out, "(bound and allowance of {})", measures.join("; "));
        }
    }
    if let Some(gates) = r["gates"].as_array().filter(|g| !g.is_empty()) {
        let _ = writeln!(out, "\nGATES");
        for g in gates {
            let waited = g["ended"].as_f64().unwrap_or(0.0) - g["started"].as_f64().unwrap_or(0.0);
            let evidence: Vec<String> = g["verdicts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["allowance"].is_number())
                .map(|v| {
                    format!(
                        "{} {} vs {} (n {}/{})",
                        v["metric"].as_str().unwrap_or(""),
                        signed(&v["bound"]),
                        signed(&v["allowance"]),
                        v["n_stable"],
                        v["n_canary"]
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  step {}: {} after {}: {}",
                g["step"].as_u64().map_or(0, |s| s + 1),
                g["outcome"].as_str().unwrap_or(""),
                duration(waited),
                evidence.join("; ")
            );
        }
    }
    if let Some(last) = r["decisions"].as_array().and_then(|d| d.first()) {
        let _ = writeln!(
            out,
            "\nLast decision: {}",
            last["reason"].as_str().unwrap_or("")
        );
    }
    out.push('\n');
    out
}
