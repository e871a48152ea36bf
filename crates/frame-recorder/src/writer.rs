//! One writer thread per camera, fed through a bounded queue, so a slow or
//! full disk never holds up the bus or another camera: when a camera's
//! queue is full its frames are dropped and counted, and a write that fails
//! (no space, I/O error) costs that camera the cluster in hand and, for a
//! second, what follows; then it tries again, so recording resumes by
//! itself once space returns.
//!
//! Frames are gathered into clusters of about [`Settings::cluster`] and each
//! cluster reaches the file in one positional write; the catalog learns of
//! its frames once it is there. A failed write is cut back off the file, so
//! the file always ends at a whole cluster. A segment is finished after
//! [`Settings::segment`] of capture time, when the picture size changes,
//! after [`Settings::idle_finish`] without frames, or at shutdown: its
//! Duration is written and its index put beside it.
//!
//! In `events` mode frames wait in a pre-roll ring and are written only
//! around detections and the event stage's events: from `pre_roll` before
//! a detection (or an event's start) to `post_roll` after the last
//! detection (or the event's end). An event's start reaches the recorder
//! after the stage has been sure of it for a while (`--event-min-seconds`),
//! so the ring holds [`LOOK_BACK`] more than the pre-roll.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stream_common::ratelimit::LogEvery;

use crate::metrics::RecorderMetrics;
use crate::mkv;
use crate::store::{Entry, Event, Mode, Store, duration_ms, write_index};

/// A frame as the writer takes it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub ts_ns: u64,
    pub width: u32,
    pub height: u32,
    pub jpeg: Bytes,
}

/// How much longer than the pre-roll the ring keeps frames: how late an
/// event's start may arrive and still be recorded from its pre-roll.
pub const LOOK_BACK: Duration = Duration::from_secs(5);
/// An event heard of but not ended holds recording on for at most this
/// long after its last message (a stage that died never sends the end).
const HOLD: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub enum Item {
    Frame(Frame),
    /// A detections message with at least one box, for the frame captured at `ts_ns`.
    Detection {
        ts_ns: u64,
        labels: Vec<String>,
    },
    /// An event's start, update or end (capture times of its first and last frames).
    Event {
        id: String,
        start_ns: u64,
        end_ns: u64,
        ended: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub segment: Duration,
    pub cluster: Duration,
    pub idle_finish: Duration,
    pub pre_roll: Duration,
    pub post_roll: Duration,
    pub queue_frames: usize,
    pub queue_bytes: usize,
    /// Keep at most this many frames per second (`--record-fps`).
    pub record_fps: Option<f64>,
    /// Wait this long after a failed write before trying again.
    pub retry_after: Duration,
}

/// The receive side's handle on one camera's writer.
pub struct Camera {
    name: String,
    tx: SyncSender<Item>,
    queued_bytes: Arc<AtomicUsize>,
    queue_bytes: usize,
    min_gap_ns: u64,
    last_kept_ns: u64,
    metrics: RecorderMetrics,
    full_log: LogEvery,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Camera {
    pub fn start(
        name: &str,
        mode: Mode,
        store: Arc<Store>,
        settings: &Settings,
        metrics: RecorderMetrics,
    ) -> std::io::Result<Camera> {
        let (tx, rx) = std::sync::mpsc::sync_channel(settings.queue_frames);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            name: name.to_string(),
            mode,
            store,
            settings: settings.clone(),
            metrics: metrics.clone(),
            queued_bytes: queued_bytes.clone(),
            open: None,
            ring: VecDeque::new(),
            until_ns: 0,
            last_event_ns: 0,
            ongoing: HashMap::new(),
            last_ts_ns: 0,
            failed_at: None,
            error_log: LogEvery::new(Duration::from_secs(5)),
        };
        let thread = std::thread::Builder::new()
            .name(format!("rec-{name}"))
            .spawn(move || writer.run(rx))?;
        Ok(Camera {
            name: name.to_string(),
            tx,
            queued_bytes,
            queue_bytes: settings.queue_bytes,
            min_gap_ns: settings
                .record_fps
                .map_or(0, |fps| (1e9 / fps * 0.9) as u64),
            last_kept_ns: 0,
            metrics,
            full_log: LogEvery::new(Duration::from_secs(5)),
            thread: Some(thread),
        })
    }

    /// Hands a frame to the writer, never waiting: dropped (and counted)
    /// when the queue is full.
    pub fn frame(&mut self, frame: Frame) {
        if self.min_gap_ns > 0 {
            if frame.ts_ns >= self.last_kept_ns && frame.ts_ns - self.last_kept_ns < self.min_gap_ns
            {
                return;
            }
            self.last_kept_ns = frame.ts_ns;
        }
        let len = frame.jpeg.len();
        if self.queued_bytes.load(Ordering::Relaxed) + len > self.queue_bytes {
            self.dropped(1);
            return;
        }
        self.queued_bytes.fetch_add(len, Ordering::Relaxed);
        match self.tx.try_send(Item::Frame(frame)) {
            Ok(()) => self.metrics.queue_depth(&self.name, 1),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.dropped(1);
            }
        }
    }

    /// An event message for this camera (only events mode records around it).
    pub fn event(&mut self, id: String, start_ns: u64, end_ns: u64, ended: bool) {
        let item = Item::Event {
            id,
            start_ns,
            end_ns,
            ended,
        };
        if self.tx.try_send(item).is_ok() {
            self.metrics.queue_depth(&self.name, 1);
        }
    }

    pub fn detection(&mut self, ts_ns: u64, labels: Vec<String>) {
        // A detection is small; if even it does not fit, the frames around
        // it are being dropped anyway.
        if self.tx.try_send(Item::Detection { ts_ns, labels }).is_ok() {
            self.metrics.queue_depth(&self.name, 1);
        }
    }

    fn dropped(&mut self, n: u64) {
        self.metrics.dropped(&self.name, "queue_full", n);
        if let Some(folded) = self.full_log.check(Instant::now()) {
            tracing::warn!(stream = %self.name, repeats = folded, "recording queue full (disk too slow?); dropping frames");
        }
    }

    /// Closes the queue and waits for the writer to finish its segment.
    pub fn stop(mut self) {
        let Camera { tx, thread, .. } = &mut self;
        drop(std::mem::replace(tx, std::sync::mpsc::sync_channel(0).0));
        if let Some(t) = thread.take() {
            let _ = t.join();
        }
    }
}

