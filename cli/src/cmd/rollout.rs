//! `augur rollout status|start|promote|abort|retry|pause|resume`: the admin API from the terminal,
//! with a table like `kubectl argo rollouts get rollout`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use augur_analyzer::rollout::RolloutState;
use augur_analyzer::verdict::{Outcome, Verdict};
use augur_rollout::status::{CommandReply, PolicyState, RolloutList, RolloutStatus, ShadowStatus};

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
            let list: RolloutList = serde_json::from_str(&body).context(
                "the admin API's /rollouts is not what this augur reads (another version?)",
            )?;
            let rollouts: Vec<&RolloutStatus> = list
                .rollouts
                .iter()
                .filter(|r| name.as_deref().is_none_or(|n| r.is_named(n)))
                .collect();
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
        RolloutCommand::Promote { name, full, force } => match (full, force) {
            (true, _) => command_call(admin, &name, "promote-full", ""),
            (false, true) => command_call(admin, &name, "promote", r#"{"force": true}"#),
            (false, false) => command_call(admin, &name, "promote", ""),
        },
        RolloutCommand::Start { name } => command_call(admin, &name, "start", ""),
        RolloutCommand::Abort { name } => command_call(admin, &name, "abort", ""),
        RolloutCommand::Retry { name } => command_call(admin, &name, "retry", ""),
        RolloutCommand::Pause { name } => command_call(admin, &name, "pause", ""),
        RolloutCommand::Resume { name } => command_call(admin, &name, "resume", ""),
    }
}

