//! The controller's HTTP server (hyper): the fleet endpoints sidecars follow, Envoy's RDS over
//! REST-JSON, and everything else (rollout status and commands, labels, the dashboard,
//! metrics) handed to the rollout [`Api`].
//!
//! | Path | What |
//! |---|---|
//! | `GET /v1/fleet/state` | the current [`FleetState`](augur_model::fleet::FleetState), once |
//! | `GET /v1/fleet/watch` | the current state, then every new one, one JSON line each, and an empty line every heartbeat so both ends see a dead connection |
//! | `POST /v3/discovery:routes` | an xDS `DiscoveryResponse` with the route configuration asked for ([`crate::xds`]) |
//!
//! Subscriptions and commands from beyond loopback need `Authorization: Bearer <token>` when a
//! token is set; without one they are refused (`401`), logged and counted, and learn nothing.
//!
//! Every command (a `POST` other than an xDS request: `/rollouts/{name}/{command}`, `/labels`),
//! carried out or refused, is appended to the admin audit log ([`AuditLog`]) with the peer, how
//! it was admitted (never the token), the rollout and command when the rollout exists, and the
//! status answered, as the proxy's admin port does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use augur_model::fleet::Subscriber;
use augur_policies::PolicySet;
use augur_rollout::audit::{command_params, Actor, Admission, AuditLog};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::publish::Publisher;

/// The largest request body read (label batches, xDS requests).
const MAX_BODY: usize = 1024 * 1024;

/// How often a watch stream carries a heartbeat line.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A request for the rollout API.
#[derive(Debug)]
pub struct ApiRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
    /// Whether the caller may change things (loopback, or the right token).
    pub authorized: bool,
}

/// The rollout API's answer.
#[derive(Debug)]
pub struct ApiResponse {
    /// Status.
    pub status: StatusCode,
    /// `content-type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

/// What the controller serves besides the fleet endpoints.
pub trait Api: Send + Sync + 'static {
    /// The policies the controller runs (for xDS).
    fn policies(&self) -> Arc<PolicySet>;
    /// Rollout status and commands, labels, the dashboard, metrics.
    fn handle(&self, request: ApiRequest<'_>) -> ApiResponse;
    /// Where commands sent to the server, carried out or refused, are recorded (by default
    /// only on the tracing log).
    fn audit(&self) -> &AuditLog {
        static TRACING_ONLY: AuditLog = AuditLog::tracing_only();
        &TRACING_ONLY
    }
}

/// Counts of what the server refused.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    /// Requests refused for want of the right token, by endpoint kind.
    pub refused: prometheus::IntCounterVec,
    /// Sidecars subscribed now.
    pub subscribers: prometheus::IntGauge,
}

impl ServerMetrics {
    /// Creates and registers the counters.
    pub fn register(registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "augur_controller_unauthorized_total",
                "Subscriptions, xDS requests and commands refused for want of the right token.",
            ),
            &["endpoint"],
        )?;
        let subscribers = prometheus::IntGauge::new(
            "augur_controller_subscribers",
            "Sidecars following the controller now.",
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(subscribers.clone()))?;
        Ok(Self {
            refused,
            subscribers,
        })
    }
}

/// The server's shared state.
pub struct ControllerHttp {
    /// The fleet's routing.
    pub publisher: Arc<Publisher>,
    /// The bearer token for callers beyond loopback.
    pub token: Option<String>,
    /// The rollout API.
    pub api: Arc<dyn Api>,
    /// Refusals and subscribers.
    pub metrics: ServerMetrics,
    /// How often watch streams carry a heartbeat.
    pub heartbeat: Duration,
}

type Body = Either<Full<Bytes>, Lines>;

/// Serves connections from `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    http: Arc<ControllerHttp>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let http = Arc::clone(&http);
        let mut closing = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let http = Arc::clone(&http);
                async move { Ok::<_, Infallible>(handle(&http, req, peer).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // On shutdown the connection is dropped: watch streams end, and their sidecars
            // reconnect (to this controller restarted, or a standby one).
            tokio::select! {
                served = connection => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "controller connection ended");
                    }
                }
                _ = closing.changed() => {}
            }
        });
    }
}

/// The registry in Prometheus' text format.
pub fn metrics_text(registry: &prometheus::Registry) -> Vec<u8> {
    use prometheus::Encoder;
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// Serves `GET /stats/prometheus` (and `/metrics`) from `listener` until `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: prometheus::Registry,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = match req.uri().path() {
                    "/stats/prometheus" | "/metrics" => full(
                        StatusCode::OK,
                        "text/plain; version=0.0.4",
                        metrics_text(&registry),
                    ),
                    _ => full(StatusCode::NOT_FOUND, "text/plain", "invalid path\n"),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(body.into())));
    *response.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// How the caller is admitted: with the right token (from anywhere), from loopback, or not at
/// all. The token is compared in constant time.
fn admission(http: &ControllerHttp, req: &Request<Incoming>, peer: SocketAddr) -> Admission {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let bearer = match (&http.token, given) {
        (Some(token), Some(given)) => {
            subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into()
        }
        _ => false,
    };
    if bearer {
        Admission::Bearer
    } else if peer.ip().is_loopback() {
        Admission::Loopback
    } else {
        Admission::Refused
    }
}

/// Whether a request is a command, which the audit log records: a `POST` other than an xDS
/// request (those only read the routing).
fn is_command(method: &Method, path: &str) -> bool {
    method == Method::POST && !path.starts_with("/v3/")
}

