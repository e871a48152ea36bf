//! The PUB side of the wire: one socket, one message per frame,
//! `[stream][header][jpeg]` as `frame-wire` defines it.

use std::time::Duration;

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
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// A listening socket for `host:port` (`*` means every interface) with the
/// options accepted connections should inherit.
fn tcp_listener(
    addr: &str,
    subscriber_timeout: Duration,
) -> Result<std::net::TcpListener, PublishError> {
    use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
    let err = |source: std::io::Error| PublishError::Listen {
        addr: addr.to_string(),
        source,
    };
    let spec = addr.replacen('*', "0.0.0.0", 1);
    let sa = std::net::ToSocketAddrs::to_socket_addrs(&spec)
        .map_err(err)?
        .next()
        .ok_or_else(|| {
            err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no address",
            ))
        })?;
    let s = Socket::new(Domain::for_address(sa), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.set_tcp_nodelay(true).map_err(err)?;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3);
    s.set_tcp_keepalive(&keepalive).map_err(err)?;
    #[cfg(target_os = "linux")]
    if !subscriber_timeout.is_zero() {
        s.set_tcp_user_timeout(Some(subscriber_timeout))
            .map_err(err)?;
    }
    s.bind(&sa.into()).map_err(err)?;
    s.listen(128).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    Ok(s.into())
}

impl Publisher {
    /// Binds the PUB socket. For `tcp://` endpoints the listening socket is
    /// ours, so accepted subscriber connections inherit TCP_USER_TIMEOUT and
    /// keepalive: a subscriber that stops reading, or vanishes, is dropped
    /// after `subscriber_timeout`, and with it the queue zmq.rs keeps for it.
    pub async fn bind(
        endpoint: &str,
        stream: &str,
        subscriber_timeout: Duration,
    ) -> Result<Self, PublishError> {
        let mut socket = zeromq::PubSocket::new();
        let bound = match endpoint.strip_prefix("tcp://") {
            Some(addr) => {
                socket
                    .bind_listener(tcp_listener(addr, subscriber_timeout)?)
                    .await?
            }
            None => socket.bind(endpoint).await?,
        };
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
