//! Whom a TLS connection trusts (feature `tls`): the platform's root
//! certificates, or a CA you give (a private CA, a test certificate).

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;

use crate::ClientError;

/// The certificates a `tls://` or `wss://` server must chain to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustedRoots {
    /// The operating system's store (rustls-native-certs): what a
    /// browser on the same machine would trust. The default.
    #[default]
    Platform,
    /// Only these CA certificates, PEM-encoded (one or more blocks).
    CaPem(Vec<u8>),
}

/// A connector for these roots, TLS 1.2 and 1.3, with the *ring* provider.
pub(crate) fn connector(roots: &TrustedRoots) -> Result<TlsConnector, ClientError> {
    let mut store = RootCertStore::empty();
    match roots {
        TrustedRoots::Platform => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a platform certificate could not be read");
            }
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ClientError::Tls(
                    "no trusted root certificates found on this system; give a CA with \
                     ClientOptions::tls_roots"
                        .into(),
                ));
            }
        }
        TrustedRoots::CaPem(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| ClientError::Tls(format!("the CA is not valid PEM: {e}")))?;
                store.add(cert).map_err(|e| {
                    ClientError::Tls(format!("the CA certificate is unusable: {e}"))
                })?;
            }
            if store.is_empty() {
                return Err(ClientError::Tls("the CA PEM holds no certificate".into()));
            }
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
