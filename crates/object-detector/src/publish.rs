//! The detector's publishing socket: every detections message (and, with
//! `--annotate`, every annotated frame and its previews) goes out here,
//! prepared once by the inference thread. Gateways subscribe to
//! `d/<name>/` (and `f/`, `p/` for the annotated streams).
//!
//! It is the bus's own PUB server (`frame_bus::publisher`), the producer's:
//! each subscriber's queue is bounded in bytes (`--subscriber-queue-bytes`;
//! the oldest messages go first), a subscriber that takes longer than
//! `--subscriber-timeout` to accept one is dropped, and with a bus key only
//! subscribers that prove the key get anything.

use frame_bus::publisher::{BindError, BusMetrics, BusSettings, PubServer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages ready to send, as their parts.
pub type Outgoing = Vec<bytes::Bytes>;

/// Binds `endpoint` (so a taken port fails at start-up).
pub fn bind(
    endpoint: &str,
    settings: BusSettings,
    metrics: BusMetrics,
) -> Result<PubServer, BindError> {
    let server = PubServer::bind(endpoint, settings, metrics)?;
    tracing::info!(endpoint = %server.local_endpoint(), "PUB socket bound");
    Ok(server)
}

/// Sends what the inference thread prepares until shutdown or until it
/// stops. Sending never blocks: each subscriber has its own bounded queue.
pub async fn run(
    server: PubServer,
    mut outgoing: mpsc::Receiver<Outgoing>,
    shutdown: CancellationToken,
) {
    loop {
        let parts = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = outgoing.recv() => match p {
                Some(p) => p,
                None => break,
            },
        };
        server.send(&parts);
    }
    drop(server);
}
