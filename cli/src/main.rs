//! The `augur` binary: parses flags, sets up logging and hands over to a subcommand.

use std::process::ExitCode;

use clap::Parser;

use augur_cli::args::{self, Cli, Command, PolicyCommand};
use augur_cli::cmd;
use augur_proxy::logging;

/// jemalloc rather than glibc's malloc: the proxy allocates and frees small buffers on every
/// request, and glibc's allocator took 11% of its CPU in the scenario-1 profile (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        args::LogFormat::Text => logging::LogFormat::Text,
        args::LogFormat::Json => logging::LogFormat::Json,
    };
    if let Err(e) = logging::init(format, &cli.log_level) {
        eprintln!("augur: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Policy(PolicyCommand::Check {
            paths,
            load,
            files_only,
            output,
            evidence,
        }) => cmd::policy::check(
            &paths,
            &cmd::policy::CheckOptions {
                load: load.options(),
                files_only,
                output,
            },
            &evidence,
        ),
        Command::Policy(PolicyCommand::Explain {
            paths,
            load,
            output,
            evidence,
        }) => cmd::policy::explain(&paths, load.options(), output, &evidence),
        Command::Proxy(args) => cmd::proxy::run(*args),
        Command::Controller(args) => cmd::controller::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Rollout { admin, command } => cmd::rollout::run(admin, command),
        Command::Init(args) => augur_k8s::iptables::run_init(args).map(|()| ExitCode::SUCCESS),
        Command::Inject(args) => augur_k8s::inject::run_inject(args).map(|()| ExitCode::SUCCESS),
        Command::Injector(args) => {
            augur_k8s::webhook::run_injector(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Wait(args) => augur_k8s::lifecycle::run_wait(args).map(|()| ExitCode::SUCCESS),
        Command::Drain(args) => augur_k8s::lifecycle::run_drain(args).map(|()| ExitCode::SUCCESS),
        Command::Score {
            model,
            name,
            images,
            output,
        } => {
            let source = match &model.model {
                Some(path) => cmd::score::ModelSource::Model(path),
                None => cmd::score::ModelSource::Policy(&model.policy, name.as_deref()),
            };
            cmd::score::score(source, &images, output)
        }
        Command::ModelServer {
            model,
            listen,
            version,
            address_file,
        } => cmd::score::model_server(model, listen, version, address_file),
        Command::Analyze {
            policy,
            name,
            samples,
            output,
        } => cmd::analyze::run(&policy, name.as_deref(), &samples, output),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("augur: {e:#}");
            ExitCode::FAILURE
        }
    }
}
