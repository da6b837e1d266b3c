//! `augur controller` as a process: the policy files, the rollout engine (the same as the
//! single proxy's, reading fleet-wide evidence), the publisher, and the servers: subscriptions
//! and the API (15010), the admin API and `/ui` on loopback (15000), metrics (15014).
//!
//! Its admin audit log ([`AUDIT_LOG`] in `--state-dir`, where `augur proxy` writes its own)
//! records the policy set loaded at start-up and every command sent to either port, carried
//! out or refused ([`crate::server`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use augur_model::fleet::{FleetLabel, LabelPush};
use augur_policies::{LoadError, PolicySet};
use augur_rollout::audit::AuditLog;
use augur_rollout::driver::Driver;
use augur_rollout::persist::StateDir;
use augur_rollout::status::ForwardedLabels;
use augur_rollout::{RolloutMetrics, Rollouts, WeightSink};
use http::{Method, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::policies::PolicyFiles;
use crate::publish::Publisher;
use crate::routing::{publish_loop, PublishSink};
use crate::server::{self, Api, ApiRequest, ApiResponse, ControllerHttp, ServerMetrics};

/// The admin audit log's file name in the state directory (the proxy's default name too).
pub const AUDIT_LOG: &str = "audit.jsonl";

/// What `augur controller` runs with.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Policy files or directories.
    pub policies: Vec<PathBuf>,
    /// Where rollout state and audit logs are kept (a PersistentVolume in Kubernetes): the
    /// rollouts' decisions, and the admin audit log [`AUDIT_LOG`].
    pub state_dir: PathBuf,
    /// Subscriptions, xDS and the API (`0.0.0.0:15010`).
    pub listen: SocketAddr,
    /// The admin API and `/ui`, for people on the pod (`127.0.0.1:15000`).
    pub admin: SocketAddr,
    /// Metrics (`0.0.0.0:15014`).
    pub prometheus: SocketAddr,
    /// The bearer token callers beyond loopback must present.
    pub token: Option<String>,
    /// How often watch streams carry a heartbeat.
    pub heartbeat: Duration,
    /// Names this controller process in every state it publishes.
    pub name: String,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The policy files do not validate.
    #[error("the policy files do not validate")]
    Policies(#[source] LoadError),
    /// The state directory cannot be used.
    #[error("cannot use --state-dir {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The admin audit log cannot be opened.
    #[error("cannot open the audit log {path}: {source}")]
    AuditLog {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Metrics could not be registered.
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The addresses the controller bound (port 0 resolved).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Bound {
    /// Subscriptions and the API.
    pub listen: SocketAddr,
    /// The admin API.
    pub admin: SocketAddr,
    /// Metrics.
    pub prometheus: SocketAddr,
}

/// A started controller: its addresses, and a future that serves until shutdown.
pub struct Controller {
    /// Where it listens.
    pub bound: Bound,
    http: Arc<ControllerHttp>,
    listeners: [TcpListener; 3],
    driver: Driver,
    sink: Arc<PublishSink>,
    rollouts: Arc<Rollouts>,
    policies: Arc<PolicyFiles>,
    registry: prometheus::Registry,
}

impl Controller {
    /// Loads the policies and the saved rollouts (resuming each at its step), publishes their
    /// routing, and binds the listeners: once this returns, a subscriber gets the current
    /// state.
    pub async fn start(config: ControllerConfig) -> Result<Self, StartError> {
        let registry = prometheus::Registry::new();
        let reload_failures = prometheus::IntCounter::new(
            "augur_config_reload_failures_total",
            "Policy reloads rejected (the last good policy keeps running).",
        )?;
        registry.register(Box::new(reload_failures.clone()))?;
        let state = StateDir::open(&config.state_dir).map_err(|source| StartError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let audit_path = config.state_dir.join(AUDIT_LOG);
        let audit =
            Arc::new(
                AuditLog::open(&audit_path).map_err(|source| StartError::AuditLog {
                    path: audit_path,
                    source,
                })?,
            );
        let policies = Arc::new(
            PolicyFiles::load(config.policies.clone(), reload_failures, Arc::clone(&audit))
                .map_err(StartError::Policies)?,
        );
        let sink = Arc::new(PublishSink::default());
        let rollouts = Arc::new(Rollouts::new(
            Arc::clone(&sink) as Arc<dyn WeightSink>,
            Some(state),
            RolloutMetrics::register(&registry)?,
        ));
        let driver = Driver::new(Arc::clone(&rollouts), Arc::clone(&policies) as _);
        let publisher = Publisher::new(config.name.clone());
        publisher.publish(crate::routing::routing(
            &policies.serving().set,
            &rollouts.summaries(),
        ));
        let api = Arc::new(ControllerApi {
            rollouts: Arc::clone(&rollouts),
            policies: Arc::clone(&policies),
            publisher: Arc::clone(&publisher),
            registry: registry.clone(),
            audit,
        });
        let http = Arc::new(ControllerHttp {
            publisher,
            token: config.token.clone(),
            api,
            metrics: ServerMetrics::register(&registry)?,
            heartbeat: config.heartbeat,
        });
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let listeners = [
            bind(config.listen).await?,
            bind(config.admin).await?,
            bind(config.prometheus).await?,
        ];
        let local = |l: &TcpListener, addr| l.local_addr().unwrap_or(addr);
        let bound = Bound {
            listen: local(&listeners[0], config.listen),
            admin: local(&listeners[1], config.admin),
            prometheus: local(&listeners[2], config.prometheus),
        };
        Ok(Self {
            bound,
            http,
            listeners,
            driver,
            sink,
            rollouts,
            policies,
            registry,
        })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let Self {
            http,
            listeners: [listen, admin, metrics],
            driver,
            sink,
            rollouts,
            policies,
            registry,
            ..
        } = self;
        let publisher = Arc::clone(&http.publisher);
        tokio::spawn(server::serve(listen, Arc::clone(&http), shutdown.clone()));
        tokio::spawn(server::serve(admin, Arc::clone(&http), shutdown.clone()));
        tokio::spawn(server::serve_metrics(metrics, registry, shutdown.clone()));
        let watching = Arc::clone(&policies);
        let watch_shutdown = shutdown.clone();
        tokio::spawn(async move { watching.watch(watch_shutdown).await });
        tokio::spawn(publish_loop(
            sink,
            rollouts,
            policies,
            publisher,
            shutdown.clone(),
        ));
        let mut stop = shutdown;
        driver
            .run(None, async move {
                let _ = stop.changed().await;
            })
            .await;
    }
}

/// The controller's API beside the fleet endpoints.
struct ControllerApi {
    rollouts: Arc<Rollouts>,
    policies: Arc<PolicyFiles>,
    publisher: Arc<Publisher>,
    registry: prometheus::Registry,
    audit: Arc<AuditLog>,
}

impl ControllerApi {
    /// `POST /labels`: forwarded to every sidecar; the one holding the prediction joins it.
    fn labels(&self, body: &[u8]) -> ApiResponse {
        let labels = match augur_rollout::api::parse_labels(body) {
            Ok(l) => l,
            Err(reply) => return response(reply),
        };
        let push = LabelPush {
            labels: labels
                .into_iter()
                .map(|l| FleetLabel {
                    request_id: l.request_id,
                    label: l.label,
                })
                .collect(),
        };
        let sidecars = self.publisher.forward_labels(&push);
        json(&ForwardedLabels {
            received: push.labels.len(),
            forwarded_to: sidecars,
        })
    }
}

fn response(reply: augur_rollout::api::ApiReply) -> ApiResponse {
    ApiResponse {
        status: reply.status,
        content_type: reply.content_type,
        body: reply.body,
    }
}

fn json(value: &impl serde::Serialize) -> ApiResponse {
    response(augur_rollout::api::ApiReply::json(value))
}

impl Api for ControllerApi {
    fn policies(&self) -> Arc<PolicySet> {
        Arc::new(self.policies.serving().set.clone())
    }

    fn handle(&self, r: ApiRequest<'_>) -> ApiResponse {
        match (r.method, r.path) {
            (&Method::GET, "/ready") => ApiResponse {
                status: StatusCode::OK,
                content_type: "text/plain; charset=UTF-8",
                body: b"LIVE\n".to_vec(),
            },
            (&Method::GET, "/subscribers") => json(&serde_json::json!({
                "version": self.publisher.current().version,
                "subscribers": self.publisher.subscribers(),
            })),
            (&Method::GET, "/stats/prometheus") => ApiResponse {
                status: StatusCode::OK,
                content_type: "text/plain; version=0.0.4",
                body: server::metrics_text(&self.registry),
            },
            (&Method::POST, "/labels") => self.labels(r.body),
            (method, path) if augur_rollout::api::handles(path) => response(
                augur_rollout::api::answer(&self.rollouts, method, path, r.body),
            ),
            _ => ApiResponse {
                status: StatusCode::NOT_FOUND,
                content_type: "text/plain; charset=UTF-8",
                body: b"invalid path\n".to_vec(),
            },
        }
    }

    fn audit(&self) -> &AuditLog {
        &self.audit
    }
}
