//! Downstream TLS settings beyond pingora's defaults: mutual TLS on the HTTPS listeners.
//!
//! pingora's rustls listener already allows only TLS 1.2 and 1.3 with rustls' default suites
//! (AEAD only: AES-GCM and ChaCha20-Poly1305, ECDHE key exchange; no CBC, RC4, 3DES or static
//! RSA). This module adds client-certificate verification against a CA bundle
//! (`--tls-client-ca`), as Istio's `MUTUAL` server mode does.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

/// A verifier that requires a client certificate chaining to one of the CAs in `ca_file`.
pub fn client_verifier(ca_file: &Path) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("cannot read --tls-client-ca {}", ca_file.display()))?;
    for cert in certs {
        let cert =
            cert.with_context(|| format!("--tls-client-ca {}: bad PEM", ca_file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("--tls-client-ca {}: bad CA", ca_file.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "--tls-client-ca {}: no certificate found",
        ca_file.display()
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .with_context(|| format!("--tls-client-ca {}", ca_file.display()))
}
