//! Envoy-style admin, the status port and the Prometheus endpoint.
//!
//! One [`AdminApp`] type serves the three listeners; its [`Surface`] decides which paths each
//! one answers:
//! - admin (127.0.0.1:15000): `GET /ready`, `/server_info`, `/stats` (`?usedonly`, `?filter=`),
//!   `/stats/prometheus`, `/config_dump`, `/listeners`, `/clusters`, `/rollouts`,
//!   `/rollouts/{name}/history` and the dashboard `/ui`;
//!   `POST /healthcheck/fail`, `/healthcheck/ok`, `/logging[?level=]`, `/drain_listeners`,
//!   `/quitquitquit`, `/rollouts/{name}/{command}`, `/labels` (mutations are POST only);
//! - status (15021): `GET /healthz/ready`, and `/app-health/<container>/<probe>` (the app's
//!   probes, rewritten by the injector);
//! - Prometheus (15090): `GET /stats/prometheus`.

mod app_probe;
pub use app_probe::AppProbers;
mod config_dump;
mod stats;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::audit::{Actor, Admission};
use crate::metrics::Metrics;
use crate::policy_store::{unix_seconds, PolicyStore};
use augur_rollout::Rollouts;

/// The largest admin request body read (label batches); larger ones get 413.
const MAX_BODY: usize = 1024 * 1024;

/// Which listener an [`AdminApp`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The admin port: everything.
    Admin,
    /// The status port: `/healthz/ready`.
    Status,
    /// The Prometheus port: `/stats/prometheus`.
    Prometheus,
}

/// State shared by the admin surfaces.
pub struct AdminState {
    /// The serving policy.
    pub store: Arc<PolicyStore>,
    /// The metric handles.
    pub metrics: Arc<Metrics>,
    /// The proxy's listeners, for `/listeners`.
    pub listeners: Vec<SocketAddr>,
    /// Worker threads, for `/server_info`.
    pub concurrency: usize,
    /// Process start.
    pub started: SystemTime,
    /// Cleared by `POST /healthcheck/fail`, set by `/healthcheck/ok`.
    pub healthy: AtomicBool,
    /// The rollouts, for `/rollouts` and `/labels`.
    pub rollouts: Arc<Rollouts>,
    /// The app's probes, for `/app-health/...` on the status port.
    pub app_probers: app_probe::AppProbers,
    /// The bearer token that admits mutations from beyond loopback.
    pub admin_token: Option<String>,
    /// Set by `POST /drain_listeners`.
    pub draining: crate::drain::Draining,
    /// Where admin mutations are recorded.
    pub audit: Arc<crate::audit::AuditLog>,
    /// The controller this sidecar follows (`--controller`), if any: then rollout commands
    /// and labels go there, not here.
    pub follower: Option<Arc<crate::follow::Follower>>,
    /// The per-arm evidence (labels posted here are joined there too).
    pub evidence: Arc<crate::evidence::Evidence>,
}

/// The HTTP application behind the admin, status and Prometheus listeners.
pub struct AdminApp {
    surface: Surface,
    state: Arc<AdminState>,
}

impl AdminApp {
    /// An app for one surface.
    pub fn new(surface: Surface, state: Arc<AdminState>) -> Self {
        Self { surface, state }
    }

