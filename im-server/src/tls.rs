//! TLS for every listener (feature `tls`; rustls with the *ring* provider,
//! no OpenSSL). One certificate chain and key, from PEM files, serves the
//! TCP listener, the WebSocket listener (`wss://`) and the HTTP API
//! (`https://`). The files are read again on [`crate::ServerHandle::reload_tls`]
//! (the binary calls it on SIGHUP) and whenever their modification time
//! changes (checked every [`TlsOptions::watch_interval`]); connections
//! already open keep the certificate they started with, new handshakes get
//! the new one. A reload that fails (a half-written file, a key that does
//! not match) keeps the old certificate and logs why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::ServerError;

/// Where the certificate and key are, and how often to look for new ones.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification times are checked; `None` turns
    /// the watch off (reloads then only come from
    /// [`crate::ServerHandle::reload_tls`]). Default 10 s.
    pub watch_interval: Option<Duration>,
}

impl TlsOptions {
    /// TLS from a certificate chain file and a key file, both PEM.
    pub fn from_pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsOptions {
            cert: cert.into(),
            key: key.into(),
            watch_interval: Some(Duration::from_secs(10)),
        }
    }

    /// Sets how often the files are checked for changes (`None`: never).
    pub fn watch_interval(mut self, every: Option<Duration>) -> Self {
        self.watch_interval = every;
        self
    }
}

/// The live TLS state of a server: the acceptor every listener uses and
/// the certificate it currently presents.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.resolver.options.cert)
            .finish_non_exhaustive()
    }
}

/// Hands every handshake the current certificate.
#[derive(Debug)]
struct Resolver {
    options: TlsOptions,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().key.clone())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the chain and key (the key must match the leaf).
fn load(options: &TlsOptions) -> Result<Loaded, ServerError> {
    let bad = |path: &Path, what: &dyn std::fmt::Display| {
        ServerError::Config(format!("TLS: {}: {what}", path.display()))
    };
    let stamps = (modified(&options.cert), modified(&options.key));
    let chain = CertificateDer::pem_file_iter(&options.cert)
        .map_err(|e| bad(&options.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&options.cert, &e))?;
    if chain.is_empty() {
        return Err(bad(&options.cert, &"no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_file(&options.key).map_err(|e| bad(&options.key, &e))?;
    let signer = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(&options.key, &e))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| {
        bad(
            &options.key,
            &format!("does not match the certificate: {e}"),
        )
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        stamps,
    })
}

impl Tls {
    /// Loads the files; fails if they are missing or do not match.
    pub(crate) fn new(options: TlsOptions) -> Result<Tls, ServerError> {
        let loaded = load(&options)?;
        let resolver = Arc::new(Resolver {
            options,
            current: RwLock::new(loaded),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Config(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // The HTTP API speaks HTTP/1.1; chat listeners ignore ALPN.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
        })
    }

    /// The server side of a handshake within `deadline`; `None` (logged
    /// at debug) when it fails: a plain client on a TLS port, an untrusted
    /// certificate, a client that says nothing.
    pub(crate) async fn accept(
        &self,
        stream: tokio::net::TcpStream,
        deadline: Duration,
        peer: &std::net::SocketAddr,
    ) -> Option<crate::transport::TlsTcp> {
        // Boxed: rustls's handshake state is large and short-lived.
        let handshake = Box::pin(self.acceptor.accept(stream));
        match tokio::time::timeout(deadline, handshake).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }

    /// Reads the files again; on success new handshakes present the new
    /// certificate, on failure the old one stays.
    pub(crate) fn reload(&self) -> Result<(), ServerError> {
        let loaded = load(&self.resolver.options)?;
        *self.resolver.current.write() = loaded;
        tracing::info!(cert = %self.resolver.options.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Whether either file changed since it was last loaded.
    fn changed(&self) -> bool {
        let o = &self.resolver.options;
        let now = (modified(&o.cert), modified(&o.key));
        now != self.resolver.current.read().stamps
    }

    /// Reloads whenever the files change, until `stop`.
    pub(crate) async fn watch(self, stop: CancellationToken) {
        let Some(every) = self.resolver.options.watch_interval else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.changed()
                && let Err(e) = self.reload()
            {
                tracing::warn!(error = %e, "TLS files changed but cannot be loaded; keeping the old certificate");
                // Do not retry the same broken files every tick.
                let o = &self.resolver.options;
                self.resolver.current.write().stamps = (modified(&o.cert), modified(&o.key));
            }
        }
    }
}
