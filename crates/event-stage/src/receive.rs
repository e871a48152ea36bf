//! The receive side: one task per detector, taking its detections messages
//! (`d/<name>/`), and one per producer, taking full-size frames (`f/<name>/`)
//! of the streams the stage follows something in, for their snapshots. A
//! producer's subscriptions follow that set as it changes, so an on-demand
//! producer encodes full-rate frames for us only while it matters. Neither
//! task ever waits for the stage: a full queue drops (counted) instead.
//!
//! zmq.rs reconnects on its own but backs off up to 30 s, so, as in the
//! detector, a watchdog recreates the socket when a publisher that should be
//! talking has been silent for a while.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use frame_wire::{Frame, FrameHeader, Kind, Limits, Message};
use stream_common::ratelimit::LogEvery;
use stream_common::subscribe::Silence;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use zeromq::SocketRecv;

use crate::bus::BusAuth;
use crate::metrics::EventMetrics;

#[derive(Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Streams to follow; all when empty.
    pub only: Vec<String>,
    pub bus: BusAuth,
    /// Silence after which the SUB socket is recreated.
    pub resubscribe_after: Duration,
}

/// One detections message.
pub struct Detected {
    pub header: FrameHeader,
    pub detections: frame_wire::Detections,
}

fn topic_text(t: Vec<u8>) -> String {
    // Topics are ASCII (stream names are validated), so this loses nothing.
    String::from_utf8_lossy(&t).into_owned()
}

/// What to subscribe to at a detector.
pub fn detection_topics(only: &[String]) -> Vec<String> {
    if only.is_empty() {
        vec![topic_text(frame_wire::subscription(Kind::Detections, None))]
    } else {
        only.iter()
            .map(|n| topic_text(frame_wire::subscription(Kind::Detections, Some(n))))
            .collect()
    }
}

fn frame_topic(name: &str) -> String {
    topic_text(frame_wire::subscription(Kind::Frame, Some(name)))
}

fn wanted(settings: &Settings, stream: &str) -> bool {
    settings.only.is_empty() || settings.only.iter().any(|s| s == stream)
}

/// Receives detections from `endpoint` until shutdown.
pub async fn detections(
    endpoint: String,
    settings: Settings,
    out: mpsc::Sender<Detected>,
    metrics: EventMetrics,
    shutdown: CancellationToken,
) {
    let mut invalid_log = LogEvery::new(Duration::from_secs(1));
    let mut connect_log = LogEvery::new(Duration::from_secs(30));
    let mut silence = Silence::default();
    while !shutdown.is_cancelled() {
        let Some(mut socket) =
            stream_common::subscribe::connect(&endpoint, &shutdown, &mut connect_log).await
        else {
            return;
        };
        let mut subscribed = Ok(());
        for topic in settings
            .bus
            .tokens()
            .into_iter()
            .chain(detection_topics(&settings.only))
        {
            subscribed = subscribed.and(socket.subscribe(&topic).await);
        }
        if let Err(e) = subscribed {
            tracing::warn!(detector = %endpoint, error = %e, "subscribe failed");
            continue;
        }
        silence.connected();
        loop {
            let silent_until = silence.deadline(settings.resubscribe_after);
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout_at(silent_until, socket.recv()) => r,
            };
            let msg = match msg {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(detector = %endpoint, error = %e, "receive failed; reconnecting");
                    break;
                }
                Err(_) => break,
            };
            let now = Instant::now();
            silence.heard(now);
            match settings.bus.decode(&msg.into_vec(), &settings.limits) {
                Ok(Message::Detections { header, detections }) => {
                    if !wanted(&settings, &header.stream) {
                        continue;
                    }
                    if out.try_send(Detected { header, detections }).is_err() {
                        metrics.dropped("detections");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    metrics.invalid(&endpoint, e.kind());
                    if let Some(folded) = invalid_log.check(now) {
                        tracing::warn!(detector = %endpoint, error = %e, repeats = folded, "dropping invalid message");
                    }
                }
            }
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
    let mut invalid_log = LogEvery::new(Duration::from_secs(1));
    let mut connect_log = LogEvery::new(Duration::from_secs(30));
    let mut silence = Silence::default();
    while !shutdown.is_cancelled() {
        let Some(mut socket) =
            stream_common::subscribe::connect(&endpoint, &shutdown, &mut connect_log).await
        else {
            return;
        };
        let mut subscribed = Ok(());
        for topic in settings.bus.tokens() {
            subscribed = subscribed.and(socket.subscribe(&topic).await);
        }
        let mut current: BTreeSet<String> = BTreeSet::new();
        silence.connected();
        'connected: loop {
            // Follow the set of followed streams.
            let names: BTreeSet<String> = follow
                .borrow_and_update()
                .iter()
                .filter(|n| wanted(&settings, n))
                .map(|n| frame_topic(n))
                .collect();
            for gone in current.difference(&names) {
                subscribed = subscribed.and(socket.unsubscribe(gone).await);
            }
            for new in names.difference(&current) {
                subscribed = subscribed.and(socket.subscribe(new).await);
            }
            if let Err(e) = std::mem::replace(&mut subscribed, Ok(())) {
                tracing::warn!(producer = %endpoint, error = %e, "subscribe failed");
                break;
            }
            if current.is_empty() && !names.is_empty() {
                // A producer is only expected to talk once asked.
                silence.connected();
            }
            current = names;
            loop {
                // Nothing asked for, nothing expected: no watchdog.
                let silent_until = if current.is_empty() {
                    tokio::time::Instant::now() + Duration::from_secs(3600)
                } else {
                    silence.deadline(settings.resubscribe_after)
                };
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = follow.changed() => {
                        if r.is_err() {
                            return;
                        }
                        continue 'connected;
                    }
                    r = tokio::time::timeout_at(silent_until, socket.recv()) => r,
                };
                let msg = match msg {
                    Ok(Ok(m)) => m,
                    Ok(Err(e)) => {
                        tracing::warn!(producer = %endpoint, error = %e, "receive failed; reconnecting");
                        break 'connected;
                    }
                    Err(_) => break 'connected,
                };
                let now = Instant::now();
                silence.heard(now);
                match settings.bus.decode(&msg.into_vec(), &settings.limits) {
                    Ok(Message::Frame(frame)) => {
                        if out.try_send(frame).is_err() {
                            metrics.dropped("frames");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        metrics.invalid(&endpoint, e.kind());
                        if let Some(folded) = invalid_log.check(now) {
                            tracing::warn!(producer = %endpoint, error = %e, repeats = folded, "dropping invalid message");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_to_detections_of_the_chosen_streams_only() {
        assert_eq!(detection_topics(&[]), ["d/"]);
        assert_eq!(detection_topics(&["cam1".into()]), ["d/cam1/"]);
        assert_eq!(frame_topic("cam1"), "f/cam1/");
    }
}