    fn route(&self, method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> Reply {
        let s = &self.state;
        match (self.surface, path) {
            (Surface::Admin, p) if augur_rollout::api::handles(p) => {
                if let Some(f) = s
                    .follower
                    .as_ref()
                    .filter(|_| augur_rollout::api::is_mutation(method, p))
                {
                    return Reply::text(
                        StatusCode::FORBIDDEN,
                        format!(
                            "this sidecar follows the controller at {c}, which decides every rollout: \
                             send commands and labels there (augur rollout --admin {c} ...)\n",
                            c = f.controller()
                        ),
                    );
                }
                let reply = augur_rollout::api::answer(&s.rollouts, method, p, body);
                if p == "/labels" && reply.status.is_success() {
                    join_labels(&s.evidence, body);
                }
                Reply::new(reply.status, reply.content_type, reply.body)
            }
            (Surface::Admin, "/controller") => match &s.follower {
                Some(f) => Reply::json(&serde_json::to_value(f.view()).unwrap_or_default()),
                None => Reply::text(
                    StatusCode::NOT_FOUND,
                    "this proxy runs its own rollouts (no --controller)\n",
                ),
            },
            (Surface::Status, "/healthz/ready") => readiness(s),
            (Surface::Status, _) => Reply::not_found(),
            (_, "/stats/prometheus") => Reply::new(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                prometheus_text(s),
            ),
            (Surface::Prometheus, _) => Reply::not_found(),
            (Surface::Admin, "/logging" | "/drain_listeners" | "/quitquitquit")
                if method != Method::POST =>
            {
                Reply::text(StatusCode::BAD_REQUEST, "This endpoint requires POST\n")
            }
            (Surface::Admin, "/logging") => logging(query),
            (Surface::Admin, "/drain_listeners") => {
                s.draining.start();
                s.healthy.store(false, Ordering::Relaxed);
                Reply::text(StatusCode::OK, "OK\n")
            }
            (Surface::Admin, "/quitquitquit") => {
                quit();
                Reply::text(StatusCode::OK, "OK\n")
            }
            (Surface::Admin, "/healthcheck/fail" | "/healthcheck/ok") => {
                if method != Method::POST {
                    // Envoy answers a GET on a mutating endpoint with 400.
                    return Reply::text(StatusCode::BAD_REQUEST, "This endpoint requires POST\n");
                }
                s.healthy
                    .store(path == "/healthcheck/ok", Ordering::Relaxed);
                Reply::text(StatusCode::OK, "OK\n")
            }
            (Surface::Admin, _) if method != Method::GET && method != Method::HEAD => {
                Reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            (Surface::Admin, "/ready") => {
                if s.healthy.load(Ordering::Relaxed) {
                    let details = s.follower.as_ref().map(|f| f.view().summary());
                    Reply::text(
                        StatusCode::OK,
                        format!("LIVE\n{}", details.unwrap_or_default()),
                    )
                } else {
                    Reply::text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n")
                }
            }
            (Surface::Admin, "/server_info") => Reply::json(&server_info(s)),
            (Surface::Admin, "/stats") => Reply::text(StatusCode::OK, stats::envoy_stats(s, query)),
            (Surface::Admin, "/config_dump") => Reply::json(&config_dump::dump(s)),
            (Surface::Admin, "/listeners") => {
                let lines: String = s.listeners.iter().map(|l| format!("{l}::{l}\n")).collect();
                Reply::text(StatusCode::OK, lines)
            }
            (Surface::Admin, "/clusters") => Reply::text(StatusCode::OK, stats::clusters(s)),
            (Surface::Admin, _) => Reply::not_found(),
        }
    }
}

/// Envoy's `POST /logging`: lists the level, and with `?level=` sets it for every logger.
fn logging(query: Option<&str>) -> Reply {
    let level = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("level="));
    if let Some(level) = level {
        if let Err(e) = crate::logging::set_level(level) {
            return Reply::text(StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
        tracing::info!(level, "log level changed through the admin");
    }
    Reply::text(
        StatusCode::OK,
        format!("active loggers:\n  augur: {}\n", crate::logging::current()),
    )
}

/// Envoy's `POST /quitquitquit`: shuts down as on SIGTERM (stop accepting, let in-flight
/// requests finish), once the reply is on its way.
fn quit() {
    tracing::info!("shutdown requested through the admin");
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let me = nix::unistd::Pid::this();
        if let Err(e) = nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGTERM) {
            tracing::error!(error = %e, "cannot signal shutdown; exiting");
            std::process::exit(0);
        }
    });
}

/// The proxy's metrics, then the embedded shadow model's (the first policy's, by name, when
/// several have one: metric families must not repeat in one exposition).
fn prometheus_text(s: &AdminState) -> Vec<u8> {
    let mut out = s.metrics.render();
    let snapshot = s.store.snapshot();
    let mut keys: Vec<&String> = snapshot.shadows.keys().collect();
    keys.sort();
    if let Some(handle) = keys.first().and_then(|k| snapshot.shadows.get(*k)) {
        let mut text = String::new();
        handle
            .model
            .metrics()
            .snapshot()
            .render_prometheus(&mut text);
        out.extend_from_slice(text.as_bytes());
    }
    out
}

fn readiness(s: &AdminState) -> Reply {
    if s.healthy.load(Ordering::Relaxed) {
        Reply::text(StatusCode::OK, "")
    } else {
        Reply::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: health check failed\n",
        )
    }
}

fn server_info(s: &AdminState) -> serde_json::Value {
    let uptime = SystemTime::now()
        .duration_since(s.started)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    serde_json::json!({
        "version": format!("augur/{}", env!("CARGO_PKG_VERSION")),
        "state": if s.healthy.load(Ordering::Relaxed) { "LIVE" } else { "DRAINING" },
        "uptime_current_epoch": format!("{uptime}s"),
        "uptime_all_epochs": format!("{uptime}s"),
        "command_line_options": { "concurrency": s.concurrency },
        "node": { "started_unix": unix_seconds(s.started) },
    })
}

/// Joins posted labels to the evidence exported for a fleet's controller too.
fn join_labels(evidence: &crate::evidence::Evidence, body: &[u8]) {
    if let Ok(labels) = augur_rollout::api::parse_labels(body) {
        let now = crate::sample::now();
        for l in &labels {
            evidence.label(&l.request_id, &l.label, now);
        }
    }
}

/// A complete admin response.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type,
            body,
        }
    }
    fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self::new(
            status,
            "text/plain; charset=UTF-8",
            body.into().into_bytes(),
        )
    }
    fn json(value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self::new(StatusCode::OK, "application/json", body)
    }
    fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "invalid path\n")
    }
}

impl AdminApp {
    /// Mutations come from loopback, or carry `Authorization: Bearer <admin token>`.
    fn admission(&self, session: &ServerSession) -> Admission {
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let presented = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        admission(client, self.state.admin_token.as_deref(), presented)
    }
}

