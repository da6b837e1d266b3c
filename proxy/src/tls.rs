//! Downstream TLS settings beyond pingora's defaults: mutual TLS on the HTTPS listeners.
//!
//! pingora's rustls listener already allows only TLS 1.2 and 1.3 with rustls' default suites
//! (AEAD only: AES-GCM and ChaCha20-Poly1305, ECDHE key exchange; no CBC, RC4, 3DES or static
//! RSA). This module adds client-certificate verification against a CA bundle
//! (`--tls-client-ca`), as Istio's `MUTUAL` server mode does.

use std::path::Path;
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

/// Why `--tls-client-ca` cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
#[error("--tls-client-ca {}: {what}", path.display())]
pub struct TlsError {
    path: std::path::PathBuf,
    what: String,
}

/// A verifier that requires a client certificate chaining to one of the CAs in `ca_file`.
pub fn client_verifier(ca_file: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let fail = |what: String| TlsError {
        path: ca_file.to_owned(),
        what,
    };
    let mut roots = RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca_file).map_err(|e| fail(format!("cannot read it: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| fail(format!("bad PEM: {e}")))?;
        roots.add(cert).map_err(|e| fail(format!("bad CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate found".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| fail(e.to_string()))
}
