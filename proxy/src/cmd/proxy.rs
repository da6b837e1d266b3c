//! `augur proxy`: loads the policy, builds the pingora server and runs until SIGTERM.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::access_log::AccessLog;
use crate::admin::{AdminApp, AdminState, Surface};
use crate::cli::ProxyArgs;
use crate::limits::conn::Guarded;
use crate::metrics::Metrics;
use crate::mirror::{MirrorConfig, MirrorQueue, MirrorService};
use crate::policy_store::{PolicyStore, StoreError};
use crate::ports::{ProxyAddresses, Reservations};
use crate::reload::Reloader;
use crate::rollout::driver::RolloutDriver;
use crate::rollout::persist::StateDir;
use crate::rollout::weights::RolloutWeights;
use crate::rollout::Rollouts;
use crate::sample::SampleSink;
use crate::service::capture::CapturePorts;
use crate::service::AugurProxy;
use crate::tcp::CaptureApp;

/// Samples the analyzer's queue holds before new ones are dropped (and counted).
const SAMPLE_QUEUE: usize = 65_536;

/// Runs the sidecar; returns only on a start-up error (pingora exits the process on shutdown).
pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(
        Metrics::new(crate::identity::Workload::from_env()).context("registering metrics")?,
    );
    let opened = PolicyStore::open_with(
        args.policies.clone(),
        args.load.options(),
        Arc::clone(&metrics),
    );
    let store = match opened {
        Ok(store) => Arc::new(store),
        Err(StoreError::Invalid(e)) => {
            eprint!("{}", crate::cmd::policy::render_diagnostics(&e));
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e).context("loading the policy"),
    };
    let snapshot = store.snapshot();
    for w in &snapshot.loaded.warnings {
        tracing::warn!(diagnostic = %w, "policy warning");
    }
    tracing::info!(hash = %snapshot.loaded.hash, files = snapshot.loaded.sources.len(), "policy loaded");
    drop(snapshot);

    let mut listen = args.listen.clone();
    if listen.is_empty()
        && args.tls_listen.is_empty()
        && args.outbound_capture.is_none()
        && args.inbound_capture.is_none()
    {
        listen.push(std::net::SocketAddr::from(([127, 0, 0, 1], 15001)));
    }
    // Port-0 addresses get their ports now (held until exit), so they can be reported.
    let mut ports = Reservations::default();
    let mut resolve = || -> std::io::Result<ProxyAddresses> {
        Ok(ProxyAddresses {
            listen: ports.resolve_all(&listen)?,
            tls_listen: ports.resolve_all(&args.tls_listen)?,
            outbound_capture: args
                .outbound_capture
                .map(|a| ports.resolve(a))
                .transpose()?,
            inbound_capture: args.inbound_capture.map(|a| ports.resolve(a)).transpose()?,
            admin: ports.resolve(args.admin)?,
            status: ports.resolve(args.status)?,
            prometheus: ports.resolve(args.prometheus)?,
        })
    };
    let addresses = resolve().context("cannot reserve a port for a listener with port 0")?;
    let listen = addresses.listen.clone();
    let conf = ServerConf {
        threads: args.concurrency.max(1),
        // One single-threaded runtime per worker thread (Envoy's and haproxy's model: a
        // connection stays on its thread) rather than tokio's work-stealing scheduler, whose
        // cross-thread queues and wake-ups cost CPU on every request (see BENCHMARKS.md).
        work_stealing: false,
        // Stop accepting at once, then wait up to the drain duration for in-flight requests;
        // `Drain` exits as soon as none is left.
        grace_period_seconds: Some(args.drain_duration.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let state_dir = StateDir::open(&args.state_dir)
        .with_context(|| format!("cannot use --state-dir {}", args.state_dir.display()))?;
    let audit_path = args
        .audit_log
        .clone()
        .unwrap_or_else(|| args.state_dir.join("audit.jsonl"));
    let audit = Arc::new(
        crate::audit::AuditLog::open(&audit_path)
            .with_context(|| format!("cannot open --audit-log {}", audit_path.display()))?,
    );
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
    store.set_live_weights(Arc::clone(&weights));
    {
        let weights = Arc::clone(&weights);
        store.set_before_swap(Box::new(move |old, new| {
            crate::rollout::release::hold_changed_releases(old, new, &weights);
        }));
    }
    let mut rollouts = Rollouts::new(Arc::clone(&weights), Some(state_dir), Arc::clone(&metrics));
    if let Some(dir) = &args.record_samples {
        rollouts = rollouts.with_recording(dir.clone());
    }
    let rollouts = Arc::new(rollouts);
    let access_log = match &args.access_log {
        Some(path) => {
            let format = match args.access_log_format {
                crate::cli::LogFormat::Text => crate::access_log::Format::Text,
                crate::cli::LogFormat::Json => crate::access_log::Format::Json,
            };
            let log = AccessLog::open(path, format, metrics.access_log_dropped.clone())
                .with_context(|| format!("cannot open --access-log {}", path.display()))?;
            Some(log)
        }
        None => None,
    };
    let (sample_sink, sample_rx) = SampleSink::channel(SAMPLE_QUEUE);
    let mirror_config = MirrorConfig {
        max_body: args.mirror_max_body,
        queue: args.mirror_queue,
        host_suffix: args.mirror_host_suffix.clone(),
    };
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
        crate::limits::Gate::new(args.limits.to_limits(), metrics.active_connections.clone());
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
        .with_path_normalization(args.path_normalization)
        .with_retry_buffer_limit(args.retry_buffer_limit)
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
    for addr in &listen {
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
        let timeout = Some(args.protocol_detection_timeout).filter(|t| !t.is_zero());
        let app = CaptureApp::new(http, capture.inbound, Arc::clone(&metrics), timeout)
            .with_policies(Arc::clone(&store))
            .with_access_log(access_log.clone());
        let mut service = Service::new("augur capture".to_owned(), app);
        for addr in &captured {
            service.add_listener(cleartext_listener(addr, &ports));
        }
        service
    });
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        for addr in &addresses.tls_listen {
            let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
            let mut tls =
                pingora::listeners::tls::TlsSettings::intermediate(&cert, &key).map_err(|e| {
                    anyhow::anyhow!("cannot use --tls-cert {cert} / --tls-key {key}: {e}")
                })?;
            tls.enable_h2();
            if let Some(ca) = &args.tls_client_ca {
                tls.set_client_cert_verifier(crate::tls::client_verifier(ca)?);
            }
            proxy.add_tls_with_settings(&addr.to_string(), ports.socket_options(addr), tls);
        }
    }

    let state = Arc::new(AdminState {
        store: Arc::clone(&store),
        metrics: Arc::clone(&metrics),
        listeners: listen
            .iter()
            .chain(&addresses.tls_listen)
            .chain(&addresses.outbound_capture)
            .chain(&addresses.inbound_capture)
            .copied()
            .collect(),
        concurrency: args.concurrency,
        started: SystemTime::now(),
        healthy: AtomicBool::new(true),
        rollouts: Arc::clone(&rollouts),
        app_probers: crate::admin::AppProbers::from_env(),
        admin_token: args.admin_token.clone(),
        draining: draining.clone(),
        audit: Arc::clone(&audit),
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
    let driver = background_service(
        "augur rollout driver",
        RolloutDriver::new(rollouts, Arc::clone(&store), sample_rx),
    );
    let mirrors = background_service(
        "augur mirror",
        MirrorService::new(mirror_rx, mirror_config, Arc::clone(&metrics), sample_sink),
    );
    let reloader = background_service(
        "augur policy reload",
        Reloader::new(store).with_audit(audit),
    );

    server.add_service(proxy);
    if let Some(capture) = capture_service {
        server.add_service(capture);
    }
    server.add_service(admin);
    server.add_service(status);
    server.add_service(prometheus);
    server.add_service(reloader);
    server.add_service(driver);
    server.add_service(mirrors);
    server.add_service(background_service(
        "augur drain",
        crate::drain::Drain::new(metrics.active_requests.clone()),
    ));
    if let Some(path) = &args.address_file {
        crate::ports::write_address_file(path, &addresses)
            .with_context(|| format!("cannot write --address-file {}", path.display()))?;
    }
    tracing::info!(listen = ?listen, outbound = ?addresses.outbound_capture, inbound = ?addresses.inbound_capture, admin = %addresses.admin, "augur proxy starting");
    // `ports` lives on: run_forever never returns, and the reservations hold until exit.
    server.run_forever()
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
