//! The stage's one loop, which owns every stream's tracker: detections in,
//! events out. For each event change it picks the snapshot (the kept frame
//! whose capture time is the best detection's), builds the bus message once
//! and the JSON once, and hands them to the PUB socket, the MQTT queue and
//! each webhook's queue without waiting for any of them. It also says which
//! streams need full-size frames (those with something followed), and which
//! cameras exist, for MQTT discovery.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frame_wire::{EventMessage, Frame, FrameHeader, Phase};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::EventMetrics;
use crate::notice::{Notice, Shared};
use crate::outbox::{Entry, Outbox};
use crate::publish::{Headers, Outgoing};
use crate::receive::Detected;
use crate::snapshot::Frames;
use crate::track::{Change, Sighting, Tracker};
use stream_common::rules::Rect;
use stream_common::rules::Rules;

/// Most streams followed at once; detections of more are ignored (counted).
pub const MAX_STREAMS: usize = 1024;
/// How often quiet streams are checked for events to end.
const SWEEP: Duration = Duration::from_millis(250);
/// A snapshot may be a frame this near the best one when that one is gone.
const NEAREST_NS: u64 = 1_000_000_000;

pub struct Settings {
    pub track: crate::track::Settings,
    pub frames_kept: usize,
}

/// Where event changes go.
pub struct Outputs {
    pub bus: mpsc::Sender<Outgoing>,
    pub bus_keys: frame_bus::BusKeys,
    pub mqtt: Option<Arc<Outbox<Shared>>>,
    pub hooks: Vec<Arc<Outbox<Shared>>>,
    /// Streams to receive full-size frames of.
    pub follow: watch::Sender<BTreeSet<String>>,
    /// Every stream heard of (for MQTT discovery).
    pub cameras: watch::Sender<BTreeSet<String>>,
}

pub struct Inputs {
    pub detections: mpsc::Receiver<Detected>,
    pub frames: mpsc::Receiver<Frame>,
}

/// The snapshot of one track.
struct Snap {
    header: FrameHeader,
    jpeg: Bytes,
}

#[derive(Default)]
struct TrackSnap {
    have: Option<Snap>,
    /// Capture time of the best frame when it has not arrived yet.
    wanted: Option<u64>,
    /// Capture time of the snapshot last sent.
    sent_ts: u64,
    /// The event as last reported, once started (to report a late snapshot).
    started: Option<Change>,
}

struct StreamState {
    tracker: Tracker,
    heard: Instant,
    last_header: FrameHeader,
}

struct Stage {
    settings: Settings,
    rules: Rules,
    outputs: Outputs,
    metrics: EventMetrics,
    streams: HashMap<String, StreamState>,
    frames: Frames,
    snaps: HashMap<(String, u64), TrackSnap>,
    headers: Headers,
}

/// Runs until shutdown, then ends every running event (so each start sent
/// gets its end) and closes the queues.
pub async fn run(
    settings: Settings,
    rules: Rules,
    mut inputs: Inputs,
    outputs: Outputs,
    metrics: EventMetrics,
    shutdown: CancellationToken,
) {
    let listed: BTreeSet<String> = rules.listed().into_iter().map(String::from).collect();
    outputs.cameras.send_replace(listed);
    let mut stage = Stage {
        frames: Frames::new(settings.frames_kept),
        settings,
        rules,
        outputs,
        metrics,
        streams: HashMap::new(),
        snaps: HashMap::new(),
        headers: Headers::default(),
    };
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            d = inputs.detections.recv() => match d {
                Some(d) => stage.detected(d),
                None => break,
            },
            f = inputs.frames.recv() => match f {
                Some(f) => stage.frame(f),
                None => break,
            },
            _ = sweep.tick() => stage.sweep(Instant::now()),
        }
    }
    let names: Vec<String> = stage.streams.keys().cloned().collect();
    for name in names {
        if let Some(s) = stage.streams.get_mut(&name) {
            let changes = s.tracker.finish();
            stage.publish(&name, changes);
        }
    }
    if let Some(m) = &stage.outputs.mqtt {
        m.close();
    }
    for h in &stage.outputs.hooks {
        h.close();
    }
}

