//! The HTTPS server: rustls in front of a hyper HTTP/1.1 service.
//!
//! Routes: `POST /inject` (AdmissionReview, as the MutatingWebhookConfiguration's
//! `clientConfig.service.path`), `GET /healthz` (probes). Bodies over 8 MiB are refused.
//! The certificate and key are read once at start (PEM files, e.g. a cert-manager secret
//! mounted as a volume); a rotated certificate needs a rollout restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::review::review;
use crate::inject::InjectConfig;

const MAX_BODY: usize = 8 << 20;

/// Builds the TLS configuration from PEM files (certificate chain, private key).
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Serves the webhook on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    cfg: Arc<InjectConfig>,
) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let cfg = Arc::clone(&cfg);
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
            };
            let service = service_fn(move |req| handle(req, Arc::clone(&cfg), peer));
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    cfg: Arc<InjectConfig>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>, json: bool| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        if json {
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        Ok(resp)
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, b"ok\n".to_vec(), false),
        (&Method::POST, "/inject") => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(body) => body.to_bytes(),
                Err(err) => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        err.to_string().into_bytes(),
                        false,
                    )
                }
            };
            let request: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(value) => value,
                Err(err) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        format!("invalid JSON: {err}\n").into_bytes(),
                        false,
                    )
                }
            };
            let response = review(&request, &cfg);
            tracing::info!(
                %peer,
                uid = %request.pointer("/request/uid").and_then(|u| u.as_str()).unwrap_or_default(),
                patched = response.pointer("/response/patch").is_some(),
                "admission review"
            );
            reply(
                StatusCode::OK,
                serde_json::to_vec(&response).unwrap_or_default(),
                true,
            )
        }
        _ => reply(StatusCode::NOT_FOUND, b"not found\n".to_vec(), false),
    }
}
