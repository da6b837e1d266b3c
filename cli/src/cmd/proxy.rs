//! `augur proxy`: the flags, validated into a [`ProxyConfig`], then [`App`] builds and runs.

use std::process::ExitCode;

use augur_proxy::app::{App, BuildError};
use augur_proxy::policy_store::StoreError;

use crate::args::ProxyArgs;

/// Runs the sidecar; returns only on a start-up error (pingora exits the process on shutdown).
pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let config = match crate::config::proxy_config(&args) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let app = match App::build(config) {
        Ok(app) => app,
        Err(BuildError::Policies(StoreError::Invalid(e))) => {
            eprint!("{}", crate::cmd::policy::render_diagnostics(&e));
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    match app.run()? {}
}
