//! One producer endpoint as a subscriber sees it: [`Client::next`] hands out
//! verified, decoded messages (and refusals, to count) until shutdown, and
//! does everything else itself: (re)connecting, holding the subscriptions it
//! is given, recreating the socket when the producer goes silent, re-reading
//! the key file on a timer and proving the current ring to the producer on
//! every connection and whenever the ring changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frame_wire::auth::KeyRing;
use frame_wire::{Limits, Message, WireError};
use stream_common::ratelimit::LogEvery;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zeromq::{SocketRecv, SubSocket, ZmqResult};

use crate::connect::{Silence, connect};
use crate::keys::{BusKeys, KEY_FILE_CHECK};
use crate::topics::{Held, Topics};

/// With a bus key, how far a message's capture time may be from this
/// host's clock: older (or later) signed messages are replays or a clock
/// gone wrong, and are refused.
pub const MAX_CAPTURE_SKEW: Duration = Duration::from_secs(30);
/// Producer runs, streams and kinds whose last `seq` one client remembers.
const MAX_TRACKED: usize = 4096;

/// How a client treats its producer.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `tcp://host:port` or `ipc://path`.
    pub endpoint: String,
    pub keys: BusKeys,
    pub limits: Limits,
    /// Silence after which the socket is recreated, at least (it grows with
    /// the producer's usual gap between messages; see [`Silence`]).
    pub resubscribe_after: Duration,
}

/// A message that passed every check.
#[derive(Debug)]
pub struct Received {
    pub message: Message,
    /// Its size on the wire, all parts.
    pub bytes: usize,
    /// When it was taken off the socket.
    pub at: Instant,
}

/// Why a message was dropped.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Malformed, unsigned, forged, too large, ...
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Signed, but its `seq` is not above the last one seen from the same
    /// producer run, stream and kind: a replay.
    #[error("seq {seq} of {stream:?} is not newer than {last} from the same producer run")]
    Replay { stream: String, seq: u64, last: u64 },
    /// Signed, but captured more than [`MAX_CAPTURE_SKEW`] from our clock.
    #[error("capture time of {stream:?} is {skew_s} s from this host's clock")]
    Stale { stream: String, skew_s: u64 },
    /// A frame or preview of a name another, live producer run owns
    /// (`owners.rs`).
    #[error("{stream:?} belongs to producer {owner:016x}, not {producer_id:016x}")]
    Owner {
        stream: String,
        owner: u64,
        producer_id: u64,
    },
}

impl Refusal {
    /// A short stable name for metric labels (`reason=`).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Wire(e) => e.kind(),
            Refusal::Replay { .. } => "replay",
            Refusal::Stale { .. } => "stale",
            Refusal::Owner { .. } => "owner",
        }
    }
}

/// What [`Client::next`] reports.
#[derive(Debug)]
pub enum Event {
    /// A verified, decoded message.
    Message(Received),
    /// A message dropped (already logged at a bounded rate): count it.
    Refused(Refusal),
    /// The producer was silent past the watchdog; the socket is being
    /// recreated. `ever_heard`: whether anything ever came from it.
    Silent { ever_heard: bool },
}

/// One producer endpoint's subscription.
pub struct Client {
    settings: Settings,
    topics: watch::Receiver<Topics>,
    topics_open: bool,
    /// Keeps a fixed set of topics' channel open.
    _fixed: Option<watch::Sender<Topics>>,
    shutdown: CancellationToken,
    socket: Option<SubSocket>,
    held: Held,
    /// The ring whose tokens the open socket has sent.
    proved: Option<Arc<KeyRing>>,
    silence: Silence,
    /// Last `seq` per (producer run, stream, kind), with a key.
    last_seq: std::collections::HashMap<(u64, String, u8, u32), u64>,
    floor: Duration,
    next_key_check: tokio::time::Instant,
    connect_log: LogEvery,
    invalid_log: LogEvery,
    key_log: LogEvery,
}

/// What one wait in `next` came to.
enum Step {
    Shutdown,
    TopicsChanged,
    TopicsClosed,
    KeyCheck,
    Message(zeromq::ZmqMessage),
    Failed(zeromq::ZmqError),
    Silent,
}

