//! The server side of HTTPS that the gateway and the director share, so both
//! load, check, rotate and refuse certificates the same way and count
//! handshake failures under the same reasons: the PEM pair loaded and
//! checked ([`load`]), the resolver new handshakes take the current pair
//! from and the file watcher that replaces it ([`ServerTls::watch`]), the
//! `ServerConfig` (TLS 1.2 and 1.3, ALPN `http/1.1`, the ring provider), the
//! failure labels ([`reason`]) with their counter and bounded log. How a connection's handshake is driven stays with each
//! binary (the gateway's is tied to its head budget and wire); `redirect`
//! is the plain-HTTP → HTTPS redirect and the HSTS header both serve;
//! `health` is `--healthcheck` over HTTPS.
//!
//! The crypto provider is ring: it builds with a C compiler alone, while
//! aws-lc-rs needs cmake and a much longer build.

pub mod health;
pub mod redirect;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntCounterVec, Opts, Registry};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Error, PeerIncompatible, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::ratelimit::LogEvery;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: no certificate in it")]
    NoCertificate(PathBuf),
    #[error("{0}: not PEM: {1}")]
    Pem(PathBuf, rustls_pki_types::pem::Error),
    #[error("certificate and key: {0}")]
    Pair(Error),
    #[error("TLS settings: {0}")]
    Config(Error),
    #[error("registering the TLS metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The crypto provider every TLS session of the project uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file (a chain, or a CA bundle), in order.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::Read(path.into(), e))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(path.into(), e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.into()));
    }
    Ok(chain)
}

/// Reads and checks a PEM certificate chain and its private key.
pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert)?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError::Read(key.into(), e))?;
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem(key.into(), e))?;
    let certified = CertifiedKey::from_der(chain, key_der, provider).map_err(TlsError::Pair)?;
    certified.keys_match().map_err(TlsError::Pair)?;
    Ok(certified)
}

/// The pair new handshakes get; replaced on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The TLS side of a listening port: its settings, the reloading pair, and
/// the handshake failures counted (`{prefix}_tls_handshake_failures_total`,
/// the prefix being the registry's) and logged at most once a second.
pub struct ServerTls {
    config: Arc<ServerConfig>,
    current: Arc<Current>,
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
    failures: IntCounterVec,
    log: Mutex<LogEvery>,
}

impl ServerTls {
    /// Loads the pair (an error when it does not load) and registers the
    /// failure counter in `registry`.
    pub fn new(cert: PathBuf, key: PathBuf, registry: &Registry) -> Result<ServerTls, TlsError> {
        let provider = provider();
        let certified = load(&cert, &key, &provider)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(certified))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let failures = IntCounterVec::new(
            Opts::new(
                "tls_handshake_failures_total",
                "TLS handshakes that failed, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        Ok(ServerTls {
            config: Arc::new(config),
            current,
            provider,
            cert,
            key,
            failures,
            log: Mutex::new(LogEvery::new(Duration::from_secs(1))),
        })
    }

    /// Lets sessions' keys be taken out of rustls, for kernel TLS; only for
    /// a service that hands them to the kernel.
    pub fn allow_secret_extraction(&mut self) {
        Arc::make_mut(&mut self.config).enable_secret_extraction = true;
    }

    /// The settings every handshake on this port starts from.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Counts a failure without logging it (a plain-HTTP request, answered).
    pub fn count(&self, reason: &'static str) {
        self.failures.with_label_values(&[reason]).inc();
    }

    /// Counts a failed handshake of `peer` and logs it, at most once a second.
    pub fn failed(&self, peer: SocketAddr, reason: &'static str) {
        self.count(reason);
        let folded = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(Instant::now());
        if let Some(repeats) = folded {
            tracing::info!(%peer, reason, repeats, "TLS handshake failed");
        }
    }

    /// Re-reads the pair whenever either file changes, until `stop`; a pair
    /// that does not load is refused with one log line and the old one kept.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut seen = (stamp(&self.cert), stamp(&self.key));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = (stamp(&self.cert), stamp(&self.key));
            if now == seen {
                continue;
            }
            seen = now;
            match load(&self.cert, &self.key, &self.provider) {
                Ok(certified) => {
                    *self.current.0.write().unwrap_or_else(|e| e.into_inner()) =
                        Arc::new(certified);
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "TLS certificate or key changed but does not load; keeping the one in use"
                ),
            }
        }
    }
}

/// Whether a connection's first byte is the start of a plain-HTTP request
/// (a method name) rather than a TLS record (0x16 for a handshake).
pub fn is_plain_http(first: u8) -> bool {
    first.is_ascii_uppercase()
}

/// The label a handshake error is counted under.
pub fn reason(e: &Error) -> &'static str {
    match e {
        Error::PeerIncompatible(p) => match p {
            PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::ServerDoesNotSupportTls12Or13
            // What a TLS 1.0 or 1.1 client's hello lacks first.
            | PeerIncompatible::SignatureAlgorithmsExtensionRequired => "protocol_version",
            PeerIncompatible::NoCipherSuitesInCommon => "no_shared_cipher",
            _ => "incompatible",
        },
        Error::InvalidMessage(_) => "bad_message",
        Error::AlertReceived(_) => "alert_received",
        Error::PeerMisbehaved(_) => "misbehaved",
        Error::NoApplicationProtocol => "no_alpn",
        _ => "other",
    }
}
