//! The proxy as an application: built from a validated [`ProxyConfig`], then run.
//!
//! `augur proxy` parses its flags into a [`ProxyConfig`] (every problem reported at once),
//! [`App::build`] loads the policies, resumes the rollouts or syncs with the controller, and
//! wires the listeners and background services; [`App::run`] serves until SIGTERM.

pub mod config;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

use pingora::apps::http_app::HttpServer;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::access_log::AccessLog;
use crate::admin::{AdminApp, AdminState, Surface};
use crate::evidence::EvidenceFeed;
use crate::follow::{FollowService, Follower};
use crate::limits::conn::Guarded;
use crate::metrics::Metrics;
use crate::mirror::{MirrorQueue, MirrorService};
use crate::policy_store::{PolicyStore, StoreError};
use crate::ports::{ProxyAddresses, Reservations};
use crate::reload::Reloader;
use crate::rollout_driver::RolloutDriver;
use crate::sample::SampleSink;
use crate::service::capture::CapturePorts;
use crate::service::AugurProxy;
use crate::tcp::CaptureApp;
use crate::weights::RolloutWeights;
use augur_rollout::persist::StateDir;
use augur_rollout::Rollouts;
pub use config::{ConfigError, ConfigErrors, ProxyConfig};

/// Samples the analyzer's queue holds before new ones are dropped (and counted).
const SAMPLE_QUEUE: usize = 65_536;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Metrics could not be registered.
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The policies do not load.
    #[error(transparent)]
    Policies(#[from] StoreError),
    /// A file or directory a flag names cannot be used.
    #[error("cannot use --{flag} {path}: {source}")]
    File {
        /// The flag.
        flag: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A port-0 listener could not get its port.
    #[error("cannot reserve a port for a listener with port 0: {0}")]
    Ports(std::io::Error),
    /// The TLS settings cannot be used.
    #[error("{0}")]
    Tls(String),
    /// The runtime for the first controller sync could not start.
    #[error("cannot start the runtime for the first controller sync: {0}")]
    Runtime(std::io::Error),
}

impl From<crate::tls::TlsError> for BuildError {
    fn from(e: crate::tls::TlsError) -> Self {
        Self::Tls(e.to_string())
    }
}

/// A built proxy, ready to run.
pub struct App {
    server: Server,
    ports: Reservations,
    addresses: ProxyAddresses,
    address_file: Option<std::path::PathBuf>,
}

impl App {
    /// Builds the proxy: loads the policies, resumes the rollouts (or syncs with the
    /// controller), opens the logs and wires every listener and background service.
    pub fn build(config: ProxyConfig) -> Result<Self, BuildError> {
        let metrics = Arc::new(Metrics::new(crate::identity::Workload::from_env())?);
        let store = Arc::new(PolicyStore::open_with(
            config.policies.clone(),
            config.load,
            Arc::clone(&metrics),
        )?);
        let snapshot = store.snapshot();
        for w in &snapshot.loaded.warnings {
            tracing::warn!(diagnostic = %w, "policy warning");
        }
        tracing::info!(hash = %snapshot.loaded.hash, files = snapshot.loaded.sources.len(), "policy loaded");
        drop(snapshot);

        let l = &config.listeners;
        let tls_addrs = l.tls.as_ref().map(|t| t.addrs.clone()).unwrap_or_default();
        // Port-0 addresses get their ports now (held until exit), so they can be reported.
        let mut ports = Reservations::default();
        let mut resolve = || -> std::io::Result<ProxyAddresses> {
            Ok(ProxyAddresses {
                listen: ports.resolve_all(&l.listen)?,
                tls_listen: ports.resolve_all(&tls_addrs)?,
                outbound_capture: l.outbound_capture.map(|a| ports.resolve(a)).transpose()?,
                inbound_capture: l.inbound_capture.map(|a| ports.resolve(a)).transpose()?,
                admin: ports.resolve(l.admin)?,
                status: ports.resolve(l.status)?,
                prometheus: ports.resolve(l.prometheus)?,
            })
        };
        let addresses = resolve().map_err(BuildError::Ports)?;
        let conf = ServerConf {
            threads: config.concurrency.max(1),
            // One single-threaded runtime per worker thread (Envoy's and haproxy's model: a
            // connection stays on its thread) rather than tokio's work-stealing scheduler, whose
            // cross-thread queues and wake-ups cost CPU on every request (see BENCHMARKS.md).
            work_stealing: false,
            // Stop accepting at once, then wait up to the drain duration for in-flight requests;
            // `Drain` exits as soon as none is left.
            grace_period_seconds: Some(config.drain_duration.as_secs()),
            graceful_shutdown_timeout_seconds: Some(1),
            ..ServerConf::default()
        };
        let state_dir = StateDir::open(&config.state_dir).map_err(|source| BuildError::File {
            flag: "state-dir",
            path: config.state_dir.clone(),
            source,
        })?;
        let audit = Arc::new(crate::audit::AuditLog::open(&config.audit_log).map_err(
            |source| BuildError::File {
                flag: "audit-log",
                path: config.audit_log.clone(),
                source,
            },
        )?);
        {
            let snapshot = store.snapshot();
            audit.policy(&crate::audit::PolicyChange {
                trigger: "startup",
                outcome: "loaded",
                old_hash: None,
                new_hash: &snapshot.loaded.hash,
                files: &snapshot.loaded.sources,
                errors: &[],
            });
        }
        let weights = Arc::new(RolloutWeights::default());
        // Reloads that edit the weights of a route a rollout drives are warned about, and
        // `/config_dump` shows the live weights beside the file's.
        store.set_live_weights(Arc::clone(&weights));
        {
            let weights = Arc::clone(&weights);
            store.set_before_swap(Box::new(move |old, new| {
                augur_rollout::release::hold_changed_releases(old, new, weights.as_ref());
            }));
        }
        let sink: Arc<dyn augur_rollout::WeightSink> = Arc::clone(&weights) as _;
        let mut rollouts = Rollouts::new(sink, Some(state_dir), metrics.rollout.clone());
        if let Some(dir) = &config.record_samples {
            rollouts = rollouts.with_recording(dir.clone());
        }
        let rollouts = Arc::new(rollouts);
        let access_log = match &config.access_log {
            Some((path, format)) => Some(
                AccessLog::open(path, *format, metrics.access_log_dropped.clone()).map_err(
                    |source| BuildError::File {
                        flag: "access-log",
                        path: path.clone(),
                        source,
                    },
                )?,
            ),
            None => None,
        };
        let (sample_sink, sample_rx) = SampleSink::channel(SAMPLE_QUEUE);
        let mirror_config = config.mirror.clone();
        let (mirror_queue, mirror_rx) =
            MirrorQueue::channel(mirror_config.queue, metrics.mirror_dropped.clone());
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let draining = crate::drain::Draining::default();
        let capture = CapturePorts {
            outbound: addresses.outbound_capture.map(|a| a.port()),
            inbound: addresses.inbound_capture.map(|a| a.port()),
        };
        let limiter = Arc::new(crate::protect::Limiter::default());
        let gate =
            crate::limits::Gate::new(config.limits.clone(), metrics.active_connections.clone());
        let make_app = || {
            AugurProxy::new(
                Arc::clone(&store),
                Arc::clone(&metrics),
                sample_sink.clone(),
                Arc::clone(&weights),
                mirror_queue.clone(),
                mirror_config.max_body,
            )
            .with_access_log(access_log.clone())
            .with_capture(capture)
            .with_draining(draining.clone())
            .with_limiter(Arc::clone(&limiter))
            .with_gate(gate.clone())
            .with_path_normalization(config.path_normalization)
            .with_retry_buffer_limit(config.retry_buffer_limit)
        };
        // Prior-knowledge HTTP/2 (h2c) next to HTTP/1.1 on every cleartext listener, behind the
        // connection limit and the request-headers deadline.
        let guarded = || {
            let mut http = pingora::proxy::http_proxy(&server.configuration, make_app());
            http.server_options = Some(gate.limits.server_options(true));
            http.h2_options = Some(gate.limits.h2_options());
            Guarded::new(http, Arc::clone(&gate.limits), gate.connections.clone())
                .with_refusals(Arc::new(make_app()))
        };
        let mut proxy = Service::new("augur proxy".to_owned(), guarded());
        for addr in &addresses.listen {
            proxy.add_listener(cleartext_listener(addr, &ports));
        }
        // The capture ports take any TCP: protocol detection sends HTTP to the same proxy logic
        // and passes the rest through.
        let captured: Vec<_> = addresses
            .outbound_capture
            .iter()
            .chain(&addresses.inbound_capture)
            .collect();
        let capture_service = (!captured.is_empty()).then(|| {
            let http = guarded();
            let timeout = config.protocol_detection_timeout;
            let app = CaptureApp::new(http, capture.inbound, Arc::clone(&metrics), timeout)
                .with_policies(Arc::clone(&store))
                .with_access_log(access_log.clone());
            let mut service = Service::new("augur capture".to_owned(), app);
            for addr in &captured {
                service.add_listener(cleartext_listener(addr, &ports));
            }
            service
        });
        if let Some(t) = &config.listeners.tls {
            for addr in &addresses.tls_listen {
                let (cert, key) = (t.cert.to_string_lossy(), t.key.to_string_lossy());
                let mut tls = pingora::listeners::tls::TlsSettings::intermediate(&cert, &key)
                    .map_err(|e| {
                        BuildError::Tls(format!(
                            "cannot use --tls-cert {cert} / --tls-key {key}: {e}"
                        ))
                    })?;
                tls.enable_h2();
                if let Some(ca) = &t.client_ca {
                    tls.set_client_cert_verifier(crate::tls::client_verifier(ca)?);
                }
                proxy.add_tls_with_settings(&addr.to_string(), ports.socket_options(addr), tls);
            }
        }

        let evidence = Arc::new(crate::evidence::Evidence::new(metrics.evidence.clone()));
        let follower = match &config.controller {
            Some(link) => {
                let follower = Follower::new(
                    link.authority.clone(),
                    link.token.clone(),
                    link.node.clone(),
                    Arc::clone(&store),
                    Arc::clone(&weights),
                    metrics.follow.clone(),
                )
                .with_evidence(Arc::clone(&evidence))
                .with_weight_gauge(metrics.rollout.weight.clone());
                initial_sync(&follower, link.sync_timeout)?;
                Some(Arc::new(follower))
            }
            None => None,
        };
        let state = Arc::new(AdminState {
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            listeners: addresses
                .listen
                .iter()
                .chain(&addresses.tls_listen)
                .chain(&addresses.outbound_capture)
                .chain(&addresses.inbound_capture)
                .copied()
                .collect(),
            concurrency: config.concurrency,
            started: SystemTime::now(),
            healthy: AtomicBool::new(true),
            rollouts: Arc::clone(&rollouts),
            app_probers: crate::admin::AppProbers::from_env(),
            admin_token: config.admin_token.clone(),
            draining: draining.clone(),
            audit: Arc::clone(&audit),
            follower: follower.clone(),
            evidence: Arc::clone(&evidence),
        });
        let admin = admin_service(
            "augur admin",
            Surface::Admin,
            &state,
            &addresses.admin,
            &ports,
        );
        let status = admin_service(
            "augur status",
            Surface::Status,
            &state,
            &addresses.status,
            &ports,
        );
        let prometheus = admin_service(
            "augur prometheus",
            Surface::Prometheus,
            &state,
            &addresses.prometheus,
            &ports,
        );
        let mirrors = background_service(
            "augur mirror",
            MirrorService::new(mirror_rx, mirror_config, Arc::clone(&metrics), sample_sink),
        );
        let reloader = background_service(
            "augur policy reload",
            Reloader::new(Arc::clone(&store)).with_audit(audit),
        );

        server.add_service(proxy);
        if let Some(capture) = capture_service {
            server.add_service(capture);
        }
        server.add_service(admin);
        server.add_service(status);
        server.add_service(prometheus);
        match follower {
            // A follower decides nothing: its samples become evidence for the controller.
            Some(follower) => {
                server.add_service(background_service(
                    "augur controller follower",
                    FollowService(follower),
                ));
                server.add_service(background_service(
                    "augur evidence",
                    EvidenceFeed::new(evidence, Arc::clone(&store), sample_rx),
                ));
            }
            None => {
                let observer_store = Arc::clone(&store);
                let observer: augur_rollout::driver::Observer = Arc::new(move |s| {
                    crate::evidence::observe_serving(&evidence, &observer_store, s);
                });
                let driver = RolloutDriver::new(rollouts, Arc::clone(&store), sample_rx)
                    .with_observer(observer);
                server.add_service(background_service("augur rollout driver", driver));
            }
        }
        server.add_service(reloader);
        server.add_service(mirrors);
        server.add_service(background_service(
            "augur drain",
            crate::drain::Drain::new(metrics.active_requests.clone()),
        ));
        Ok(Self {
            server,
            ports,
            addresses,
            address_file: config.address_file,
        })
    }

    /// Where it listens: port-0 addresses already have their ports, held until the process
    /// exits, so a test that builds the proxy in-process can reach it.
    pub fn addresses(&self) -> &crate::ports::ProxyAddresses {
        &self.addresses
    }

    /// Writes the address file, then serves until SIGTERM (pingora exits the process then).
    pub fn run(self) -> Result<std::convert::Infallible, BuildError> {
        if let Some(path) = &self.address_file {
            crate::ports::write_address_file(path, &self.addresses).map_err(|source| {
                BuildError::File {
                    flag: "address-file",
                    path: path.clone(),
                    source,
                }
            })?;
        }
        tracing::info!(listen = ?self.addresses.listen, outbound = ?self.addresses.outbound_capture, inbound = ?self.addresses.inbound_capture, admin = %self.addresses.admin, "augur proxy starting");
        // The port reservations live on: run_forever never returns, and they hold until exit.
        let _ports = self.ports;
        self.server.run_forever()
    }
}
/// Gets the controller's current state before any listener opens, so that the first request
/// is routed at the fleet's weights; without an answer within `within`, the sidecar serves at
/// the policy files' weights and keeps trying in the background (`/ready` says so).
fn initial_sync(follower: &Follower, within: std::time::Duration) -> Result<(), BuildError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BuildError::Runtime)?;
    match runtime.block_on(follower.initial_sync(within)) {
        Ok(()) => tracing::info!(
            controller = follower.controller(),
            "controller state applied before the listeners open"
        ),
        Err(e) => {
            tracing::warn!(controller = follower.controller(), error = %e, "no controller state yet: serving at the policy files' weights until it comes")
        }
    }
    Ok(())
}

/// A cleartext proxy listener without pingora's 64 KiB read buffer per connection: the HTTP/1
/// session reads each head into its own buffer and h2 frames into its codec's, so the extra
/// buffer only cost a copy of every byte read and memory on every kept-alive connection
/// (see BENCHMARKS.md). Upstream connections are unbuffered in pingora already.
fn cleartext_listener(addr: &std::net::SocketAddr, ports: &Reservations) -> ListenerConfig {
    let config =
        ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings::default().read(0));
    match ports.socket_options(addr) {
        Some(options) => config.tcp_socket_options(options),
        None => config,
    }
}

fn admin_service(
    name: &str,
    surface: Surface,
    state: &Arc<AdminState>,
    addr: &std::net::SocketAddr,
    ports: &Reservations,
) -> Service<HttpServer<AdminApp>> {
    let mut service = Service::new(
        name.to_owned(),
        HttpServer::new_app(AdminApp::new(surface, Arc::clone(state))),
    );
    match ports.socket_options(addr) {
        Some(options) => service.add_tcp_with_settings(&addr.to_string(), options),
        None => service.add_tcp(&addr.to_string()),
    }
    service.threads = Some(1);
    service
}
