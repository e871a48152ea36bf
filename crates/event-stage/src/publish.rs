//! The event stage's own PUB socket: every event message goes out here,
//! prepared once. Gateways and recorders subscribe to `e/<name>/`.
//!
//! Each message's header is the stage's own ([`Headers`]): the stream and
//! the snapshot frame's size, but this stage run's `producer_id`, a `seq`
//! that grows with every message and the time of sending, so subscribers
//! with a bus key (which refuse a `seq` that does not grow per producer
//! run, stream and kind, and a capture time over 30 s off) take an update
//! and an end that share a snapshot, and the end of a long event.
//!
//! One small module on purpose: a plain zmq.rs PUB socket for now (events
//! are few and small but for their snapshot); the byte-bounded PUB server
//! the producer uses replaces it here, in this file alone, once it is shared.

use bytes::Bytes;
use frame_wire::FrameHeader;
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

/// The headers of this stage run's event messages.
pub struct Headers {
    producer_id: u64,
    seq: u64,
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            producer_id: run_id(),
            seq: 0,
        }
    }
}

impl Headers {
    /// The next message's header: `frame`'s stream and size (the snapshot's
    /// frame, or the last detections'), our run, seq and clock.
    pub fn next(&mut self, frame: &FrameHeader) -> FrameHeader {
        self.seq += 1;
        FrameHeader {
            version: frame_wire::KIND_VERSION,
            seq: self.seq,
            capture_ts_ns: stream_common::unix_now_ns(),
            width: frame.width,
            height: frame.height,
            producer_id: self.producer_id,
            stream: frame.stream.clone(),
        }
    }
}

/// A per-process id from the clock and the pid; it only has to differ
/// between restarts, not be unguessable.
fn run_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(stream_common::unix_now_ns());
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_header_is_newer_than_the_last_whatever_frame_it_names() {
        let frame = FrameHeader {
            version: frame_wire::KIND_VERSION,
            seq: 7,
            capture_ts_ns: 1,
            width: 640,
            height: 480,
            producer_id: 99,
            stream: "cam1".into(),
        };
        let mut headers = Headers::default();
        let a = headers.next(&frame);
        let b = headers.next(&frame);
        assert!(b.seq > a.seq);
        assert_eq!(a.producer_id, b.producer_id);
        assert_ne!(a.producer_id, frame.producer_id);
        assert_eq!((b.width, b.height, b.stream.as_str()), (640, 480, "cam1"));
        assert!(b.capture_ts_ns > frame.capture_ts_ns);
    }
}
