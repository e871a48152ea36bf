//! The one delivery path: every viewer of every stream, however its request
//! arrived (an MJPEG response on any connection, a stream's events, or the
//! page's WebSocket, `websocket.rs`), is written by a writer here.
//!
//! Each serving thread runs a writer task per stream that walks that
//! thread's viewers of the stream once per frame and writes the shared part
//! with one `write()` each. A viewer whose socket is full keeps its unsent
//! remainder and waits for the socket to drain: it skips frames instead of
//! queueing them. A viewer that closes its socket is released at once (its
//! read side is watched), frames flowing or not.
//!
//! A stream's detections (`detections.rs`) go out from the same writer: to
//! its Server-Sent Events listeners (`/events/{name}`, who get nothing else)
//! as they come, newest only (a listener still writing an older message
//! skips the ones that come meanwhile and gets the newest when its socket
//! drains); and to the WebSockets watching it that asked for them, just
//! before the next frame, in the same `write()`: the frame's message with
//! the detections' text message in front is built once per frame, so boxes
//! cost a page no extra write, and arrive with the picture they belong on.
//! A frame's WebSocket message itself is built only when a WebSocket
//! viewer is written it (`Part::ws`).
//!
//! A stream's events (`events.rs`: a start, updates, an end) go out from
//! it too, as they come rather than with a frame (a stream may have none
//! while an event ends): to its events listeners and to the WebSockets
//! watching it (unless they said `"events": false`), each getting the
//! newest change once its socket has room; one still writing skips to
//! the newest, so it may miss a phase but never holds anyone back. A
//! listener gets the changes after it joined, not the ones before
//! (`/api/streams/{name}/events` has those).
//!
//! Per-part counters are kept per writer and added to the shared metrics
//! once per frame, not once per viewer.
//!
//! A stream's renditions (docs/renditions.md) each have their own writer
//! per thread, reading that rendition's slot: a writer is one (stream,
//! rendition). A viewer that asked for `auto` is fed to the rule in
//! `adapt.rs` as frames pass, and when the rule says so its writer hands it
//! to the writer of the next rendition down or up (`Joined::Moved`), only
//! once all of its current part is written, so it never sees a torn part
//! and nothing is encoded for it alone: it just gets another shared part.
//! A page's tile that asks for another width (resized, enlarged) is handed
//! to the other picture's writer by its client task (`websocket.rs`), which
//! sets the picture it serves each stream at (`WsState::serving`): the old
//! writer lets go at its next frame.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use prometheus::local::{LocalHistogram, LocalIntCounter};
use stream_common::ratelimit::LogEvery;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::adapt::{self, Adapt, Level, Switches};
use crate::detections::Prepared;
use crate::events::Prepared as EventChange;
use crate::part::Part;
use crate::rendition::Width;
use crate::serve::seats::{Load, OwnSocket, Seat, Watching};
use crate::serve::wire::{Wire, Wrote};
use crate::serve::wsconn::WsShared;
use crate::streams::Stream;

/// A viewer that reached its shard, as its stream's writer takes it in.
pub enum Joined {
    /// An MJPEG viewer or an events listener: its own socket (registered
    /// on this thread) and its response head.
    Own {
        socket: Wire,
        head: Bytes,
        viewer: OwnSocket,
        load: Load,
    },
    /// A WebSocket viewer's socket, shared with its other streams' writers.
    Ws {
        shared: Arc<WsShared>,
        watching: Watching,
    },
    /// An `auto` viewer (or a page's tile that asked for another width)
    /// moving from another rendition's writer on this thread.
    Moved(Moved),
}

/// A viewer on its way from one rendition's writer to another's, its
/// current part all written.
pub struct Moved(Box<Conn>);

/// The writer of each stream and rendition on one thread, started on its
/// first viewer.
pub struct Writers {
    inner: Arc<Inner>,
}

struct Inner {
    map: std::sync::Mutex<HashMap<(String, Level), mpsc::UnboundedSender<Joined>>>,
    stop: CancellationToken,
    switches: Switches,
}

impl Writers {
    pub fn new(stop: CancellationToken, switches: Switches) -> Self {
        Writers {
            inner: Arc::new(Inner {
                map: std::sync::Mutex::new(HashMap::new()),
                stop,
                switches,
            }),
        }
    }

