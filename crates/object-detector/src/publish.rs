//! The detector's own ZeroMQ PUB socket: every detections message (and,
//! with `--annotate`, every annotated frame) goes out here, prepared once
//! by the inference thread. Gateways subscribe to `d/<name>/`.
//!
//! zmq.rs's PUB socket queues per subscriber without a byte limit; what
//! goes through it here is small (a few hundred bytes per analysed frame,
//! at `--detect-fps`), unlike the producer's video, which has its own bus.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketSend, ZmqMessage};

/// Messages ready to send, as their parts.
pub type Outgoing = Vec<Bytes>;

/// Binds `endpoint` (so a taken port fails at start-up).
pub async fn bind(endpoint: &str) -> zeromq::ZmqResult<zeromq::PubSocket> {
    let mut socket = zeromq::PubSocket::new();
    socket.bind(endpoint).await?;
    Ok(socket)
}

/// Sends what the inference thread prepares until shutdown or until it stops.
pub async fn run(
    mut socket: zeromq::PubSocket,
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
        let Ok(message) = ZmqMessage::try_from(parts) else {
            continue;
        };
        if let Err(e) = socket.send(message).await {
            tracing::warn!(error = %e, "publishing failed");
        }
    }
    let _ = socket.close().await;
}
