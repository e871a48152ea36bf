//! The receive side: one task per producer that takes messages off its SUB
//! socket, decodes (and with a key verifies) them and puts each frame into
//! its stream's latest-value slot (`latest.rs`). It never waits on the model.
//!
//! It subscribes to full-rate frames only (`f/<name>/`, or `f/` for every
//! stream). zmq.rs reconnects on its own but backs off up to 30 s, so, as in
//! the gateway, a watchdog recreates the socket when a producer has been
//! silent for a while.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frame_wire::{Kind, Limits, Message};
use stream_common::ratelimit::LogEvery;
use stream_common::subscribe::Silence;
use tokio_util::sync::CancellationToken;
use zeromq::SocketRecv;

use crate::bus::BusAuth;
use crate::latest::{Latest, Put};
use crate::metrics::DetectorMetrics;

#[derive(Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Streams to analyse; all when empty.
    pub only: Vec<String>,
    pub bus: BusAuth,
    /// Silence after which the SUB socket is recreated.
    pub resubscribe_after: Duration,
}

/// What to subscribe to: each chosen stream's frames, or every stream's.
pub fn subscriptions(only: &[String]) -> Vec<String> {
    let subs = if only.is_empty() {
        vec![frame_wire::subscription(Kind::Frame, None)]
    } else {
        only.iter()
            .map(|name| frame_wire::subscription(Kind::Frame, Some(name)))
            .collect()
    };
    // Topics are ASCII (stream names are validated), so this loses nothing.
    subs.into_iter()
        .map(|s| String::from_utf8_lossy(&s).into_owned())
        .collect()
}

/// Receives from `endpoint` until shutdown.
pub async fn run(
    endpoint: String,
    settings: Settings,
    latest: Arc<Latest>,
    metrics: DetectorMetrics,
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
            .chain(subscriptions(&settings.only))
        {
            subscribed = subscribed.and(socket.subscribe(&topic).await);
        }
        if let Err(e) = subscribed {
            tracing::warn!(producer = %endpoint, error = %e, "subscribe failed");
            continue;
        }
        tracing::debug!(producer = %endpoint, "SUB socket connected");

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
                    tracing::warn!(producer = %endpoint, error = %e, "receive failed; reconnecting");
                    break;
                }
                Err(_) => {
                    tracing::debug!(producer = %endpoint, "producer silent; recreating SUB socket");
                    break;
                }
            };
            let now = Instant::now();
            silence.heard(now);
            match settings.bus.decode(&msg.into_vec(), &settings.limits) {
                Ok(Message::Frame(frame)) => {
                    let stream = &frame.header.stream;
                    if !settings.only.is_empty() && !settings.only.contains(stream) {
                        continue;
                    }
                    let stream = stream.clone();
                    if latest.put(frame) == Put::Replaced {
                        metrics.skipped(&stream);
                    }
                }
                // Not subscribed to; a producer that ignores subscriptions
                // may still send them.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_to_frames_of_the_chosen_streams_only() {
        assert_eq!(subscriptions(&[]), ["f/"]);
        assert_eq!(
            subscriptions(&["cam1".into(), "lobby".into()]),
            ["f/cam1/", "f/lobby/"]
        );
    }
}
