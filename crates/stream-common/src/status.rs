//! The small HTTP side door of the services that serve no video (the
//! producer, the detector): `GET /healthz` and `GET /metrics`, nothing else.
//! The gateway answers these on its own port with everything else.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;

/// Binds `addr` (so a bad address fails at start-up) and serves `/healthz`
/// (200 `ok`, or 503 with the reason `unhealthy` gives) and `/metrics`
/// (what `render` returns, Prometheus text) until `shutdown`.
pub async fn serve<H, R>(
    addr: SocketAddr,
    unhealthy: H,
    render: R,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>>
where
    H: Fn() -> Option<&'static str> + Clone + Send + Sync + 'static,
    R: Fn() -> String + Clone + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let health = warp::path!("healthz").map(move || match unhealthy() {
        None => warp::reply::with_status(String::from("ok\n"), StatusCode::OK),
        Some(why) => warp::reply::with_status(format!("{why}\n"), StatusCode::SERVICE_UNAVAILABLE),
    });
    let prom = warp::path!("metrics").map(move || {
        warp::reply::with_header(render(), "content-type", crate::metrics::CONTENT_TYPE)
    });
    let routes = warp::get().and(health.or(prom));
    Ok(tokio::spawn(async move {
        warp::serve(routes)
            .incoming(listener)
            .graceful(async move { shutdown.cancelled().await })
            .run()
            .await;
    }))
}
