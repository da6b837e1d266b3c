//! `augur inject`: injects files the way `istioctl kube-inject` does, and the flags shared
//! with `augur injector` ([`InjectConfigArgs`]).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::config::InjectConfig;
use super::inject;
use super::yaml::{parse_documents, render_documents};

/// The injection settings, as a file and/or flags (flags win).
#[derive(Debug, Clone, Default, Args)]
pub struct InjectConfigArgs {
    /// YAML file with the injector configuration (camelCase keys of `InjectConfig`).
    #[arg(long = "inject-config", env = "AUGUR_INJECT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The augur image for the injected containers.
    #[arg(long, env = "AUGUR_IMAGE")]
    pub image: Option<String>,
    /// ConfigMap with the policy files mounted into the proxy.
    #[arg(long, env = "AUGUR_POLICY_CONFIG_MAP")]
    pub policy_config_map: Option<String>,
    /// Address of `augur controller` the injected sidecars follow (`--controller`).
    #[arg(long, env = "AUGUR_INJECT_CONTROLLER")]
    pub controller: Option<String>,
    /// The cluster's Kubernetes version; from 1.29 the proxy is a native sidecar.
    #[arg(long, env = "AUGUR_KUBERNETES_VERSION")]
    pub kubernetes_version: Option<String>,
    /// Force native sidecars on or off.
    #[arg(long, env = "AUGUR_NATIVE_SIDECARS")]
    pub native_sidecars: Option<bool>,
    /// Also honour `sidecar.istio.io/inject`.
    #[arg(long, env = "AUGUR_HONOUR_ISTIO_INJECT")]
    pub honour_istio_inject: bool,
}

impl InjectConfigArgs {
    /// Loads the file (if any) and applies the flags over it.
    pub fn load(&self) -> anyhow::Result<InjectConfig> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_yaml_ng::from_str::<Option<InjectConfig>>(&text)
                    .with_context(|| format!("{}: invalid injector configuration", path.display()))?
                    .unwrap_or_default()
            }
            None => InjectConfig::default(),
        };
        if let Some(image) = &self.image {
            cfg.image.clone_from(image);
        }
        if let Some(map) = &self.policy_config_map {
            cfg.policy_config_map.clone_from(map);
        }
        if let Some(controller) = &self.controller {
            cfg.controller.clone_from(controller);
        }
        if self.kubernetes_version.is_some() {
            cfg.kubernetes_version.clone_from(&self.kubernetes_version);
        }
        if self.native_sidecars.is_some() {
            cfg.native_sidecars = self.native_sidecars;
        }
        cfg.honour_istio_inject |= self.honour_istio_inject;
        if !cfg.controller.trim().is_empty() {
            super::config::check_controller_address(cfg.controller.trim())
                .map_err(|e| anyhow::anyhow!("controller {:?}: {e}", cfg.controller))?;
        }
        Ok(cfg)
    }
}

/// Flags of `augur inject`.
#[derive(Debug, Clone, Args)]
pub struct InjectArgs {
    /// Input manifests (multi-document YAML); `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub filename: PathBuf,
    /// Where to write the result (default: standard output).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Injection settings.
    #[command(flatten)]
    pub config: InjectConfigArgs,
}

/// Injects every document of a YAML stream; objects that are not workloads, or that opt
/// out, pass through unchanged.
pub fn inject_yaml(text: &str, cfg: &InjectConfig) -> anyhow::Result<String> {
    let docs = parse_documents(text)?;
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let injected = inject(doc, cfg).with_context(|| format!("document {}", i + 1))?;
        if let Some(reason) = &injected.skipped {
            tracing::debug!(document = i + 1, %reason, "not injected");
        }
        out.push(injected.object);
    }
    Ok(render_documents(&out)?)
}

/// Runs `augur inject`.
pub fn run_inject(args: InjectArgs) -> anyhow::Result<()> {
    let cfg = args.config.load()?;
    let text = if args.filename.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.filename)
            .with_context(|| format!("reading {}", args.filename.display()))?
    };
    let rendered = inject_yaml(&text, &cfg)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, rendered).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(rendered.as_bytes())?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_flag_is_checked_and_wins_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "controller: http://from-file:15010\n").expect("write");
        let mut args = InjectConfigArgs {
            config: Some(file),
            ..InjectConfigArgs::default()
        };
        assert_eq!(
            args.load().expect("valid").controller,
            "http://from-file:15010"
        );
        args.controller = Some("http://from-flag:15010".into());
        assert_eq!(
            args.load().expect("valid").controller,
            "http://from-flag:15010"
        );
        args.controller = Some("from-flag:15010".into());
        let err = args.load().expect_err("not a URL");
        assert!(format!("{err:#}").contains("from-flag:15010"), "{err:#}");
    }
}