impl Client {
    /// A client subscribed to whatever `topics` holds, following its changes.
    pub fn new(
        settings: Settings,
        topics: watch::Receiver<Topics>,
        shutdown: CancellationToken,
    ) -> Client {
        let floor = settings.resubscribe_after;
        Client {
            settings,
            topics,
            topics_open: true,
            _fixed: None,
            shutdown,
            socket: None,
            held: Held::default(),
            proved: None,
            silence: Silence::default(),
            last_seq: std::collections::HashMap::new(),
            floor,
            next_key_check: tokio::time::Instant::now() + KEY_FILE_CHECK,
            connect_log: LogEvery::new(Duration::from_secs(30)),
            invalid_log: LogEvery::new(Duration::from_secs(1)),
            key_log: LogEvery::new(Duration::from_secs(30)),
        }
    }

    /// A client subscribed to `topics` for good.
    pub fn fixed(settings: Settings, topics: Topics, shutdown: CancellationToken) -> Client {
        let (tx, rx) = watch::channel(topics);
        let mut client = Client::new(settings, rx, shutdown);
        client._fixed = Some(tx);
        client
    }

    pub fn endpoint(&self) -> &str {
        &self.settings.endpoint
    }

    /// The keys this client verifies with (shared with its clones).
    pub fn keys(&self) -> &BusKeys {
        &self.settings.keys
    }

    /// Changes the watchdog's floor from the next wait on (a service that
    /// expects only slow messages for a while raises it).
    pub fn set_silence_floor(&mut self, floor: Duration) {
        self.floor = floor;
    }

