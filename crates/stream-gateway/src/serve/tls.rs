//! HTTPS served by the gateway itself (`--tls-cert`, `--tls-key`), so no
//! proxy has to read and rewrite every viewer's bytes. The handshake is part
//! of admission: it has the header timeout as its deadline, each unfinished
//! handshake holds its share of the budget unfinished request heads share
//! (`head.rs`), and every failure is counted by reason
//! (`gateway_tls_handshake_failures_total{reason}`) and logged at a bounded
//! rate. A plain-HTTP request on the TLS port gets a one-line answer.
//!
//! After the handshake the session is a [`Wire`] and takes the same path as
//! a plain connection, the fan-out writer included (`wire.rs`).
//!
//! The certificate and key are re-read when their files change (certbot
//! and cert-manager renew in place): new connections get the new pair, open
//! ones keep theirs; a pair that does not load or does not match is refused
//! with one log line and the old one kept.
//!
//! Kernel TLS (`ktls.rs`): where the kernel offers it, streaming viewers'
//! sessions move their sending side into the kernel after the request.
//!
//! The crypto provider is ring: it builds with a C compiler alone, while
//! aws-lc-rs needs cmake and a much longer build.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntCounterVec, Opts, Registry};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{Error, PeerIncompatible, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use stream_common::ratelimit::LogEvery;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::serve::head::HeadBudget;
use crate::serve::ktls::{KernelTls, KernelTlsMode};
use crate::serve::wire::{Wire, flush_tls, read_tls};

/// Budget bytes an unfinished handshake holds besides what it has received.
const HANDSHAKE_COST: usize = 16 * 1024;
/// Most bytes a client may send before its handshake is done.
const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

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
}

/// Reads and checks a PEM certificate chain and its private key.
pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError::Read(cert.into(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError::Read(key.into(), e))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(cert.into(), e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.into()));
    }
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

/// The TLS side of a listening port, shared by every serving thread.
pub struct Tls {
    config: Arc<ServerConfig>,
    current: Arc<Current>,
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
    failures: IntCounterVec,
    log: Mutex<LogEvery>,
    kernel: Option<KernelTls>,
}

/// How a connection on the TLS port came out of its first bytes.
pub enum Accepted {
    Tls(Wire),
    /// It spoke plain HTTP: answer it in one line.
    PlainHttp(TcpStream),
    Failed,
}

impl Tls {
    /// Loads the pair (a start-up error when it does not load) and registers
    /// the failure counter.
    pub fn new(
        cert: PathBuf,
        key: PathBuf,
        kernel: KernelTlsMode,
        registry: &Registry,
    ) -> anyhow::Result<Arc<Tls>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = load(&cert, &key, &provider)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(certified))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let kernel = KernelTls::new(kernel, registry)?;
        // The keys leave rustls only for the kernel, and only then.
        config.enable_secret_extraction = kernel.is_some();
        let failures = IntCounterVec::new(
            Opts::new(
                "tls_handshake_failures_total",
                "TLS handshakes that failed, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(failures.clone()))?;
        Ok(Arc::new(Tls {
            config: Arc::new(config),
            current,
            provider,
            cert,
            key,
            failures,
            log: Mutex::new(LogEvery::new(Duration::from_secs(1))),
            kernel,
        }))
    }

    /// Kernel TLS for streaming viewers, where the kernel offers it.
    pub fn kernel(&self) -> Option<&KernelTls> {
        self.kernel.as_ref()
    }

    /// Runs the handshake of a new connection within `deadline`.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
        budget: &HeadBudget,
        deadline: Duration,
    ) -> Accepted {
        let outcome = tokio::time::timeout(deadline, self.handshake(tcp, budget)).await;
        let reason = match outcome {
            Ok(Ok(accepted)) => return accepted,
            Ok(Err(reason)) => reason,
            Err(_) => "timeout",
        };
        self.failures.with_label_values(&[reason]).inc();
        let folded = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(Instant::now());
        if let Some(repeats) = folded {
            tracing::info!(%peer, reason, repeats, "TLS handshake failed");
        }
        Accepted::Failed
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        budget: &HeadBudget,
    ) -> Result<Accepted, &'static str> {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) | Err(_) => return Err("closed"),
            Ok(_) => {}
        }
        if first[0].is_ascii_uppercase() {
            self.failures.with_label_values(&["plain_http"]).inc();
            return Ok(Accepted::PlainHttp(tcp));
        }
        let mut held = budget.take(HANDSHAKE_COST).ok_or("busy")?;
        let mut conn = ServerConnection::new(self.config.clone()).map_err(|_| "other")?;
        let mut received = 0usize;
        loop {
            loop {
                match flush_tls(&mut conn, &tcp) {
                    Ok(true) => break,
                    Ok(false) => tcp.writable().await.map_err(|_| "io")?,
                    Err(_) => return Err("io"),
                }
            }
            if !conn.is_handshaking() {
                return Ok(Accepted::Tls(Wire::tls(tcp, conn)));
            }
            tcp.readable().await.map_err(|_| "io")?;
            match read_tls(&mut conn, &tcp) {
                Ok(0) => return Err("closed"),
                Ok(n) => received += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return Err("io"),
            }
            if received > MAX_HANDSHAKE_BYTES {
                return Err("too_large");
            }
            let want = HANDSHAKE_COST + received;
            if want > held.num_permits() {
                let more = budget.take(want - held.num_permits()).ok_or("busy")?;
                held.merge(more);
            }
            if let Err(e) = conn.process_new_packets() {
                let _ = flush_tls(&mut conn, &tcp);
                return Err(reason(&e));
            }
        }
    }

    /// Re-reads the pair whenever either file changes, until `stop`.
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

/// The label a handshake error is counted under.
fn reason(e: &Error) -> &'static str {
    match e {
        Error::PeerIncompatible(p) => match p {
            PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::ServerDoesNotSupportTls12Or13 => "protocol_version",
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
