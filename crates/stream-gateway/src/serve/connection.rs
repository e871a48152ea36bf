//! One HTTP connection, from accept to close or to the fan-out. Each request
//! goes forward through the same steps: read its head (`head.rs`), decide it
//! (`admission.rs`), then either hand the socket over to a writer
//! (`handover.rs`: a stream or a stream's events, and the connection ends
//! here, whichever request of the connection it was; the page's WebSocket
//! likewise) or answer it (a finite route by `routes.rs` through warp, or
//! admission's own reply) and read the next request of a kept-alive
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use stream_common::access::Cors;
use stream_common::route::Route;
use tokio::net::TcpStream;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::metrics::GatewayMetrics;
use crate::serve::admission::{Admission, Decision};
use crate::serve::handover::Fanout;
use crate::serve::head::{Head, HeadBudget, HeadError, HeadReader};
use crate::serve::response::{self, Common, text};
use crate::serve::tls::{Accepted, Tls};
use crate::serve::websocket;
use crate::serve::wire::Wire;

/// What every connection on every serving thread shares.
pub struct Shared {
    pub admission: Admission,
    pub fanout: Arc<Fanout>,
    pub routes: BoxedFilter<(Response,)>,
    pub metrics: Arc<GatewayMetrics>,
    pub instance: HeaderValue,
    pub budget: HeadBudget,
    pub header_timeout: Duration,
    /// Longest a client may take to read a finite reply.
    pub write_timeout: Duration,
    /// HTTPS on this port (`tls.rs`), or plain HTTP.
    pub tls: Option<Arc<Tls>>,
}

/// Counts a connection in `gateway_connections` until it is answered, closed
/// or handed to the fan-out.
struct Counted(Arc<GatewayMetrics>);

impl Counted {
    fn new(metrics: &Arc<GatewayMetrics>) -> Self {
        metrics.connections.inc();
        Counted(metrics.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

/// Serves the requests of one connection accepted on shard `shard`.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shard: usize) {
    let _counted = Counted::new(&shared.metrics);
    let socket = match &shared.tls {
        None => Wire::Plain(tcp),
        Some(tls) => match tls
            .accept(tcp, peer, &shared.budget, shared.header_timeout)
            .await
        {
            Accepted::Tls(wire) => wire,
            Accepted::PlainHttp(tcp) => {
                plain_on_tls_port(Wire::Plain(tcp), &shared).await;
                return;
            }
            Accepted::Failed => return,
        },
    };
    let mut reader = HeadReader::new(shared.budget.clone());
    loop {
        let head = match tokio::time::timeout(shared.header_timeout, reader.read(&socket)).await {
            Err(_) => {
                tracing::debug!(%peer, "request head too slow; closing");
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Ok(Some(head))) => head,
            Ok(Err(e)) => {
                refuse(socket, peer, e, &shared).await;
                return;
            }
        };
        let cors = shared.admission.cors(head.single(&header::ORIGIN));
        let common = Common {
            instance: &shared.instance,
            cors: &cors,
        };
        let keep_alive = head.keep_alive() && !head.has_body;
        let head_only = head.method == Method::HEAD;
        let reply = match shared.admission.decide(&head) {
            Decision::Stream(viewer) => {
                let bytes = response::stream_head(&common, true);
                shared.fanout.join(shard, socket, bytes, viewer);
                return;
            }
            Decision::Events(viewer) => {
                let bytes = response::events_head(&common);
                shared.fanout.join_events(shard, socket, bytes, viewer);
                return;
            }
            Decision::WebSocket(viewer) => {
                let bytes = websocket::upgrade_head(&common, &viewer.key);
                if write(&socket, &bytes, &shared).await.is_ok() {
                    shared.fanout.join_ws(shard, socket, viewer);
                }
                return;
            }
            Decision::StreamHead => {
                let bytes = response::stream_head(&common, false);
                let _ = write(&socket, &bytes, &shared).await;
                close(socket).await;
                return;
            }
            Decision::Reply(r) => r,
            Decision::Finite(r) => finite(&shared, head, r).await,
        };
        let bytes = response::finite(&common, reply, head_only, keep_alive);
        if write(&socket, &bytes, &shared).await.is_err() {
            return;
        }
        if !keep_alive {
            close(socket).await;
            return;
        }
    }
}

/// Answers a plain-HTTP request on the HTTPS port in one line.
async fn plain_on_tls_port(socket: Wire, shared: &Shared) {
    let mut reader = HeadReader::new(shared.budget.clone());
    let head = match tokio::time::timeout(shared.header_timeout, reader.read(&socket)).await {
        Ok(Ok(Some(head))) => head,
        _ => return,
    };
    let host = head
        .single(&header::HOST)
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("this-host");
    let body = format!("This port speaks HTTPS: use https://{host}{}\n", head.path);
    let cors = Cors::None;
    let common = Common {
        instance: &shared.instance,
        cors: &cors,
    };
    let bytes = response::finite(
        &common,
        text(StatusCode::BAD_REQUEST, body.trim_end()),
        false,
        false,
    );
    if write(&socket, &bytes, shared).await.is_ok() {
        close(socket).await;
    }
}

/// Answers a head that could not be read, when an answer is owed.
async fn refuse(socket: Wire, peer: SocketAddr, e: HeadError, shared: &Shared) {
    tracing::debug!(%peer, error = %e, "bad request head");
    let status = match e {
        HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        HeadError::Malformed(_) | HeadError::Duplicate(_) => StatusCode::BAD_REQUEST,
        HeadError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        HeadError::Truncated | HeadError::Io(_) => return,
    };
    let cors = Cors::None;
    let common = Common {
        instance: &shared.instance,
        cors: &cors,
    };
    let bytes = response::finite(&common, text(status, &e.to_string()), false, false);
    if write(&socket, &bytes, shared).await.is_ok() {
        close(socket).await;
    }
}

/// Has warp's service answer a finite route, the route carried with the request.
async fn finite(shared: &Shared, head: Head, route: Route) -> http::Response<Bytes> {
    let mut req = Request::new(Empty::<Bytes>::new());
    req.extensions_mut().insert(route);
    req.extensions_mut()
        .insert(crate::serve::routes::RawQuery(head.query.clone()));
    *req.method_mut() = head.method;
    *req.headers_mut() = head.headers;
    *req.version_mut() = if head.minor_version == 0 {
        http::Version::HTTP_10
    } else {
        http::Version::HTTP_11
    };
    let mut service = warp::service(shared.routes.clone());
    let Ok(response) = service.call(req).await;
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(b) => http::Response::from_parts(parts, b.to_bytes()),
        Err(e) => {
            tracing::warn!(error = %e, "a reply's body failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Writes a whole reply, giving a client that does not read a bounded time.
async fn write(socket: &Wire, bytes: &[u8], shared: &Shared) -> std::io::Result<()> {
    match tokio::time::timeout(shared.write_timeout, socket.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Ends a connection after a reply: half-close, then drain what the client
/// still sends for a moment, so closing with unread bytes does not reset the
/// connection before the client has read the reply.
async fn close(socket: Wire) {
    socket.shutdown_write().await;
    let tcp = socket.tcp();
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut left = 256 * 1024usize;
        while left > 0 {
            if tcp.readable().await.is_err() {
                break;
            }
            match tcp.try_read(&mut sink) {
                Ok(0) => break,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}