impl Stage {
    fn detected(&mut self, d: Detected) {
        let name = d.header.stream.clone();
        self.metrics.detections(&name);
        if !self.streams.contains_key(&name) {
            if self.streams.len() >= MAX_STREAMS {
                self.metrics.dropped("detections");
                return;
            }
            self.streams.insert(
                name.clone(),
                StreamState {
                    tracker: Tracker::new(&name, self.settings.track),
                    heard: Instant::now(),
                    last_header: d.header.clone(),
                },
            );
            self.outputs.cameras.send_modify(|c| {
                c.insert(name.clone());
            });
        }
        let sightings: Vec<Sighting> = d
            .detections
            .boxes
            .iter()
            .map(|b| Sighting {
                label: b.label.clone(),
                score: b.score,
                rect: Rect {
                    x: b.x,
                    y: b.y,
                    w: b.w,
                    h: b.h,
                },
            })
            .collect();
        let Some(s) = self.streams.get_mut(&name) else {
            return;
        };
        s.heard = Instant::now();
        s.last_header = d.header.clone();
        let changes = s
            .tracker
            .observe(d.header.capture_ts_ns, &sightings, self.rules.of(&name));
        self.publish(&name, changes);
        self.update_follow();
    }

    fn frame(&mut self, frame: Frame) {
        let name = frame.header.stream.clone();
        let following = self
            .streams
            .get(&name)
            .is_some_and(|s| s.tracker.is_following());
        if !following {
            return;
        }
        let ts = frame.header.capture_ts_ns;
        let mut late = Vec::new();
        for ((stream, key), snap) in self.snaps.iter_mut() {
            if *stream == name && snap.wanted == Some(ts) {
                snap.have = Some(Snap {
                    header: frame.header.clone(),
                    jpeg: frame.jpeg.clone(),
                });
                snap.wanted = None;
                if let Some(started) = &snap.started {
                    let mut c = started.clone();
                    c.phase = Phase::Update;
                    late.push((*key, c));
                }
            }
        }
        self.frames.put(frame);
        self.metrics
            .frames_held
            .set(i64::try_from(self.frames.len()).unwrap_or(i64::MAX));
        let changes = late.into_iter().map(|(_, c)| c).collect();
        self.publish(&name, changes);
    }

    fn sweep(&mut self, now: Instant) {
        let end_after = Duration::from_nanos(self.settings.track.end_after_ns);
        let quiet: Vec<(String, u64)> = self
            .streams
            .iter()
            .filter(|(_, s)| s.tracker.is_following() && now.duration_since(s.heard) >= end_after)
            .map(|(n, s)| {
                let waited =
                    u64::try_from(now.duration_since(s.heard).as_nanos()).unwrap_or(u64::MAX);
                (n.clone(), s.tracker.newest_ts().saturating_add(waited))
            })
            .collect();
        for (name, as_of) in quiet {
            if let Some(s) = self.streams.get_mut(&name) {
                let changes = s.tracker.expire(as_of);
                self.publish(&name, changes);
            }
        }
        self.update_follow();
    }

    /// Streams with something followed get full-size frames; others' are dropped.
    fn update_follow(&mut self) {
        let following: BTreeSet<String> = self
            .streams
            .iter()
            .filter(|(_, s)| s.tracker.is_following())
            .map(|(n, _)| n.clone())
            .collect();
        let frames = &mut self.frames;
        self.outputs.follow.send_if_modified(|current| {
            if *current == following {
                return false;
            }
            for gone in current.difference(&following) {
                frames.forget(gone);
            }
            *current = following;
            true
        });
    }

