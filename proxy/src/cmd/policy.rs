//! `augur policy check` and `augur policy explain`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::OutputFormat;

/// Validates the files: warnings go to stderr; every error is printed and the exit code is 1.
pub fn check(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    match augur_policies::load_paths(paths) {
        Ok(loaded) => {
            let mut err = std::io::stderr().lock();
            for warning in &loaded.warnings {
                writeln!(err, "{warning}")?;
            }
            let set = &loaded.set;
            println!(
                "ok: {} file(s), {} VirtualService, {} DestinationRule, {} ServiceEntry, {} CanaryPolicy, {} ApiProtection, {} warning(s)",
                loaded.sources.len(),
                set.virtual_services.len(),
                set.destination_rules.len(),
                set.service_entries.len(),
                set.canary_policies.len(),
                set.api_protections.len(),
                loaded.warnings.len(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprint!("{}", render_diagnostics(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints the resolved routes, splits and rollout plans as a table or JSON.
pub fn explain(paths: &[PathBuf], output: OutputFormat) -> anyhow::Result<ExitCode> {
    let loaded = match augur_policies::load_paths(paths) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprint!("{}", render_diagnostics(&e));
            return Ok(ExitCode::FAILURE);
        }
    };
    let explanation = augur_policies::explain::explain(&loaded.set);
    match output {
        OutputFormat::Table => {
            let table = explanation.render_table();
            print!("{table}");
            if !table.ends_with('\n') {
                println!();
            }
        }
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&explanation).context("rendering JSON")?;
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
