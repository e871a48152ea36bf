//! The streams a gateway knows, each with its latest-frame slot.
//!
//! The slot is a `watch` channel holding the newest [`Part`]: the receive task
//! overwrites it, every viewer reads the newest value when its socket can take
//! more. Nothing queues, so a slow viewer skips frames and costs at most the
//! one part it is writing.
//!
//! Two kinds of picture fill the slot: full-rate frames, and previews (about
//! one small JPEG a second, which every stream sends). Previews keep
//! an unwatched stream known, online and with a current snapshot; once
//! full-rate frames arrive they alone fill the slot, and previews are ignored
//! until they stop. So a stream's first viewer sees its preview at once,
//! then live video.
//!
//! A stream may also have renditions (`rendition.rs`), smaller copies of
//! its frames that its producer announces (`i/<name>/`) and sends while
//! they are subscribed: each has a slot of its own, filled like the full
//! one (its frames, else the previews; the keeper's re-sends and
//! placeholder too), so a viewer of a rendition is served exactly as a
//! viewer of the full picture is.
//!
//! What publishers can make the gateway hold is bounded: at most
//! `--max-streams` streams (a message for a new one beyond that is dropped
//! and counted), and a stream gone for `--forget-after` with no viewer is
//! forgotten, its slot and series freed (its writers end with it).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use stream_common::ratelimit::LogEvery;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::detections::Latest;
use crate::events::Recent;
use crate::interest::{Interest, Wanting};
use crate::metrics::{GatewayMetrics, RenditionMetrics, StreamMetrics};
use crate::part::Part;
use crate::rendition::{Choice, Width};

pub type Slot = Option<Arc<Part>>;

/// How long a stream fed by previews alone (about one a second) may be
/// silent before it counts as offline, whatever `--stale-after` says; also
/// how long the receive task lets a producer that sends only previews be
/// silent before recreating its socket.
pub const PREVIEW_SILENCE: Duration = Duration::from_secs(3);

/// Previews are ignored while full-rate frames arrive at least this often
/// (or within three of their usual intervals).
const FULL_RATE_GAP: Duration = Duration::from_secs(1);

/// What publishers can make a gateway hold (`--max-streams`, `--forget-after`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most streams held at once.
    pub max_streams: usize,
    /// How long a stream with no viewer may be gone before it is
    /// forgotten; `None`: never.
    pub forget_after: Option<Duration>,
    /// Most recent events kept per stream (`--recent-events`).
    pub recent_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams: 256,
            forget_after: Some(Duration::from_secs(600)),
            recent_events: 50,
        }
    }
}

pub struct Stream {
    pub name: String,
    /// Position of the first producer (in `--producer` order) that sent it.
    producer_index: usize,
    slot: watch::Sender<Slot>,
    state: Mutex<State>,
    pub metrics: StreamMetrics,
    /// What a detector last found in it (`detections.rs`).
    pub detections: Latest,
    /// What the event stage reported of it lately (`events.rs`).
    pub events: Recent,
    /// Counts its viewers, for subscribing on demand.
    interest: Arc<Interest>,
    /// Its viewers now (MJPEG and WebSocket): a stream is not forgotten
    /// while it has any.
    viewers: AtomicUsize,
    /// Cancelled when the stream is forgotten: its fan-out writers end.
    forgotten: CancellationToken,
    /// Its renditions as its producer last announced them, ascending.
    renditions: RwLock<Vec<Arc<Rendition>>>,
    gateway_metrics: Arc<GatewayMetrics>,
}

/// One rendition of a stream: its own latest-frame slot.
pub struct Rendition {
    pub width: u32,
    height: AtomicU32,
    slot: watch::Sender<Slot>,
    feed: Mutex<Feed>,
    pub metrics: RenditionMetrics,
}

/// When a rendition's slot was last filled, and by what.
struct Feed {
    next_seq: u64,
    /// Its last own frame (not a preview).
    last_frame: Option<Instant>,
    last_publish: Instant,
}

impl Rendition {
    fn lock(&self) -> std::sync::MutexGuard<'_, Feed> {
        self.feed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn height(&self) -> u32 {
        self.height.load(Ordering::Relaxed)
    }

