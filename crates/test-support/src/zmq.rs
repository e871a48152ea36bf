//! A ZeroMQ subscriber for tests: connect to a PUB endpoint and decode
//! messages with the real wire codec (`frame_wire::decode_message`, every
//! version and kind).

use std::time::Duration;

use anyhow::Context;
use frame_wire::{Frame, Kind, Message};
use zeromq::{Socket, SocketRecv};

pub struct Subscriber {
    socket: zeromq::SubSocket,
}

impl Subscriber {
    /// Connects and subscribes to the raw prefix `topic`: `""` for every
    /// kind of every stream, `f/` for every full-rate frame, `p/` for every
    /// preview.
    pub async fn connect(endpoint: &str, topic: &str) -> anyhow::Result<Self> {
        let mut socket = zeromq::SubSocket::new();
        socket
            .connect(endpoint)
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        socket.subscribe(topic).await?;
        Ok(Subscriber { socket })
    }

    /// Connects, proves `ring` to the publisher (one fresh token per key, as
    /// every bus client does) and subscribes to the raw prefix `topic`.
    pub async fn connect_keyed(
        endpoint: &str,
        topic: &str,
        ring: &frame_wire::auth::KeyRing,
    ) -> anyhow::Result<Self> {
        let mut socket = zeromq::SubSocket::new();
        socket
            .connect(endpoint)
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        for token in ring.subscription_tokens() {
            socket.subscribe(&token).await?;
        }
        socket.subscribe(topic).await?;
        Ok(Subscriber { socket })
    }

    /// Connects and subscribes to `stream`'s full-rate frames only
    /// (`f/<stream>/`), as a gateway does for a watched stream.
    pub async fn frames_of(endpoint: &str, stream: &str) -> anyhow::Result<Self> {
        Self::connect(endpoint, &topic_of(Kind::Frame, stream)).await
    }

    /// Adds the raw prefix `topic` to this socket's subscriptions.
    pub async fn subscribe(&mut self, topic: &str) -> anyhow::Result<()> {
        Ok(self.socket.subscribe(topic).await?)
    }

    /// The next message of any kind, decoded and validated, within `timeout`.
    pub async fn next_message(&mut self, timeout: Duration) -> anyhow::Result<Message> {
        self.next_message_with(timeout, None).await
    }

    /// The next message, which with `keys` must be signed with one of them
    /// (and without must not be signed at all), within `timeout`.
    pub async fn next_message_with(
        &mut self,
        timeout: Duration,
        keys: Option<&frame_wire::auth::KeyRing>,
    ) -> anyhow::Result<Message> {
        let msg = tokio::time::timeout(timeout, self.socket.recv())
            .await
            .context("no message in time")??;
        Ok(frame_wire::decode_message(
            &msg.into_vec(),
            &frame_wire::Limits::default(),
            keys,
        )?)
    }

    /// The next full-rate frame within `timeout`, passing over previews and
    /// detections.
    pub async fn next_frame(&mut self, timeout: Duration) -> anyhow::Result<Frame> {
        self.next_of(Kind::Frame, timeout).await
    }

    /// The next preview within `timeout`, passing over other kinds.
    pub async fn next_preview(&mut self, timeout: Duration) -> anyhow::Result<Frame> {
        self.next_of(Kind::Preview, timeout).await
    }

    /// The next rendition frame (`r/…`) within `timeout`, passing over
    /// other kinds.
    pub async fn next_rendition(&mut self, timeout: Duration) -> anyhow::Result<Frame> {
        self.next_of(Kind::Rendition, timeout).await
    }

    async fn next_of(&mut self, kind: Kind, timeout: Duration) -> anyhow::Result<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await? {
                Message::Frame(f) if kind == Kind::Frame => return Ok(f),
                Message::Preview(f) if kind == Kind::Preview => return Ok(f),
                Message::Rendition(f) if kind == Kind::Rendition => return Ok(f),
                _ => {}
            }
        }
    }
}

/// The subscription (and topic) of `kind` messages of `stream`, as text.
pub fn topic_of(kind: Kind, stream: &str) -> String {
    String::from_utf8_lossy(&frame_wire::subscription(kind, Some(stream))).into_owned()
}
