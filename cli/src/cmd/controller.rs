//! `augur controller`: starts the fleet controller ([`augur_controller::Controller`]) and runs
//! it until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;
use augur_controller::{Controller, ControllerConfig, StartError};
use tokio::signal::unix::{signal, SignalKind};

use crate::args::ControllerArgs;

/// Runs the controller; returns when it was told to stop.
pub fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let config = ControllerConfig {
        policies: args.policies.clone(),
        state_dir: args.state_dir.clone(),
        listen: args.listen,
        admin: args.admin,
        prometheus: args.prometheus,
        token: args.token.clone(),
        heartbeat: augur_controller::server::HEARTBEAT,
        name: format!("{}/{}", args.name, std::process::id()),
    };
    let controller = match Controller::start(config).await {
        Ok(c) => c,
        Err(StartError::Policies(e)) => {
            eprint!("{}", super::policy::render_diagnostics(&e));
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e).context("starting the controller"),
    };
    if let Some(path) = &args.address_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&controller.bound)?)
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write --address-file {}", path.display()))?;
    }
    let audit_log = args.state_dir.join(augur_controller::AUDIT_LOG);
    tracing::info!(listen = %controller.bound.listen, admin = %controller.bound.admin, prometheus = %controller.bound.prometheus, audit_log = %audit_log.display(), "augur controller serving");
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping");
        let _ = stop.send(true);
    });
    controller.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}
