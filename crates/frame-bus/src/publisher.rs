//! Our own ZeroMQ PUB server, shared by every service that publishes on the
//! bus (the producer's frames, the detector's detections and annotated
//! frames): ZMTP 3.0 with the NULL mechanism, as much of it as a publisher
//! needs, so that what a subscriber costs is bounded **in bytes** and so
//! that, with a bus key, only subscribers that prove they hold the key get
//! anything.
//!
//! Why not zmq.rs's `PubSocket`: it queues up to 100,000 messages per
//! subscriber with no byte limit and no way to set one (measured: a gateway
//! frozen for 30 s with 1.1 MB frames at 30 fps grew the producer by 312 MB),
//! and it cannot refuse a subscriber. Here each subscriber has a queue of at
//! most `queue_bytes` (frames are shared `Bytes`, never copied per subscriber);
//! when a new frame does not fit, the oldest queued frames are dropped (live
//! video: the newest frame matters) and counted. Any ZMTP 3 SUB (zmq.rs,
//! libzmq/pyzmq) connects to it unchanged.
//!
//! What it speaks (rfc.zeromq.org/spec/23, the bytes in `zmtp.rs`): the
//! 64-byte greeting (version 3.0, mechanism NULL), a READY command each way
//! (`Socket-Type` PUB/SUB), then subscriptions from the peer (ZMTP 3.0
//! messages `\x01prefix` / `\x00prefix`, or 3.1 `SUBSCRIBE`/`CANCEL` commands)
//! and messages from us. A subscription starting with
//! [`frame_wire::auth::TOKEN_PREFIX`] is not a topic filter but a proof of
//! the key (see `docs/wire-format.md`). Endpoints are bound by `listen.rs`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use frame_wire::auth::{KEY_ID_BYTES, KeyRing, KeyStore, TOKEN_MAX_SKEW, TOKEN_PREFIX, unix_secs};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use crate::listen::{BindError, Listener};
use crate::zmtp::{
    self, InFrame, Request, check_greeting, command_parts, greeting, ready_command, request,
    socket_type,
};

/// Time a peer has for the greeting and READY exchange.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// With a key: time a peer has to present a valid token after connecting.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Most subscriptions (and tokens) one peer may hold.
const MAX_SUBSCRIPTIONS: usize = 256;
const MAX_TOKENS: usize = 4;
/// Most subscribers at once; more are refused.
pub const MAX_PEERS: usize = 1024;
/// Most connections at once still in the handshake or, with a key, not yet
/// holding a valid token. When a new one comes and this many wait, the
/// oldest waiting one is dropped (`reason="evicted"`): a flood of idle
/// handshakes cannot keep the slots, and the rest of [`MAX_PEERS`] is room
/// for subscribers that proved the key. A real subscriber proves it within
/// milliseconds of connecting.
pub const MAX_PENDING: usize = 128;
/// Most distinct valid tokens remembered (each for [`TOKEN_MAX_SKEW`]).
const MAX_REMEMBERED_TOKENS: usize = 65_536;

/// How the bus treats subscribers.
#[derive(Clone, Debug)]
pub struct BusSettings {
    /// Most bytes of frames queued for one subscriber (the frame being
    /// written included).
    pub queue_bytes: usize,
    /// A subscriber that takes longer than this to accept one frame is
    /// dropped; zero: never.
    pub subscriber_timeout: Duration,
    /// With keys, subscribers must prove the key and frames are signed.
    pub keys: Option<KeyStore>,
}

/// Counters the bus keeps.
#[derive(Clone)]
pub struct BusMetrics {
    pub subscribers: IntGauge,
    pub queued_bytes: IntGauge,
    pub dropped: IntCounter,
    pub refused: IntCounterVec,
}