    /// True while its own frames arrive (within `gap`).
    fn receiving(&self, now: Instant, gap: Duration) -> bool {
        self.lock()
            .last_frame
            .is_some_and(|t| now.saturating_duration_since(t) < gap)
    }

    /// Puts `part` (re-numbered in this slot's sequence) in the slot.
    fn fill(&self, part: &Part, own_frame: bool) {
        let seq = {
            let mut f = self.lock();
            let now = Instant::now();
            if own_frame {
                f.last_frame = Some(now);
            }
            f.last_publish = now;
            f.next_seq += 1;
            f.next_seq - 1
        };
        self.slot.send_replace(Some(Arc::new(part.with_seq(seq))));
    }
}

/// What the keeper and `/api/streams` need to know about a stream.
#[derive(Debug, Clone)]
pub struct State {
    pub width: u32,
    pub height: u32,
    pub producer_id: u64,
    pub producer: String,
    /// The last picture (full-rate frame or preview) that filled the slot.
    pub last_live: Instant,
    /// The last full-rate frame.
    pub last_full: Option<Instant>,
    pub last_publish: Instant,
    pub online: bool,
    pub offline_since: SystemTime,
    /// Smoothed interval between live frames, seconds.
    pub interval_ewma: f64,
    next_seq: u64,
    /// The full picture's size as the producer announces it with its
    /// renditions (`i/<name>/`), before any full-rate frame tells it.
    announced: Option<(u32, u32)>,
}

impl State {
    /// True while the slot is fed by full-rate frames (not previews).
    pub fn full_rate(&self) -> bool {
        self.last_full.is_some_and(|t| t >= self.last_live)
    }

    /// True when the stream sent a picture recently enough to count as
    /// online: within `stale_after`, or [`PREVIEW_SILENCE`] for previews.
    pub fn is_fresh(&self, stale_after: Duration) -> bool {
        let limit = if self.full_rate() {
            stale_after
        } else {
            stale_after.max(PREVIEW_SILENCE)
        };
        self.last_live.elapsed() < limit
    }

    /// True when full-rate frames arrived lately, at `now`.
    fn receiving_full_rate(&self, now: Instant) -> bool {
        let gap = FULL_RATE_GAP.max(Duration::from_secs_f64(3.0 * self.interval_ewma));
        self.last_full
            .is_some_and(|t| now.saturating_duration_since(t) < gap)
    }

    /// Notes which producer (and producer run) sent a picture.
    fn note_producer(&mut self, name: &str, producer_id: u64, producer: &str) {
        if self.producer_id != producer_id {
            if self.producer_id != 0 {
                tracing::info!(stream = %name, producer, "producer restarted (new producer id)");
            }
            self.producer_id = producer_id;
            self.interval_ewma = 0.0;
        }
        if self.producer != producer {
            self.producer = producer.to_string();
        }
    }
}

impl Stream {
    fn new(
        name: &str,
        producer_index: usize,
        metrics: StreamMetrics,
        interest: Arc<Interest>,
        recent_events: usize,
        gateway_metrics: Arc<GatewayMetrics>,
    ) -> Self {
        let now = Instant::now();
        Stream {
            name: name.to_string(),
            producer_index,
            slot: watch::Sender::new(None),
            state: Mutex::new(State {
                width: 0,
                height: 0,
                producer_id: 0,
                producer: String::new(),
                last_live: now,
                last_full: None,
                last_publish: now,
                online: true,
                offline_since: SystemTime::now(),
                interval_ewma: 0.0,
                next_seq: 0,
                announced: None,
            }),
            detections: Latest::new(name, metrics.detections.clone()),
            events: Recent::new(name, recent_events, metrics.events.clone()),
            metrics,
            interest,
            viewers: AtomicUsize::new(0),
            forgotten: CancellationToken::new(),
            renditions: RwLock::new(Vec::new()),
            gateway_metrics,
        }
    }

