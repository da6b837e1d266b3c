//! `augur policy check` and `augur policy explain`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use augur_analyzer::plan::{estimate, Baseline, GateEstimate};
use serde::Serialize;

use crate::args::{EvidenceArgs, OutputFormat};
use augur_proxy::route::policy_key;

/// A gate that needs more than this at the stated rate cannot pass in practice.
const IMPRACTICAL_S: f64 = 24.0 * 3600.0;

/// One CanaryPolicy's evidence estimate.
#[derive(Debug, Serialize)]
struct Evidence {
    policy: String,
    assumed: Baseline,
    gates: Vec<GateEstimate>,
}

fn evidence(set: &augur_policies::PolicySet, base: &Baseline) -> Vec<Evidence> {
    set.canary_policies
        .iter()
        .map(|p| {
            let spec = augur_rollout::spec::from_policy(p);
            Evidence {
                policy: policy_key(p),
                assumed: *base,
                gates: estimate(&spec.analysis, &spec.gates, &spec.steps, base),
            }
        })
        .collect()
}

/// `3h12m0s`, `25m0s`, `40s`: an estimate, rounded to whole minutes past the first.
fn human(s: f64) -> String {
    let s = s.max(0.0);
    let rounded = if s < 60.0 {
        s.round()
    } else {
        (s / 60.0).round() * 60.0
    };
    augur_analyzer::rollout::format_seconds(rounded)
}

/// Warnings about gates that cannot pass in practice at the stated rate.
fn impractical(evidence: &[Evidence]) -> Vec<String> {
    let mut out = Vec::new();
    for e in evidence {
        let rate = e.assumed.rate;
        for g in &e.gates {
            let step = g.step + 1;
            match (g.wait_s, g.canary_requests) {
                (_, None) => {
                    let why: Vec<String> = g
                        .metrics
                        .iter()
                        .filter_map(|m| Some(format!("{}: {}", m.metric, m.note.as_deref()?)))
                        .collect();
                    out.push(format!(
                        "{}: warning: the analysis gate at step {step} cannot pass: {}",
                        e.policy,
                        if why.is_empty() {
                            "no canary traffic at this step".to_owned()
                        } else {
                            why.join("; ")
                        }
                    ));
                }
                (Some(w), Some(n)) if w > IMPRACTICAL_S => out.push(format!(
                    "{}: warning: the analysis gate at step {step} needs about {n} canary requests: {} at {rate} requests/s",
                    e.policy,
                    human(w)
                )),
                (Some(w), Some(n)) if g.max_duration_s.is_some_and(|d| w > d) => out.push(format!(
                    "{}: warning: the analysis gate at step {step} needs about {n} canary requests, {} at {rate} requests/s, but waits at most {}: it will end inconclusive",
                    e.policy,
                    human(w),
                    human(g.max_duration_s.unwrap_or(0.0))
                )),
                _ => {}
            }
        }
    }
    out
}

fn render_evidence(evidence: &[Evidence]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for e in evidence {
        let a = &e.assumed;
        let _ = writeln!(
            out,
            "\nEVIDENCE {} at {} requests/s, for a canary as good as stable ({}% errors, {}% accuracy, {}% labelled, ln-latency spread {}); medians, from the analyzer's statistics:",
            e.policy,
            a.rate,
            a.error_rate * 100.0,
            a.accuracy * 100.0,
            a.label_share * 100.0,
            a.log_latency_sd
        );
        let _ = writeln!(
            out,
            "{:<6} {:<7} {:>16} {:>12} {:>14}  NEEDS (canary requests per metric)",
            "STEP", "CANARY", "CANARY REQUESTS", "WAITS", "OPENS AFTER"
        );
        for g in &e.gates {
            let needs: Vec<String> = g
                .metrics
                .iter()
                .map(|m| {
                    format!(
                        "{} {}",
                        m.metric,
                        m.canary_requests
                            .map_or_else(|| m.note.clone().unwrap_or_default(), |n| n.to_string())
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "{:<6} {:<7} {:>16} {:>12} {:>14}  {}",
                g.step + 1,
                format!("{}%", g.weight),
                g.canary_requests
                    .map_or("never".to_owned(), |n| n.to_string()),
                g.wait_s.map_or("–".to_owned(), human),
                g.opens_after_s.map_or("–".to_owned(), human),
                needs.join(", ")
            );
        }
    }
    out
}

/// How `augur policy check` runs.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// The loader's strictness.
    pub load: augur_policies::LoadOptions,
    /// Skip what the proxy loads beyond the files (keys, shadow models).
    pub files_only: bool,
    /// Table or JSON.
    pub output: OutputFormat,
}

/// `policy check -o json`: everything a CI job needs in one object.
#[derive(Debug, Serialize)]
struct CheckReport<'a> {
    /// No errors.
    ok: bool,
    /// Errors.
    errors: usize,
    /// Warnings (diagnostics and gate warnings).
    warnings: usize,
    /// The files read.
    files: &'a [PathBuf],
    /// Documents per kind.
    documents: Option<Documents>,
    /// Every error and warning, causes first, then in file and line order.
    diagnostics: &'a [augur_policies::Diagnostic],
    /// Analysis gates that cannot pass in practice at `--rate` (per CanaryPolicy).
    gate_warnings: &'a [String],
}

