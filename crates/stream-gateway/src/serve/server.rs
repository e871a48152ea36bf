//! Accepting connections. warp does the routing; the accept loop is ours so
//! that bind errors are clear, every socket gets TCP_NODELAY, a bounded send
//! buffer and keepalive, slow header senders time out, disconnects are
//! logged at debug (not as errors), and shutdown is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
use stream_common::ratelimit::LogEvery;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::serve::direct::{self, Rewind};
use crate::serve::routes::App;
use bytes::BytesMut;

pub struct Settings {
    pub viewer_timeout: Duration,
    pub unsent_limit: u32,
    pub send_buffer: usize,
    pub header_timeout: Duration,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            viewer_timeout: c.viewer_timeout,
            unsent_limit: c.unsent_limit,
            send_buffer: c.send_buffer,
            header_timeout: c.header_timeout,
        }
    }
}

/// Binds the listening socket with TCP_NODELAY (inherited by accepted sockets).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
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

/// Serves until `shutdown`, then gives open connections a bounded time to end.
pub async fn run(listener: TcpListener, app: App, settings: Settings, shutdown: CancellationToken) {
    let routes = app.routes();
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        // A small write buffer: hyper takes the next part from a viewer's
        // stream only once the previous one is nearly written, so a slow
        // viewer skips frames instead of queueing them. It also caps request
        // headers (larger ones get 431).
        .max_buf_size(32 * 1024)
        .writev(true);
    let mut accept_log = LogEvery::new(Duration::from_secs(5));
    let metrics = app.metrics.clone();

    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if accept_log.check(std::time::Instant::now()).is_some() {
                        tracing::warn!(error = %e, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tune(&stream, &settings);
        let (app, routes, builder, watcher) = (
            app.clone(),
            routes.clone(),
            builder.clone(),
            graceful.watcher(),
        );
        let header_timeout = settings.header_timeout;
        let metrics = metrics.clone();
        metrics.connections.inc();
        tokio::spawn(async move {
            let mut stream = stream;
            let mut head = BytesMut::with_capacity(2048);
            // The request head decides the path: a stream goes to its
            // fan-out writer, everything else to warp (with the bytes read).
            match tokio::time::timeout(header_timeout, direct::read_head(&mut stream, &mut head))
                .await
            {
                Err(_) => {
                    tracing::debug!(%peer, "request headers too slow; closing");
                    metrics.connections.dec();
                    return;
                }
                Ok(Err(_)) => {
                    metrics.connections.dec();
                    return;
                }
                Ok(Ok(complete)) => {
                    if complete && let Some(req) = direct::parse(&head) {
                        match app.try_direct(&req, stream) {
                            None => {
                                metrics.connections.dec();
                                return;
                            }
                            Some(s) => stream = s,
                        }
                    } else if head.is_empty() {
                        metrics.connections.dec();
                        return;
                    }
                }
            }
            let svc = TowerToHyperService::new(warp::service(routes));
            let conn = builder
                .serve_connection(TokioIo::new(Rewind::new(head, stream)), svc)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            metrics.connections.dec();
        });
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "no longer accepting; closing connections"
    );
    // Viewer streams end on the same token, so this is quick; bound it anyway.
    if tokio::time::timeout(Duration::from_millis(1500), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
}