    fn publish(&mut self, stream: &str, changes: Vec<Change>) {
        for mut change in changes {
            let key = (stream.to_string(), change.key);
            let snap = self.snaps.entry(key.clone()).or_default();
            let best = change.best_frame_ts_ns;
            let have_best = snap
                .have
                .as_ref()
                .is_some_and(|s| s.header.capture_ts_ns == best);
            if !have_best {
                if let Some(f) = self.frames.exact(stream, best) {
                    snap.have = Some(Snap {
                        header: f.header.clone(),
                        jpeg: f.jpeg.clone(),
                    });
                    snap.wanted = None;
                } else {
                    snap.wanted = Some(best);
                    if snap.have.is_none()
                        && let Some(f) = self.frames.nearest(stream, best, NEAREST_NS)
                    {
                        snap.have = Some(Snap {
                            header: f.header.clone(),
                            jpeg: f.jpeg.clone(),
                        });
                    }
                }
            }
            let snap_ts = snap.have.as_ref().map_or(0, |s| s.header.capture_ts_ns);
            change.event.snapshot_ts_ns = snap_ts;
            let changed = snap_ts != 0 && snap_ts != snap.sent_ts;
            let jpeg = snap
                .have
                .as_ref()
                .filter(|_| changed || change.phase != Phase::Update)
                .map(|s| s.jpeg.clone());
            if snap_ts == 0 {
                self.metrics.snapshot_missing(stream);
            }
            snap.sent_ts = snap_ts;
            let header = match &snap.have {
                Some(s) => self.headers.next(&s.header),
                None => match self.streams.get(stream) {
                    Some(s) => self.headers.next(&s.last_header),
                    None => self.headers.next(&placeholder_header(stream)),
                },
            };
            match change.phase {
                Phase::End => {
                    self.snaps.remove(&key);
                }
                _ => snap.started = Some(change.clone()),
            }
            let active = self
                .streams
                .get(stream)
                .map_or(0, |s| s.tracker.active(&change.event.label));
            let e = &change.event;
            self.metrics.event(stream, &e.label, change.phase.name());
            self.metrics.set_active(stream, &e.label, active);

            let message = EventMessage {
                phase: change.phase,
                event: change.event.clone(),
                snapshot: jpeg.as_ref().map(|j| j.to_vec()).unwrap_or_default(),
            };
            let key_now = self.outputs.bus_keys.signing_key();
            match frame_wire::encode_event(&header, &message, key_now.as_ref()) {
                Ok(parts) => {
                    if self.outputs.bus.try_send(parts).is_err() {
                        self.metrics.dropped("bus");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "event not encodable; not published on the bus")
                }
            }
            let notice: Shared = Arc::new(Notice::new(change.phase, change.event, jpeg, active));
            if let Some(m) = &self.outputs.mqtt {
                let d = m.push(entry(&notice));
                self.metrics.mqtt_dropped(notice.phase.name(), d.0);
                self.metrics
                    .mqtt_queued
                    .set(i64::try_from(m.len()).unwrap_or(i64::MAX));
            }
            if notice.phase != Phase::Update {
                for (i, h) in self.outputs.hooks.iter().enumerate() {
                    let d = h.push(entry(&notice));
                    if d.0 > 0 {
                        self.metrics
                            .webhook_dropped(&i.to_string(), "queue_full", d.0);
                    }
                }
            }
        }
    }
}

fn entry(notice: &Shared) -> Entry<Shared> {
    Entry {
        phase: notice.phase,
        event: notice.event.id.clone(),
        item: notice.clone(),
    }
}

/// A header for an event with no frame at all (never expected: a stream is
/// only tracked after a detections message, whose header is kept).
fn placeholder_header(stream: &str) -> FrameHeader {
    FrameHeader {
        version: frame_wire::KIND_VERSION,
        seq: 0,
        capture_ts_ns: stream_common::unix_now_ns(),
        width: 1,
        height: 1,
        producer_id: 0,
        stream: stream.to_string(),
    }
}