    /// A viewer of this stream's `choice` arrived (`Watching`): that is
    /// received at full rate while it has viewers.
    pub fn viewer_joined(&self, choice: Choice) {
        self.viewers.fetch_add(1, Ordering::Relaxed);
        self.viewers_gauge(choice).inc();
        self.interest.joined(&self.name, choice);
    }

    /// A viewer of this stream's `choice` left.
    pub fn viewer_left(&self, choice: Choice) {
        self.viewers.fetch_sub(1, Ordering::Relaxed);
        self.viewers_gauge(choice).dec();
        self.interest.left(&self.name, choice);
    }

    fn viewers_gauge(&self, choice: Choice) -> prometheus::IntGauge {
        match choice.and_then(|w| self.rendition(w)) {
            Some(r) => r.metrics.viewers.clone(),
            None => self.metrics.full_viewers.clone(),
        }
    }

    /// Wants `choice` received at full rate while the guard lives, without
    /// counting a viewer (a snapshot waiting for a full-size frame).
    pub fn want(&self, choice: Choice) -> Wanting {
        Wanting::new(self.interest.clone(), &self.name, choice)
    }

    /// The rendition `width` pixels wide, if the stream has it.
    pub fn rendition(&self, width: u32) -> Option<Arc<Rendition>> {
        self.read_renditions()
            .iter()
            .find(|r| r.width == width)
            .cloned()
    }

    /// `(width, height)` of each rendition, ascending.
    pub fn renditions(&self) -> Vec<(u32, u32)> {
        self.read_renditions()
            .iter()
            .map(|r| (r.width, r.height()))
            .collect()
    }

    /// What `width` asks of this stream now: a rendition it has, or the
    /// full picture (`None`).
    pub fn choose(&self, width: Width) -> Choice {
        let widths: Vec<u32> = self.read_renditions().iter().map(|r| r.width).collect();
        width.initial(&widths, self.lock().width)
    }