    /// The next message or refusal from this producer; `None` at shutdown.
    /// Cancel-safe between messages: dropping the future loses no message
    /// (zmq.rs's `recv` is cancel-safe) and at worst a half-sent change of
    /// subscriptions, which the next connection sends in full.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if self.socket.is_none() {
                let socket = connect(
                    &self.settings.endpoint,
                    &self.shutdown,
                    &mut self.connect_log,
                )
                .await?;
                if let Err(e) = self.prepare(socket).await {
                    tracing::warn!(producer = %self.settings.endpoint, error = %e, "subscribe failed");
                    continue;
                }
                tracing::debug!(producer = %self.settings.endpoint, "SUB socket connected");
            }
            match self.wait().await {
                Step::Shutdown => return None,
                Step::TopicsClosed => self.topics_open = false,
                Step::TopicsChanged => {
                    let want = self.topics.borrow_and_update().clone();
                    if let Some(socket) = self.socket.as_mut()
                        && let Err(e) = self.held.update(socket, &want).await
                    {
                        tracing::warn!(producer = %self.settings.endpoint, error = %e, "changing subscriptions failed; reconnecting");
                        self.socket = None;
                    }
                }
                Step::KeyCheck => {
                    self.next_key_check = tokio::time::Instant::now() + KEY_FILE_CHECK;
                    if let Err(e) = self.keys_check().await {
                        tracing::warn!(producer = %self.settings.endpoint, error = %e, "sending new key tokens failed; reconnecting");
                        self.socket = None;
                    }
                }
                Step::Failed(e) => {
                    tracing::warn!(producer = %self.settings.endpoint, error = %e, "receive failed; reconnecting");
                    self.socket = None;
                }
                Step::Silent => {
                    tracing::debug!(producer = %self.settings.endpoint, silent_ms = self.silence.quiet_for().as_millis() as u64, "producer silent; recreating SUB socket");
                    self.socket = None;
                    return Some(Event::Silent {
                        ever_heard: self.silence.ever_heard(),
                    });
                }
                Step::Message(msg) => return Some(self.decode(msg)),
            }
        }
    }

    /// Proves the current keys and asks for every wanted topic on a new socket.
    async fn prepare(&mut self, mut socket: SubSocket) -> ZmqResult<()> {
        // A reconnection may follow a rotation: read the file now, not later.
        let ring = self.current_ring();
        for token in ring.iter().flat_map(|r| r.subscription_tokens()) {
            socket.subscribe(&token).await?;
        }
        let mut held = Held::default();
        let want = self.topics.borrow_and_update().clone();
        held.update(&mut socket, &want).await?;
        self.held = held;
        self.proved = ring;
        self.socket = Some(socket);
        self.silence.connected();
        Ok(())
    }

    /// The timer's look at the key file: a changed ring is proved on the
    /// open socket at once (a producer moving to the new key keeps us).
    async fn keys_check(&mut self) -> ZmqResult<()> {
        let ring = self.current_ring();
        if same_ring(&ring, &self.proved) {
            return Ok(());
        }
        self.proved = ring.clone();
        if let Some(socket) = self.socket.as_mut() {
            for token in ring.iter().flat_map(|r| r.subscription_tokens()) {
                socket.subscribe(&token).await?;
            }
        }
        Ok(())
    }

    /// The ring after a look at the key file, logged when it changed since
    /// this client last proved one.
    fn current_ring(&mut self) -> Option<Arc<KeyRing>> {
        self.settings.keys.refresh(&mut self.key_log);
        let ring = self.settings.keys.ring();
        if self.proved.is_some()
            && !same_ring(&ring, &self.proved)
            && let Some(r) = &ring
        {
            tracing::info!(producer = %self.settings.endpoint, keys = %r.ids(), "bus key file changed; keys reloaded");
        }
        ring
    }

    async fn wait(&mut self) -> Step {
        let silent_until = self.silence.deadline(self.floor);
        let Some(socket) = self.socket.as_mut() else {
            return Step::Failed(zeromq::ZmqError::NoMessage);
        };
        tokio::select! {
            _ = self.shutdown.cancelled() => Step::Shutdown,
            changed = self.topics.changed(), if self.topics_open => match changed {
                Ok(()) => Step::TopicsChanged,
                Err(_) => Step::TopicsClosed,
            },
            _ = tokio::time::sleep_until(self.next_key_check) => Step::KeyCheck,
            r = tokio::time::timeout_at(silent_until, socket.recv()) => match r {
                Ok(Ok(m)) => Step::Message(m),
                Ok(Err(e)) => Step::Failed(e),
                Err(_) => Step::Silent,
            },
        }
    }

    fn decode(&mut self, msg: zeromq::ZmqMessage) -> Event {
        let at = Instant::now();
        self.silence.heard(at);
        let parts = msg.into_vec();
        let bytes = parts.iter().map(|p| p.len()).sum();
        let ring = self.settings.keys.ring();
        match frame_wire::decode_message(&parts, &self.settings.limits, ring.as_deref()) {
            Ok(message) => match self
                .fresh(&message, ring.is_some())
                .and_then(|()| self.owned(&message, at))
            {
                Ok(()) => Event::Message(Received { message, bytes, at }),
                Err(why) => self.refuse(why, at),
            },
            Err(e) => self.refuse(Refusal::Wire(e), at),
        }
    }

    /// With a key, signed messages are refused when replayed: per producer
    /// run (`producer_id`, new at each start, so a restarted producer is
    /// accepted), stream and kind, `seq` must grow, and the capture time
    /// must be within [`MAX_CAPTURE_SKEW`] of now.
    fn fresh(&mut self, message: &Message, signed: bool) -> Result<(), Refusal> {
        if !signed {
            return Ok(());
        }
        let h = message.header();
        let skew = stream_common::unix_now_ns().abs_diff(h.capture_ts_ns);
        if skew > MAX_CAPTURE_SKEW.as_nanos() as u64 {
            return Err(Refusal::Stale {
                stream: h.stream.clone(),
                skew_s: skew / 1_000_000_000,
            });
        }
        // Each rendition (a width) numbers its frames apart: they share
        // the seq of the frame they copy.
        let width = match message {
            Message::Rendition(f) => f.header.width,
            _ => 0,
        };
        let key = (h.producer_id, h.stream.clone(), message.kind() as u8, width);
        if let Some(&last) = self.last_seq.get(&key)
            && h.seq <= last
        {
            return Err(Refusal::Replay {
                stream: h.stream.clone(),
                seq: h.seq,
                last,
            });
        }
        if self.last_seq.len() >= MAX_TRACKED && !self.last_seq.contains_key(&key) {
            // Only key holders make new producer runs; start over rather than grow.
            self.last_seq.clear();
        }
        self.last_seq.insert(key, h.seq);
        Ok(())
    }

    /// Pictures (frames, previews, renditions and their list) only of names
    /// this producer run owns, or may
    /// take over (`owners.rs`, shared by every client of the process).
    fn owned(&self, message: &Message, at: Instant) -> Result<(), Refusal> {
        if !matches!(
            message,
            Message::Frame(_) | Message::Preview(_) | Message::Rendition(_) | Message::Info { .. }
        ) {
            return Ok(());
        }
        let h = message.header();
        crate::owners::claim(&h.stream, h.producer_id, &self.settings.endpoint, at).map_err(|o| {
            Refusal::Owner {
                stream: h.stream.clone(),
                owner: o.owner,
                producer_id: h.producer_id,
            }
        })
    }

    fn refuse(&mut self, refusal: Refusal, now: Instant) -> Event {
        if let Some(folded) = self.invalid_log.check(now) {
            tracing::warn!(producer = %self.settings.endpoint, error = %refusal, repeats = folded, "dropping invalid message");
        }
        Event::Refused(refusal)
    }
}

fn same_ring(a: &Option<Arc<KeyRing>>, b: &Option<Arc<KeyRing>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}
