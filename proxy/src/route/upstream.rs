//! How augur speaks to a cluster's endpoints: HTTP/1.1 or HTTP/2, in plaintext or TLS, as the
//! DestinationRule (`trafficPolicy.tls`, `connectionPool.http.h2UpgradePolicy`,
//! `useClientProtocol`) and the ServiceEntry port protocol (`HTTP2`, `GRPC`) say.
//!
//! Certificates are read when the policy is compiled, so a missing or malformed file rejects the
//! policy set (the last good one keeps serving) instead of failing requests one by one.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use augur_policies::{ClientTls, TlsMode};
use pingora::prelude::HttpPeer;
use pingora::protocols::tls::CaType;
use pingora::protocols::ALPN;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Concurrent streams augur opens on one HTTP/2 upstream connection before it opens another.
const MAX_H2_STREAMS: usize = 100;

/// The HTTP version spoken to the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// HTTP/1.1 (Istio's default for an HTTP port).
    #[default]
    Http1,
    /// HTTP/2: prior knowledge in plaintext, ALPN `h2` over TLS.
    Http2,
    /// Whatever the client spoke (`useClientProtocol: true`).
    Client,
}

/// A certificate file augur could not use.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read or holds no PEM object of the expected kind.
    #[error("{field} {path}: {message}")]
    File {
        /// The DestinationRule field that names the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The client certificate and key do not form a usable pair.
    #[error("clientCertificate {cert} / privateKey {key}: {message}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        message: String,
    },
}

/// Upstream TLS for one cluster (DestinationRule `tls` mode SIMPLE or MUTUAL).
pub struct UpstreamTls {
    sni: Option<String>,
    verify: bool,
    ca: Option<Arc<CaType>>,
    client: Option<Arc<CertKey>>,
    /// Separates the connection pools of clusters with different trust or identity.
    pool_key: u64,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl UpstreamTls {
    /// Reads the certificates `tls` names. `None` for plaintext: DISABLE, and ISTIO_MUTUAL,
    /// which needs the mesh's own certificate authority (augur warns and sends plaintext).
    pub fn load(tls: &ClientTls) -> Result<Option<Self>, TlsError> {
        match tls.mode {
            TlsMode::Disable => return Ok(None),
            TlsMode::IstioMutual => {
                tracing::warn!(
                    "tls mode ISTIO_MUTUAL needs Istio's certificate authority; augur sends plaintext"
                );
                return Ok(None);
            }
            TlsMode::Simple | TlsMode::Mutual => {}
        }
        let mut pool_key = std::collections::hash_map::DefaultHasher::new();
        let ca = match &tls.ca_certificates {
            Some(path) => {
                let certs = read_certs("caCertificates", path)?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in &certs {
                    roots.add(cert.clone()).map_err(|e| TlsError::File {
                        field: "caCertificates",
                        path: path.into(),
                        message: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                certs.iter().for_each(|c| c.as_ref().hash(&mut pool_key));
                let wrapped: Vec<WrappedX509> = certs
                    .into_iter()
                    .map(|c| WrappedX509::new(c.as_ref().to_vec(), parse_x509))
                    .collect();
                Some(Arc::from(wrapped.into_boxed_slice()))
            }
            None => None,
        };
        let client = match (tls.mode, &tls.client_certificate, &tls.private_key) {
            (TlsMode::Mutual, Some(cert), Some(key)) => {
                let pair = read_pair(Path::new(cert), Path::new(key))?;
                pair.0.iter().for_each(|c| c.hash(&mut pool_key));
                Some(Arc::new(CertKey::new(pair.0, pair.1)))
            }
            _ => None,
        };
        tls.sni.hash(&mut pool_key);
        tls.insecure_skip_verify.hash(&mut pool_key);
        Ok(Some(Self {
            sni: tls.sni.clone(),
            verify: !tls.insecure_skip_verify,
            ca,
            client,
            pool_key: pool_key.finish(),
        }))
    }
}

/// How to reach a cluster's endpoints.
#[derive(Debug, Default)]
pub struct Upstream {
    /// HTTP version.
    pub version: HttpVersion,
    /// TLS, when the DestinationRule asks for it.
    pub tls: Option<UpstreamTls>,
}

impl Upstream {
    /// Whether requests go out over HTTP/2 (`client_h2`: the client spoke HTTP/2).
    pub fn speaks_h2(&self, client_h2: bool) -> bool {
        match self.version {
            HttpVersion::Http1 => false,
            HttpVersion::Http2 => true,
            HttpVersion::Client => client_h2,
        }
    }

    /// A peer for `endpoint` of the cluster serving `host`. `client_h2` says whether the
    /// client spoke HTTP/2 (for `useClientProtocol`).
    pub fn peer(&self, endpoint: std::net::SocketAddr, host: &str, client_h2: bool) -> HttpPeer {
        let h2 = self.speaks_h2(client_h2);
        let mut peer = match &self.tls {
            None => HttpPeer::new(endpoint, false, String::new()),
            Some(tls) => {
                // Istio's auto SNI: the destination host unless the rule names one.
                let sni = tls.sni.clone().unwrap_or_else(|| host.to_owned());
                let mut peer = HttpPeer::new(endpoint, true, sni);
                peer.options.verify_cert = tls.verify;
                peer.options.verify_hostname = tls.verify;
                peer.options.ca = tls.ca.clone();
                peer.client_cert_key = tls.client.clone();
                peer.group_key = tls.pool_key;
                peer
            }
        };
        if h2 {
            peer.options.alpn = ALPN::H2;
            peer.options.max_h2_streams = MAX_H2_STREAMS;
        }
        peer
    }
}

fn read_certs(field: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |message: String| TlsError::File {
        field,
        path: path.into(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Reads a client certificate chain and its key, and checks with rustls that they match.
fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<Vec<u8>>, Vec<u8>), TlsError> {
    let chain = read_certs("clientCertificate", &cert.to_string_lossy())?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
        field: "privateKey",
        path: key.into(),
        message: e.to_string(),
    })?;
    let der = private.secret_der().to_vec();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_client_auth_cert(chain.clone(), private)
        })
        .map_err(|e| TlsError::Pair {
            cert: cert.into(),
            key: key.into(),
            message: e.to_string(),
        })?;
    Ok((chain.iter().map(|c| c.as_ref().to_vec()).collect(), der))
}
