//! `augur injector`: the mutating admission webhook.
//!
//! - [`review`](mod@review): AdmissionReview → AdmissionReview with a JSON Patch (pure);
//! - [`server`]: HTTPS (rustls) + hyper, the only part with sockets;
//! - [`InjectorArgs`] / [`run_injector`]: the command.
//!
//! Which namespaces are injected is the MutatingWebhookConfiguration's `namespaceSelector`
//! (`augur-injection=enabled`); the handler still honours each pod's opt-out.

pub mod review;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use crate::inject::InjectConfigArgs;

pub use review::review;
pub use server::{serve, tls_config};

/// Flags of `augur injector`.
#[derive(Debug, Clone, Args)]
pub struct InjectorArgs {
    /// Address to serve HTTPS on.
    #[arg(long, env = "AUGUR_INJECTOR_LISTEN", default_value = "0.0.0.0:9443")]
    pub listen: SocketAddr,
    /// PEM certificate chain (e.g. `tls.crt` of a cert-manager secret).
    #[arg(long, env = "AUGUR_TLS_CERT", default_value = "/etc/augur/tls/tls.crt")]
    pub tls_cert: PathBuf,
    /// PEM private key.
    #[arg(long, env = "AUGUR_TLS_KEY", default_value = "/etc/augur/tls/tls.key")]
    pub tls_key: PathBuf,
    /// Injection settings.
    #[command(flatten)]
    pub config: InjectConfigArgs,
}

/// Runs `augur injector` on its own tokio runtime until SIGINT or SIGTERM.
pub fn run_injector(args: InjectorArgs) -> anyhow::Result<()> {
    let cfg = Arc::new(args.config.load()?);
    let tls = tls_config(&args.tls_cert, &args.tls_key)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        tracing::info!(listen = %args.listen, "injector serving");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            result = serve(listener, tls, cfg) => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = term.recv() => Ok(()),
        }
    })
}