/// How an admin mutation from `client` presenting `presented` is admitted. The token is
/// compared in constant time.
fn admission(client: Option<IpAddr>, token: Option<&str>, presented: Option<&str>) -> Admission {
    use subtle::ConstantTimeEq;
    let bearer = match (token, presented) {
        (Some(t), Some(p)) => bool::from(t.as_bytes().ct_eq(p.as_bytes())),
        _ => false,
    };
    if bearer {
        Admission::Bearer
    } else if client.is_some_and(|ip| ip.is_loopback()) {
        Admission::Loopback
    } else {
        Admission::Refused
    }
}

/// Whether an admin mutation from `client` presenting `presented` may run.
#[cfg(test)]
fn mutation_allowed(client: Option<IpAddr>, token: Option<&str>, presented: Option<&str>) -> bool {
    admission(client, token, presented) != Admission::Refused
}

/// The endpoint and the validated parameters of an admin mutation, for the audit log. Paths
/// and values a client chose freely are not recorded.
fn audited(path: &str, query: Option<&str>, reply: &Reply) -> (&'static str, serde_json::Value) {
    use serde_json::json;
    let ok = reply.status.is_success();
    let known: &[&'static str] = &[
        "/logging",
        "/drain_listeners",
        "/quitquitquit",
        "/healthcheck/fail",
        "/healthcheck/ok",
        "/labels",
    ];
    if let Some(endpoint) = known.iter().find(|e| **e == path) {
        let params = match *endpoint {
            "/logging" if ok => query
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("level="))
                .map_or(json!({}), |level| json!({ "level": level })),
            "/labels" if ok => serde_json::from_slice::<serde_json::Value>(&reply.body)
                .map(|v| json!({ "received": v["received"], "matched": v["matched"] }))
                .unwrap_or(json!({})),
            _ => json!({}),
        };
        return (endpoint, params);
    }
    if path.starts_with("/rollouts/") {
        // The rollout and command only once the rollout was found (the command ran, or was not
        // allowed in its state): any other answer's name is whatever the client wrote.
        let found = ok || reply.status == StatusCode::CONFLICT;
        return (
            "/rollouts/{name}/{command}",
            crate::audit::command_params(path, found),
        );
    }
    ("(unknown)", json!({}))
}

/// Reads the request body up to [`MAX_BODY`]; `None` when it is larger.
async fn read_body(session: &mut ServerSession) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = session.read_request_body().await {
        if body.len() + chunk.len() > MAX_BODY {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (method, path, query) = {
            let req = session.req_header();
            (
                req.method.clone(),
                req.uri.path().to_owned(),
                req.uri.query().map(str::to_owned),
            )
        };
        let admission = (method == Method::POST).then(|| self.admission(session));
        let actor = |admission| Actor {
            peer: session.client_addr().and_then(|a| a.as_inet()).copied(),
            admission,
        };
        if admission == Some(Admission::Refused) {
            let reply = Reply::text(
                StatusCode::FORBIDDEN,
                "admin mutations are accepted from loopback, or with the admin bearer token\n",
            );
            let (endpoint, _) = audited(&path, None, &reply);
            let who = actor(Admission::Refused);
            let status = reply.status.as_u16();
            self.state
                .audit
                .admin(who, "POST", endpoint, serde_json::json!({}), status);
            return reply.into_response();
        }
        let actor = admission.map(actor);
        if self.surface == Surface::Status && path.starts_with("/app-health/") {
            let reply = match self.state.app_probers.check(&path).await {
                Some(true) => Reply::text(StatusCode::OK, ""),
                Some(false) => Reply::text(StatusCode::SERVICE_UNAVAILABLE, "app probe failed\n"),
                None => Reply::not_found(),
            };
            return reply.into_response();
        }
        let reply = match read_body(session).await {
            Some(body) => self.route(&method, &path, query.as_deref(), &body),
            None => Reply::text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"),
        };
        if let Some(actor) = actor {
            let (endpoint, params) = audited(&path, query.as_deref(), &reply);
            let status = reply.status.as_u16();
            self.state
                .audit
                .admin(actor, "POST", endpoint, params, status);
        }
        reply.into_response()
    }
}

impl Reply {
    fn into_response(self) -> Response<Vec<u8>> {
        let len = self.body.len();
        Response::builder()
            .status(self.status)
            .header("content-type", self.content_type)
            .header("content-length", len)
            .header("server", "envoy")
            .body(self.body)
            .unwrap_or_else(|_| Response::new(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::mutation_allowed;

    #[test]
    fn mutations_need_loopback_or_the_token() {
        let lo = Some("127.0.0.1".parse().unwrap());
        let far = Some("10.1.2.3".parse().unwrap());
        assert!(mutation_allowed(lo, None, None));
        assert!(!mutation_allowed(far, None, None));
        assert!(
            !mutation_allowed(far, None, Some("x")),
            "no token configured: loopback only"
        );
        assert!(!mutation_allowed(far, Some("s3cret"), Some("guess")));
        assert!(mutation_allowed(far, Some("s3cret"), Some("s3cret")));
        assert!(!mutation_allowed(None, Some("s3cret"), None));
    }
}