    /// Gives `joined` to this thread's writer of `stream` at the rendition
    /// it asked for (an MJPEG viewer's `width`, a page's width for that
    /// stream; the full picture for events listeners).
    pub fn deliver(&self, stream: Arc<Stream>, joined: Joined) {
        deliver(&self.inner, stream, joined);
    }
}

fn deliver(inner: &Arc<Inner>, stream: Arc<Stream>, joined: Joined) {
    // The picture its `Watching` counts it at.
    let level = match &joined {
        Joined::Own {
            viewer: OwnSocket::Mjpeg(v),
            ..
        } => v.watching.choice(),
        Joined::Own { .. } => None,
        Joined::Ws { watching, .. } => watching.choice(),
        Joined::Moved(m) => m.0.level,
    };
    let key = (stream.name.clone(), level);
    let mut map = inner.map.lock().unwrap_or_else(|e| e.into_inner());
    let joined = match map.get(&key) {
        Some(tx) => match tx.send(joined) {
            Ok(()) => return,
            // That writer ended (shutdown, or the stream was forgotten);
            // start another.
            Err(mpsc::error::SendError(j)) => j,
        },
        None => joined,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(joined);
    map.insert(key, tx);
    tokio::spawn(writer(stream, level, rx, Arc::downgrade(inner)));
}

/// What a page asked for `stream` (the full picture when it named no width).
fn asked(widths: &HashMap<String, Width>, stream: &str) -> Width {
    widths.get(stream).copied().unwrap_or(Width::Full)
}

/// One viewer as its writer sees it.
struct Conn {
    out: Out,
    /// Tells a stale event from one for the viewer now in the same slot.
    id: u64,
    /// Waiting for the socket to drain.
    waiting: bool,
    min_interval: Option<Duration>,
    next_allowed: Instant,
    last_seq: Option<u64>,
    /// The detections version last handed to it (`Prepared::version`).
    det_sent: u64,
    /// The events version last handed to it (`EventChange::version`).
    ev_sent: u64,
    /// Counts it in `gateway_viewers{stream}` (not an events listener).
    _watching: Option<Watching>,
    /// An MJPEG or events viewer's seat and load; a WebSocket's are its
    /// client task's.
    _seat: Option<(Seat, Load)>,
    /// The rendition it gets now (`None`: the full picture).
    level: Level,
    /// What it asked for.
    want: Width,
    /// The `auto` rule's state, for a viewer that asked for `auto`.
    adapt: Option<Adapt>,
    /// Cancelled when it moves to another writer, which ends the old
    /// writer's wait on its socket.
    detach: CancellationToken,
}

impl Conn {
    /// A viewer that has been sent nothing yet, with no rate cap, seat or
    /// watch of its own.
    fn new(out: Out, id: u64) -> Conn {
        Conn {
            out,
            id,
            waiting: false,
            min_interval: None,
            next_allowed: Instant::now(),
            last_seq: None,
            det_sent: 0,
            ev_sent: 0,
            _watching: None,
            _seat: None,
            level: None,
            want: Width::Full,
            adapt: None,
            detach: CancellationToken::new(),
        }
    }

    /// What it asked for, and the `auto` rule's state when that is `auto`.
    fn asking(&mut self, want: Width) {
        self.want = want;
        self.adapt = matches!(want, Width::Auto { .. })
            .then(|| Adapt::new(adapt::Rule::default(), Instant::now()));
    }

    /// The rendition the `auto` rule moves it to now, at a part boundary,
    /// if any (counted in `switches`). `widths`: the stream's renditions now.
    fn next_level(&mut self, now: Instant, widths: &[u32], switches: &Switches) -> Option<Level> {
        let Width::Auto { max } = self.want else {
            return None;
        };
        let a = self.adapt.as_mut()?;
        let switch = a.decide(now, &adapt::ladder(widths, max), self.level)?;
        switches.count(&switch);
        tracing::debug!(
            from = ?self.level,
            to = ?switch.to,
            direction = switch.direction.label(),
            reason = switch.reason.label(),
            "auto viewer moves"
        );
        Some(switch.to)
    }
}

/// Where a viewer's bytes go, and what is not written yet (the response
/// head, or the rest of a part) with how far we got.
enum Out {
    /// An MJPEG viewer: a socket of its own.
    Mjpeg {
        socket: Arc<Wire>,
        pending: Option<(Bytes, usize)>,
    },
    /// A Server-Sent Events listener: a socket of its own, detections and
    /// never frames.
    Sse {
        socket: Arc<Wire>,
        pending: Option<(Bytes, usize)>,
    },
    /// Shared with the client's other streams: one pending message per socket.
    Ws(Arc<WsShared>),
}

/// Which bytes of a frame a viewer gets.
enum Want {
    Mjpeg,
    Ws,
    /// The newest detections' text message, then the frame's.
    WsWithDetections,
}

impl Conn {
    fn socket(&self) -> &Arc<Wire> {
        match &self.out {
            Out::Mjpeg { socket, .. } | Out::Sse { socket, .. } => socket,
            Out::Ws(shared) => &shared.socket,
        }
    }

    /// Writes what is pending; then, if all of it went and `next` is given,
    /// `next` too.
    fn write(&mut self, next: Option<Bytes>) -> Wrote {
        match &mut self.out {
            Out::Mjpeg { socket, pending } | Out::Sse { socket, pending } => {
                write_then(socket, pending, next)
            }
            Out::Ws(shared) => {
                let mut st = shared.lock();
                if st.closed {
                    return Wrote::Gone;
                }
                write_then(&shared.socket, &mut st.pending, next)
            }
        }
    }

    /// What this viewer gets of a frame, or `None` when it no longer wants
    /// this stream.
    fn wants(&mut self, stream: &str, dets: &Prepared) -> Option<Want> {
        match &self.out {
            Out::Mjpeg { .. } => Some(Want::Mjpeg),
            // Never asked: listeners are passed over for frames.
            Out::Sse { .. } => None,
            Out::Ws(shared) => {
                let st = shared.lock();
                // Not watched any more, or served at another picture now.
                if !st.serves(stream, self.level) {
                    return None;
                }
                self.min_interval = st.min_interval;
                Some(if st.detections && self.det_sent < dets.version {
                    Want::WsWithDetections
                } else {
                    Want::Ws
                })
            }
        }
    }

    /// A Server-Sent Events listener: detections, never frames.
    fn is_events(&self) -> bool {
        matches!(self.out, Out::Sse { .. })
    }

    /// Whether its socket is its own, so its read side is watched.
    fn owns_socket(&self) -> bool {
        !matches!(self.out, Out::Ws(_))
    }

    /// The detections message for an events listener.
    fn events_message(&self, d: &Prepared) -> Option<Bytes> {
        self.is_events().then(|| d.sse.clone())
    }

    /// The event change for this viewer, if it has not had it and wants
    /// it: an events listener's chunk, or a watching WebSocket's message.
    fn event_message(&self, stream: &str, e: &EventChange) -> Option<Bytes> {
        if self.ev_sent >= e.version {
            return None;
        }
        match &self.out {
            Out::Mjpeg { .. } => None,
            Out::Sse { .. } => Some(e.sse.clone()),
            Out::Ws(shared) => {
                let st = shared.lock();
                (st.events && st.serves(stream, self.level)).then(|| e.ws.clone())
            }
        }
    }

    /// Drains what an MJPEG viewer sent: `false` once it closed or failed.
    fn drain_input(&self) -> bool {
        let mut sink = [0u8; 1024];
        loop {
            match self.socket().try_read(&mut sink) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

fn write_then(socket: &Wire, pending: &mut Option<(Bytes, usize)>, next: Option<Bytes>) -> Wrote {
    match socket.send(pending) {
        Wrote::Done => match next {
            Some(bytes) => {
                *pending = Some((bytes, 0));
                socket.send(pending)
            }
            None => Wrote::Done,
        },
        other => other,
    }
}

enum Event {
    Writable(usize, u64),
    Readable(usize, u64),
}

type Events = FuturesUnordered<Pin<Box<dyn std::future::Future<Output = Event> + Send>>>;

fn on_writable(c: &mut Conn, i: usize) -> Pin<Box<dyn std::future::Future<Output = Event> + Send>> {
    c.waiting = true;
    let (socket, id) = (c.socket().clone(), c.id);
    Box::pin(async move {
        let _ = socket.writable().await;
        Event::Writable(i, id)
    })
}

fn on_readable(c: &Conn, i: usize) -> Pin<Box<dyn std::future::Future<Output = Event> + Send>> {
    let (socket, id, detach) = (c.socket().clone(), c.id, c.detach.clone());
    Box::pin(async move {
        // Moved to another writer: this one's wait ends (its id is stale).
        tokio::select! {
            _ = socket.readable() => {}
            _ = detach.cancelled() => {}
        }
        Event::Readable(i, id)
    })
}

/// Per-part accounting for one writer, added to the shared metrics once per
/// frame rather than once per viewer.
struct Tally {
    parts_out: LocalIntCounter,
    bytes_out: LocalIntCounter,
    skipped: LocalIntCounter,
    latency: LocalHistogram,
}

impl Tally {
    fn new(stream: &Stream, level: Level) -> Self {
        let m = &stream.metrics;
        Tally {
            parts_out: m.parts_out.local(),
            bytes_out: stream.bytes_out_at(level).local(),
            skipped: m.skipped.local(),
            latency: m.latency.local(),
        }
    }

    fn flush(&mut self) {
        self.parts_out.flush();
        self.bytes_out.flush();
        self.skipped.flush();
        self.latency.flush();
    }
}

/// The viewers of one stream's rendition on one thread.
struct Writer {
    stream: Arc<Stream>,
    level: Level,
    /// The other writers on this thread, to hand a moving viewer to.
    writers: std::sync::Weak<Inner>,
    switches: Switches,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    events: Events,
    tally: Tally,
    next_id: u64,
    /// The last frame a pass went out with, to notice frames nobody got.
    last_pass_seq: Option<u64>,
    overload_log: LogEvery,
    /// The stream's newest detections.
    dets: Arc<Prepared>,
    /// The stream's newest event change.
    evs: Arc<EventChange>,
    /// A frame's WebSocket message with those detections in front: the
    /// frame's `seq`, the detections' version, the bytes (built once).
    with_dets: Option<(u64, u64, Bytes)>,
}

async fn writer(
    stream: Arc<Stream>,
    level: Level,
    mut incoming: mpsc::UnboundedReceiver<Joined>,
    writers: std::sync::Weak<Inner>,
) {
    let Some((stop, switches)) = writers
        .upgrade()
        .map(|w| (w.stop.clone(), w.switches.clone()))
    else {
        return;
    };
    let mut slot = stream.subscribe_at(level);
    let mut dets = stream.detections.subscribe();
    let mut evs = stream.events.subscribe();
    // A forgotten stream's writer ends, so its name gets a fresh one.
    let forgotten = stream.forgotten().clone();
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut w = Writer {
        tally: Tally::new(&stream, level),
        stream,
        level,
        writers,
        switches,
        conns: Vec::new(),
        free: Vec::new(),
        events: FuturesUnordered::new(),
        next_id: 0,
        last_pass_seq: None,
        overload_log: LogEvery::new(Duration::from_secs(5)),
        dets: dets.borrow_and_update().clone(),
        evs: evs.borrow_and_update().clone(),
        with_dets: None,
    };
    loop {
        let has_viewers = w.free.len() < w.conns.len();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = forgotten.cancelled() => break,
            new = incoming.recv() => {
                let Some(j) = new else { break };
                let part = slot.borrow_and_update().clone();
                w.dets = dets.borrow_and_update().clone();
                w.evs = evs.borrow_and_update().clone();
                if !has_viewers {
                    w.last_pass_seq = part.as_ref().map(|p| p.seq);
                }
                w.add(j, part.as_deref());
                // A burst of new viewers is taken in at once, before the next frame.
                while let Ok(j) = incoming.try_recv() {
                    w.add(j, part.as_deref());
                }
            }
            changed = slot.changed(), if has_viewers => {
                if changed.is_err() { break }
                let Some(part) = slot.borrow_and_update().clone() else { continue };
                w.pass(&part);
                w.tally.flush();
                // A saturated writer always has a newer frame waiting: let
                // this thread's other writers, accept loop and requests run
                // between passes.
                tokio::task::yield_now().await;
                continue;
            }
            changed = dets.changed(), if has_viewers => {
                if changed.is_err() { break }
                w.dets = dets.borrow_and_update().clone();
                w.pass_detections();
            }
            changed = evs.changed(), if has_viewers => {
                if changed.is_err() { break }
                w.evs = evs.borrow_and_update().clone();
                w.pass_events();
            }
            _ = beat.tick(), if has_viewers => w.heartbeat(),
            Some(event) = w.events.next(), if !w.events.is_empty() => w.event(event),
        }
        w.tally.flush();
    }
}

/// `part`'s WebSocket message with the detections `d` in front, built once
/// per frame and detections (kept in `cache`) for every page that asked.
fn with_detections(cache: &mut Option<(u64, u64, Bytes)>, d: &Prepared, part: &Part) -> Bytes {
    if let Some((seq, version, bytes)) = cache
        && *seq == part.seq
        && *version == d.version
    {
        return bytes.clone();
    }
    let mut b = bytes::BytesMut::with_capacity(d.ws.len() + part.ws().len());
    b.extend_from_slice(&d.ws);
    b.extend_from_slice(part.ws());
    let bytes = b.freeze();
    *cache = Some((part.seq, d.version, bytes.clone()));
    bytes
}

/// How often every events listener gets a comment line (`:`), whatever
/// else it was sent, so proxies keep an idle connection open.
const HEARTBEAT: Duration = Duration::from_secs(15);
const HEARTBEAT_LINE: &[u8] = b":\n\n";

impl Writer {
    fn add(&mut self, j: Joined, part: Option<&Part>) {
        self.next_id += 1;
        let moved = matches!(j, Joined::Moved(_));
        let fresh = |out| Conn::new(out, self.next_id);
        let conn = match j {
            Joined::Moved(Moved(c)) => Conn {
                id: self.next_id,
                ..*c
            },
            Joined::Own {
                socket,
                head,
                viewer: OwnSocket::Mjpeg(viewer),
                load,
            } => {
                let mut c = Conn {
                    min_interval: viewer.fps_cap.map(|f| Duration::from_secs_f64(1.0 / f)),
                    level: self.level,
                    _watching: Some(viewer.watching),
                    _seat: Some((viewer.seat, load)),
                    ..fresh(Out::Mjpeg {
                        socket: Arc::new(socket),
                        pending: Some((head, 0)),
                    })
                };
                c.asking(viewer.width);
                c
            }
            Joined::Own {
                socket,
                head,
                viewer: OwnSocket::Events(viewer),
                load,
            } => Conn {
                // Only detections still fresh are worth sending at once.
                det_sent: if self.dets.received.is_some() {
                    0
                } else {
                    self.dets.version
                },
                _seat: Some((viewer.seat, load)),
                ..fresh(Out::Sse {
                    socket: Arc::new(socket),
                    pending: Some((head, 0)),
                })
            },
            Joined::Ws { shared, watching } => {
                let want = asked(&shared.lock().widths, &self.stream.name);
                let mut c = Conn {
                    level: self.level,
                    _watching: Some(watching),
                    ..fresh(Out::Ws(shared))
                };
                c.asking(want);
                c
            }
        };
        // Changes from now on: the recent list is the API's (a viewer
        // that moved keeps what it had).
        let conn = if moved {
            conn
        } else {
            Conn {
                ev_sent: self.evs.version,
                ..conn
            }
        };
        let watch_input = conn.owns_socket();
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if watch_input {
            self.events.push(on_readable(&conn, i));
        }
        let events = conn.is_events();
        self.conns[i] = Some(conn);
        if events {
            // The head, then the current detections.
            self.send_detections(i);
        } else if moved {
            // This rendition's current frame, unless it had that frame
            // (in the other size) already.
            let last = self.conns[i].as_ref().and_then(|c| c.last_seq);
            let newer = part.filter(|p| last.is_none_or(|l| p.seq > l));
            self.send(i, newer);
        } else {
            // The head, then the current frame at once rather than at the next one.
            self.send(i, part);
        }
    }

    /// The newest detections to every events listener that can take them
    /// now (WebSockets get them with the next frame).
    fn pass_detections(&mut self) {
        for i in 0..self.conns.len() {
            if self.conns[i]
                .as_ref()
                .is_some_and(|c| c.is_events() && !c.waiting)
            {
                self.send_detections(i);
            }
        }
    }

    /// The newest event change to every viewer that can take it now.
    fn pass_events(&mut self) {
        for i in 0..self.conns.len() {
            if self.conns[i].as_ref().is_some_and(|c| !c.waiting) {
                self.send_event(i);
            }
        }
    }

    /// Writes the newest event change to viewer `i` (after any pending
    /// bytes) unless it has had it or does not want it.
    fn send_event(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let Some(bytes) = c.event_message(&self.stream.name, &self.evs) else {
            return;
        };
        let version = self.evs.version;
        let wrote = match c.write(None) {
            Wrote::Done => {
                c.ev_sent = version;
                c.write(Some(bytes))
            }
            other => other,
        };
        self.wrote(i, wrote);
    }

    /// Writes the newest detections to events listener `i` (after any
    /// pending bytes) unless it has had them.
    fn send_detections(&mut self, i: usize) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let d = &self.dets;
        let next = if c.det_sent < d.version {
            c.events_message(d)
        } else {
            None
        };
        let wrote = match c.write(None) {
            Wrote::Done => match next {
                Some(bytes) => {
                    c.det_sent = d.version;
                    c.write(Some(bytes))
                }
                None => Wrote::Done,
            },
            other => other,
        };
        self.wrote(i, wrote);
    }

    /// A comment line to every events listener with nothing left to write.
    fn heartbeat(&mut self) {
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            if !c.is_events() || c.waiting {
                continue;
            }
            let wrote = match c.write(None) {
                Wrote::Done => c.write(Some(Bytes::from_static(HEARTBEAT_LINE))),
                other => other,
            };
            self.wrote(i, wrote);
        }
    }

    /// Follows up a write to viewer `i`: wait for its socket, or drop it.
    fn wrote(&mut self, i: usize, wrote: Wrote) {
        match wrote {
            Wrote::Done => {}
            Wrote::Partial => {
                if let Some(c) = self.conns[i].as_mut() {
                    let drained = on_writable(c, i);
                    self.events.push(drained);
                }
            }
            Wrote::Gone => self.remove(i),
        }
    }

    /// One frame to every viewer that can take it now.
    fn pass(&mut self, part: &Part) {
        if let Some(last) = self.last_pass_seq
            && part.seq > last + 1
        {
            let missed = part.seq - last - 1;
            self.stream.metrics.fanout_missed.inc_by(missed);
            if let Some(folded) = self.overload_log.check(Instant::now()) {
                tracing::warn!(
                    stream = %self.stream.name,
                    missed,
                    repeats = folded,
                    "fan-out cannot keep up (CPU saturated): frames went to no viewer on this thread; \
                     every viewer's rate drops"
                );
            }
        }
        self.last_pass_seq = Some(part.seq);
        let now = Instant::now();
        let mut widths = None;
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            if c.waiting {
                // Still writing an older part: skip this frame.
                if let Some(a) = c.adapt.as_mut() {
                    a.frame(now, true);
                }
                continue;
            }
            if c.next_allowed > now || c.is_events() {
                // Capped below the rate, or never sent frames.
                continue;
            }
            self.send(i, Some(part));
            let Some(c) = self.conns[i].as_mut() else {
                continue;
            };
            if let Some(a) = c.adapt.as_mut() {
                a.frame(now, false);
                if c.waiting {
                    a.filled(now);
                }
            }
            if !c.waiting && c.adapt.is_some() {
                let widths = widths.get_or_insert_with(|| self.widths());
                self.maybe_move(i, now, widths);
            }
        }
    }

    /// The stream's renditions' widths now, ascending.
    fn widths(&self) -> Vec<u32> {
        self.stream.renditions().iter().map(|(w, _)| *w).collect()
    }

    /// Hands viewer `i`, all of its current part written, to the writer of
    /// the rendition it should move to, if any.
    fn maybe_move(&mut self, i: usize, now: Instant, widths: &[u32]) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let Some(to) = c.next_level(now, widths, &self.switches) else {
            return;
        };
        let Some(writers) = self.writers.upgrade() else {
            return;
        };
        let Some(mut c) = self.conns[i].take() else {
            return;
        };
        self.free.push(i);
        c.detach.cancel();
        c.detach = CancellationToken::new();
        c.level = to;
        if let Some(w) = c._watching.as_mut() {
            w.switch(to);
        }
        if let Out::Ws(shared) = &c.out {
            // Its writers of this stream check the picture it is served at.
            shared.lock().serving.insert(self.stream.name.clone(), to);
        }
        deliver(
            &writers,
            self.stream.clone(),
            Joined::Moved(Moved(Box::new(c))),
        );
    }

    fn event(&mut self, event: Event) {
        let (i, id) = match event {
            Event::Writable(i, id) | Event::Readable(i, id) => (i, id),
        };
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if c.id != id {
            return;
        }
        match event {
            Event::Readable(..) => {
                if c.drain_input() {
                    let again = on_readable(c, i);
                    self.events.push(again);
                } else {
                    self.remove(i);
                }
            }
            Event::Writable(..) => {
                c.waiting = false;
                match c.write(None) {
                    // Drained: detections and events that came meanwhile go now.
                    Wrote::Done => {
                        self.send_detections(i);
                        if self.conns[i].as_ref().is_some_and(|c| !c.waiting) {
                            self.send_event(i);
                        }
                        // A part boundary: an auto viewer may move now.
                        if self.conns[i]
                            .as_ref()
                            .is_some_and(|c| !c.waiting && c.adapt.is_some())
                        {
                            let widths = self.widths();
                            self.maybe_move(i, Instant::now(), &widths);
                        }
                    }
                    Wrote::Partial => {
                        let again = on_writable(c, i);
                        self.events.push(again);
                    }
                    Wrote::Gone => self.remove(i),
                }
            }
        }
    }

    /// Queues `part` for viewer `i` (after any pending bytes) and writes what
    /// its socket takes now.
    fn send(&mut self, i: usize, part: Option<&Part>) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let next = match part {
            Some(part) => match c.wants(&self.stream.name, &self.dets) {
                Some(Want::Mjpeg) => Some((part, part.bytes.clone(), None)),
                Some(Want::Ws) => Some((part, part.ws().clone(), None)),
                Some(Want::WsWithDetections) => {
                    let bytes = with_detections(&mut self.with_dets, &self.dets, part);
                    Some((part, bytes, Some(self.dets.version)))
                }
                None => {
                    // A WebSocket that stopped watching this stream.
                    self.remove(i);
                    return;
                }
            },
            None => None,
        };
        let wrote = match next {
            None => c.write(None),
            Some((part, bytes, dets)) => match c.write(None) {
                Wrote::Done => {
                    if let Some(version) = dets {
                        c.det_sent = version;
                    }
                    let t = &mut self.tally;
                    if let Some(last) = c.last_seq {
                        t.skipped.inc_by(part.seq.saturating_sub(last + 1));
                    }
                    c.last_seq = Some(part.seq);
                    if part.live {
                        let age_ns =
                            stream_common::unix_now_ns().saturating_sub(part.capture_ts_ns);
                        t.latency.observe(age_ns as f64 / 1e9);
                    }
                    if let Some(iv) = c.min_interval {
                        c.next_allowed = Instant::now() + iv;
                    }
                    t.parts_out.inc();
                    t.bytes_out.inc_by(bytes.len() as u64);
                    c.write(Some(bytes))
                }
                other => other,
            },
        };
        match wrote {
            Wrote::Done => {}
            Wrote::Partial => {
                let drained = on_writable(c, i);
                self.events.push(drained);
            }
            Wrote::Gone => self.remove(i),
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(c) = self.conns[i].take() {
            // Pending events hold the socket too: shut it now so the peer
            // sees the end at once and those events resolve.
            if c.owns_socket() {
                c.socket().shutdown_both();
            }
            self.free.push(i);
        }
    }
}