fn command_call(
    admin: SocketAddr,
    name: &str,
    verb: &str,
    request: &str,
) -> anyhow::Result<ExitCode> {
    let (status, body) =
        admin_client::call(admin, "POST", &format!("/rollouts/{name}/{verb}"), request)?;
    if status == 200 {
        let reply: CommandReply = serde_json::from_str(&body)
            .context("the admin API's answer is not what this augur reads (another version?)")?;
        let d = reply.decision;
        println!(
            "{name}: {verb} done: {} -> {} (canary {}%): {}",
            phase(&d.from),
            phase(&d.to),
            d.weights.canary,
            d.reason
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("augur: {verb} {name} refused ({status}): {}", body.trim());
        if status == 409 && !body.contains("is shadow-only") && !body.contains("--force") {
            eprintln!("hint: `augur rollout status {name}` shows the state; `retry` restarts an ended rollout.");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The state in words, as `kubectl argo rollouts` shows it: `Paused (waiting for promotion)`,
/// `Paused (no data for error-rate)`, `Progressing`, `Promoted`.
fn phase(state: &RolloutState) -> String {
    match state {
        RolloutState::Pending => "Pending (not started)".to_owned(),
        RolloutState::Progressing { .. } => "Progressing".to_owned(),
        RolloutState::Paused { reason, .. } => format!("Paused ({reason})"),
        RolloutState::RollingBack { trigger, .. } => {
            format!("RollingBack (staged, trigger {trigger})")
        }
        RolloutState::Inconclusive { .. } => "Inconclusive".to_owned(),
        RolloutState::Promoted => "Promoted".to_owned(),
        RolloutState::RolledBack { .. } => "RolledBack".to_owned(),
        RolloutState::Aborted { .. } => "Aborted".to_owned(),
    }
}

/// The status line: a timed pause is shown as Paused with the time left; a shadow-only policy
/// as Shadowing with its share of requests.
fn status_line(r: &RolloutStatus) -> String {
    let state = match &r.state {
        PolicyState::Rollout(state) => state,
        PolicyState::ShadowOnly(_) => {
            return format!(
                "Shadowing (scoring {} of requests in the shadow model; stable serves them all)",
                r.shadow
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |s| percent(s.percentage))
            )
        }
    };
    match r.pause_deadline {
        Some(deadline) => {
            let left = deadline - augur_proxy::sample::now();
            format!("Paused (timed pause, {} left)", duration(left))
        }
        None => phase(state),
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:+.4}"))
}

/// `10%` (`12.5%`).
fn percent(p: f64) -> String {
    format!("{p}%")
}

/// A rate in 0..=1 as `97.3%`.
fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{:.1}%", x * 100.0))
}

/// The shadow model and each arm's agreement with it: how many predictions were compared, how
/// many the shadow agreed with, the rate and its 95% interval.
fn shadow_section(shadow: &ShadowStatus) -> String {
    let mut out = format!(
        "\nShadow:   {} scores {} of requests\n",
        shadow.model,
        percent(shadow.percentage)
    );
    let arms = [
        ("stable", Some(&shadow.agreement.stable)),
        ("canary", shadow.agreement.canary.as_ref()),
    ];
    let rows: Vec<Vec<String>> = arms
        .into_iter()
        .filter_map(|(arm, a)| {
            let a = a?;
            let ci = a.ci95.map_or_else(
                || "-".to_owned(),
                |[lo, hi]| format!("[{}, {}]", rate(Some(lo)), rate(Some(hi))),
            );
            Some(vec![
                arm.to_owned(),
                a.compared.to_string(),
                a.agreed.to_string(),
                rate(a.rate),
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

/// `pass`, `fail (high)`, `inconclusive`, and for `no_data` the samples it waits for: `no_data
/// (186 of 200)`, the arm with fewer.
fn outcome(v: &Verdict) -> String {
    match (v.outcome, v.needed) {
        (Outcome::NoData, Some(needed)) => {
            format!("no_data ({} of {needed})", v.n_stable.min(v.n_canary))
        }
        (o, _) => o.name().to_owned(),
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
pub fn render(r: &RolloutStatus) -> String {
    let mut out = String::new();
    let current = r.step;
    let _ = writeln!(out, "Name:     {}", r.name);
    let _ = writeln!(out, "Status:   {}", status_line(r));
    if let Some(step) = current {
        let _ = writeln!(out, "Step:     {}/{}", step + 1, r.steps.len());
    }
    match r.weights {
        Some(w) if r.state == PolicyState::Rollout(RolloutState::Pending) => {
            let _ = writeln!(
                out,
                "Weights:  stable {}%  canary {}% (the VirtualService's own: no step yet)",
                w.stable, w.canary
            );
            let _ = writeln!(
                out,
                "Start:    `augur rollout start {}` enters step 1 (the policy's startOn: command)",
                r.name.rsplit('/').next().unwrap_or(&r.name)
            );
        }
        Some(w) => {
            let _ = writeln!(out, "Weights:  stable {}%  canary {}%", w.stable, w.canary);
        }
        None => {
            let _ = writeln!(
                out,
                "Weights:  unchanged (shadow-only: no canary, no steps; the routes' own weights apply)"
            );
        }
    }
    if let Some(rate) = r.label_rate {
        let _ = writeln!(
            out,
            "Labels:   {:.1}% of predictions labelled",
            rate * 100.0
        );
    }
    if !r.steps.is_empty() {
        let _ = writeln!(out, "\n  STEP  ACTION");
    }
    for (i, s) in r.steps.iter().enumerate() {
        let marker = match current {
            Some(c) if c == i => "▶",
            Some(c) if i < c => "✔",
            _ => " ",
        };
        let _ = writeln!(out, "{marker} {:<5} {s}", i + 1);
    }
    if let Some(shadow) = &r.shadow {
        out.push_str(&shadow_section(shadow));
    }
    if let Some(deadline) = r.gate_deadline {
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
    if let Some(deadline) = r.watch_deadline {
        let left = deadline - augur_proxy::sample::now();
        let _ = writeln!(
            out,
            "\nThis step watches until {} ({}): a failure rolls back; at its end the rollout goes on if the last look shows every metric inside its allowance.",
            unix_time(deadline),
            if left > 0.0 {
                format!("{} left", duration(left))
            } else {
                "due".to_owned()
            }
        );
    }
    if !r.verdicts.is_empty() {
        let rows: Vec<Vec<String>> = r
            .verdicts
            .iter()
            .map(|v| {
                let e = match (v.e_value, v.p_value) {
                    (Some(e), _) => num(Some(e)),
                    (None, Some(p)) => format!("p={}", num(Some(p))),
                    (None, None) => "-".to_owned(),
                };
                vec![
                    v.metric.clone(),
                    outcome(v),
                    num(v.stable),
                    num(v.canary),
                    signed(v.bound),
                    signed(v.allowance),
                    v.n_stable.to_string(),
                    v.n_canary.to_string(),
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
        let measures: Vec<String> = r
            .verdicts
            .iter()
            .filter_map(|v| Some(format!("{}: {}", v.metric, v.measure.as_deref()?)))
            .collect();
        if !measures.is_empty() {
            let _ = writeln!(out, "(bound and allowance of {})", measures.join("; "));
        }
    }
    if !r.gates.is_empty() {
        let _ = writeln!(out, "\nGATES");
        for g in &r.gates {
            let evidence: Vec<String> = g
                .verdicts
                .iter()
                .filter(|v| v.allowance.is_some())
                .map(|v| {
                    format!(
                        "{} {} vs {} (n {}/{})",
                        v.metric,
                        signed(v.bound),
                        signed(v.allowance),
                        v.n_stable,
                        v.n_canary
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  step {}: {} after {}: {}",
                g.step + 1,
                g.outcome,
                duration(g.ended - g.started),
                evidence.join("; ")
            );
        }
    }
    if let Some(last) = r.decisions.first() {
        let _ = writeln!(out, "\nLast decision: {}", last.reason);
    }
    out.push('\n');
    out
}
