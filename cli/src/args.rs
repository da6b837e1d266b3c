//! The `augur` command line: subcommands and flags (each flag also as an `AUGUR_*` variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// augur: a sidecar proxy for shipping ML models safely (Envoy- and Istio-compatible).
#[derive(Debug, Parser)]
#[command(
    name = "augur",
    version,
    about = "augur: a sidecar proxy for shipping ML models safely (Envoy- and Istio-compatible).",
    long_about = None,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "AUGUR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `augur_proxy=debug`.
    #[arg(long, global = true, env = "AUGUR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  augur policy check policies/            # the files, their keys and shadow models
  augur policy check --files-only -o json policies/   # the files alone, for CI
  augur policy explain policies/examples/canary-pneumonia.yaml --output json
  augur policy explain policies/examples/canary-pneumonia.yaml --rate 20   # what each gate needs
  augur proxy --policy policies/examples/canary-pneumonia.yaml --listen 127.0.0.1:8080
  augur controller --policy policies/examples/ --state-dir /var/lib/augur   # one decision for a fleet
  augur proxy --policy policies/examples/ --controller augur-controller:15010   # a sidecar that follows it
  augur rollout status --watch
  augur rollout start pneumonia           # rollouts wait for this (startOn: command)
  augur rollout promote pneumonia
  augur rollout promote --force pneumonia # past an analysis step without data
  augur analyze --policy policies/examples/canary-pneumonia.yaml --samples recorded.jsonl
  augur score --model model.onnx inference/testdata/xrays/*.jpeg
  augur model-server --model model.onnx --listen 127.0.0.1:8501 --version v1
  augur inject -f deployment.yaml -o deployment.injected.yaml
  augur init --dry-run -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -b '*' -d 15090,15021,15020
  augur demo --scenario good-canary
  augur demo --scenario bad-canary --admin 127.0.0.1:15000   # dashboard: http://127.0.0.1:15000/ui

ONNX Runtime: set ORT_DYLIB_PATH to libonnxruntime.so (scripts/setup.sh installs it).";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check and explain policy files (Istio VirtualService, DestinationRule, ServiceEntry and
    /// augur CanaryPolicy).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the sidecar proxy.
    Proxy(Box<ProxyArgs>),
    /// Run the fleet controller: every CanaryPolicy's rollout, decided once for all the
    /// sidecars that follow it (`augur proxy --controller`), from fleet-wide evidence. It
    /// serves no traffic and is the only writer of rollout state.
    Controller(ControllerArgs),
    /// Show and steer the running rollouts through the admin API.
    Rollout {
        /// The proxy's admin endpoint.
        #[arg(
            long,
            env = "AUGUR_ADMIN",
            default_value = "127.0.0.1:15000",
            global = true
        )]
        admin: SocketAddr,
        /// What to do.
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Score X-ray images (PNG, JPEG, DICOM) with an ONNX model, to check it and its
    /// preprocessing before a rollout.
    Score {
        /// The model.
        #[command(flatten)]
        model: ScoreModel,
        /// Which CanaryPolicy, with --policy, when the files hold several.
        #[arg(long)]
        name: Option<String>,
        /// Images to score.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
    /// Serve a model like the reference FastAPI service: `POST /predict`, `GET /health`,
    /// `GET /metrics`.
    ModelServer {
        /// The `.onnx` model (metadata JSON beside it).
        #[arg(long)]
        model: PathBuf,
        /// Listen address; port 0 picks a free port (see --address-file).
        #[arg(long, default_value = "127.0.0.1:8501")]
        listen: SocketAddr,
        /// The `model_version` to report (default: the metadata's).
        #[arg(long)]
        version: Option<String>,
        /// Write the bound address to this file (JSON: `listen`) once it listens.
        #[arg(long)]
        address_file: Option<PathBuf>,
    },
    /// Install the pod's traffic-capture rules (the init container's job; istio-iptables'
    /// flags).
    Init(augur_k8s::iptables::InitArgs),
    /// Add the augur sidecar to Kubernetes manifests offline, like `istioctl kube-inject`.
    Inject(augur_k8s::inject::InjectArgs),
    /// Run the sidecar-injection admission webhook (HTTPS, AdmissionReview v1).
    Injector(augur_k8s::webhook::InjectorArgs),
    /// Wait until the local proxy is ready (the injected postStart hook).
    Wait(augur_k8s::lifecycle::WaitArgs),
    /// Fail the local proxy's readiness and let in-flight requests finish (the injected
    /// preStop hook).
    Drain(augur_k8s::lifecycle::DrainArgs),
    /// Run a canary rollout of the pneumonia model end to end on loopback, with a live view.
    Demo(crate::cmd::demo::DemoArgs),
    /// Replay recorded samples (JSON lines; `augur proxy --record-samples` writes them) through
    /// the analyzer, by the live proxy's clock rule, and print the decisions.
    Analyze {
        /// Policy files or directories holding the CanaryPolicy.
        #[arg(long = "policy", required = true)]
        policy: Vec<PathBuf>,
        /// Which CanaryPolicy, when the files hold several (`name` or `namespace/name`).
        #[arg(long)]
        name: Option<String>,
        /// Events, one JSON object per line: a sample (`t`, `arm`, `latency_ms`, `status`, and
        /// optional `score`, `label`, `truth`, `request_id`), a delayed label (`t`,
        /// `request_id`, `truth`), a clock tick (`tick`) or a command (`t`, `command`).
        #[arg(long)]
        samples: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

/// Where `augur score` gets its model.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ScoreModel {
    /// An `.onnx` model; its preprocessing comes from the metadata JSON beside it
    /// (`model.onnx` -> `model.json`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Policy files: the CanaryPolicy's shadow model and its `preprocessing`.
    #[arg(long = "policy")]
    pub policy: Vec<PathBuf>,
}

/// `augur rollout ...`
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Steps, weights and verdicts of each rollout, and each arm's agreement with the shadow
    /// model; a shadow-only policy is listed as Shadowing (no steps, no weights).
    Status {
        /// Only this rollout (`name` or `namespace/name`).
        name: Option<String>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Refresh every 2 seconds.
        #[arg(long, short)]
        watch: bool,
    },
    /// Start a rollout that waits for it (`startOn: command`, the default) at its first step.
    Start {
        /// The rollout.
        name: String,
    },
    /// Go to the next step (or, with --full, straight to 100%).
    Promote {
        /// The rollout.
        name: String,
        /// Skip the remaining steps and analysis.
        #[arg(long)]
        full: bool,
        /// Skip the current analysis step even without the evidence to open it (too few
        /// samples, no data); without it such a promote is refused and says what it would skip.
        #[arg(long, conflicts_with = "full")]
        force: bool,
    },
    /// Stop the rollout and send all traffic to stable.
    Abort {
        /// The rollout.
        name: String,
    },
    /// Start a promoted, rolled-back or aborted rollout again from its first step.
    Retry {
        /// The rollout.
        name: String,
    },
    /// Hold the rollout at its current step.
    Pause {
        /// The rollout.
        name: String,
    },
    /// Continue a paused rollout.
    Resume {
        /// The rollout.
        name: String,
    },
}

/// `augur policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files and what they name (API keys, shadow models): exit 0 when valid
    /// (warnings on stderr), 1 with every error. With --rate, also warn about analysis gates
    /// that cannot pass in practice at that traffic.
    Check {
        /// Policy files or directories (YAML, multi-document).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// How strictly the files are read.
        #[command(flatten)]
        load: LoadArgs,
        /// Check only the files: do not read the API keys (files, environment variables) or
        /// load the shadow models they name, as the proxy does (for checking policies away
        /// from where the proxy runs, such as a repository's CI).
        #[arg(long)]
        files_only: bool,
        /// Output format: `table` (diagnostics on stderr, a summary on stdout) or `json` (one
        /// object on stdout, for CI).
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// What evidence assumes.
        #[command(flatten)]
        evidence: EvidenceArgs,
    },
    /// Print the resolved routes, splits and rollout plans. With --rate, also what each analysis
    /// gate needs: canary requests and time for a canary as good as stable.
    Explain {
        /// Policy files or directories (YAML, multi-document).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// How strictly the files are read.
        #[command(flatten)]
        load: LoadArgs,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// What evidence assumes.
        #[command(flatten)]
        evidence: EvidenceArgs,
    },
}

/// How strictly policy files are read (the same for `policy check`, `policy explain` and
/// `proxy`, so that what check accepts is what the proxy loads).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct LoadArgs {
    /// Report fields that Istio does not define, in VirtualService, DestinationRule and
    /// ServiceEntry documents, as warnings instead of errors (for documents written for a newer
    /// Istio). Istio fields augur does not implement are warnings either way.
    #[arg(long, env = "AUGUR_ALLOW_UNKNOWN_FIELDS")]
    pub allow_unknown_fields: bool,
}

impl LoadArgs {
    /// The loader's options.
    pub fn options(&self) -> augur_policies::LoadOptions {
        augur_policies::LoadOptions {
            allow_unknown_istio_fields: self.allow_unknown_fields,
        }
    }
}

/// The traffic and the canary an evidence estimate assumes (a canary as good as stable).
#[derive(Debug, Clone, Args)]
pub struct EvidenceArgs {
    /// Requests per second through the driven routes (both arms), for the estimate.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Both arms' error rate, percent.
    #[arg(long, default_value_t = 1.0, requires = "rate")]
    pub error_rate: f64,
    /// Both arms' accuracy against ground truth, percent.
    #[arg(long, default_value_t = 90.0, requires = "rate")]
    pub accuracy: f64,
    /// Percent of predictions whose ground truth arrives.
    #[arg(long, default_value_t = 100.0, requires = "rate")]
    pub label_share: f64,
    /// The spread of ln(latency) (a log-normal's σ; 0.5 is a p95 2.3 times the median).
    #[arg(long, default_value_t = 0.5, requires = "rate")]
    pub latency_spread: f64,
}

impl EvidenceArgs {
    /// The baseline of the estimate, when a rate is given.
    pub fn baseline(&self) -> Option<augur_analyzer::plan::Baseline> {
        let rate = self.rate.filter(|r| r.is_finite() && *r > 0.0)?;
        Some(augur_analyzer::plan::Baseline {
            error_rate: self.error_rate / 100.0,
            accuracy: self.accuracy / 100.0,
            label_share: self.label_share / 100.0,
            log_latency_sd: self.latency_spread,
            ..augur_analyzer::plan::Baseline::at_rate(rate)
        })
    }
}

/// Flags of `augur proxy`. Ports follow Istio's sidecar conventions.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Policy files or directories; watched and hot-reloaded (also on SIGHUP).
    #[arg(
        long = "policy",
        env = "AUGUR_POLICY",
        value_delimiter = ',',
        required = true
    )]
    pub policies: Vec<PathBuf>,
    /// How strictly the policy files are read.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Explicit HTTP listeners; requests are routed by Host against VirtualService hosts
    /// (default 127.0.0.1:15001 when no capture listener is given either).
    #[arg(long = "listen", env = "AUGUR_LISTEN", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners (rustls: TLS 1.2 and 1.3, ALPN h2 and http/1.1); need --tls-cert and
    /// --tls-key.
    #[arg(long = "tls-listen", env = "AUGUR_TLS_LISTEN", value_delimiter = ',', requires_all = ["tls_cert", "tls_key"])]
    pub tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain of the HTTPS listeners.
    #[arg(long, env = "AUGUR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the HTTPS listeners.
    #[arg(long, env = "AUGUR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS on the HTTPS listeners: PEM CA certificates that client certificates must
    /// chain to; clients without a valid one fail the handshake.
    #[arg(long, env = "AUGUR_TLS_CLIENT_CA", requires = "tls_listen")]
    pub tls_client_ca: Option<PathBuf>,
    /// Transparent mode: the outbound capture listener iptables redirects the pod's outgoing TCP
    /// to (Istio's 0.0.0.0:15001); HTTP is routed by VirtualService, the rest passes through to
    /// its original destination.
    #[arg(long, env = "AUGUR_OUTBOUND_CAPTURE")]
    pub outbound_capture: Option<SocketAddr>,
    /// Transparent mode: the inbound capture listener (Istio's 0.0.0.0:15006); requests go on
    /// to the local app at their original destination, from 127.0.0.6.
    #[arg(long, env = "AUGUR_INBOUND_CAPTURE")]
    pub inbound_capture: Option<SocketAddr>,
    /// Transparent mode: how long to wait for the first bytes of a captured connection that is
    /// inspected (a port a known service declares HTTP or leaves unset) before treating it as
    /// opaque TCP, as Istio's `protocolDetectionTimeout`: a duration such as `100ms` or `5s`
    /// (a bare number is seconds). 0, Istio's default, waits for them.
    #[arg(long, env = "AUGUR_PROTOCOL_DETECTION_TIMEOUT", value_parser = parse_duration_flag, default_value = "0")]
    pub protocol_detection_timeout: Duration,
    /// Envoy-style admin endpoint (`/config_dump`, `/stats`, `/ready`, ...).
    #[arg(long, env = "AUGUR_ADMIN", default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// Bearer token that lets admin mutations (POST) come from beyond loopback; without it
    /// they are accepted from loopback only.
    #[arg(long, env = "AUGUR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Status endpoint serving `/healthz/ready` for Kubernetes probes.
    #[arg(long, env = "AUGUR_STATUS", default_value = "0.0.0.0:15021")]
    pub status: SocketAddr,
    /// Prometheus endpoint serving `/stats/prometheus`.
    #[arg(long, env = "AUGUR_PROMETHEUS", default_value = "0.0.0.0:15090")]
    pub prometheus: SocketAddr,
    /// Write every address augur listens on to this file (JSON: `listen`, `tls_listen`,
    /// `outbound_capture`, `inbound_capture`, `admin`, `status`, `prometheus`) before the
    /// listeners open; with port 0 in an address the kernel picks a free port, and this file
    /// says which (as Envoy's `--admin-address-path`).
    #[arg(long, env = "AUGUR_ADDRESS_FILE")]
    pub address_file: Option<PathBuf>,
    /// Worker threads of the proxy (Envoy's flag; Istio sets 2 for sidecars).
    #[arg(long, env = "AUGUR_CONCURRENCY", default_value_t = 2)]
    pub concurrency: usize,
    /// Where rollout state (one JSON file per CanaryPolicy) and the decision audit logs live;
    /// a restarted proxy resumes each rollout at the same step and weight.
    #[arg(long, env = "AUGUR_STATE_DIR", default_value = "/var/lib/augur")]
    pub state_dir: PathBuf,
    /// Record every event each rollout applies (samples, labels, clock ticks, commands) to
    /// DIR/<namespace>_<name>.samples.jsonl, which `augur analyze --samples` replays to the same
    /// decisions at the same times. Off by default.
    #[arg(long, env = "AUGUR_RECORD_SAMPLES", value_name = "DIR")]
    pub record_samples: Option<PathBuf>,
    /// Largest request body mirrored (to shadow destinations and the shadow model); larger
    /// requests are not mirrored, and counted.
    #[arg(long, env = "AUGUR_MIRROR_MAX_BODY", default_value_t = 4 * 1024 * 1024)]
    pub mirror_max_body: usize,
    /// Mirror copies waiting to be sent before new ones are dropped (and counted).
    #[arg(long, env = "AUGUR_MIRROR_QUEUE", default_value_t = 1024)]
    pub mirror_queue: usize,
    /// Suffix for the Host of mirrored requests, e.g. `-shadow` as Envoy before Istio 1.28
    /// (default: none, as Istio 1.28+).
    #[arg(long, env = "AUGUR_MIRROR_HOST_SUFFIX")]
    pub mirror_host_suffix: Option<String>,
    /// Write the access log here (`/dev/stdout` as Istio's `accessLogFile`); off by default.
    /// Paths are logged without query strings, and bodies never.
    #[arg(long, env = "AUGUR_ACCESS_LOG")]
    pub access_log: Option<PathBuf>,
    /// Audit log of admin mutations and policy loads (JSON lines); default `audit.jsonl` in
    /// --state-dir.
    #[arg(long, env = "AUGUR_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Access log format: Istio's default text format, or JSON with Istio's keys.
    #[arg(long, env = "AUGUR_ACCESS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub access_log_format: LogFormat,
    /// How long to let in-flight requests finish after SIGTERM (below Kubernetes' 30 s).
    #[arg(long, env = "AUGUR_DRAIN_DURATION", value_parser = parse_seconds, default_value = "25")]
    pub drain_duration: Duration,
    /// How request paths are normalized before routing and forwarding (Istio's
    /// `meshConfig.pathNormalization`): BASE (Istio's default: `..`, `.`, unreserved escapes
    /// and `\`), MERGE_SLASHES (also `//` to `/`), DECODE_AND_MERGE_SLASHES (also `%2F` and
    /// `%5C` decoded) or NONE (as received: routes and ApiProtection can be bypassed).
    #[arg(long, env = "AUGUR_PATH_NORMALIZATION", default_value = "BASE")]
    pub path_normalization: augur_proxy::route::path::PathNormalization,
    /// Request body bytes kept per request so that a retry can send the body again (Envoy's
    /// `per_connection_buffer_limit_bytes`, 1 MiB); larger bodies are not retried: the
    /// upstream's answer is returned as it is.
    #[arg(long, env = "AUGUR_RETRY_BUFFER_LIMIT", default_value_t = augur_proxy::service::replay::DEFAULT_RETRY_BUFFER_LIMIT)]
    pub retry_buffer_limit: u64,
    /// Limits on clients (docs/hardening.md).
    #[command(flatten)]
    pub limits: crate::limit_args::LimitArgs,
    /// Follow this `augur controller` (`host:port` of its port 15010, `http://` optional)
    /// instead of running rollouts here: the sidecar takes its weights from it, gets them
    /// before its listeners open, and keeps the last ones while it is away.
    #[arg(long, env = "AUGUR_CONTROLLER")]
    pub controller: Option<String>,
    /// The token to present to the controller (needed from beyond its loopback).
    #[arg(long, env = "AUGUR_CONTROLLER_TOKEN", hide_env_values = true)]
    pub controller_token: Option<String>,
    /// How long to wait for the controller's state at start-up before serving at the policy
    /// files' own weights (reported as never synced in `/ready` and the metrics).
    #[arg(long, env = "AUGUR_CONTROLLER_SYNC_TIMEOUT", value_parser = parse_duration_flag, default_value = "10s")]
    pub controller_sync_timeout: Duration,
    /// This sidecar's name for the controller (the pod name in Kubernetes).
    #[arg(long, env = "POD_NAME", default_value_t = default_node())]
    pub node: String,
}

/// `augur controller`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// Policy files or directories (the same ones the sidecars mount); watched and
    /// hot-reloaded (also on SIGHUP).
    #[arg(
        long = "policy",
        env = "AUGUR_POLICY",
        value_delimiter = ',',
        required = true
    )]
    pub policies: Vec<PathBuf>,
    /// Where rollout state and the decision audit logs live (a PersistentVolume in
    /// Kubernetes): a restarted controller resumes every rollout at the same step.
    #[arg(long, env = "AUGUR_STATE_DIR", default_value = "/var/lib/augur")]
    pub state_dir: PathBuf,
    /// Subscriptions, xDS (RDS over REST), the rollout API and `POST /labels` (istiod's
    /// plaintext port).
    #[arg(long, env = "AUGUR_CONTROLLER_LISTEN", default_value = "0.0.0.0:15010")]
    pub listen: SocketAddr,
    /// The admin API and the `/ui` dashboard, for people on the pod.
    #[arg(long, env = "AUGUR_ADMIN_LISTEN", default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// Metrics (`/stats/prometheus`, `/metrics`; istiod's monitoring port).
    #[arg(long, env = "AUGUR_PROMETHEUS_LISTEN", default_value = "0.0.0.0:15014")]
    pub prometheus: SocketAddr,
    /// The bearer token subscribers, xDS clients, commands and label feeds must present from
    /// beyond loopback; without one, only loopback callers are served.
    #[arg(long, env = "AUGUR_CONTROLLER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Write the bound addresses (JSON: `listen`, `admin`, `prometheus`) to this file once
    /// the controller serves; port 0 in an address picks a free port.
    #[arg(long, env = "AUGUR_ADDRESS_FILE")]
    pub address_file: Option<PathBuf>,
    /// This controller's name in the states it publishes (the pod name in Kubernetes).
    #[arg(long, env = "POD_NAME", default_value_t = default_node())]
    pub name: String,
}

/// The host name, or `augur` when it cannot be read.
fn default_node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "augur".to_owned())
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output format of report commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned plain-text tables.
    Table,
    /// JSON for scripts.
    Json,
}

/// A duration as Istio writes one (`100ms`, `1.5s`, `1m`), or a bare number of seconds.
fn parse_duration_flag(s: &str) -> Result<Duration, String> {
    if let Ok(seconds) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    augur_policies::duration::parse_duration(s)
        .map_err(|e| format!("{e}; a bare number is seconds"))
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let trimmed = s.strip_suffix('s').unwrap_or(s);
    trimmed
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{s:?} is not a whole number of seconds (e.g. 25 or 25s)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn detection_timeouts_take_istio_durations_and_seconds() {
        assert_eq!(parse_duration_flag("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration_flag("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration_flag("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration_flag("0"), Ok(Duration::ZERO));
        assert!(parse_duration_flag("fast").is_err());
        assert!(parse_duration_flag("-1s").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn proxy_defaults_follow_istio_ports() {
        let cli = Cli::try_parse_from(["augur", "proxy", "--policy", "p.yaml"]).unwrap();
        let Command::Proxy(args) = cli.command else {
            panic!("not proxy")
        };
        assert_eq!(args.admin.port(), 15000);
        assert!(
            args.listen.is_empty(),
            "filled in by `augur proxy` when nothing else listens"
        );
        assert_eq!(args.status.port(), 15021);
        assert_eq!(args.prometheus.port(), 15090);
        assert_eq!(args.concurrency, 2);
        assert!(args.admin.ip().is_loopback());
    }

    #[test]
    fn drain_duration_accepts_seconds() {
        assert_eq!(parse_seconds("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert!(parse_seconds("5m").is_err());
    }
}
