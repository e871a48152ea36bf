//! The PUB side of the wire: one socket carrying every camera of the
//! process, in wire version 3 (`docs/wire-format.md`): each camera's
//! full-rate frames on `f/<name>/` and its previews on `p/<name>/`, as
//! `[topic][header][jpeg]`, or `[topic][header][jpeg][mac]` when a bus key is
//! set. Each camera publishes through its own [`StreamPublisher`] (its topics
//! and its `seq`s), all under the process's one `producer_id`, and asks it
//! whether anyone wants its full rate before spending work on a frame.

use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;
use frame_wire::{FrameHeader, KIND_VERSION, Kind, Limits};

use crate::bus::{BusMetrics, BusSettings, Listener, PubServer};

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
    preview_seq: u64,
    limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("frame refused by the wire format: {0}")]
    Wire(#[from] frame_wire::WireError),
    #[error("unsupported endpoint {0:?}: use tcp://HOST:PORT or ipc:///path")]
    Endpoint(String),
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

fn ipc_listener(path: &str) -> Result<tokio::net::UnixListener, PublishError> {
    // Like libzmq: a socket file left by an earlier run is replaced.
    let _ = std::fs::remove_file(path);
    tokio::net::UnixListener::bind(path).map_err(|source| PublishError::Listen {
        addr: path.to_string(),
        source,
    })
}

impl Publisher {
    /// Binds the PUB socket (our own, `bus.rs`). For `tcp://` endpoints
    /// accepted subscriber connections inherit TCP_USER_TIMEOUT and
    /// keepalive, so a vanished subscriber is dropped; one that stops
    /// reading costs at most `bus.queue_bytes`.
    pub async fn bind(
        endpoint: &str,
        bus: BusSettings,
        metrics: BusMetrics,
    ) -> Result<Self, PublishError> {
        let listener = if let Some(addr) = endpoint.strip_prefix("tcp://") {
            let l = tcp_listener(addr, bus.subscriber_timeout)?;
            Listener::Tcp(tokio::net::TcpListener::from_std(l).map_err(|source| {
                PublishError::Listen {
                    addr: addr.to_string(),
                    source,
                }
            })?)
        } else if let Some(path) = endpoint.strip_prefix("ipc://") {
            Listener::Ipc(ipc_listener(path)?)
        } else {
            return Err(PublishError::Endpoint(endpoint.to_string()));
        };
        let keys = bus.keys.clone();
        let server = PubServer::start(listener, bus, metrics);
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
            preview_seq: 0,
            limits: Limits::default(),
        }
    }

    pub fn producer_id(&self) -> u64 {
        self.producer_id
    }

    /// A handle on the bus, to tell it the keys changed.
    pub fn bus_handle(&self) -> crate::bus::BusHandle {
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

    /// Publishes one full-rate JPEG on `f/<name>/`, signed when a key is
    /// set; returns its `seq` (+1 per frame published). Never blocks: each
    /// subscriber has its own bounded queue (and nothing is kept when there
    /// is none), so capture threads call it directly.
    pub fn publish(
        &mut self,
        jpeg: Bytes,
        width: u32,
        height: u32,
        capture_ts_ns: u64,
    ) -> Result<u64, PublishError> {
        let seq = self.seq;
        self.send(Kind::Frame, seq, jpeg, width, height, capture_ts_ns)?;
        self.seq += 1;
        Ok(seq)
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

/// True when only this host can reach `endpoint` (loopback or ipc).
pub fn is_local_endpoint(endpoint: &str) -> bool {
    if endpoint.starts_with("ipc://") {
        return true;
    }
    let Some(addr) = endpoint.strip_prefix("tcp://") else {
        return false;
    };
    let spec = addr.replacen('*', "0.0.0.0", 1);
    match std::net::ToSocketAddrs::to_socket_addrs(&spec) {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
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
