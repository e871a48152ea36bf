//! The one delivery path: every viewer of every stream, however its request
//! arrived, is written by a fan-out writer here.
//!
//! Each serving thread (`server.rs`) runs one shard: a writer task per
//! stream that walks that thread's viewers of the stream once per frame and
//! writes the shared part with one `write()` each. A viewer whose socket is
//! full keeps its unsent remainder and waits for the socket to drain: it
//! skips frames instead of queueing them. A viewer that closes its socket is
//! released at once (its read side is watched), frames flowing or not.
//!
//! A new viewer goes to the shard with the fewest viewers, so every core
//! carries its share and, when the machine cannot keep up, every viewer's
//! rate drops together. Its socket is moved out of the accepting thread's
//! reactor into the chosen thread's, so each thread only ever polls its own
//! sockets. Per-part counters are kept per writer and added to the shared
//! metrics once per frame, not once per viewer.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use prometheus::IntGauge;
use prometheus::local::{LocalHistogram, LocalIntCounter};
use stream_common::ratelimit::LogEvery;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::GatewayMetrics;
use crate::part::Part;
use crate::serve::admission::{Seat, Viewer};
use crate::streams::Stream;

/// Hands admitted viewers to the shards; shared by all serving threads.
pub struct Fanout {
    shards: Vec<ShardHandle>,
}

struct ShardHandle {
    tx: mpsc::UnboundedSender<Joining>,
    load: Arc<AtomicUsize>,
    gauge: IntGauge,
}

/// One shard's end of the hand-over, run by [`run_shard`] on its thread.
pub struct ShardInbox {
    rx: mpsc::UnboundedReceiver<Joining>,
}

/// A viewer on its way to a shard: its socket, out of any reactor, and the
/// response head to write first.
struct Joining {
    socket: std::net::TcpStream,
    head: Bytes,
    viewer: Viewer,
    load: Load,
}

/// Counts a viewer in its shard's load (and the shard's gauge) while it lives.
struct Load(Arc<AtomicUsize>, IntGauge);

impl Load {
    fn new(shard: &ShardHandle) -> Self {
        shard.load.fetch_add(1, Ordering::Relaxed);
        shard.gauge.inc();
        Load(shard.load.clone(), shard.gauge.clone())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.dec();
    }
}

impl Fanout {
    /// A fan-out over `shards` serving threads, and each thread's inbox.
    pub fn new(shards: usize, metrics: &GatewayMetrics) -> (Arc<Fanout>, Vec<ShardInbox>) {
        let (handles, inboxes) = (0..shards.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::unbounded_channel();
                let handle = ShardHandle {
                    tx,
                    load: Arc::new(AtomicUsize::new(0)),
                    gauge: metrics.for_thread(i),
                };
                (handle, ShardInbox { rx })
            })
            .unzip();
        (Arc::new(Fanout { shards: handles }), inboxes)
    }

    /// Hands a viewer whose request was read on shard `local` to the least
    /// loaded shard (`local` on a tie). `head` is written before any part.
    pub fn join(&self, local: usize, socket: TcpStream, head: Bytes, viewer: Viewer) {
        let load = |i: usize| self.shards[i].load.load(Ordering::Relaxed);
        let local = local.min(self.shards.len() - 1);
        let target = (0..self.shards.len())
            .fold(local, |best, i| if load(i) < load(best) { i } else { best });
        let socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "viewer socket lost before it joined");
                return;
            }
        };
        let shard = &self.shards[target];
        let joining = Joining {
            socket,
            head,
            viewer,
            load: Load::new(shard),
        };
        // Fails only when that thread has stopped (shutdown): the viewer is
        // dropped with the message, closing its socket.
        let _ = shard.tx.send(joining);
    }
}

/// A viewer that reached its shard, its socket registered on this thread.
struct Joined {
    socket: TcpStream,
    head: Bytes,
    viewer: Viewer,
    load: Load,
}