    fn read_renditions(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Rendition>>> {
        self.renditions.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The producer says the stream's full picture is `full` and it has
    /// the renditions `sizes` (checked on the wire: at most
    /// `frame_wire::MAX_RENDITIONS`, ascending): new ones get a slot, gone
    /// ones are dropped (their writers end).
    pub fn set_renditions(&self, full: (u32, u32), sizes: &[(u32, u32)]) {
        {
            let mut st = self.lock();
            st.announced = Some(full);
            if !st.receiving_full_rate(Instant::now()) {
                (st.width, st.height) = full;
            }
        }
        let same = {
            let held = self.read_renditions();
            held.len() == sizes.len()
                && held
                    .iter()
                    .zip(sizes)
                    .all(|(r, &(w, h))| r.width == w && r.height() == h)
        };
        if same {
            return;
        }
        let mut held = self.renditions.write().unwrap_or_else(|e| e.into_inner());
        // A preview (not a full-size frame) is the first picture of a new one.
        let preview = self
            .latest()
            .filter(|p| p.live && !self.lock().receiving_full_rate(Instant::now()));
        let next: Vec<Arc<Rendition>> = sizes
            .iter()
            .map(|&(w, h)| match held.iter().find(|r| r.width == w) {
                Some(r) => {
                    r.height.store(h, Ordering::Relaxed);
                    r.clone()
                }
                None => {
                    let r = Arc::new(Rendition {
                        width: w,
                        height: AtomicU32::new(h),
                        slot: watch::Sender::new(None),
                        feed: Mutex::new(Feed {
                            next_seq: 0,
                            last_frame: None,
                            last_publish: Instant::now(),
                        }),
                        metrics: self.gateway_metrics.for_rendition(&self.name, w),
                    });
                    // Its first viewer sees the current picture at once.
                    if let Some(p) = &preview {
                        r.fill(p, false);
                    }
                    r
                }
            })
            .collect();
        for gone in held
            .iter()
            .filter(|r| !sizes.iter().any(|s| s.0 == r.width))
        {
            self.gateway_metrics
                .forget_rendition(&self.name, gone.width);
        }
        tracing::info!(stream = %self.name, renditions = ?sizes, "renditions");
        *held = next;
    }

    /// A rendition's frame: into its slot. False when the stream has no
    /// such rendition (not announced yet).
    pub fn publish_rendition(&self, frame: &frame_wire::Frame) -> bool {
        let Some(r) = self.rendition(frame.header.width) else {
            return false;
        };
        let part = Part::build(&self.name, &frame.jpeg, 0, frame.header.capture_ts_ns, true);
        r.fill(&part, true);
        r.metrics.frames_in.inc();
        true
    }

    /// The slot of `choice`: a rendition's, or the full picture's when it
    /// is `None` or a rendition the stream does not have.
    pub fn subscribe_at(&self, choice: Choice) -> watch::Receiver<Slot> {
        match choice.and_then(|w| self.rendition(w)) {
            Some(r) => r.slot.subscribe(),
            None => self.subscribe(),
        }
    }

    /// The newest part of `choice` (see [`Stream::subscribe_at`]).
    pub fn latest_at(&self, choice: Choice) -> Slot {
        match choice.and_then(|w| self.rendition(w)) {
            Some(r) => r.slot.borrow().clone(),
            None => self.latest(),
        }
    }

    /// The bytes-out counter of `choice`, for the writers.
    pub fn bytes_out_at(&self, choice: Choice) -> prometheus::IntCounter {
        match choice.and_then(|w| self.rendition(w)) {
            Some(r) => r.metrics.bytes_out.clone(),
            None => self.metrics.bytes_out.clone(),
        }
    }

    /// The newest picture of `choice` from a frame (not a preview): at once
    /// while such frames arrive, else waiting up to `wait` for the next one,
    /// subscribed meanwhile. The flag is false when it was not to be had in
    /// time and the slot's picture (a preview) is returned instead.
    pub async fn fresh_at(&self, choice: Choice, wait: Duration) -> (Slot, bool) {
        let rendition = choice.and_then(|w| self.rendition(w));
        let has_frame = |since: Option<Instant>| match &rendition {
            Some(r) => {
                let f = r.lock();
                f.last_frame.is_some() && f.last_frame >= since
            }
            None => {
                let st = self.lock();
                st.full_rate() && st.last_full >= since
            }
        };
        let latest = || match &rendition {
            Some(r) => r.slot.borrow().clone(),
            None => self.latest(),
        };
        let receiving = match &rendition {
            Some(r) => r.receiving(Instant::now(), FULL_RATE_GAP),
            None => self.lock().receiving_full_rate(Instant::now()),
        };
        if receiving && has_frame(None) {
            return (latest(), true);
        }
        if wait.is_zero() {
            return (latest(), has_frame(None) && receiving);
        }
        let start = Instant::now();
        let mut rx = match &rendition {
            Some(r) => r.slot.subscribe(),
            None => self.subscribe(),
        };
        let _want = self.want(rendition.as_ref().map(|r| r.width));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if has_frame(Some(start)) {
                return (latest(), true);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // Timed out, or the slot is gone (forgotten).
                _ => return (latest(), false),
            }
        }
    }

    /// Cancelled once the stream is forgotten (`Streams::forget_gone`):
    /// whatever serves it then stops.
    pub fn forgotten(&self) -> &CancellationToken {
        &self.forgotten
    }

    /// True when no picture came for `after` before `now` and nobody watches.
    fn forgettable(&self, after: Duration, now: Instant) -> bool {
        self.viewers.load(Ordering::Relaxed) == 0
            && now.saturating_duration_since(self.lock().last_live) >= after
    }

    pub fn subscribe(&self) -> watch::Receiver<Slot> {
        self.slot.subscribe()
    }

    /// The newest part, live or placeholder.
    pub fn latest(&self) -> Slot {
        self.slot.borrow().clone()
    }

    pub fn state(&self) -> State {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent
        // in a way that matters more than stopping the stream would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live frame from a producer: build its part once and expose it.
    pub fn publish_live(&self, frame: &frame_wire::Frame, producer: &str) {
        let now = Instant::now();
        let seq = {
            let mut st = self.lock();
            st.note_producer(&self.name, frame.header.producer_id, producer);
            let resumed = !st.online || !st.full_rate() || !st.receiving_full_rate(now);
            self.back_online(&mut st);
            match st.last_full {
                Some(prev) if !resumed => {
                    let dt = now.duration_since(prev).as_secs_f64();
                    st.interval_ewma = if st.interval_ewma == 0.0 {
                        dt
                    } else {
                        0.8 * st.interval_ewma + 0.2 * dt
                    };
                }
                // From previews, offline or nothing to live: start afresh.
                _ => st.interval_ewma = 0.0,
            }
            st.width = frame.header.width;
            st.height = frame.header.height;
            st.last_live = now;
            st.last_full = Some(now);
            st.last_publish = now;
            st.next_seq += 1;
            st.next_seq - 1
        };
        let part = Part::build(
            &self.name,
            &frame.jpeg,
            seq,
            frame.header.capture_ts_ns,
            true,
        );
        self.slot.send_replace(Some(Arc::new(part)));
        self.metrics.frames_in.inc();
        self.metrics.online.set(1);
    }

    /// A preview: fills the slot unless full-rate frames are arriving, so
    /// an unwatched stream stays online with a current picture. Returns
    /// whether it was shown.
    pub fn publish_preview(&self, preview: &frame_wire::Frame, producer: &str) -> bool {
        let now = Instant::now();
        let seq = {
            let mut st = self.lock();
            if st.receiving_full_rate(now) {
                return false;
            }
            st.note_producer(&self.name, preview.header.producer_id, producer);
            self.back_online(&mut st);
            if st.last_full.is_none() {
                // The stream's size, until a full-rate frame tells it.
                (st.width, st.height) = st
                    .announced
                    .unwrap_or((preview.header.width, preview.header.height));
            }
            st.interval_ewma = 0.0;
            st.last_live = now;
            st.last_publish = now;
            st.next_seq += 1;
            st.next_seq - 1
        };
        let part = Part::build(
            &self.name,
            &preview.jpeg,
            seq,
            preview.header.capture_ts_ns,
            true,
        );
        for r in self.read_renditions().iter() {
            if !r.receiving(now, FULL_RATE_GAP) {
                r.fill(&part, false);
            }
        }
        self.slot.send_replace(Some(Arc::new(part)));
        self.metrics.online.set(1);
        true
    }

    fn back_online(&self, st: &mut State) {
        if !st.online {
            let down = st.offline_since.elapsed().unwrap_or_default();
            tracing::info!(stream = %self.name, offline_for_ms = down.as_millis() as u64, "stream back online");
            st.online = true;
        }
    }

    /// Marks the stream offline if no picture came within `stale_after` (or
    /// [`PREVIEW_SILENCE`] while only previews come); returns the time it
    /// went offline while it is offline.
    pub fn check_stale(&self, stale_after: Duration) -> Option<SystemTime> {
        let mut st = self.lock();
        if st.is_fresh(stale_after) {
            return None;
        }
        if st.online {
            st.online = false;
            st.offline_since = SystemTime::now() - st.last_live.elapsed();
            self.metrics.online.set(0);
            tracing::warn!(stream = %self.name, stale_after_s = stale_after.as_secs_f64(), "stream offline: no frames");
        }
        Some(st.offline_since)
    }

    /// Exposes a placeholder part (keeps the current sequence number).
    pub fn publish_placeholder(&self, jpeg: &[u8]) {
        let seq = {
            let mut st = self.lock();
            st.last_publish = Instant::now();
            st.next_seq += 1;
            st.next_seq - 1
        };
        let part = Part::build(&self.name, jpeg, seq, stream_common::unix_now_ns(), false);
        for r in self.read_renditions().iter() {
            r.fill(&part, false);
        }
        self.slot.send_replace(Some(Arc::new(part)));
    }

    /// Re-exposes the current part if nothing was published for `idle`, so
    /// viewers' browsers show it and dead connections are found by a write.
    pub fn resend_if_idle(&self, idle: Duration) {
        let mut st = self.lock();
        if st.last_publish.elapsed() >= idle {
            st.last_publish = Instant::now();
            drop(st);
            self.slot.send_modify(|_| {});
        }
        for r in self.read_renditions().iter() {
            let mut f = r.lock();
            if f.last_publish.elapsed() >= idle {
                f.last_publish = Instant::now();
                drop(f);
                r.slot.send_modify(|_| {});
            }
        }
    }
}

/// All streams, in a stable order: by the position of their producer in
/// `--producer` order, then by name. So the first stream, `/video_feed`'s
/// unless `--default-stream` names another, is the same after every restart
/// whatever order frames happen to arrive in.
pub struct Streams {
    list: RwLock<Vec<Arc<Stream>>>,
    metrics: Arc<GatewayMetrics>,
    default: Option<String>,
    interest: Arc<Interest>,
    limits: Limits,
    refused_log: Mutex<LogEvery>,
}

impl Streams {
    pub fn new(
        metrics: Arc<GatewayMetrics>,
        default: Option<String>,
        interest: Arc<Interest>,
    ) -> Self {
        Streams {
            list: RwLock::new(Vec::new()),
            metrics,
            default,
            interest,
            limits: Limits::default(),
            refused_log: Mutex::new(LogEvery::new(Duration::from_secs(10))),
        }
    }

    /// The same, holding what `limits` allow.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn metrics(&self) -> &Arc<GatewayMetrics> {
        &self.metrics
    }

    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.read().iter().find(|s| s.name == name).cloned()
    }