impl BusMetrics {
    /// The counters, registered in `registry` under the same names in every
    /// service (the registry's prefix tells them apart):
    /// `subscribers`, `subscriber_queued_bytes`,
    /// `subscriber_frames_dropped_total`, `subscribers_refused_total{reason}`.
    pub fn register(registry: &Registry) -> prometheus::Result<BusMetrics> {
        let subscribers = IntGauge::new("subscribers", "Subscribers connected to the PUB socket")?;
        let queued_bytes = IntGauge::new(
            "subscriber_queued_bytes",
            "Bytes of frames queued for subscribers, all together",
        )?;
        let dropped = IntCounter::new(
            "subscriber_frames_dropped_total",
            "Frames dropped for a subscriber whose queue was full (--subscriber-queue-bytes)",
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "subscribers_refused_total",
                "Subscriber connections refused or dropped, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(subscribers.clone()))?;
        registry.register(Box::new(queued_bytes.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(BusMetrics {
            subscribers,
            queued_bytes,
            dropped,
            refused,
        })
    }
}

/// A frame encoded once as ZMTP frames, shared by every subscriber's queue.
struct Encoded {
    topic: Bytes,
    segments: Vec<Bytes>,
    len: usize,
}

fn encode(parts: &[Bytes]) -> Encoded {
    let mut segments = Vec::new();
    let mut small = BytesMut::new();
    let mut len = 0;
    for (i, part) in parts.iter().enumerate() {
        let more = if i + 1 < parts.len() { 0x01 } else { 0 };
        if part.len() > 255 {
            small.put_u8(more | 0x02);
            small.put_u64(part.len() as u64);
        } else {
            small.put_u8(more);
            small.put_u8(part.len() as u8);
        }
        // Short parts are copied next to their frame header; long ones (the
        // JPEG) are written from the shared buffer.
        if part.len() <= 1024 {
            small.extend_from_slice(part);
        } else {
            len += small.len() + part.len();
            segments.push(small.split().freeze());
            segments.push(part.clone());
        }
    }
    len += small.len();
    if !small.is_empty() {
        segments.push(small.freeze());
    }
    Encoded {
        topic: parts.first().cloned().unwrap_or_default(),
        segments,
        len,
    }
}

#[derive(Default)]
struct PeerState {
    prefixes: Vec<Bytes>,
    /// Tokens received, with the time they arrived: re-checked when the keys change.
    tokens: Vec<(Vec<u8>, u64)>,
    authorized: Option<[u8; KEY_ID_BYTES]>,
    queue: VecDeque<Arc<Encoded>>,
    /// Bytes in `queue` plus the frame being written.
    queued: usize,
}

/// True when one of a subscriber's subscriptions selects `topic`. ZeroMQ's
/// rule is a prefix match: `""` and `f/` select every camera's frames,
/// `f/cam1/` only cam1's (the closing `/` keeps cam10 out), `p/` every
/// preview. Key tokens are proofs, not subscriptions: they are kept apart
/// (`PeerState::tokens`) and, starting with `\0`, could not match a topic.
pub fn selects(prefixes: &[Bytes], topic: &[u8]) -> bool {
    prefixes.iter().any(|p| topic.starts_with(p))
}

impl PeerState {
    fn matches(&self, topic: &[u8]) -> bool {
        selects(&self.prefixes, topic)
    }

    fn reauthorize(&mut self, ring: &KeyRing) {
        self.authorized = self
            .tokens
            .iter()
            .find_map(|(t, at)| ring.verify_token(t, *at));
    }
}

struct Peer {
    state: Mutex<PeerState>,
    wake: Notify,
    closed: CancellationToken,
}

impl Peer {
    fn lock(&self) -> std::sync::MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Shared {
    peers: Mutex<Vec<(u64, Arc<Peer>)>>,
    /// Every connection being served (handshaking, waiting or subscribed),
    /// counted at accept, so slots are never handed out twice.
    slots: Mutex<Slots>,
    /// Valid tokens seen, by their bytes: which peer presented each and until
    /// when (Unix seconds) it could be accepted. The same bytes from another
    /// connection are a replay.
    tokens_seen: Mutex<std::collections::HashMap<Vec<u8>, (u64, u64)>>,
    next_id: AtomicU64,
    settings: BusSettings,
    metrics: BusMetrics,
}

/// Connection slots: all of them, and those still waiting to be proven.
#[derive(Default)]
struct Slots {
    total: usize,
    /// Oldest first: id and how to drop it.
    pending: VecDeque<(u64, CancellationToken)>,
}

impl Shared {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection proved itself (or, without a key, finished its
    /// handshake): its slot is no longer at risk of eviction.
    fn proven(&self, id: u64) {
        self.slots().pending.retain(|(pid, _)| *pid != id);
    }

    /// Whether `token` (valid) may authorize peer `id`: not when another
    /// connection presented the same bytes within the skew window.
    fn fresh_token(&self, token: &[u8], id: u64, now: u64) -> bool {
        let mut seen = self.tokens_seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(owner, until)) = seen.get(token)
            && until >= now
        {
            return owner == id;
        }
        if seen.len() >= MAX_REMEMBERED_TOKENS {
            seen.retain(|_, (_, until)| *until >= now);
        }
        if seen.len() >= MAX_REMEMBERED_TOKENS {
            // Only key holders make valid tokens; forget the one expiring first.
            if let Some(k) = seen
                .iter()
                .min_by_key(|(_, (_, u))| *u)
                .map(|(k, _)| k.clone())
            {
                seen.remove(&k);
            }
        }
        seen.insert(token.to_vec(), (id, now + 2 * TOKEN_MAX_SKEW.as_secs()));
        true
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Arc<Peer>)>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The listening PUB socket.
pub struct PubServer {
    shared: Arc<Shared>,
    stop: CancellationToken,
    local: String,
}

impl Drop for PubServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl PubServer {
    /// Binds `endpoint` (`listen.rs`) and starts accepting subscribers: a
    /// taken port or a bad endpoint fails here, at start-up. For `tcp://`
    /// endpoints accepted connections inherit TCP_USER_TIMEOUT and
    /// keepalive, so a vanished subscriber is dropped; one that stops
    /// reading costs at most `settings.queue_bytes`.
    pub fn bind(
        endpoint: &str,
        settings: BusSettings,
        metrics: BusMetrics,
    ) -> Result<PubServer, BindError> {
        let listener = crate::listen::bind(endpoint, settings.subscriber_timeout)?;
        Ok(PubServer::start(listener, settings, metrics))
    }

    /// Starts accepting subscribers on `listener`.
    /// Must be called within a Tokio runtime.
    pub fn start(listener: Listener, settings: BusSettings, metrics: BusMetrics) -> PubServer {
        let local = match &listener {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("tcp://{a}"))
                .unwrap_or_default(),
            Listener::Ipc(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("ipc://{}", p.display())))
                .unwrap_or_default(),
        };
        let shared = Arc::new(Shared {
            peers: Mutex::new(Vec::new()),
            slots: Mutex::new(Slots::default()),
            tokens_seen: Mutex::new(std::collections::HashMap::new()),
            next_id: AtomicU64::new(0),
            settings,
            metrics,
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
        PubServer {
            shared,
            stop,
            local,
        }
    }

    /// The bound endpoint, e.g. `tcp://127.0.0.1:5555`.
    pub fn local_endpoint(&self) -> &str {
        &self.local
    }

    /// Queues one message for every subscriber whose subscriptions match
    /// its first part. Never blocks.
    pub fn send(&self, parts: &[Bytes]) {
        let peers: Vec<Arc<Peer>> = self.shared.peers().iter().map(|(_, p)| p.clone()).collect();
        if peers.is_empty() {
            return;
        }
        let msg = Arc::new(encode(parts));
        let limit = self.shared.settings.queue_bytes;
        let need_auth = self.shared.settings.keys.is_some();
        let m = &self.shared.metrics;
        for peer in peers {
            let mut st = peer.lock();
            if (need_auth && st.authorized.is_none()) || !st.matches(&msg.topic) {
                continue;
            }
            // Oldest frames go first: a subscriber that catches up sees the newest.
            while st.queued + msg.len > limit {
                let Some(old) = st.queue.pop_front() else {
                    break;
                };
                st.queued -= old.len;
                m.queued_bytes.sub(old.len as i64);
                m.dropped.inc();
            }
            if st.queued + msg.len > limit {
                // Still no room: the frame being written is large, or this
                // one is larger than the whole limit.
                m.dropped.inc();
                continue;
            }
            st.queued += msg.len;
            m.queued_bytes.add(msg.len as i64);
            st.queue.push_back(msg.clone());
            drop(st);
            peer.wake.notify_one();
        }
    }

    /// How many subscribers would get a message on `topic` now: connected,
    /// holding the key when one is set, and subscribed to a prefix of it.
    /// Capture threads ask before every frame, to skip encoding what nobody
    /// would receive.
    pub fn subscribers_to(&self, topic: &[u8]) -> usize {
        let peers: Vec<Arc<Peer>> = self.shared.peers().iter().map(|(_, p)| p.clone()).collect();
        let need_auth = self.shared.settings.keys.is_some();
        peers
            .iter()
            .filter(|peer| {
                let st = peer.lock();
                (!need_auth || st.authorized.is_some()) && st.matches(topic)
            })
            .count()
    }

    /// A handle for the key reloader, which lives apart from the publisher.
    pub fn handle(&self) -> BusHandle {
        BusHandle {
            shared: self.shared.clone(),
        }
    }

    /// Subscribers connected now (authorized or not).
    #[cfg(test)]
    pub fn peer_count(&self) -> usize {
        self.shared.peers().len()
    }
}

/// Shares the bus with the key reloader.
#[derive(Clone)]
pub struct BusHandle {
    shared: Arc<Shared>,
}

impl BusHandle {
    /// Re-checks every subscriber's tokens against the current keys (after
    /// the key file changed); those no longer holding a valid one are dropped.
    pub fn keys_changed(&self) {
        let Some(store) = &self.shared.settings.keys else {
            return;
        };
        let ring = store.ring();
        for (_, peer) in self.shared.peers().iter() {
            let mut st = peer.lock();
            let was = st.authorized.is_some();
            st.reauthorize(&ring);
            if was && st.authorized.is_none() {
                self.shared
                    .metrics
                    .refused
                    .with_label_values(&["key_revoked"])
                    .inc();
                peer.closed.cancel();
            }
        }
    }
}

/// Re-reads the key file once a second and on SIGHUP until `shutdown`;
/// whenever the ring in force changes (found here, or by a bus client
/// sharing the store, as in the detector), every subscriber is re-checked
/// and those whose key was removed are dropped ([`BusHandle::keys_changed`]).
/// An unusable file keeps the previous keys and is logged once per
/// distinct problem.
pub async fn follow_keys(keys: KeyStore, bus: BusHandle, shutdown: CancellationToken) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut last_error: Option<String> = None;
    let mut in_force = keys.ring();
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(frame_wire::auth::KEY_FILE_CHECK) => {}
            _ = hangup => {}
        }
        match keys.refresh() {
            Ok(_) => last_error = None,
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %text, "bus key file unusable; keeping the previous keys");
                    last_error = Some(text);
                }
            }
        }
        let ring = keys.ring();
        if !Arc::ptr_eq(&ring, &in_force) {
            tracing::info!(keys = %ring.ids(), "bus key file changed; keys reloaded");
            in_force = ring;
            bus.keys_changed();
        }
    }
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = accept(&listener) => r,
        };
        match accepted {
            Ok(conn) => {
                backoff = Duration::from_millis(10);
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                let stop = stop.child_token();
                {
                    let mut slots = shared.slots();
                    if slots.pending.len() >= MAX_PENDING
                        && let Some((_, oldest)) = slots.pending.pop_front()
                    {
                        oldest.cancel();
                        shared.metrics.refused.with_label_values(&["evicted"]).inc();
                    }
                    if slots.total >= MAX_PEERS {
                        drop(slots);
                        shared
                            .metrics
                            .refused
                            .with_label_values(&["too_many"])
                            .inc();
                        continue;
                    }
                    slots.total += 1;
                    slots.pending.push_back((id, stop.clone()));
                }
                let shared = shared.clone();
                match conn {
                    Conn::Tcp(s) => {
                        tokio::spawn(serve_peer(s, id, shared, stop));
                    }
                    Conn::Ipc(s) => {
                        tokio::spawn(serve_peer(s, id, shared, stop));
                    }
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a subscriber failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Ipc(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    Ok(match listener {
        Listener::Tcp(l) => Conn::Tcp(l.accept().await?.0),
        Listener::Ipc(l) => Conn::Ipc(l.accept().await?.0),
    })
}

/// Why a peer's connection ended (for the debug log).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<InFrame, PeerError> {
    let flags = r.read_u8().await?;
    let mut size = [0u8; 8];
    let n = zmtp::size_bytes(flags).map_err(PeerError::Protocol)?;
    r.read_exact(&mut size[..n]).await?;
    let len = zmtp::body_len(&size[..n]).map_err(PeerError::Protocol)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(InFrame::new(flags, body))
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Result<(), PeerError> {
    s.write_all(&greeting()).await?;
    let mut g = [0u8; 64];
    s.read_exact(&mut g).await?;
    check_greeting(&g).map_err(PeerError::Protocol)?;
    s.write_all(&ready_command()).await?;
    let f = read_frame(s).await?;
    let (name, props) = command_parts(&f.body).ok_or(PeerError::Protocol("bad command"))?;
    if !f.command || name != b"READY" {
        return Err(PeerError::Protocol("expected READY"));
    }
    match socket_type(props) {
        Some(b"SUB") | Some(b"XSUB") => Ok(()),
        _ => Err(PeerError::Protocol("peer is not a SUB socket")),
    }
}

async fn serve_peer<S>(stream: S, id: u64, shared: Arc<Shared>, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = serve_connected(stream, id, &shared, stop.clone()) => {}
    }
    let mut slots = shared.slots();
    slots.total -= 1;
    slots.pending.retain(|(pid, _)| *pid != id);
}

async fn serve_connected<S>(mut stream: S, id: u64, shared: &Arc<Shared>, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            shared
                .metrics
                .refused
                .with_label_values(&["protocol"])
                .inc();
            tracing::debug!(peer = id, error = %e, "subscriber handshake failed");
            return;
        }
        Err(_) => {
            shared
                .metrics
                .refused
                .with_label_values(&["protocol"])
                .inc();
            return;
        }
    }
    let peer = Arc::new(Peer {
        state: Mutex::new(PeerState::default()),
        wake: Notify::new(),
        closed: stop,
    });
    shared.peers().push((id, peer.clone()));
    shared.metrics.subscribers.inc();
    if shared.settings.keys.is_none() {
        shared.proven(id);
    }
    let (mut rd, mut wr) = tokio::io::split(stream);

    let reader = {
        let (shared, peer) = (shared.clone(), peer.clone());
        async move {
            let result = read_requests(&mut rd, &shared, &peer, id).await;
            if let Err(e) = result {
                tracing::debug!(peer = id, error = %e, "subscriber gone");
            }
        }
    };
    let auth_deadline = {
        let (shared, peer) = (shared.clone(), peer.clone());
        async move {
            if shared.settings.keys.is_none() {
                return std::future::pending().await;
            }
            tokio::time::sleep(AUTH_TIMEOUT).await;
            if peer.lock().authorized.is_none() {
                shared
                    .metrics
                    .refused
                    .with_label_values(&["no_valid_token"])
                    .inc();
                tracing::info!(
                    peer = id,
                    "subscriber sent no valid bus key token in {AUTH_TIMEOUT:?}; disconnected"
                );
                return;
            }
            std::future::pending().await
        }
    };
    let writer = write_frames(&mut wr, shared, &peer);
    tokio::select! {
        _ = peer.closed.cancelled() => {}
        _ = reader => {}
        _ = auth_deadline => {}
        r = writer => if let Err(e) = r {
            tracing::debug!(peer = id, error = %e, "subscriber dropped");
        },
    }
    peer.closed.cancel();
    shared.peers().retain(|(pid, _)| *pid != id);
    shared.metrics.subscribers.dec();
    let st = peer.lock();
    shared.metrics.queued_bytes.sub(st.queued as i64);
}

