//! `augur score` and `augur model-server`: the inference crate from the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use augur_inference::{ServerConfig, ShadowConfig, ShadowModel};

use crate::args::OutputFormat;
use augur_proxy::ports::ModelServerAddress;

/// Where the model and its preprocessing come from.
pub enum ModelSource<'a> {
    /// An `.onnx` file with its metadata JSON beside it.
    Model(&'a Path),
    /// The shadow model of the (only, or `name`d) CanaryPolicy in these files.
    Policy(&'a [PathBuf], Option<&'a str>),
}

/// Scores each image and prints its label, positive-class score and latency.
pub fn score(
    source: ModelSource<'_>,
    images: &[PathBuf],
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let config = ShadowConfig::default();
    let model = match source {
        ModelSource::Model(path) => ShadowModel::load(path, config)
            .with_context(|| format!("cannot load the model {}", path.display()))?,
        ModelSource::Policy(paths, name) => {
            let loaded = match augur_policies::load_paths(paths) {
                Ok(l) => l,
                Err(e) => {
                    eprint!("{}", super::policy::render_diagnostics(&e));
                    return Ok(ExitCode::FAILURE);
                }
            };
            let with_shadow: Vec<_> = loaded
                .set
                .canary_policies
                .iter()
                .filter(|p| {
                    name.is_none_or(|n| {
                        p.metadata.name == n || augur_proxy::route::policy_key(p) == n
                    })
                })
                .filter_map(|p| p.shadow.as_ref().map(|s| (p, s)))
                .collect();
            let [(policy, shadow)] = with_shadow.as_slice() else {
                bail!(
                    "expected exactly one CanaryPolicy with a shadow model, found {} (choose one with --name)",
                    with_shadow.len()
                );
            };
            ShadowModel::from_policy(shadow, config).with_context(|| {
                format!(
                    "cannot load the shadow model {} of {}",
                    shadow.model,
                    augur_proxy::route::policy_key(policy)
                )
            })?
        }
    };
    let reports = augur_inference::score_images(&model, images);
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        OutputFormat::Table => {
            println!(
                "{:<48} {:<12} {:>8} {:>10}",
                "IMAGE", "LABEL", "SCORE", "LATENCY"
            );
            for r in &reports {
                match &r.error {
                    Some(e) => println!("{:<48} error: {e}", r.path.display()),
                    None => println!(
                        "{:<48} {:<12} {:>8.4} {:>8.2}ms",
                        r.path.display(),
                        r.label.as_deref().unwrap_or("-"),
                        r.score.unwrap_or(f32::NAN),
                        r.latency_ms
                    ),
                }
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Serves `POST /predict`, `GET /health` and `GET /metrics` until Ctrl-C; writes the bound
/// address to `address_file` once it listens.
pub fn model_server(
    model: PathBuf,
    listen: SocketAddr,
    version: Option<String>,
    address_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let config = ServerConfig {
        listen,
        model,
        shadow: ShadowConfig::default(),
        version,
    };
    augur_inference::serve(config, |listen| match &address_file {
        Some(path) => augur_proxy::ports::write_address_file(path, &ModelServerAddress { listen }),
        None => Ok(()),
    })
    .context("model server")?;
    Ok(ExitCode::SUCCESS)
}
