//! The event stage's own PUB socket: every event message goes out here,
//! prepared once. Gateways and recorders subscribe to `e/<name>/`.
//!
//! One small module on purpose: a plain zmq.rs PUB socket for now (events
//! are few and small but for their snapshot); the byte-bounded PUB server
//! the producer uses replaces it here, in this file alone, once it is shared.

use bytes::Bytes;
use tokio::sync::mpsc;
use zeromq::{Socket, SocketSend, ZmqMessage};

/// Messages ready to send, as their parts.
pub type Outgoing = Vec<Bytes>;

/// Binds `endpoint` (so a taken port fails at start-up).
pub async fn bind(endpoint: &str) -> zeromq::ZmqResult<zeromq::PubSocket> {
    let mut socket = zeromq::PubSocket::new();
    socket.bind(endpoint).await?;
    Ok(socket)
}

/// Sends what the stage prepares until the stage stops (after shutdown it
/// still sends the ends of the events that were running).
pub async fn run(mut socket: zeromq::PubSocket, mut outgoing: mpsc::Receiver<Outgoing>) {
    while let Some(parts) = outgoing.recv().await {
        let Ok(message) = ZmqMessage::try_from(parts) else {
            continue;
        };
        if let Err(e) = socket.send(message).await {
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }
    let _ = socket.close().await;
}
