//! A stand-in producer and detector for tests: a ZeroMQ PUB socket that a
//! gateway subscribes to, sending version 3 frames, previews, detections
//! and events built with the real wire codec (`frame_wire::encode_message`,
//! `encode_detections`, `encode_event`), or any raw parts (garbage,
//! unknown kinds).

use anyhow::Context;
use bytes::Bytes;
use frame_wire::{Detection, Detections, FrameHeader, Kind, Limits};
use zeromq::{Socket, SocketSend, ZmqMessage};

use crate::free_port;

pub struct Publisher {
    socket: zeromq::PubSocket,
    /// Where gateways connect: `--producer <endpoint>`.
    pub endpoint: String,
    producer_id: u64,
    /// Signs what `frame` and `detections` send, when set.
    key: Option<frame_wire::auth::Key>,
}

/// The header of frame `seq` of `stream`, `width`×`height`, captured at
/// `capture_ts_ns`; detections name a frame with the same header.
pub fn header(
    stream: &str,
    seq: u64,
    capture_ts_ns: u64,
    (width, height): (u32, u32),
) -> FrameHeader {
    FrameHeader {
        version: frame_wire::KIND_VERSION,
        seq,
        capture_ts_ns,
        width,
        height,
        producer_id: 0x5EED,
        stream: stream.into(),
    }
}

/// A box labelled `label`, in fractions of the frame.
pub fn detection(label: &str, score: f32, [x, y, w, h]: [f32; 4]) -> Detection {
    Detection {
        label: label.into(),
        score,
        x,
        y,
        w,
        h,
    }
}

impl Publisher {
    /// Binds a PUB socket on a free loopback port.
    pub async fn bind() -> anyhow::Result<Publisher> {
        let endpoint = format!("tcp://127.0.0.1:{}", free_port());
        let mut socket = zeromq::PubSocket::new();
        socket
            .bind(&endpoint)
            .await
            .with_context(|| format!("binding {endpoint}"))?;
        Ok(Publisher {
            socket,
            endpoint,
            producer_id: 0x5EED,
            key: None,
        })
    }

    /// From now on, `frame` and `detections` sign with `key` (a bus key
    /// holder: a second producer, or a detector with a `scope=d` key).
    pub fn sign_with(&mut self, key: frame_wire::auth::Key) {
        self.key = Some(key);
    }

    /// The producer run `frame` and `detections` claim to come from
    /// (0x5EED unless set).
    pub fn set_producer_id(&mut self, id: u64) {
        self.producer_id = id;
    }

    /// Sends one message of raw parts, whatever they hold.
    pub async fn send_raw(&mut self, parts: Vec<Bytes>) -> anyhow::Result<()> {
        let msg = ZmqMessage::try_from(parts).map_err(|e| anyhow::anyhow!("empty message: {e}"))?;
        self.socket.send(msg).await?;
        Ok(())
    }

    /// Sends `jpeg` as a frame and as a preview of `header`'s stream, so a
    /// gateway has it whether it takes full-rate frames of it or not.
    pub async fn frame(&mut self, header: &FrameHeader, jpeg: &Bytes) -> anyhow::Result<()> {
        let mut header = header.clone();
        header.producer_id = self.producer_id;
        for kind in [Kind::Frame, Kind::Preview] {
            let parts = frame_wire::encode_message(
                kind,
                &header,
                jpeg.clone(),
                &Limits::default(),
                self.key.as_ref(),
            )?;
            self.send_raw(parts).await?;
        }
        Ok(())
    }

    /// Sends the detections found in the frame `header` names.
    pub async fn detections(
        &mut self,
        header: &FrameHeader,
        model: &str,
        boxes: Vec<Detection>,
    ) -> anyhow::Result<()> {
        let mut header = header.clone();
        header.producer_id = self.producer_id;
        let d = Detections {
            model: model.into(),
            boxes,
        };
        let parts = frame_wire::encode_detections(&header, &d, self.key.as_ref())?;
        self.send_raw(parts).await
    }

    /// Sends an event message (a stand-in event stage): `header` names the
    /// stream and the frame its snapshot was taken from.
    pub async fn event(
        &mut self,
        header: &FrameHeader,
        message: &frame_wire::EventMessage,
    ) -> anyhow::Result<()> {
        let mut header = header.clone();
        header.producer_id = self.producer_id;
        let parts = frame_wire::encode_event(&header, message, self.key.as_ref())?;
        self.send_raw(parts).await
    }
}
