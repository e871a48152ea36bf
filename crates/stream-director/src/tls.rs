//! HTTPS on the director's own port (`--tls-cert`, `--tls-key`), with the
//! gateway's rules from `stream_common::tls`: the same settings, the pair
//! re-read when its files change (a bad pair refused, the old one kept),
//! failures counted by reason in `director_tls_handshake_failures_total`
//! and logged at most once a second. The handshake must finish within the
//! header timeout; a plain-HTTP request on this port is told so in one line
//! or redirected (`serve.rs`). The director carries no video, so its
//! handshakes are driven by tokio-rustls rather than by the gateway's own
//! loop; rustls bounds what one unfinished handshake may buffer, and at most
//! `--max-pending-handshakes` run at once (more are refused as `busy`), so
//! abandoned handshakes hold bounded memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use stream_common::tls::{ServerTls, TlsError, is_plain_http, reason};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A connection's byte stream, plain or TLS, either side of the director.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed [`Io`], what requests are read from and relayed over.
pub type Conn = Box<dyn Io>;

pub struct Tls {
    server: Arc<ServerTls>,
    acceptor: TlsAcceptor,
    /// One permit per handshake in progress.
    pending: Semaphore,
}

/// How a connection on the TLS port came out of its first bytes.
pub enum Accepted {
    Tls(Conn),
    /// It spoke plain HTTP: answer it in one line, or redirect it.
    PlainHttp(TcpStream),
    Failed,
}

impl Tls {
    /// Loads the pair (a start-up error when it does not load) and registers
    /// the failure counter.
    pub fn new(
        cert: PathBuf,
        key: PathBuf,
        max_pending: usize,
        registry: &Registry,
    ) -> Result<Arc<Tls>, TlsError> {
        let server = Arc::new(ServerTls::new(cert, key, registry)?);
        let acceptor = TlsAcceptor::from(server.config());
        Ok(Arc::new(Tls {
            server,
            acceptor,
            pending: Semaphore::new(max_pending),
        }))
    }

    /// Runs the handshake of a new connection within `deadline`.
    pub async fn accept(&self, tcp: TcpStream, peer: SocketAddr, deadline: Duration) -> Accepted {
        let reason = match tokio::time::timeout(deadline, self.handshake(tcp)).await {
            Ok(Ok(accepted)) => return accepted,
            Ok(Err(reason)) => reason,
            Err(_) => "timeout",
        };
        self.server.failed(peer, reason);
        Accepted::Failed
    }

    async fn handshake(&self, tcp: TcpStream) -> Result<Accepted, &'static str> {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(0) | Err(_) => return Err("closed"),
            Ok(_) => {}
        }
        if is_plain_http(first[0]) {
            self.server.count("plain_http");
            return Ok(Accepted::PlainHttp(tcp));
        }
        let _pending = self.pending.try_acquire().map_err(|_| "busy")?;
        match self.acceptor.accept(tcp).await {
            Ok(s) => Ok(Accepted::Tls(Box::new(s))),
            Err(e) => Err(io_reason(&e)),
        }
    }

    /// Re-reads the pair whenever either file changes, until `stop`.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        self.server.clone().watch(every, stop).await
    }
}

/// The reason a handshake that failed with `e` is counted under.
fn io_reason(e: &std::io::Error) -> &'static str {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return reason(tls);
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "closed",
        _ => "io",
    }
}