    /// The stream `/video_feed`, `/snapshot` and `/?action=…` serve: the one
    /// named by `--default-stream` (none until it arrives), else the first.
    pub fn default_stream(&self) -> Option<Arc<Stream>> {
        match &self.default {
            Some(name) => self.get(name),
            None => self.read().first().cloned(),
        }
    }

    /// The default stream's name, when there is one.
    pub fn default_name(&self) -> Option<String> {
        self.default
            .clone()
            .or_else(|| self.read().first().map(|s| s.name.clone()))
    }

    pub fn all(&self) -> Vec<Arc<Stream>> {
        self.read().clone()
    }

    /// The stream called `name`, created on its first frame from the
    /// producer at `producer_index`; `None` (counted, logged now and then)
    /// when it is new and `--max-streams` are held already.
    pub fn admit(&self, name: &str, producer_index: usize) -> Option<Arc<Stream>> {
        if let Some(s) = self.get(name) {
            return Some(s);
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = list.iter().find(|s| s.name == name) {
            return Some(s.clone());
        }
        if list.len() >= self.limits.max_streams {
            drop(list);
            self.metrics.stream_refused("cap");
            let mut log = self.refused_log.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(folded) = log.check(Instant::now()) {
                tracing::warn!(
                    stream = name,
                    max_streams = self.limits.max_streams,
                    repeats = folded,
                    "new stream refused: --max-streams held already"
                );
            }
            return None;
        }
        tracing::info!(stream = name, "new stream");
        let metrics = self.metrics.for_stream(name);
        self.interest.stream_created(&metrics);
        let s = Arc::new(Stream::new(
            name,
            producer_index,
            metrics,
            self.interest.clone(),
            self.limits.recent_events,
            self.metrics.clone(),
        ));
        let key = |s: &Stream| (s.producer_index, s.name.clone());
        let at = list.partition_point(|other| key(other) < key(&s));
        list.insert(at, s.clone());
        self.metrics.streams.set(list.len() as i64);
        Some(s)
    }

    /// [`admit`](Self::admit) for tests, which stay under the cap.
    #[cfg(test)]
    pub fn get_or_create(&self, name: &str, producer_index: usize) -> Arc<Stream> {
        self.admit(name, producer_index)
            .expect("under --max-streams")
    }

    /// Forgets the streams gone for `--forget-after` that nobody watches:
    /// out of the list, their series dropped, their writers stopped.
    /// Returns how many, at `now`.
    pub fn forget_gone(&self, now: Instant) -> usize {
        let Some(after) = self.limits.forget_after else {
            return 0;
        };
        if !self.read().iter().any(|s| s.forgettable(after, now)) {
            return 0;
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        let mut gone = Vec::new();
        list.retain(|s| {
            let forget = s.forgettable(after, now);
            if forget {
                gone.push(s.clone());
            }
            !forget
        });
        self.metrics.streams.set(list.len() as i64);
        drop(list);
        for s in &gone {
            s.forgotten.cancel();
            for (w, _) in s.renditions() {
                self.metrics.forget_rendition(&s.name, w);
            }
            self.metrics.forget_stream(&s.name, &s.detections.labels());
            self.metrics.streams_forgotten.inc();
            tracing::info!(stream = %s.name, gone_for_s = after.as_secs_f64(), "stream forgotten: gone, and no viewer");
        }
        gone.len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Stream>>> {
        self.list.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::subscriptions::Mode;

    fn streams(metrics: &Arc<GatewayMetrics>, default: Option<String>) -> Streams {
        let interest = Interest::new(Mode::OnDemand, Duration::from_secs(10), metrics.clone());
        Streams::new(metrics.clone(), default, Arc::new(interest))
    }

    fn picture(seq: u64, width: u32, byte: u8) -> frame_wire::Frame {
        frame_wire::Frame {
            header: frame_wire::FrameHeader {
                version: frame_wire::KIND_VERSION,
                seq,
                capture_ts_ns: 1 + seq,
                width,
                height: 2,
                producer_id: 7,
                stream: "cam0".into(),
            },
            jpeg: bytes::Bytes::copy_from_slice(&[0xFF, 0xD8, byte, 0xFF, 0xD9]),
        }
    }

    #[test]
    fn previews_fill_the_slot_until_full_rate_frames_come() {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let cam = streams(&metrics, None).get_or_create("cam0", 0);
        assert!(cam.publish_preview(&picture(0, 4, 1), "p"));
        let shown = |cam: &Stream| cam.latest().map(|p| (p.jpeg[2], p.live));
        assert_eq!(shown(&cam), Some((1, true)));
        let st = cam.state();
        assert!(!st.full_rate() && st.online && st.width == 4);
        cam.publish_live(&picture(1, 8, 2), "p");
        assert!(
            !cam.publish_preview(&picture(2, 4, 3), "p"),
            "ignored while live"
        );
        assert_eq!(shown(&cam), Some((2, true)));
        let st = cam.state();
        assert!(st.full_rate() && st.width == 8);
        assert_eq!(
            cam.latest().map(|p| p.seq),
            Some(1),
            "one sequence for both"
        );
    }

    #[test]
    fn each_rendition_has_its_own_slot_fed_by_its_frames_else_previews() {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let cam = streams(&metrics, None).get_or_create("cam0", 0);
        cam.publish_preview(&picture(0, 4, 1), "p");
        assert_eq!(cam.choose(Width::AtLeast(2)), None, "no renditions yet");
        cam.set_renditions((8, 2), &[(2, 1), (4, 1)]);
        assert_eq!(cam.state().width, 8, "the announced size");
        assert_eq!(cam.renditions(), [(2, 1), (4, 1)]);
        assert_eq!(cam.choose(Width::AtLeast(3)), Some(4));
        assert_eq!(cam.choose(Width::AtLeast(5)), None);
        assert_eq!(cam.choose(Width::Full), None);
        // A new rendition shows the preview at once.
        let byte = |c: Choice| cam.latest_at(c).map(|p| p.jpeg[2]);
        assert_eq!(byte(Some(2)), Some(1));
        // Its own frames fill it, and only it.
        assert!(cam.publish_rendition(&picture(1, 2, 7)));
        assert!(!cam.publish_rendition(&picture(1, 3, 7)), "not announced");
        assert_eq!(
            (byte(Some(2)), byte(Some(4)), byte(None)),
            (Some(7), Some(1), Some(1))
        );
        // A preview fills the others, not the one receiving frames.
        cam.publish_preview(&picture(2, 4, 9), "p");
        assert_eq!(
            (byte(Some(2)), byte(Some(4)), byte(None)),
            (Some(7), Some(9), Some(9))
        );
        assert_eq!(
            cam.latest_at(Some(4)).map(|p| p.seq),
            Some(1),
            "its own sequence"
        );
        // Gone from the list: gone, its series too.
        cam.set_renditions((8, 2), &[(4, 1)]);
        assert!(cam.rendition(2).is_none());
        assert_eq!(byte(Some(2)), byte(None), "the full picture serves it");
        assert!(!metrics.render().contains(r#"rendition="2""#));
    }

    #[test]
    fn a_stream_of_previews_alone_stays_online_longer_than_stale_after() {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let cam = streams(&metrics, None).get_or_create("cam0", 0);
        cam.publish_preview(&picture(0, 4, 1), "p");
        let short = Duration::from_millis(500);
        let mut st = cam.state();
        st.last_live -= Duration::from_secs(2);
        assert!(st.is_fresh(short), "a preview a second is enough");
        st.last_full = Some(st.last_live);
        assert!(
            !st.is_fresh(short),
            "a full-rate stream is stale at stale_after"
        );
        st.last_live -= PREVIEW_SILENCE;
        st.last_full = None;
        assert!(!st.is_fresh(short));
    }

    #[test]
    fn order_is_by_producer_then_name_whatever_the_arrival() {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let names = |s: &Streams| s.all().iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let a = streams(&metrics, None);
        for (name, p) in [("zeta", 2), ("yard", 1), ("lobby", 0), ("garage", 1)] {
            a.get_or_create(name, p);
        }
        assert_eq!(names(&a), ["lobby", "garage", "yard", "zeta"]);
        assert_eq!(
            a.default_stream().map(|s| s.name.clone()).as_deref(),
            Some("lobby")
        );
        let b = streams(&metrics, Some("yard".into()));
        assert!(b.default_stream().is_none(), "not arrived yet");
        b.get_or_create("lobby", 0);
        assert!(b.default_stream().is_none(), "never another stream");
        b.get_or_create("yard", 1);
        assert_eq!(
            b.default_stream().map(|s| s.name.clone()).as_deref(),
            Some("yard")
        );
    }

    #[test]
    fn new_streams_beyond_the_cap_are_refused_and_counted() {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let s = streams(&metrics, None).with_limits(Limits {
            max_streams: 2,
            forget_after: None,
            ..Limits::default()
        });
        assert!(s.admit("a", 0).is_some() && s.admit("b", 0).is_some());
        assert!(s.admit("c", 0).is_none(), "a third is refused");
        assert!(s.admit("a", 0).is_some(), "known streams still come in");
        assert_eq!(s.all().len(), 2);
        let text = metrics.render();
        assert!(
            text.contains(r#"gateway_streams_refused_total{reason="cap"} 1"#),
            "{text}"
        );
        assert_eq!(
            s.forget_gone(Instant::now() + Duration::from_secs(1 << 20)),
            0,
            "never"
        );
    }

    #[test]
    fn gone_streams_are_forgotten_unless_watched() {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let s = streams(&metrics, None).with_limits(Limits {
            max_streams: 2,
            forget_after: Some(Duration::from_secs(60)),
            ..Limits::default()
        });
        let (a, b) = (s.get_or_create("a", 0), s.get_or_create("b", 0));
        a.publish_preview(&picture(0, 4, 1), "p");
        a.viewer_joined(None);
        let now = Instant::now();
        assert_eq!(s.forget_gone(now + Duration::from_secs(30)), 0, "not yet");
        assert_eq!(s.forget_gone(now + Duration::from_secs(61)), 1);
        assert!(b.forgotten().is_cancelled(), "its writers stop");
        assert!(s.get("b").is_none() && s.get("a").is_some(), "a is watched");
        assert!(s.admit("c", 0).is_some(), "its place is free again");
        a.viewer_left(None);
        assert_eq!(s.forget_gone(now + Duration::from_secs(61)), 2, "a and c");
        assert_eq!(metrics.streams_forgotten.get(), 3);
        assert!(s.all().is_empty());
        assert!(
            !metrics.render().contains(r#"stream="b""#),
            "no series left of a forgotten stream"
        );
    }
}