async fn read_requests<R: AsyncRead + Unpin>(
    rd: &mut R,
    shared: &Shared,
    peer: &Peer,
    id: u64,
) -> Result<(), PeerError> {
    loop {
        let f = read_frame(rd).await?;
        match request(&f) {
            Request::Subscribe(prefix) if prefix.starts_with(TOKEN_PREFIX.as_bytes()) => {
                let Some(store) = &shared.settings.keys else {
                    continue;
                };
                let now = unix_secs();
                let ring = store.ring();
                if ring.verify_token(&prefix, now).is_some()
                    && !shared.fresh_token(&prefix, id, now)
                {
                    shared
                        .metrics
                        .refused
                        .with_label_values(&["replayed_token"])
                        .inc();
                    continue;
                }
                let mut st = peer.lock();
                // A subscriber sends fresh tokens after its keys change: keep the newest.
                if st.tokens.len() >= MAX_TOKENS {
                    st.tokens.remove(0);
                }
                st.tokens.push((prefix, now));
                st.reauthorize(&ring);
                if st.authorized.is_some() {
                    drop(st);
                    shared.proven(id);
                } else {
                    shared
                        .metrics
                        .refused
                        .with_label_values(&["bad_token"])
                        .inc();
                }
            }
            Request::Subscribe(prefix) => {
                let mut st = peer.lock();
                if st.prefixes.len() >= MAX_SUBSCRIPTIONS {
                    return Err(PeerError::Protocol("too many subscriptions"));
                }
                st.prefixes.push(Bytes::from(prefix));
            }
            Request::Cancel(prefix) => {
                let mut st = peer.lock();
                if let Some(i) = st.prefixes.iter().position(|p| p[..] == prefix[..]) {
                    st.prefixes.swap_remove(i);
                }
            }
            Request::Ignore => {}
        }
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(
    wr: &mut W,
    shared: &Shared,
    peer: &Peer,
) -> Result<(), PeerError> {
    let timeout = shared.settings.subscriber_timeout;
    loop {
        let msg = loop {
            if let Some(m) = peer.lock().queue.pop_front() {
                break m;
            }
            peer.wake.notified().await;
        };
        let write = async {
            for seg in &msg.segments {
                wr.write_all(seg).await?;
            }
            wr.flush().await
        };
        let result = if timeout.is_zero() {
            write.await.map_err(PeerError::from)
        } else {
            match tokio::time::timeout(timeout, write).await {
                Ok(r) => r.map_err(PeerError::from),
                Err(_) => {
                    shared.metrics.refused.with_label_values(&["timeout"]).inc();
                    Err(PeerError::Timeout(
                        "subscriber did not read one frame in time",
                    ))
                }
            }
        };
        {
            let mut st = peer.lock();
            st.queued -= msg.len;
        }
        shared.metrics.queued_bytes.sub(msg.len as i64);
        result?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_marks_more_and_long_frames() {
        let parts = [
            Bytes::from_static(b"cam0"),
            Bytes::from(vec![7u8; 300]),
            Bytes::from(vec![9u8; 5000]),
        ];
        let e = encode(&parts);
        let flat: Vec<u8> = e.segments.iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(flat.len(), e.len);
        assert_eq!(&flat[..6], &[0x01, 4, b'c', b'a', b'm', b'0']);
        assert_eq!(flat[6], 0x03);
        assert_eq!(&flat[7..15], &300u64.to_be_bytes());
        let at = 15 + 300;
        assert_eq!(flat[at], 0x02, "last part: long, no more");
        assert_eq!(&flat[at + 1..at + 9], &5000u64.to_be_bytes());
        assert_eq!(e.segments[1].as_ptr(), parts[2].as_ptr(), "JPEG not copied");
    }

    #[test]
    fn subscriptions_in_both_zmtp_forms() {
        let msg = |body: &[u8]| InFrame {
            command: false,
            more: false,
            body: body.to_vec(),
        };
        assert_eq!(
            request(&msg(b"\x01cam")),
            Request::Subscribe(b"cam".to_vec())
        );
        assert_eq!(request(&msg(b"\x00cam")), Request::Cancel(b"cam".to_vec()));
        assert_eq!(request(&msg(b"")), Request::Ignore);
        let cmd = |body: &[u8]| InFrame {
            command: true,
            more: false,
            body: body.to_vec(),
        };
        assert_eq!(
            request(&cmd(b"\x09SUBSCRIBEcam")),
            Request::Subscribe(b"cam".to_vec())
        );
        assert_eq!(request(&cmd(b"\x06CANCEL")), Request::Cancel(vec![]));
        assert_eq!(request(&cmd(b"\x04PING\x00\x00")), Request::Ignore);
        assert_eq!(request(&cmd(b"\x20")), Request::Ignore);
    }

    fn metrics() -> BusMetrics {
        BusMetrics {
            subscribers: IntGauge::new("s", "s").expect("gauge"),
            queued_bytes: IntGauge::new("q", "q").expect("gauge"),
            dropped: IntCounter::new("d", "d").expect("counter"),
            refused: IntCounterVec::new(prometheus::Opts::new("r", "r"), &["reason"])
                .expect("counter"),
        }
    }

    /// A subscriber that completes the handshake, subscribes to everything
    /// and then never reads: its queue stays within the limit however much
    /// is published, and the excess is dropped and counted.
    #[tokio::test]
    async fn a_subscriber_that_stops_reading_costs_at_most_the_queue_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let m = metrics();
        let limit = 1 << 20;
        let server = PubServer::start(
            Listener::Tcp(listener),
            BusSettings {
                queue_bytes: limit,
                subscriber_timeout: Duration::ZERO,
                keys: None,
            },
            m.clone(),
        );
        let mut sub = tokio::net::TcpStream::connect(addr).await.expect("connect");
        sub.write_all(&greeting()).await.expect("greeting");
        let mut g = [0u8; 64];
        sub.read_exact(&mut g).await.expect("server greeting");
        check_greeting(&g).expect("valid greeting");
        let mut ready = vec![0x04, 0];
        let body = b"\x05READY\x0bSocket-Type\x00\x00\x00\x03SUB";
        ready[1] = body.len() as u8;
        ready.extend_from_slice(body);
        ready.extend_from_slice(&[0x00, 1, 1]); // subscribe to ""
        sub.write_all(&ready).await.expect("ready");
        let frame = read_frame(&mut sub).await.expect("server READY");
        assert!(frame.command);
        while m.subscribers.get() != 1 || server.shared.peers()[0].1.lock().prefixes.is_empty() {
            tokio::task::yield_now().await;
        }
        let jpeg = Bytes::from(vec![0xAB; 100_000]);
        let mut max_queued = 0;
        for _ in 0..500 {
            server.send(&[
                Bytes::from_static(b"cam0"),
                Bytes::from_static(b"h"),
                jpeg.clone(),
            ]);
            max_queued = max_queued.max(m.queued_bytes.get());
            tokio::task::yield_now().await;
        }
        assert!(
            max_queued as usize <= limit,
            "queued {max_queued} > {limit}"
        );
        assert!(
            max_queued as usize > limit / 2,
            "queue never filled: {max_queued}"
        );
        // 50 MB published; the kernel's socket buffers hold a few MB, the queue 1 MB.
        assert!(m.dropped.get() > 300, "dropped only {}", m.dropped.get());
        assert_eq!(server.peer_count(), 1);
        drop(sub);
    }

    #[test]
    fn a_subscription_selects_topics_by_prefix_and_a_token_selects_none() {
        use frame_wire::{Kind, subscription, topic};
        let subs = |list: &[&[u8]]| -> Vec<Bytes> {
            list.iter().map(|s| Bytes::copy_from_slice(s)).collect()
        };
        let (f1, f10, p1) = (
            topic(Kind::Frame, "cam1"),
            topic(Kind::Frame, "cam10"),
            topic(Kind::Preview, "cam1"),
        );
        // "" and "f/" want every camera's frames; "p/" only previews.
        for all in [&b""[..], b"f/"] {
            assert!(selects(&subs(&[all]), &f1) && selects(&subs(&[all]), &f10));
        }
        assert!(!selects(&subs(&[b"p/"]), &f1));
        assert!(selects(&subs(&[b"p/"]), &p1));
        // One camera's subscription is exact: cam1, not cam10, not previews.
        let cam1 = subscription(Kind::Frame, Some("cam1"));
        assert!(selects(&subs(&[&cam1]), &f1));
        assert!(!selects(&subs(&[&cam1]), &f10));
        assert!(!selects(&subs(&[&cam1]), &p1));
        assert!(selects(&subs(&[b"p/", &cam1]), &f1), "any of several");
        // A version 1 subscription (the bare name) matches no version 3 topic.
        assert!(!selects(&subs(&[b"cam1"]), &f1));
        assert!(!selects(&[], &f1), "no subscription, nothing");
        // Key tokens start with \0, which no topic does.
        let token = format!("{TOKEN_PREFIX}00112233");
        assert!(!selects(&subs(&[token.as_bytes()]), &f1));
    }

    /// A ZMTP SUB on `addr` past the handshake, subscribed to `subs`.
    async fn raw_subscriber(addr: std::net::SocketAddr, subs: &[&[u8]]) -> tokio::net::TcpStream {
        let mut sub = tokio::net::TcpStream::connect(addr).await.expect("connect");
        sub.write_all(&greeting()).await.expect("greeting");
        let mut g = [0u8; 64];
        sub.read_exact(&mut g).await.expect("server greeting");
        let body = b"\x05READY\x0bSocket-Type\x00\x00\x00\x03SUB";
        let mut out = vec![0x04, body.len() as u8];
        out.extend_from_slice(body);
        sub.write_all(&out).await.expect("ready");
        read_frame(&mut sub).await.expect("server READY");
        for s in subs {
            send_request(&mut sub, 1, s).await;
        }
        sub
    }

    /// Sends a ZMTP 3.0 subscribe (`1`) or cancel (`0`) message.
    async fn send_request(sub: &mut tokio::net::TcpStream, op: u8, prefix: &[u8]) {
        let mut out = vec![0x00, (prefix.len() + 1) as u8, op];
        out.extend_from_slice(prefix);
        sub.write_all(&out).await.expect("subscription");
    }

    async fn await_count(server: &PubServer, topic: &[u8], want: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let n = server.subscribers_to(topic);
            if n == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} subscribers to {:?}, want {want}",
                n,
                String::from_utf8_lossy(topic)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What the capture threads ask: who wants a camera's full rate, as
    /// subscribers come, subscribe, cancel and go.
    #[tokio::test]
    async fn subscribers_to_a_topic_follow_subscriptions_and_connections() {
        use frame_wire::{Kind, topic};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let settings = BusSettings {
            queue_bytes: 1 << 20,
            subscriber_timeout: Duration::ZERO,
            keys: None,
        };
        let server = PubServer::start(Listener::Tcp(listener), settings, metrics());
        let (f1, f10) = (topic(Kind::Frame, "cam1"), topic(Kind::Frame, "cam10"));
        assert_eq!(server.subscribers_to(&f1), 0);

        let previews = raw_subscriber(addr, &[b"p/"]).await;
        let mut one = raw_subscriber(addr, &[b"p/", b"f/cam1/"]).await;
        await_count(&server, &f1, 1).await;
        assert_eq!(server.subscribers_to(&f10), 0, "cam10 is not cam1");
        let all = raw_subscriber(addr, &[b""]).await;
        await_count(&server, &f10, 1).await;
        await_count(&server, &f1, 2).await;
        // Cancelling and disconnecting both let go.
        send_request(&mut one, 0, b"f/cam1/").await;
        await_count(&server, &f1, 1).await;
        drop(all);
        await_count(&server, &f1, 0).await;
        await_count(&server, &f10, 0).await;
        assert_eq!(server.subscribers_to(&topic(Kind::Preview, "cam1")), 2);
        drop((previews, one));
    }

    /// With a key, a subscriber counts only once it has proved the key.
    #[tokio::test]
    async fn with_a_key_only_proven_subscribers_count() {
        use frame_wire::auth::{KeySource, KeyStore};
        use frame_wire::{Kind, topic};
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let keys = KeyStore::load(KeySource::Value(hex.into())).expect("key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let settings = BusSettings {
            queue_bytes: 1 << 20,
            subscriber_timeout: Duration::ZERO,
            keys: Some(keys.clone()),
        };
        let server = PubServer::start(Listener::Tcp(listener), settings, metrics());
        let f1 = topic(Kind::Frame, "cam1");
        let _anonymous = raw_subscriber(addr, &[b""]).await;
        let token = keys
            .ring()
            .signing()
            .subscription_token(unix_secs(), [7; 16]);
        let _proven = raw_subscriber(addr, &[token.as_bytes(), b"f/cam1/"]).await;
        await_count(&server, &f1, 1).await;
        while server.peer_count() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(server.subscribers_to(&f1), 1, "both connected, one counts");
    }

    #[test]
    fn greetings_and_ready() {
        assert!(check_greeting(&greeting()).is_ok());
        let mut g = greeting();
        g[12..16].copy_from_slice(b"PLAI");
        assert!(check_greeting(&g).is_err());
        let mut g = greeting();
        g[10] = 2;
        assert!(check_greeting(&g).is_err());
        let ready = ready_command();
        let (name, props) = command_parts(&ready[2..]).expect("command");
        assert_eq!(name, b"READY");
        assert_eq!(socket_type(props), Some(&b"PUB"[..]));
        assert_eq!(socket_type(b"\x05Ident\xff\xff\xff\xff"), None);
    }
}
