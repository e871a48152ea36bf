//! HTTPS served by the gateway itself (`--tls-cert`, `--tls-key`), so no
//! proxy has to read and rewrite every viewer's bytes. The certificate, its
//! rotation, the settings and the failure counter are `stream_common::tls`
//! (shared with the director); this file drives the handshake, which is
//! part of admission: it has the header timeout as its deadline, each
//! unfinished handshake holds its share of the budget unfinished request
//! heads share (`head.rs`), and every failure is counted by reason
//! (`gateway_tls_handshake_failures_total{reason}`) and logged at a bounded
//! rate. A plain-HTTP request on the TLS port gets a one-line answer, or
//! the redirect of `--redirect-http` (`connection.rs`; the plain-HTTP port
//! itself is `server::redirect_http`).
//!
//! After the handshake the session is a [`Wire`] and takes the same path as
//! a plain connection, the fan-out writer included (`wire.rs`).
//!
//! Kernel TLS: whether the kernel offers it is detected and logged; the
//! offload itself is not implemented, records are encrypted in user space.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use rustls::ServerConnection;
use stream_common::tls::{ServerTls, TlsError, is_plain_http, reason};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::serve::head::HeadBudget;
use crate::serve::wire::{Wire, flush_tls, read_tls};

/// Budget bytes an unfinished handshake holds besides what it has received.
const HANDSHAKE_COST: usize = 16 * 1024;
/// Most bytes a client may send before its handshake is done.
const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

/// The TLS side of the listening port, shared by every serving thread: the
/// shared settings, pair and counters (`stream_common::tls`), driven here.
pub struct Tls {
    server: Arc<ServerTls>,
}

/// How a connection on the TLS port came out of its first bytes.
pub enum Accepted {
    Tls(Wire),
    /// It spoke plain HTTP: answer it in one line, or redirect it.
    PlainHttp(TcpStream),
    Failed,
}

impl Tls {
    /// Loads the pair (a start-up error when it does not load) and registers
    /// the failure counter.
    pub fn new(cert: PathBuf, key: PathBuf, registry: &Registry) -> Result<Arc<Tls>, TlsError> {
        let server = Arc::new(ServerTls::new(cert, key, registry)?);
        tracing::info!(
            kernel_tls_available = stream_common::tls::kernel_tls_available(),
            "TLS records are encrypted in user space (kernel TLS offload is not implemented)"
        );
        Ok(Arc::new(Tls { server }))
    }

    /// Runs the handshake of a new connection within `deadline`.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        budget: &HeadBudget,
        deadline: Duration,
    ) -> Accepted {
        let outcome = tokio::time::timeout(deadline, self.handshake(tcp, budget)).await;
        let reason = match outcome {
            Ok(Ok(accepted)) => return accepted,
            Ok(Err(reason)) => reason,
            Err(_) => "timeout",
        };
        self.server.failed(peer, reason);
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
        if is_plain_http(first[0]) {
            self.server.count("plain_http");
            return Ok(Accepted::PlainHttp(tcp));
        }
        let mut held = budget.take(HANDSHAKE_COST).ok_or("busy")?;
        let mut conn = ServerConnection::new(self.server.config()).map_err(|_| "other")?;
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
        self.server.clone().watch(every, stop).await
    }
}
