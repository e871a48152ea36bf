//! The receive side: one task per producer endpoint that does nothing but take
//! messages off its SUB socket, decode them and put each frame into its
//! stream's latest-frame slot. It never waits on HTTP clients.
//!
//! zmq.rs reconnects on its own but backs off up to 30 s, so a watchdog
//! recreates the socket whenever the producer has been silent for a while:
//! viewers see live frames again within about a second of it coming back.
//!
//! With a bus key, `verify.rs` checks every frame's MAC and proves the key to
//! the producer.
//!
//! What the socket subscribes to follows the streams watched here
//! (`subscriptions.rs`, `interest.rs`): every stream's preview, and
//! full-rate frames of the watched ones, changed on the open socket as
//! viewers come and go and asked again in full whenever it is recreated.
//! While only previews (about one a second) arrive, the watchdog waits
//! [`PREVIEW_SILENCE`] rather than `--resubscribe-after`.

pub mod subscriptions;
pub mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use frame_wire::{Limits, Message};
use stream_common::ratelimit::LogEvery;
use stream_common::subscribe::Silence;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zeromq::SocketRecv;

use crate::config::Config;
use crate::interest::Wanted;
use crate::metrics::GatewayMetrics;
use crate::streams::{PREVIEW_SILENCE, Streams};
use subscriptions::Mode;

#[derive(Clone)]
pub struct Settings {
    pub resubscribe_after: Duration,
    pub limits: Limits,
    /// Streams to accept; all when empty.
    pub only: Vec<String>,
    /// Bus key, if any: frames must be signed with it.
    pub bus: verify::BusAuth,
    /// `--subscribe`: every frame, or full-rate frames of watched streams.
    pub mode: Mode,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            resubscribe_after: c.resubscribe_after,
            limits: Limits {
                max_jpeg_bytes: c.max_frame_bytes,
            },
            only: c.only_streams.clone(),
            bus: verify::BusAuth::from_config(c),
            mode: c.subscribe,
        }
    }
}

/// Receives from `endpoint`, the `producer_index`-th `--producer`, until
/// shutdown, subscribed to the streams in `wanted` at full rate.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    endpoint: String,
    producer_index: usize,
    settings: Settings,
    mut wanted: watch::Receiver<Wanted>,
    streams: Arc<Streams>,
    metrics: Arc<GatewayMetrics>,
    shutdown: CancellationToken,
) {
    let mut invalid_log = LogEvery::new(Duration::from_secs(1));
    let mut connect_log = LogEvery::new(Duration::from_secs(30));
    // Smoothed gap between messages: a producer sending slower than the
    // watchdog period must not be resubscribed on every frame.
    let mut silence = Silence::default();
    let mut silence_log = LogEvery::new(Duration::from_secs(30));
    // When a full-rate frame last came: until then (or long after) only
    // previews are expected, about one a second.
    let mut last_full: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        let Some(mut socket) =
            stream_common::subscribe::connect(&endpoint, &shutdown, &mut connect_log).await
        else {
            return;
        };
        let mut proved = Ok(());
        let mut ring_seen = 0;
        settings.bus.tokens_if_changed(&mut ring_seen);
        for token in settings.bus.tokens() {
            proved = proved.and(socket.subscribe(&token).await);
        }
        let mut held = subscriptions::Held::default();
        let subscribed = match proved {
            Err(e) => Err(e),
            Ok(()) => {
                let want = topics(&settings, &mut wanted);
                held.update(&mut socket, &want).await
            }
        };
        if let Err(e) = subscribed {
            tracing::warn!(producer = %endpoint, error = %e, "subscribe failed");
            continue;
        }
        tracing::debug!(producer = %endpoint, "SUB socket connected");

        silence.connected();
        loop {
            let previews_only = settings.mode == Mode::OnDemand
                && last_full.is_none_or(|t| t.elapsed() >= PREVIEW_SILENCE);
            let floor = if previews_only {
                settings.resubscribe_after.max(PREVIEW_SILENCE)
            } else {
                settings.resubscribe_after
            };
            // Silence counts from the last message, so changes of the
            // wanted streams do not put the watchdog off.
            let silent_until = silence.deadline(floor);
            // recv is cancel-safe (zmq.rs takes a message off its queue
            // only when returning it), so a change of the wanted streams
            // can interrupt it.
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = wanted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let want = topics(&settings, &mut wanted);
                    if let Err(e) = held.update(&mut socket, &want).await {
                        tracing::warn!(producer = %endpoint, error = %e, "changing subscriptions failed; reconnecting");
                        break;
                    }
                    continue;
                }
                r = tokio::time::timeout_at(silent_until, socket.recv()) => r,
            };
            let msg = match msg {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(producer = %endpoint, error = %e, "receive failed; reconnecting");
                    break;
                }
                Err(_) => {
                    if silence.ever_heard() {
                        tracing::debug!(producer = %endpoint, silent_ms = silence.quiet_for().as_millis() as u64, "producer silent; recreating SUB socket");
                    } else if settings.mode == Mode::OnDemand
                        && let Some(folded) = silence_log.check(Instant::now())
                    {
                        tracing::warn!(producer = %endpoint, repeats = folded, "nothing from this producer, not even previews: if it predates wire version 3 (no previews), run the gateway with --subscribe all");
                    }
                    metrics.resubscribed(&endpoint);
                    break;
                }
            };
            let now = Instant::now();
            silence.heard(now);
            let parts = msg.into_vec();
            let size: usize = parts.iter().map(|p| p.len()).sum();
            let decoded = settings.bus.decode(&parts, &settings.limits);
            for token in settings
                .bus
                .tokens_if_changed(&mut ring_seen)
                .unwrap_or_default()
            {
                let _ = socket.subscribe(&token).await;
            }
            let message = match decoded {
                Ok(m) => m,
                Err(e) => {
                    metrics.invalid(&endpoint, e.kind());
                    if let Some(folded) = invalid_log.check(now) {
                        tracing::warn!(producer = %endpoint, error = %e, repeats = folded, "dropping invalid message");
                    }
                    continue;
                }
            };
            let name = &message.header().stream;
            if !settings.only.is_empty() && !settings.only.contains(name) {
                continue;
            }
            metrics.received(name, message.kind(), size);
            match message {
                Message::Frame(frame) => {
                    last_full = Some(now);
                    streams
                        .get_or_create(&frame.header.stream, producer_index)
                        .publish_live(&frame, &endpoint);
                }
                Message::Preview(preview) => {
                    streams
                        .get_or_create(&preview.header.stream, producer_index)
                        .publish_preview(&preview, &endpoint);
                }
                Message::Detections { header, detections } => match streams.get(&header.stream) {
                    Some(stream) => stream.detections.publish(&header, &detections),
                    // No frame of it yet: a detector cannot make streams appear.
                    None => metrics.detections_ignored.inc(),
                },
                // Events (the event stage's `e/`) are not kept here yet.
                Message::Event { .. } => {}
            }
        }
    }
}

/// The subscriptions wanted now, marking the wanted streams seen.
fn topics(
    settings: &Settings,
    wanted: &mut watch::Receiver<Wanted>,
) -> std::collections::BTreeSet<String> {
    let names = wanted.borrow_and_update().clone();
    subscriptions::topics(settings.mode, &settings.only, &names)
}
