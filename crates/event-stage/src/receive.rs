//! The receive side: one task per detector, taking its detections messages
//! (`d/<name>/`), and one per producer, taking full-size frames (`f/<name>/`)
//! of the streams the stage follows something in, for their snapshots. A
//! producer's subscriptions follow that set as it changes, so an on-demand
//! producer encodes full-rate frames for us only while it matters. Neither
//! task ever waits for the stage: a full queue drops (counted) instead.
//!
//! Both read through the shared bus client (`frame_bus::Client`:
//! connecting, reconnecting, the silence watchdog, the bus key re-read on a
//! timer, verification, replay checks), as the detector and the recorder do.

use std::collections::BTreeSet;
use std::time::Duration;

use frame_bus::topics::{Topics, topic_strings};
use frame_bus::{BusKeys, Client, Event};
use frame_wire::{Frame, FrameHeader, Kind, Limits, Message};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::EventMetrics;

/// The watchdog's floor while a producer is asked for nothing: it is not
/// expected to talk, so its silence is no reason to reconnect.
const IDLE_SILENCE: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Streams to follow; all when empty.
    pub only: Vec<String>,
    pub keys: BusKeys,
    /// Silence after which the SUB socket is recreated.
    pub resubscribe_after: Duration,
}

impl Settings {
    fn bus(&self, endpoint: &str) -> frame_bus::Settings {
        frame_bus::Settings {
            endpoint: endpoint.to_string(),
            keys: self.keys.clone(),
            limits: self.limits,
            resubscribe_after: self.resubscribe_after,
        }
    }

    fn wanted(&self, stream: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == stream)
    }
}

/// One detections message.
pub struct Detected {
    pub header: FrameHeader,
    pub detections: frame_wire::Detections,
}

/// What to subscribe to at a detector.
pub fn detection_topics(only: &[String]) -> Topics {
    topic_strings(if only.is_empty() {
        vec![frame_wire::subscription(Kind::Detections, None)]
    } else {
        only.iter()
            .map(|n| frame_wire::subscription(Kind::Detections, Some(n)))
            .collect()
    })
}

/// What to subscribe to at a producer: the full-size frames of `follow`'s
/// streams that are wanted.
fn frame_topics(settings: &Settings, follow: &BTreeSet<String>) -> Topics {
    topic_strings(
        follow
            .iter()
            .filter(|n| settings.wanted(n))
            .map(|n| frame_wire::subscription(Kind::Frame, Some(n))),
    )
}

/// Receives detections from `endpoint` until shutdown.
pub async fn detections(
    endpoint: String,
    settings: Settings,
    out: mpsc::Sender<Detected>,
    metrics: EventMetrics,
    shutdown: CancellationToken,
) {
    let topics = detection_topics(&settings.only);
    let mut client = Client::fixed(settings.bus(&endpoint), topics, shutdown);
    while let Some(event) = client.next().await {
        match event {
            Event::Message(received) => {
                let Message::Detections { header, detections } = received.message else {
                    continue;
                };
                if !settings.wanted(&header.stream) {
                    continue;
                }
                if out.try_send(Detected { header, detections }).is_err() {
                    metrics.dropped("detections");
                }
            }
            Event::Refused(why) => metrics.invalid(&endpoint, why.kind()),
            Event::Silent { .. } => {}
        }
    }
}

/// Receives full-size frames of the streams in `follow` from `endpoint`
/// until shutdown.
pub async fn frames(
    endpoint: String,
    settings: Settings,
    mut follow: watch::Receiver<BTreeSet<String>>,
    out: mpsc::Sender<Frame>,
    metrics: EventMetrics,
    shutdown: CancellationToken,
) {
    let first = frame_topics(&settings, &follow.borrow_and_update());
    let idle = first.is_empty();
    let (topics_tx, topics_rx) = watch::channel(first);
    let mut client = Client::new(settings.bus(&endpoint), topics_rx, shutdown);
    client.set_silence_floor(floor(&settings, idle));
    let mut follow_open = true;
    loop {
        tokio::select! {
            changed = follow.changed(), if follow_open => {
                if changed.is_err() {
                    // The stage is gone; keep what is held until shutdown.
                    follow_open = false;
                    continue;
                }
                let topics = frame_topics(&settings, &follow.borrow_and_update());
                client.set_silence_floor(floor(&settings, topics.is_empty()));
                topics_tx.send_if_modified(|held| {
                    let changed = *held != topics;
                    *held = topics;
                    changed
                });
            }
            event = client.next() => match event {
                None => return,
                Some(Event::Message(received)) => {
                    let Message::Frame(frame) = received.message else {
                        continue;
                    };
                    if out.try_send(frame).is_err() {
                        metrics.dropped("frames");
                    }
                }
                Some(Event::Refused(why)) => metrics.invalid(&endpoint, why.kind()),
                Some(Event::Silent { .. }) => {}
            },
        }
    }
}

/// The silence floor: the usual one while frames are asked for.
fn floor(settings: &Settings, idle: bool) -> Duration {
    if idle {
        IDLE_SILENCE
    } else {
        settings.resubscribe_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_to_detections_of_the_chosen_streams_only() {
        let list = |t: Topics| t.into_iter().collect::<Vec<_>>();
        assert_eq!(list(detection_topics(&[])), ["d/"]);
        assert_eq!(list(detection_topics(&["cam1".into()])), ["d/cam1/"]);
        let settings = Settings {
            limits: Limits::default(),
            only: vec!["cam1".into()],
            keys: BusKeys::Off,
            resubscribe_after: Duration::from_secs(2),
        };
        let follow: BTreeSet<String> = ["cam1".to_string(), "cam2".to_string()].into();
        assert_eq!(list(frame_topics(&settings, &follow)), ["f/cam1/"]);
    }
}
