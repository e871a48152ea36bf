//! The streams a gateway knows, each with its latest-frame slot.
//!
//! The slot is a `watch` channel holding the newest [`Part`]: the receive task
//! overwrites it, every viewer reads the newest value when its socket can take
//! more. Nothing queues, so a slow viewer skips frames and costs at most the
//! one part it is writing.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::detections::Latest;
use crate::metrics::{GatewayMetrics, StreamMetrics};
use crate::part::Part;

pub type Slot = Option<Arc<Part>>;

pub struct Stream {
    pub name: String,
    /// Position of the first producer (in `--producer` order) that sent it.
    producer_index: usize,
    slot: watch::Sender<Slot>,
    state: Mutex<State>,
    pub metrics: StreamMetrics,
    /// What a detector last found in it (`detections.rs`).
    pub detections: Latest,
}

/// What the keeper and `/api/streams` need to know about a stream.
#[derive(Debug, Clone)]
pub struct State {
    pub width: u32,
    pub height: u32,
    pub producer_id: u64,
    pub producer: String,
    pub last_live: Instant,
    pub last_publish: Instant,
    pub online: bool,
    pub offline_since: SystemTime,
    /// Smoothed interval between live frames, seconds.
    pub interval_ewma: f64,
    next_seq: u64,
}

impl Stream {
    fn new(name: &str, producer_index: usize, metrics: StreamMetrics) -> Self {
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
                last_publish: now,
                online: true,
                offline_since: SystemTime::now(),
                interval_ewma: 0.0,
                next_seq: 0,
            }),
            detections: Latest::new(name, metrics.detections.clone()),
            metrics,
        }
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
            if st.producer_id != frame.header.producer_id {
                if st.producer_id != 0 {
                    tracing::info!(stream = %self.name, producer, "producer restarted (new producer id)");
                }
                st.producer_id = frame.header.producer_id;
                st.interval_ewma = 0.0;
            }
            if st.producer != producer {
                st.producer = producer.to_string();
            }
            if !st.online {
                let down = st.offline_since.elapsed().unwrap_or_default();
                tracing::info!(stream = %self.name, offline_for_ms = down.as_millis() as u64, "stream back online");
                st.online = true;
                st.interval_ewma = 0.0;
            } else if st.next_seq > 0 {
                let dt = now.duration_since(st.last_live).as_secs_f64();
                st.interval_ewma = if st.interval_ewma == 0.0 {
                    dt
                } else {
                    0.8 * st.interval_ewma + 0.2 * dt
                };
            }
            st.width = frame.header.width;
            st.height = frame.header.height;
            st.last_live = now;
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

    /// Marks the stream offline if no live frame came within `stale_after`;
    /// returns the time it went offline while it is offline.
    pub fn check_stale(&self, stale_after: Duration) -> Option<SystemTime> {
        let mut st = self.lock();
        if st.last_live.elapsed() < stale_after {
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
}

impl Streams {
    pub fn new(metrics: Arc<GatewayMetrics>, default: Option<String>) -> Self {
        Streams {
            list: RwLock::new(Vec::new()),
            metrics,
            default,
        }
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
    /// producer at `producer_index`.
    pub fn get_or_create(&self, name: &str, producer_index: usize) -> Arc<Stream> {
        if let Some(s) = self.get(name) {
            return s;
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = list.iter().find(|s| s.name == name) {
            return s.clone();
        }
        tracing::info!(stream = name, "new stream");
        let s = Arc::new(Stream::new(
            name,
            producer_index,
            self.metrics.for_stream(name),
        ));
        let key = |s: &Stream| (s.producer_index, s.name.clone());
        let at = list.partition_point(|other| key(other) < key(&s));
        list.insert(at, s.clone());
        s
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Stream>>> {
        self.list.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_by_producer_then_name_whatever_the_arrival() {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let names = |s: &Streams| s.all().iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let a = Streams::new(metrics.clone(), None);
        for (name, p) in [("zeta", 2), ("yard", 1), ("lobby", 0), ("garage", 1)] {
            a.get_or_create(name, p);
        }
        assert_eq!(names(&a), ["lobby", "garage", "yard", "zeta"]);
        assert_eq!(
            a.default_stream().map(|s| s.name.clone()).as_deref(),
            Some("lobby")
        );
        let b = Streams::new(metrics, Some("yard".into()));
        assert!(b.default_stream().is_none(), "not arrived yet");
        b.get_or_create("lobby", 0);
        assert!(b.default_stream().is_none(), "never another stream");
        b.get_or_create("yard", 1);
        assert_eq!(
            b.default_stream().map(|s| s.name.clone()).as_deref(),
            Some("yard")
        );
    }
}