/// How many documents of each kind loaded.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Documents {
    virtual_service: usize,
    destination_rule: usize,
    service_entry: usize,
    canary_policy: usize,
    api_protection: usize,
}

/// Validates the files and, unless `files_only`, what the proxy loads beyond them (API keys,
/// shadow models): warnings go to stderr; every error is printed and the exit code is 1. With a
/// rate, gates that cannot pass in practice at that traffic are warned about too.
pub fn check(
    paths: &[PathBuf],
    opts: &CheckOptions,
    args: &EvidenceArgs,
) -> anyhow::Result<ExitCode> {
    let (loaded, mut diagnostics) = match augur_policies::load_paths_with(paths, opts.load) {
        Ok(loaded) => {
            let warnings = loaded.warnings.clone();
            (Some(loaded), warnings)
        }
        Err(e) => (None, e.diagnostics),
    };
    if let Some(loaded) = loaded.as_ref().filter(|_| !opts.files_only) {
        diagnostics.extend(augur_proxy::preflight::api_keys(loaded));
        diagnostics.extend(augur_proxy::preflight::shadow_models(loaded));
    }
    let practical = loaded
        .as_ref()
        .zip(args.baseline())
        .map(|(l, b)| impractical(&evidence(&l.set, &b)))
        .unwrap_or_default();
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors + practical.len();
    let files: &[PathBuf] = loaded.as_ref().map_or(&[], |l| &l.sources);
    match opts.output {
        OutputFormat::Json => {
            let report = CheckReport {
                ok: errors == 0,
                errors,
                warnings,
                files,
                documents: loaded.as_ref().map(|l| Documents {
                    virtual_service: l.set.virtual_services.len(),
                    destination_rule: l.set.destination_rules.len(),
                    service_entry: l.set.service_entries.len(),
                    canary_policy: l.set.canary_policies.len(),
                    api_protection: l.set.api_protections.len(),
                }),
                diagnostics: &diagnostics,
                gate_warnings: &practical,
            };
            let json = serde_json::to_string_pretty(&report).context("rendering JSON")?;
            println!("{json}");
        }
        OutputFormat::Table if errors > 0 => {
            eprint!(
                "{}",
                render_diagnostics(&augur_policies::LoadError { diagnostics })
            );
        }
        OutputFormat::Table => {
            let mut err = std::io::stderr().lock();
            for d in diagnostics.iter().map(ToString::to_string).chain(practical) {
                writeln!(err, "{d}")?;
            }
            if let Some(l) = &loaded {
                let set = &l.set;
                println!(
                    "ok: {} file(s), {} VirtualService, {} DestinationRule, {} ServiceEntry, {} CanaryPolicy, {} ApiProtection, {} warning(s)",
                    l.sources.len(),
                    set.virtual_services.len(),
                    set.destination_rules.len(),
                    set.service_entries.len(),
                    set.canary_policies.len(),
                    set.api_protections.len(),
                    warnings,
                );
            }
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the resolved routes, splits and rollout plans as a table or JSON, and with a rate what
/// each analysis gate needs.
pub fn explain(
    paths: &[PathBuf],
    options: augur_policies::LoadOptions,
    output: OutputFormat,
    args: &EvidenceArgs,
) -> anyhow::Result<ExitCode> {
    let loaded = match augur_policies::load_paths_with(paths, options) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprint!("{}", render_diagnostics(&e));
            return Ok(ExitCode::FAILURE);
        }
    };
    let explanation = augur_policies::explain::explain(&loaded.set);
    let evidence = args.baseline().map(|b| evidence(&loaded.set, &b));
    match output {
        OutputFormat::Table => {
            let table = explanation.render_table();
            print!("{table}");
            if !table.ends_with('\n') {
                println!();
            }
            if let Some(e) = &evidence {
                print!("{}", render_evidence(e));
            }
        }
        OutputFormat::Json => {
            let mut json = serde_json::to_value(&explanation).context("rendering JSON")?;
            if let (Some(e), Some(obj)) = (&evidence, json.as_object_mut()) {
                obj.insert(
                    "evidence".to_owned(),
                    serde_json::to_value(e).context("rendering JSON")?,
                );
            }
            let json = serde_json::to_string_pretty(&json).context("rendering JSON")?;
            println!("{json}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One diagnostic per line, then a count of errors.
pub fn render_diagnostics(e: &augur_policies::LoadError) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut errors = 0;
    for d in &e.diagnostics {
        if d.severity == augur_policies::Severity::Error {
            errors += 1;
        }
        let _ = writeln!(out, "{d}");
    }
    let _ = writeln!(out, "{errors} error(s): policy rejected");
    out
}