/// The endpoint and the validated parameters of a command, for the audit log. Paths and
/// values a client chose freely are not recorded: a rollout's name only once the rollout was
/// found and the command known (`200`, or `409` when its state does not allow it).
fn audited(path: &str, status: StatusCode, body: &[u8]) -> (&'static str, serde_json::Value) {
    let ok = status.is_success();
    match path {
        "/labels" => {
            let params = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .filter(|_| ok)
                .map_or(serde_json::json!({}), |v| {
                    serde_json::json!({
                        "received": v["received"],
                        "forwarded_to": v["forwarded_to"],
                    })
                });
            ("/labels", params)
        }
        p if p.starts_with("/rollouts/") => {
            let found = ok || status == StatusCode::CONFLICT;
            ("/rollouts/{name}/{command}", command_params(p, found))
        }
        _ => ("(unknown)", serde_json::json!({})),
    }
}

async fn handle(http: &ControllerHttp, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let method = req.method().clone();
    let admission = admission(http, &req, peer);
    let allowed = admission != Admission::Refused;
    let actor = Actor {
        peer: Some(peer),
        admission,
    };
    // Only readiness is open to all (the kubelet probes from the node's address); anything
    // else, even reading the rollout state, needs loopback or the token.
    if !allowed && path != "/ready" {
        let endpoint = if path.starts_with("/v3/") {
            "xds"
        } else if path.starts_with("/v1/fleet/") {
            "fleet"
        } else if method == Method::POST {
            "command"
        } else {
            "read"
        };
        http.metrics.refused.with_label_values(&[endpoint]).inc();
        tracing::warn!(%peer, path = %path, endpoint, "refused: no valid token");
        let status = StatusCode::UNAUTHORIZED;
        if is_command(&method, &path) {
            let (endpoint, _) = audited(&path, status, &[]);
            let params = serde_json::json!({});
            http.api
                .audit()
                .admin(actor, "POST", endpoint, params, status.as_u16());
        }
        return full(status, "text/plain", "unauthorized\n");
    }
    match (&method, path.as_str()) {
        (&Method::GET, "/v1/fleet/state") => {
            let state = http.publisher.current();
            full(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec(&*state).unwrap_or_default(),
            )
        }
        (&Method::GET, "/v1/fleet/watch") => watch_stream(http, &req, query.as_deref()),
        (&Method::POST, p) if p.starts_with("/v3/discovery:routes") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let name = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["resource_names"][0].as_str().map(str::to_owned))
                .unwrap_or_else(|| "augur".to_owned());
            let policies = http.api.policies();
            let response =
                crate::xds::discovery_response(&policies, &http.publisher.current(), &name);
            full(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec(&response).unwrap_or_default(),
            )
        }
        _ => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => {
                    if is_command(&method, &path) {
                        let (endpoint, _) = audited(&path, r.status(), &[]);
                        let status = r.status().as_u16();
                        http.api.audit().admin(
                            actor,
                            "POST",
                            endpoint,
                            serde_json::json!({}),
                            status,
                        );
                    }
                    return r;
                }
            };
            let answer = http.api.handle(ApiRequest {
                method: &method,
                path: &path,
                query: query.as_deref(),
                body: &body,
                authorized: allowed,
            });
            if is_command(&method, &path) {
                let (endpoint, params) = audited(&path, answer.status, &answer.body);
                let status = answer.status.as_u16();
                http.api
                    .audit()
                    .admin(actor, "POST", endpoint, params, status);
            }
            full(answer.status, answer.content_type, answer.body)
        }
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(full(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain",
            "request body too large\n",
        )),
    }
}

/// The subscriber a watch request describes: `?node=` and the `x-augur-policies` header
/// (`namespace/name=hash` pairs, comma-separated).
fn subscriber_of(req: &Request<Incoming>, query: Option<&str>) -> Subscriber {
    let node = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("node="))
        .unwrap_or("unnamed")
        .to_owned();
    let policies = req
        .headers()
        .get("x-augur-policies")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(p, h)| (p.to_owned(), h.to_owned()))
        .collect();
    Subscriber { node, policies }
}

fn watch_stream(
    http: &ControllerHttp,
    req: &Request<Incoming>,
    query: Option<&str>,
) -> Response<Body> {
    let mut subscription = http.publisher.subscribe(subscriber_of(req, query));
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let heartbeat = http.heartbeat;
    let gauge = http.metrics.subscribers.clone();
    gauge.inc();
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                changed = subscription.states.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let state = Arc::clone(&subscription.states.borrow_and_update());
                    let mut line = serde_json::to_vec(&*state).unwrap_or_default();
                    line.push(b'\n');
                    Bytes::from(line)
                }
                labels = subscription.labels.recv() => match labels {
                    Ok(line) => line,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(lost)) => {
                        tracing::warn!(lost, "a slow sidecar missed label batches");
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                () = tokio::time::sleep(heartbeat) => Bytes::from_static(b"\n"),
                // The sidecar hung up (it subscribes again after a policy reload): unregister
                // it now rather than at the next heartbeat.
                () = tx.closed() => break,
            };
            if tx.send(line).await.is_err() {
                break;
            }
        }
        gauge.dec();
        drop(subscription);
    });
    let mut response = Response::new(Either::Right(Lines(rx)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// A response body made of the lines a task sends.
pub struct Lines(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Lines {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|l| Ok(Frame::data(l))))
    }
}
