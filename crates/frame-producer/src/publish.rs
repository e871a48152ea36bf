//! The PUB side of the wire: one socket carrying every camera of the
//! process, in wire version 3 (`docs/wire-format.md`): each camera's
//! full-rate frames on `f/<name>/`, its renditions on `r/<name>/<width>/`,
//! which renditions it has on `i/<name>/` and its previews on `p/<name>/`, as
//! `[topic][header][jpeg]`, or `[topic][header][jpeg][mac]` when a bus key is
//! set. Each camera publishes through its own [`StreamPublisher`] (its topics
//! and its `seq`s), all under the process's one `producer_id`, and asks it
//! whether anyone wants its full rate (or a rendition) before spending work
//! on a frame.

use std::sync::Arc;

use bytes::Bytes;
use frame_bus::publisher::{BindError, BusHandle, BusMetrics, BusSettings, PubServer};
use frame_wire::{FrameHeader, KIND_VERSION, Kind, Limits};

/// The bound socket, shared by every camera of the process.
pub struct Publisher {
    bus: Arc<PubServer>,
    keys: Option<frame_wire::auth::KeyStore>,
    producer_id: u64,
}

/// One camera's stream on the shared socket: its topics and its own `seq`
/// for frames and for previews.
pub struct StreamPublisher {
    bus: Arc<PubServer>,
    keys: Option<frame_wire::auth::KeyStore>,
    stream: String,
    /// `f/<name>/`, asked about before every frame.
    frame_topic: Bytes,
    producer_id: u64,
    seq: u64,
    /// Something of frame `seq` went out (see [`StreamPublisher::next_frame`]).
    sent_frame: bool,
    preview_seq: u64,
    limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("frame refused by the wire format: {0}")]
    Wire(#[from] frame_wire::WireError),
    #[error(transparent)]
    Bind(#[from] BindError),
}

impl Publisher {
    /// Binds the PUB socket (the bus's own, `frame_bus::publisher`): a
    /// vanished subscriber is dropped, one that stops reading costs at most
    /// `bus.queue_bytes`.
    pub async fn bind(
        endpoint: &str,
        bus: BusSettings,
        metrics: BusMetrics,
    ) -> Result<Self, PublishError> {
        let keys = bus.keys.clone();
        let server = PubServer::bind(endpoint, bus, metrics)?;
        tracing::info!(endpoint = %server.local_endpoint(), "PUB socket bound");
        Ok(Publisher {
            bus: Arc::new(server),
            keys,
            producer_id: random_id(),
        })
    }

    /// A publisher for stream (topic) `stream`, whose `seq` starts at 0.
    pub fn stream(&self, stream: &str) -> StreamPublisher {
        StreamPublisher {
            bus: self.bus.clone(),
            keys: self.keys.clone(),
            stream: stream.to_string(),
            frame_topic: frame_wire::topic(Kind::Frame, stream),
            producer_id: self.producer_id,
            seq: 0,
            sent_frame: false,
            preview_seq: 0,
            limits: Limits::default(),
        }
    }

    pub fn producer_id(&self) -> u64 {
        self.producer_id
    }

    /// A handle on the bus, to tell it the keys changed.
    pub fn bus_handle(&self) -> BusHandle {
        self.bus.handle()
    }
}

impl StreamPublisher {
    /// The stream name (topic).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn set_max_frame_bytes(&mut self, max: usize) {
        self.limits.max_jpeg_bytes = max;
    }

    /// How many subscribers want this camera's full-rate frames now (see
    /// [`PubServer::subscribers_to`]); none: the frame need not be encoded.
    pub fn frame_subscribers(&self) -> usize {
        self.bus.subscribers_to(&self.frame_topic)
    }

    /// How many subscribers want the rendition on `topic` now
    /// (`r/<name>/<width>/`); none: it need not be made.
    pub fn subscribers_to(&self, topic: &[u8]) -> usize {
        self.bus.subscribers_to(topic)
    }

    /// Publishes one full-rate JPEG on `f/<name>/`, signed when a key is
    /// set; returns its `seq`. Never blocks: each
    /// subscriber has its own bounded queue (and nothing is kept when there
    /// is none), so capture threads call it directly. The frame's `seq` is
    /// shared with its renditions; [`StreamPublisher::next_frame`] moves on.
    pub fn publish(
        &mut self,
        jpeg: Bytes,
        width: u32,
        height: u32,
        capture_ts_ns: u64,
    ) -> Result<u64, PublishError> {
        self.publish_of_frame(Kind::Frame, jpeg, (width, height), capture_ts_ns)
    }

    /// Publishes one rendition of the current frame on
    /// `r/<name>/<width>/`, under the frame's `seq`.
    pub fn publish_rendition(
        &mut self,
        jpeg: Bytes,
        width: u32,
        height: u32,
        capture_ts_ns: u64,
    ) -> Result<u64, PublishError> {
        self.publish_of_frame(Kind::Rendition, jpeg, (width, height), capture_ts_ns)
    }

    /// A picture of the current frame (full or rendition), under its `seq`.
    fn publish_of_frame(
        &mut self,
        kind: Kind,
        jpeg: Bytes,
        (width, height): (u32, u32),
        capture_ts_ns: u64,
    ) -> Result<u64, PublishError> {
        let seq = self.seq;
        self.send(kind, seq, jpeg, width, height, capture_ts_ns)?;
        self.sent_frame = true;
        Ok(seq)
    }

    /// The frame is done: the next one published, full or rendition, gets
    /// the next `seq` (+1 per frame anything was published of).
    pub fn next_frame(&mut self) {
        if std::mem::take(&mut self.sent_frame) {
            self.seq += 1;
        }
    }

    /// Announces on `i/<name>/` which renditions the camera has now, the
    /// full picture being `width x height`.
    pub fn publish_info(
        &mut self,
        width: u32,
        height: u32,
        renditions: &frame_wire::Renditions,
        capture_ts_ns: u64,
    ) -> Result<(), PublishError> {
        let payload = Bytes::from(renditions.encode());
        self.send(
            Kind::Info,
            self.preview_seq,
            payload,
            width,
            height,
            capture_ts_ns,
        )
    }

    /// Publishes one preview JPEG on `p/<name>/`. Previews count their own
    /// `seq` (+1 per preview), apart from the frames'.
    pub fn publish_preview(
        &mut self,
        jpeg: Bytes,
        width: u32,
        height: u32,
        capture_ts_ns: u64,
    ) -> Result<u64, PublishError> {
        let seq = self.preview_seq;
        self.send(Kind::Preview, seq, jpeg, width, height, capture_ts_ns)?;
        self.preview_seq += 1;
        Ok(seq)
    }

    fn send(
        &self,
        kind: Kind,
        seq: u64,
        jpeg: Bytes,
        width: u32,
        height: u32,
        capture_ts_ns: u64,
    ) -> Result<(), PublishError> {
        let header = FrameHeader {
            version: KIND_VERSION,
            seq,
            capture_ts_ns,
            width,
            height,
            producer_id: self.producer_id,
            stream: self.stream.clone(),
        };
        let parts = match &self.keys {
            Some(keys) => {
                let ring = keys.ring();
                frame_wire::encode_message(kind, &header, jpeg, &self.limits, Some(ring.signing()))?
            }
            None => frame_wire::encode_message(kind, &header, jpeg, &self.limits, None)?,
        };
        self.bus.send(&parts);
        Ok(())
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
