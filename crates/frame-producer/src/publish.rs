//! The PUB side of the wire: one socket, one message per frame,
//! `[stream][header][jpeg]` as `frame-wire` defines it.

use bytes::Bytes;
use frame_wire::{FrameHeader, Limits, VERSION};
use zeromq::{Socket, SocketSend, ZmqMessage};

pub struct Publisher {
    socket: zeromq::PubSocket,
    stream: String,
    producer_id: u64,
    seq: u64,
    limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("frame refused by the wire format: {0}")]
    Wire(#[from] frame_wire::WireError),
    #[error("zeromq: {0}")]
    Zmq(#[from] zeromq::ZmqError),
}

impl Publisher {
    pub async fn bind(endpoint: &str, stream: &str) -> Result<Self, PublishError> {
        let mut socket = zeromq::PubSocket::new();
        let bound = socket.bind(endpoint).await?;
        tracing::info!(endpoint = %bound, "PUB socket bound");
        Ok(Publisher {
            socket,
            stream: stream.to_string(),
            producer_id: random_id(),
            seq: 0,
            limits: Limits::default(),
        })
    }

    pub fn set_max_frame_bytes(&mut self, max: usize) {
        self.limits.max_jpeg_bytes = max;
    }

    pub fn producer_id(&self) -> u64 {
        self.producer_id
    }

    /// Publishes one JPEG. zmq.rs never blocks here: it queues per subscriber
    /// (and drops when there is none).
    pub async fn publish(
        &mut self,
        jpeg: Bytes,
        width: u32,
        height: u32,
        capture_ts_ns: u64,
    ) -> Result<u64, PublishError> {
        let header = FrameHeader {
            version: VERSION,
            seq: self.seq,
            capture_ts_ns,
            width,
            height,
            producer_id: self.producer_id,
            stream: self.stream.clone(),
        };
        let parts = frame_wire::encode(&header, jpeg, &self.limits)?;
        let message = ZmqMessage::try_from(parts.to_vec())
            .map_err(|_| zeromq::ZmqError::Other("empty message"))?;
        self.socket.send(message).await?;
        self.seq += 1;
        Ok(header.seq)
    }
}

/// A per-process id from the clock and the pid; it only has to differ between
/// restarts, not be unguessable.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(stream_common::unix_now_ns());
    h.write_u32(std::process::id());
    h.finish()
}
