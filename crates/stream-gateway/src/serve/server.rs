//! Serving threads. `--threads` threads each run their own single-threaded
//! runtime, their own accept loop on a shared listening socket, and their
//! own fan-out shard, like that many independent servers that share the
//! streams' latest-frame slots and nothing else on the hot path: each thread
//! polls only its own sockets, and a thread busy writing simply accepts less
//! while the others take new connections.
//!
//! Every accepted socket gets TCP_NODELAY, a bounded send buffer and unsent
//! limit (a slow viewer skips frames instead of lagging), keepalive and a
//! user timeout (a vanished viewer is found). Shutdown stops accepting,
//! ends every stream, and gives the rest a bounded time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
use stream_common::ratelimit::LogEvery;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::serve::connection::{self, Shared};
use crate::serve::handover::{self, ShardInbox};
use crate::serve::wire::Wire;

pub struct Settings {
    pub viewer_timeout: Duration,
    pub unsent_limit: u32,
    pub send_buffer: usize,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            viewer_timeout: c.viewer_timeout,
            unsent_limit: c.unsent_limit,
            send_buffer: c.send_buffer,
        }
    }
}

/// Binds the listening socket, so a taken port is a clear start-up error.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn tune(stream: &TcpStream, settings: &Settings) {
    let sock = socket2::SockRef::from(stream);
    let _ = sock.set_tcp_nodelay(true);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if settings.unsent_limit > 0 {
        let _ = sock.set_tcp_notsent_lowat(settings.unsent_limit);
    }
    if settings.send_buffer > 0 {
        let _ = sock.set_send_buffer_size(settings.send_buffer);
    }
    // A viewer that vanished without closing (half-open) is found by keepalive
    // probes and TCP_USER_TIMEOUT even while nothing is being written.
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    #[cfg(target_os = "linux")]
    let _ = sock.set_tcp_user_timeout(Some(settings.viewer_timeout));
}

/// Starts one serving thread per shard inbox; returns when all have ended
/// (after `shutdown`).
pub async fn run(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    inboxes: Vec<ShardInbox>,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let mut threads = Vec::new();
    for (index, inbox) in inboxes.into_iter().enumerate() {
        let listener = listener.try_clone()?;
        let (shared, settings, shutdown) = (shared.clone(), settings.clone(), shutdown.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("serve-{index}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(rt) => rt.block_on(thread_main(
                        index, listener, shared, inbox, settings, shutdown,
                    )),
                    Err(e) => {
                        tracing::error!(thread = index, error = %e, "cannot start a serving thread")
                    }
                }
                let _ = done_tx.send(());
            })?;
        threads.push(done_rx);
    }
    drop(listener);
    for done in threads {
        let _ = done.await;
    }
    Ok(())
}

async fn thread_main(
    index: usize,
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    inbox: ShardInbox,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(thread = index, error = %e, "cannot register the listening socket");
            return;
        }
    };
    let shard = tokio::spawn(handover::run_shard(inbox, shutdown.clone()));
    let connections = TaskTracker::new();
    let mut accept_log = LogEvery::new(Duration::from_secs(5));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if let Some(folded) = accept_log.check(std::time::Instant::now()) {
                        tracing::warn!(error = %e, repeats = folded, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tune(&stream, &settings);
        connections.spawn(connection::serve(stream, peer, shared.clone(), index));
    }
    drop(listener);
    connections.close();
    // Streams end on the same token at once; replies in flight get a moment.
    if tokio::time::timeout(Duration::from_millis(1500), connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            thread = index,
            connections = connections.len(),
            "some connections did not close in time"
        );
    }
    let _ = shard.await;
}

/// The `--redirect-http` port: every request on it is answered with a `308`
/// to the same path on the HTTPS port, its head read with the same limits
/// and budget as any other, until `shutdown`.
pub async fn redirect_http(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed on the redirect port");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        connections
            .spawn(async move { connection::plain_on_tls_port(Wire::Plain(tcp), &shared).await });
    }
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
}