/// Runs one shard until `stop`: takes viewers in and gives each stream its
/// writer on this thread.
pub async fn run_shard(mut inbox: ShardInbox, stop: CancellationToken) {
    let mut writers: HashMap<String, mpsc::UnboundedSender<Joined>> = HashMap::new();
    loop {
        let joining = tokio::select! {
            _ = stop.cancelled() => return,
            j = inbox.rx.recv() => match j { Some(j) => j, None => return },
        };
        let socket = match TcpStream::from_std(joining.socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register a viewer's socket");
                continue;
            }
        };
        let stream = joining.viewer.seat.stream.clone();
        let mut joined = Joined {
            socket,
            head: joining.head,
            viewer: joining.viewer,
            load: joining.load,
        };
        if let Some(tx) = writers.get(&stream.name) {
            match tx.send(joined) {
                Ok(()) => continue,
                Err(mpsc::error::SendError(j)) => joined = j,
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(joined);
        writers.insert(stream.name.clone(), tx);
        tokio::spawn(writer(stream, rx, stop.clone()));
    }
}

/// One viewer as its writer sees it.
struct Conn {
    socket: Arc<TcpStream>,
    /// Tells a stale event from one for the viewer now in the same slot.
    id: u64,
    /// Bytes not yet written (response head, or the rest of a part) and how far we got.
    pending: Option<(Bytes, usize)>,
    /// Waiting for the socket to drain.
    waiting: bool,
    min_interval: Option<Duration>,
    next_allowed: Instant,
    last_seq: Option<u64>,
    _seat: Seat,
    _load: Load,
}

enum Wrote {
    Done,
    Partial,
    Gone,
}

impl Conn {
    /// Writes as much of the pending bytes as the socket takes now.
    fn flush(&mut self) -> Wrote {
        let Some((buf, mut off)) = self.pending.take() else {
            return Wrote::Done;
        };
        loop {
            match self.socket.try_write(&buf[off..]) {
                Ok(0) => return Wrote::Gone,
                Ok(n) if off + n == buf.len() => return Wrote::Done,
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.pending = Some((buf, off));
                    return Wrote::Partial;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Wrote::Gone,
            }
        }
    }

    /// Drains what the viewer sent: `false` once it closed or failed.
    fn drain_input(&self) -> bool {
        let mut sink = [0u8; 1024];
        loop {
            match self.socket.try_read(&mut sink) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

enum Event {
    Writable(usize, u64),
    Readable(usize, u64),
}

type Events = FuturesUnordered<Pin<Box<dyn std::future::Future<Output = Event> + Send>>>;

fn on_writable(c: &mut Conn, i: usize) -> Pin<Box<dyn std::future::Future<Output = Event> + Send>> {
    c.waiting = true;
    let (socket, id) = (c.socket.clone(), c.id);
    Box::pin(async move {
        let _ = socket.writable().await;
        Event::Writable(i, id)
    })
}

fn on_readable(c: &Conn, i: usize) -> Pin<Box<dyn std::future::Future<Output = Event> + Send>> {
    let (socket, id) = (c.socket.clone(), c.id);
    Box::pin(async move {
        let _ = socket.readable().await;
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
    fn new(stream: &Stream) -> Self {
        let m = &stream.metrics;
        Tally {
            parts_out: m.parts_out.local(),
            bytes_out: m.bytes_out.local(),
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

/// The viewers of one stream on one thread.
struct Writer {
    stream: Arc<Stream>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    events: Events,
    tally: Tally,
    next_id: u64,
    /// The last frame a pass went out with, to notice frames nobody got.
    last_pass_seq: Option<u64>,
    overload_log: LogEvery,
}

async fn writer(
    stream: Arc<Stream>,
    mut incoming: mpsc::UnboundedReceiver<Joined>,
    stop: CancellationToken,
) {
    let mut slot = stream.subscribe();
    let mut w = Writer {
        tally: Tally::new(&stream),
        stream,
        conns: Vec::new(),
        free: Vec::new(),
        events: FuturesUnordered::new(),
        next_id: 0,
        last_pass_seq: None,
        overload_log: LogEvery::new(Duration::from_secs(5)),
    };
    loop {
        let has_viewers = w.free.len() < w.conns.len();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            new = incoming.recv() => {
                let Some(j) = new else { break };
                let part = slot.borrow_and_update().clone();
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
            }
            Some(event) = w.events.next(), if !w.events.is_empty() => w.event(event),
        }
        w.tally.flush();
    }
}

impl Writer {
    fn add(&mut self, j: Joined, part: Option<&Part>) {
        self.next_id += 1;
        let conn = Conn {
            socket: Arc::new(j.socket),
            id: self.next_id,
            pending: Some((j.head, 0)),
            waiting: false,
            min_interval: j.viewer.fps_cap.map(|f| Duration::from_secs_f64(1.0 / f)),
            next_allowed: Instant::now(),
            last_seq: None,
            _seat: j.viewer.seat,
            _load: j.load,
        };
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.events.push(on_readable(&conn, i));
        self.conns[i] = Some(conn);
        // The head, then the current frame at once rather than at the next one.
        self.send(i, part);
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
        for i in 0..self.conns.len() {
            let Some(c) = self.conns[i].as_ref() else {
                continue;
            };
            if c.waiting || c.next_allowed > now {
                // Still writing an older part (or capped): skip this frame.
                continue;
            }
            self.send(i, Some(part));
        }
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
                match c.flush() {
                    Wrote::Done => {}
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
        let wrote = match c.flush() {
            Wrote::Done => match part {
                Some(part) => {
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
                    t.bytes_out.inc_by(part.bytes.len() as u64);
                    c.pending = Some((part.bytes.clone(), 0));
                    c.flush()
                }
                None => Wrote::Done,
            },
            other => other,
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
            let _ = socket2::SockRef::from(&*c.socket).shutdown(std::net::Shutdown::Both);
            self.free.push(i);
        }
    }
}
