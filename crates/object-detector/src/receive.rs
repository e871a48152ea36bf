//! The receive side: one task per producer that takes frames from its bus
//! client (`frame_bus::Client`: connecting, reconnecting, the silence
//! watchdog, the bus key and decoding live there) and puts each into its
//! stream's latest-value slot (`latest.rs`). It never waits on the model.
//!
//! It subscribes to full-rate frames only (`f/<name>/`, or `f/` for every
//! stream).

use std::sync::Arc;
use std::time::Duration;

use frame_bus::{BusKeys, Client, Event};
use frame_wire::{Kind, Limits, Message};
use tokio_util::sync::CancellationToken;

use crate::latest::{Latest, Put};
use crate::metrics::DetectorMetrics;

#[derive(Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Streams to analyse; all when empty.
    pub only: Vec<String>,
    pub keys: BusKeys,
    /// Silence after which the SUB socket is recreated.
    pub resubscribe_after: Duration,
}

/// What to subscribe to: each chosen stream's frames, or every stream's.
pub fn subscriptions(only: &[String]) -> frame_bus::topics::Topics {
    frame_bus::topics::topic_strings(if only.is_empty() {
        vec![frame_wire::subscription(Kind::Frame, None)]
    } else {
        only.iter()
            .map(|name| frame_wire::subscription(Kind::Frame, Some(name)))
            .collect()
    })
}

/// Receives from `endpoint` until shutdown.
pub async fn run(
    endpoint: String,
    settings: Settings,
    latest: Arc<Latest>,
    metrics: DetectorMetrics,
    shutdown: CancellationToken,
) {
    let bus = frame_bus::Settings {
        endpoint: endpoint.clone(),
        keys: settings.keys.clone(),
        limits: settings.limits,
        resubscribe_after: settings.resubscribe_after,
    };
    let mut client = Client::fixed(bus, subscriptions(&settings.only), shutdown);
    while let Some(event) = client.next().await {
        match event {
            Event::Message(received) => {
                let Message::Frame(frame) = received.message else {
                    // Not subscribed to; a producer that ignores
                    // subscriptions may still send them.
                    continue;
                };
                let stream = &frame.header.stream;
                if !settings.only.is_empty() && !settings.only.contains(stream) {
                    continue;
                }
                let stream = stream.clone();
                if latest.put(frame) == Put::Replaced {
                    metrics.skipped(&stream);
                }
            }
            Event::Refused(why) => metrics.invalid(&endpoint, why.kind()),
            Event::Silent { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_to_frames_of_the_chosen_streams_only() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            subscriptions(&[]).into_iter().collect::<Vec<_>>(),
            list(&["f/"])
        );
        assert_eq!(
            subscriptions(&["cam1".into(), "lobby".into()])
                .into_iter()
                .collect::<Vec<_>>(),
            list(&["f/cam1/", "f/lobby/"])
        );
    }
}