/// The segment being written.
struct Open {
    file: File,
    path: std::path::PathBuf,
    start_ms: u64,
    header: mkv::Header,
    duration_at: u64,
    /// Bytes on disk (0: not even the header yet).
    len: u64,
    entries: Vec<Entry>,
    pending: Vec<Frame>,
    pending_since: Instant,
    last_frame_at: Instant,
}

struct Writer {
    name: String,
    mode: Mode,
    store: Arc<Store>,
    settings: Settings,
    metrics: RecorderMetrics,
    queued_bytes: Arc<AtomicUsize>,
    open: Option<Open>,
    /// Events mode: the frames of the last `pre_roll`, not yet written.
    ring: VecDeque<Frame>,
    /// Events mode: record frames captured up to this time.
    until_ns: u64,
    last_event_ns: u64,
    /// Events mode: events started and not yet ended, with when they were last heard of.
    ongoing: HashMap<String, Instant>,
    last_ts_ns: u64,
    failed_at: Option<Instant>,
    error_log: LogEvery,
}

impl Writer {
    fn run(mut self, rx: Receiver<Item>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(item) => {
                    self.metrics.queue_depth(&self.name, -1);
                    match item {
                        Item::Frame(f) => {
                            self.queued_bytes.fetch_sub(f.jpeg.len(), Ordering::Relaxed);
                            self.on_frame(f);
                        }
                        Item::Detection { ts_ns, labels } => self.on_detection(ts_ns, labels),
                        Item::Event {
                            id,
                            start_ns,
                            end_ns,
                            ended,
                        } => self.on_event(id, start_ns, end_ns, ended),
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.tick();
        }
        self.finish();
    }

    fn tick(&mut self) {
        let Some(open) = &self.open else { return };
        if open.last_frame_at.elapsed() >= self.settings.idle_finish {
            self.finish();
        } else if !open.pending.is_empty() && open.pending_since.elapsed() >= self.settings.cluster
        {
            self.flush();
        }
    }

    fn on_frame(&mut self, f: Frame) {
        if f.ts_ns <= self.last_ts_ns {
            self.metrics.dropped(&self.name, "out_of_order", 1);
            return;
        }
        self.last_ts_ns = f.ts_ns;
        let within = self.mode == Mode::Events && (f.ts_ns <= self.until_ns || self.holding());
        match self.mode {
            Mode::Continuous => self.write(f),
            Mode::Events if within => self.write(f),
            Mode::Events | Mode::Off => {
                if self.open.is_some() {
                    self.finish();
                }
                let keep_from = f
                    .ts_ns
                    .saturating_sub((self.settings.pre_roll + LOOK_BACK).as_nanos() as u64);
                self.ring.push_back(f);
                while self.ring.front().is_some_and(|g| g.ts_ns < keep_from) {
                    self.ring.pop_front();
                }
            }
        }
    }

    /// Whether an event not yet ended holds recording on.
    fn holding(&mut self) -> bool {
        if self.ongoing.is_empty() {
            return false;
        }
        self.ongoing.retain(|_, heard| heard.elapsed() < HOLD);
        !self.ongoing.is_empty()
    }

    fn on_event(&mut self, id: String, start_ns: u64, end_ns: u64, ended: bool) {
        if self.mode != Mode::Events {
            return;
        }
        if ended {
            self.ongoing.remove(&id);
            let post = self.settings.post_roll.as_nanos() as u64;
            self.until_ns = self.until_ns.max(end_ns.saturating_add(post));
        } else if self.ongoing.len() < 1024 || self.ongoing.contains_key(&id) {
            self.ongoing.insert(id, Instant::now());
        }
        self.write_ring_from(start_ns.saturating_sub(self.settings.pre_roll.as_nanos() as u64));
    }

    /// Writes the ring's frames captured at or after `from`; drops the rest.
    fn write_ring_from(&mut self, from: u64) {
        for f in std::mem::take(&mut self.ring) {
            if f.ts_ns >= from {
                self.write(f);
            }
        }
    }

    fn on_detection(&mut self, ts_ns: u64, labels: Vec<String>) {
        let post = self.settings.post_roll.as_nanos() as u64;
        if ts_ns > self.last_event_ns.saturating_add(post) {
            self.store.add_event(
                &self.name,
                Event {
                    at_ms: ts_ns / 1_000_000,
                    labels,
                },
            );
        }
        self.last_event_ns = self.last_event_ns.max(ts_ns);
        if self.mode != Mode::Events {
            return;
        }
        self.until_ns = self.until_ns.max(ts_ns.saturating_add(post));
        self.write_ring_from(ts_ns.saturating_sub(self.settings.pre_roll.as_nanos() as u64));
    }

    fn write(&mut self, f: Frame) {
        if let Some(open) = &self.open {
            let age = (f.ts_ns / 1_000_000).saturating_sub(open.start_ms);
            if age >= self.settings.segment.as_millis() as u64
                || (f.width, f.height) != (open.header.width, open.header.height)
            {
                self.finish();
            }
        }
        if let Some(open) = &self.open
            && open
                .pending
                .first()
                .is_some_and(|p| (f.ts_ns - p.ts_ns) / 1_000_000 >= mkv::MAX_BLOCK_OFFSET_MS)
        {
            self.flush();
        }
        if self.open.is_none() {
            if self
                .failed_at
                .is_some_and(|t| t.elapsed() < self.settings.retry_after)
            {
                self.metrics.dropped(&self.name, "write_error", 1);
                return;
            }
            let start_ms = f.ts_ns / 1_000_000;
            match self.store.begin(
                &self.name,
                start_ms,
                self.mode == Mode::Events,
                f.width,
                f.height,
            ) {
                Ok((file, seg)) => {
                    let header = mkv::Header {
                        start_ms: seg.start_ms,
                        width: f.width,
                        height: f.height,
                    };
                    self.open = Some(Open {
                        file,
                        path: seg.path,
                        start_ms: seg.start_ms,
                        header,
                        duration_at: 0,
                        len: 0,
                        entries: Vec::new(),
                        pending: Vec::new(),
                        pending_since: Instant::now(),
                        last_frame_at: Instant::now(),
                    });
                }
                Err(e) => {
                    self.failed(&e, 1);
                    return;
                }
            }
        }
        let Some(open) = &mut self.open else { return };
        if open.pending.is_empty() {
            open.pending_since = Instant::now();
        }
        open.last_frame_at = Instant::now();
        open.pending.push(f);
        if open.pending_since.elapsed() >= self.settings.cluster {
            self.flush();
        }
    }

    /// Writes the pending frames as one cluster (after the header, for the first).
    fn flush(&mut self) {
        let Some(open) = &mut self.open else { return };
        if open.pending.is_empty() {
            return;
        }
        let frames: Vec<(u64, &[u8])> = open
            .pending
            .iter()
            .map(|f| {
                (
                    (f.ts_ns / 1_000_000).saturating_sub(open.start_ms),
                    &f.jpeg[..],
                )
            })
            .collect();
        let (cluster, offsets) = mkv::cluster(&frames);
        let mut buf = Vec::new();
        if open.len == 0 {
            let (head, duration_at) = mkv::header(&open.header, 0.0);
            open.duration_at = duration_at;
            buf = head;
        }
        let base = open.len + buf.len() as u64;
        buf.extend_from_slice(&cluster);
        let started = Instant::now();
        let result = open.file.write_all_at(&buf, open.len);
        self.metrics
            .write_seconds
            .observe(started.elapsed().as_secs_f64());
        let n = open.pending.len() as u64;
        match result {
            Ok(()) => {
                open.len += buf.len() as u64;
                let new: Vec<Entry> = open
                    .pending
                    .iter()
                    .zip(offsets)
                    .map(|(f, at)| Entry {
                        ts_ns: f.ts_ns,
                        offset: base + at,
                        len: f.jpeg.len() as u32,
                    })
                    .collect();
                open.pending.clear();
                self.store
                    .appended(&self.name, open.start_ms, &new, open.len);
                self.metrics.written(&self.name, n, buf.len() as u64);
                open.entries.extend(new);
                self.failed_at = None;
            }
            Err(e) => {
                // Whatever part of it landed is cut off again.
                let _ = open.file.set_len(open.len);
                open.pending.clear();
                self.failed(&e, n);
                self.finish();
            }
        }
    }

    fn failed(&mut self, e: &std::io::Error, frames: u64) {
        let reason = if e.raw_os_error() == Some(28) {
            "disk_full"
        } else {
            "write_error"
        };
        self.metrics.dropped(&self.name, reason, frames);
        self.failed_at = Some(Instant::now());
        if let Some(folded) = self.error_log.check(Instant::now()) {
            tracing::warn!(stream = %self.name, error = %e, repeats = folded, "cannot write the recording; dropping frames and retrying every second");
        }
    }

    /// Finishes the segment being written: last cluster, Duration, index.
    fn finish(&mut self) {
        self.flush();
        let Some(open) = self.open.take() else { return };
        if open.entries.is_empty() {
            drop(open.file);
            self.store.finished(&self.name, open.start_ms, false);
            return;
        }
        let duration = duration_ms(&open.entries);
        let patched = mkv::patch_duration(&open.file, open.duration_at, duration)
            .and_then(|()| open.file.sync_data());
        let path = open.path.with_extension("idx");
        let meta = crate::store::IndexMeta {
            width: open.header.width,
            height: open.header.height,
            bytes: open.len,
        };
        let indexed = patched.and_then(|()| write_index(&path, meta, &open.entries));
        if let Err(e) = &indexed {
            // The segment stays readable from memory; a restart repairs it.
            if let Some(folded) = self.error_log.check(Instant::now()) {
                tracing::warn!(stream = %self.name, error = %e, repeats = folded, "cannot finish the segment's index; a restart rebuilds it");
            }
        }
        self.store
            .finished(&self.name, open.start_ms, indexed.is_ok());
        self.metrics.segment_finished(&self.name);
    }
}
