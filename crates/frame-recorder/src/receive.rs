//! Taking messages off the bus: one task per endpoint, subscribed to the
//! full-rate frames (`f/`) of the streams to record, to detections (`d/`)
//! and to the event stage's events (`e/`), handing each to its camera's
//! writer (`writer.rs`) and events also to the history (`history.rs`),
//! without ever waiting. The writers are started here, on a stream's
//! first frame.
//!
//! This is the only module that knows how the bus is read, through the
//! shared bus client (`frame_bus::Client`: reconnects, the silence watchdog,
//! the bus key re-read every second, verification), as the gateway and the
//! detector do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use frame_bus::{Client, Event};
use frame_wire::{Kind, Message};
use stream_common::ratelimit::LogEvery;
use tokio_util::sync::CancellationToken;

use crate::config::Choice;
use crate::keeper::Keeper;
use crate::metrics::RecorderMetrics;
use crate::store::{Mode, Store};
use crate::writer::{Camera, Frame, Settings};

/// Every camera's writer, shared by the receive tasks of all endpoints.
pub struct Cameras {
    choice: Choice,
    store: Arc<Store>,
    settings: Settings,
    metrics: RecorderMetrics,
    history: Keeper,
    cameras: Mutex<HashMap<String, Option<Camera>>>,
    start_log: Mutex<LogEvery>,
}

impl Cameras {
    pub fn new(
        choice: Choice,
        store: Arc<Store>,
        settings: Settings,
        metrics: RecorderMetrics,
        history: Keeper,
    ) -> Cameras {
        Cameras {
            choice,
            store,
            settings,
            metrics,
            history,
            cameras: Mutex::new(HashMap::new()),
            start_log: Mutex::new(LogEvery::new(Duration::from_secs(5))),
        }
    }

    /// Runs `f` on a stream's writer; `create`: start it on first use (frames
    /// do, detections do not: a detector cannot make cameras appear).
    fn with<F: FnOnce(&mut Camera)>(&self, stream: &str, create: bool, f: F) {
        let mut cameras = self.cameras.lock().unwrap_or_else(|e| e.into_inner());
        if create && !cameras.contains_key(stream) {
            if !crate::store::safe_name(stream) {
                return;
            }
            let mode = self.choice.mode_of(stream);
            let camera = if mode == Mode::Off {
                None
            } else {
                self.store.set_mode(stream, mode);
                match Camera::start(
                    stream,
                    mode,
                    self.store.clone(),
                    &self.settings,
                    self.metrics.clone(),
                ) {
                    Ok(c) => {
                        tracing::info!(stream, mode = mode.name(), "recording");
                        Some(c)
                    }
                    Err(e) => {
                        let mut log = self.start_log.lock().unwrap_or_else(|e| e.into_inner());
                        if log.check(Instant::now()).is_some() {
                            tracing::error!(stream, error = %e, "cannot start a writer thread");
                        }
                        return;
                    }
                }
            };
            cameras.insert(stream.to_string(), camera);
        }
        if let Some(Some(camera)) = cameras.get_mut(stream) {
            f(camera);
        }
    }

    /// Stops every writer, each finishing its segment.
    pub fn stop(&self) {
        let all: Vec<Camera> = self
            .cameras
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .filter_map(|(_, c)| c)
            .collect();
        for c in all {
            c.stop();
        }
        self.history.stop();
    }

    /// An event message: to the history, and to its camera's writer.
    fn event(&self, header_stream: &str, m: frame_wire::EventMessage) {
        let e = &m.event;
        if e.stream != header_stream {
            self.metrics.event_message("refused");
            return;
        }
        if self.choice.mode_of(&e.stream) == Mode::Off {
            return;
        }
        let (id, start, end) = (e.id.clone(), e.start_ts_ns, e.end_ts_ns);
        let ended = m.phase == frame_wire::Phase::End;
        let stream = e.stream.clone();
        self.with(&stream, false, |c| c.event(id, start, end, ended));
        self.history.offer(m);
    }
}

/// What to subscribe to: the chosen streams' frames (or every stream's),
/// and every stream's detections.
pub fn subscriptions(choice: &Choice) -> Vec<Vec<u8>> {
    let mut subs = if choice.everything {
        vec![frame_wire::subscription(Kind::Frame, None)]
    } else {
        choice
            .named
            .iter()
            .filter(|(_, m)| **m != Mode::Off)
            .map(|(name, _)| frame_wire::subscription(Kind::Frame, Some(name)))
            .collect()
    };
    subs.push(frame_wire::subscription(Kind::Detections, None));
    subs.push(frame_wire::subscription(Kind::Event, None));
    subs
}

/// Receives from one producer until shutdown.
pub async fn run(
    bus: frame_bus::Settings,
    cameras: Arc<Cameras>,
    metrics: RecorderMetrics,
    shutdown: CancellationToken,
) {
    let topics = frame_bus::topics::topic_strings(subscriptions(&cameras.choice));
    let mut client = Client::fixed(bus, topics, shutdown);
    while let Some(event) = client.next().await {
        match event {
            Event::Message(received) => match received.message {
                Message::Frame(frame) => {
                    let h = frame.header;
                    cameras.with(&h.stream, true, |c| {
                        c.frame(Frame {
                            ts_ns: h.capture_ts_ns,
                            width: h.width,
                            height: h.height,
                            jpeg: frame.jpeg,
                        })
                    });
                }
                Message::Detections { header, detections } => {
                    if detections.boxes.is_empty() {
                        continue;
                    }
                    let mut labels: Vec<String> =
                        detections.boxes.iter().map(|b| b.label.clone()).collect();
                    labels.sort();
                    labels.dedup();
                    cameras.with(&header.stream, false, |c| {
                        c.detection(header.capture_ts_ns, labels)
                    });
                }
                Message::Event { header, event } => cameras.event(&header.stream, *event),
                _ => {}
            },
            // Already logged at a bounded rate by the client.
            Event::Refused(why) => metrics.invalid(why.kind()),
            Event::Silent { .. } => {}
        }
    }
}
