//! `augur analyze`: replays a recorded sample stream through the same analyzer the proxy runs,
//! by the same clock rule ([`augur_analyzer::replay`]), and prints the decision timeline with
//! each metric's bound, allowance, samples and e-value.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use augur_analyzer::rollout::Decision;

use crate::args::OutputFormat;
use augur_policies::policy_key;
use augur_rollout::spec;

/// Replays `samples` (JSON lines) under the CanaryPolicy in `policy` (the one named `name`
/// when the files hold several).
pub fn run(
    policy: &[PathBuf],
    name: Option<&str>,
    samples: &Path,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let loaded = match augur_policies::load_paths(policy) {
        Ok(l) => l,
        Err(e) => {
            eprint!("{}", super::policy::render_diagnostics(&e));
            return Ok(ExitCode::FAILURE);
        }
    };
    let policies = &loaded.set.canary_policies;
    let chosen = match name {
        Some(n) => policies
            .iter()
            .find(|p| policy_key(p) == n || p.metadata.name == n)
            .with_context(|| format!("no CanaryPolicy named {n:?} in the policy files"))?,
        None if policies.len() == 1 => &policies[0],
        None if policies.is_empty() => bail!("the policy files hold no CanaryPolicy to replay"),
        None => bail!(
            "the policy files hold {} CanaryPolicies: choose one with --name",
            policies.len()
        ),
    };
    let events = augur_rollout::recording::read_events(samples)?;
    let mut spec = spec::from_policy(chosen);
    // A recording of a rollout that waited for `augur rollout start` holds that command; a
    // stream without one (samples written by hand or exported) is replayed as if the
    // rollout had started with its first event.
    spec.start_on_command &= events.iter().any(|e| {
        matches!(
            e,
            augur_analyzer::replay::Event::Command {
                command: augur_analyzer::rollout::Command::Start,
                ..
            }
        )
    });
    let decisions = augur_analyzer::replay::replay_events(spec.rollout(), events.into_iter(), None);
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&decisions)?),
        OutputFormat::Table => print!("{}", render(&policy_key(chosen), &decisions)),
    }
    Ok(ExitCode::SUCCESS)
}

fn render(policy: &str, decisions: &[Decision]) -> String {
    let mut out = format!("Replay of {policy}: {} decision(s)\n", decisions.len());
    for d in decisions {
        let _ = writeln!(
            out,
            "\nt={:>8.1}s  step {}  {} -> {}  stable {}% canary {}%\n  {}",
            d.time,
            d.step + 1,
            d.from.phase(),
            d.to.phase(),
            d.weights.stable,
            d.weights.canary,
            d.reason
        );
        for v in &d.verdicts {
            let value = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"));
            let _ = writeln!(
                out,
                "    {:<16} {:<12} stable {:>9} canary {:>9}  n {}/{}  bound {:>9} allowed {:>9}  e {:>9}  {}",
                v.metric,
                augur_rollout::history::outcome_name(&v.outcome),
                value(v.stable),
                value(v.canary),
                v.n_stable,
                v.n_canary,
                value(v.bound),
                value(v.allowance),
                value(v.e_value),
                v.reason
            );
        }
    }
    out
}
