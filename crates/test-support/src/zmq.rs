//! A ZeroMQ subscriber for tests: connect to a PUB endpoint and decode
//! frames with the real wire codec.

use std::time::Duration;

use anyhow::Context;
use zeromq::{Socket, SocketRecv};

pub struct Subscriber {
    socket: zeromq::SubSocket,
}

impl Subscriber {
    /// Connects and subscribes to `topic` ("" for every stream).
    pub async fn connect(endpoint: &str, topic: &str) -> anyhow::Result<Self> {
        let mut socket = zeromq::SubSocket::new();
        socket
            .connect(endpoint)
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        socket.subscribe(topic).await?;
        Ok(Subscriber { socket })
    }

    /// The next frame, decoded and validated, within `timeout`.
    pub async fn next_frame(&mut self, timeout: Duration) -> anyhow::Result<frame_wire::Frame> {
        let msg = tokio::time::timeout(timeout, self.socket.recv())
            .await
            .context("no message in time")??;
        Ok(frame_wire::decode(
            &msg.into_vec(),
            &frame_wire::Limits::default(),
        )?)
    }
}
