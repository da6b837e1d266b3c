//! A reference model server: the FastAPI pneumonia service of the seeds, in Rust, backed by a
//! [`ShadowModel`]. Used by demos and tests as a real model endpoint behind the proxy.
//!
//! | endpoint | answer |
//! |---|---|
//! | `POST /predict` | body: multipart file field, raw PNG/JPEG/DICOM, or JSON with a base64 image; answer `{"prediction": "PNEUMONIA"\|"NORMAL", "confidence": p, "model_version": "v1"}` where `confidence` is P(positive class), the value a CanaryPolicy reads with `scorePointer: /confidence` |
//! | `GET /health` | `{"status": "ok", "model": name, "model_version": v}` |
//! | `GET /metrics` | Prometheus text: the shadow model's counters plus `augur_model_server_requests_total{code}` |
//!
//! Errors: 400 bad body, 413 too large (bytes or pixels), 415 unsupported content type, 503
//! queue full (the request is dropped, not queued), 500 inference failure; each as
//! `{"error": message}`. Inference runs on the pool's threads; the async side only awaits a
//! oneshot, so a slow model never blocks the runtime.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::decode::DecodeError;
use crate::metadata::ModelMetadata;
use crate::model::{ModelError, ScoreError, ScoreInput, ShadowConfig, ShadowModel, SubmitError};

/// How to run the model server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The `.onnx` file (its metadata JSON sits next to it).
    pub model: PathBuf,
    /// Pool and decoding settings.
    pub shadow: ShadowConfig,
    /// The `model_version` to report, overriding the metadata's (`--version`).
    pub version: Option<String>,
}

/// The server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The model did not load.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Binding, accepting or the runtime failed.
    #[error("model server i/o: {0}")]
    Io(#[from] std::io::Error),
}

struct State {
    model: ShadowModel,
    requests: Mutex<BTreeMap<u16, u64>>,
}

/// A bound, not yet running, model server.
pub struct ModelServer {
    listener: TcpListener,
    state: Arc<State>,
}

impl std::fmt::Debug for ModelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelServer")
            .field("listener", &self.listener.local_addr().ok())
            .finish()
    }
}

/// Loads the model, binds `config.listen`, tells `on_listening` the bound address (port 0
/// picks a free port) and serves until Ctrl-C (blocking; builds its own tokio runtime). This
/// is what `augur model-server` calls.
pub fn serve(
    config: ServerConfig,
    on_listening: impl FnOnce(SocketAddr) -> std::io::Result<()>,
) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = ModelServer::bind(config).await?;
        let addr = server.local_addr()?;
        tracing::info!(%addr, "model server listening");
        on_listening(addr)?;
        server
            .run_until(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}

// === impl ModelServer ===

impl ModelServer {
    /// Loads the model (on a blocking thread) and binds the listener.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        let ServerConfig {
            listen,
            model,
            shadow,
            version,
        } = config;
        let model = tokio::task::spawn_blocking(move || {
            let mut meta = ModelMetadata::from_file(&ModelMetadata::path_for(&model))?;
            if let Some(v) = version {
                meta.model_version = v;
            }
            ShadowModel::with_metadata(&model, meta, shadow)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        Self::with_model(listen, model).await
    }

    /// Binds `listen` for an already loaded model.
    pub async fn with_model(listen: SocketAddr, model: ShadowModel) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(listen).await?;
        Ok(ModelServer {
            listener,
            state: Arc::new(State {
                model,
                requests: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves HTTP/1.1 until `shutdown` completes; connections still open are then dropped.
    pub async fn run_until<F: Future<Output = ()>>(self, shutdown: F) -> Result<(), ServerError> {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => return Ok(()),
            };
            let state = Arc::clone(&self.state);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(handle(&state, req).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::POST, "/predict") => predict(state, req).await,
        (&Method::GET, "/health") => {
            let meta = state.model.metadata();
            json(
                StatusCode::OK,
                &serde_json::json!({"status": "ok", "model": meta.name, "model_version": meta.model_version}),
            )
        }
        (&Method::GET, "/metrics") => metrics(state),
        (_, "/predict" | "/health" | "/metrics") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    };
    if let Ok(mut counts) = state.requests.lock() {
        *counts.entry(response.status().as_u16()).or_default() += 1;
    }
    response
}

async fn predict(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let limit = body_limit(state);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large")
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "cannot read body"),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let input = ScoreInput::Encoded { body, content_type };
    match state.model.try_submit(input, move |r| {
        let _ = tx.send(r);
    }) {
        Ok(()) => {}
        Err(SubmitError::QueueFull) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "model busy, request dropped",
            )
        }
        Err(SubmitError::ShutDown) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        }
    }
    match rx.await {
        Ok(Ok(score)) => json(
            StatusCode::OK,
            &serde_json::json!({
                "prediction": score.label,
                "confidence": score.score,
                "model_version": state.model.metadata().model_version,
            }),
        ),
        Ok(Err(e)) => error(status_for(&e), &e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "shadow worker stopped"),
    }
}

/// The HTTP body limit: the image byte limit plus base64 (4/3) and multipart framing.
fn body_limit(state: &State) -> usize {
    state
        .model
        .decode_options()
        .limits
        .max_bytes
        .saturating_mul(4)
        / 3
        + 64 * 1024
}

fn status_for(e: &ScoreError) -> StatusCode {
    match e {
        ScoreError::Decode(DecodeError::TooLarge { .. } | DecodeError::TooManyPixels { .. })
        | ScoreError::Decode(DecodeError::DecoderLimit) => StatusCode::PAYLOAD_TOO_LARGE,
        ScoreError::Decode(DecodeError::UnsupportedContentType(_)) => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        ScoreError::Decode(_) | ScoreError::BadTensor { .. } => StatusCode::BAD_REQUEST,
        ScoreError::Submit(_) => StatusCode::SERVICE_UNAVAILABLE,
        ScoreError::Inference(_) | ScoreError::Cancelled => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn metrics(state: &State) -> Response<Full<Bytes>> {
    let mut text = String::new();
    state
        .model
        .metrics()
        .snapshot()
        .render_prometheus(&mut text);
    text.push_str(
        "# HELP augur_model_server_requests_total HTTP requests answered, by status code.\n\
         # TYPE augur_model_server_requests_total counter\n",
    );
    if let Ok(counts) = state.requests.lock() {
        for (code, n) in counts.iter() {
            text.push_str(&format!(
                "augur_model_server_requests_total{{code=\"{code}\"}} {n}\n"
            ));
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}
