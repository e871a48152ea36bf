//! The receive side: one task per producer endpoint that does nothing but
//! take messages from its bus client (`frame_bus::Client`, which connects,
//! reconnects, watches for silence, keeps the bus key current, verifies and
//! decodes) and put each frame into its stream's latest-frame slot. It never
//! waits on HTTP clients.
//!
//! What the client subscribes to follows the streams watched here
//! (`subscriptions.rs`, `interest.rs`): every stream's preview, and
//! full-rate frames (or renditions, `r/<name>/<width>/`) of the watched
//! ones, changed on the open socket as viewers come and go; which
//! renditions a stream has comes with its previews (`i/<name>/`). Detections and events go beside their stream's
//! frame slot (`detections.rs`, `events.rs`), for streams held here only. While only previews (about one a second) arrive,
//! the watchdog waits [`PREVIEW_SILENCE`] rather than `--resubscribe-after`;
//! from an endpoint that has sent nothing but events (an event stage, quiet
//! between events) it waits [`EVENTS_SILENCE`], so that the socket is not
//! recreated every few seconds, when a start or an end could be missed.

pub mod subscriptions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use frame_bus::{BusKeys, Client, Event};
use frame_wire::{Limits, Message};
use stream_common::ratelimit::LogEvery;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::interest::Wanted;
use crate::metrics::GatewayMetrics;
use crate::streams::{PREVIEW_SILENCE, Streams};
use subscriptions::Mode;

/// How long an endpoint that has only ever sent events may be silent
/// before its socket is recreated.
pub const EVENTS_SILENCE: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Settings {
    pub resubscribe_after: Duration,
    pub limits: Limits,
    /// Streams to accept; all when empty.
    pub only: Vec<String>,
    /// Bus key, if any: frames must be signed with it.
    pub keys: BusKeys,
    /// `--subscribe`: every frame, or full-rate frames of watched streams.
    pub mode: Mode,
}

impl Settings {
    /// The settings `c` gives; an unusable bus key is an error (start-up
    /// stops with it, rather than show nothing).
    pub fn from_config(c: &Config) -> anyhow::Result<Self> {
        let keys = c.bus.load().context("bus key unusable")?;
        if keys.is_on() {
            tracing::info!(keys = %keys.describe(), "bus key set: only frames signed with it are shown");
        }
        frame_bus::owners::set_takeover_after(c.stream_takeover_after);
        Ok(Settings {
            resubscribe_after: c.resubscribe_after,
            limits: Limits {
                max_jpeg_bytes: c.max_frame_bytes,
            },
            only: c.only_streams.clone(),
            keys,
            mode: c.subscribe,
        })
    }
}

/// Receives from `endpoint`, the `producer_index`-th `--producer`, until
/// shutdown, subscribed to the streams in `wanted` at full rate.
pub async fn run(
    endpoint: String,
    producer_index: usize,
    settings: Settings,
    wanted: watch::Receiver<Wanted>,
    streams: Arc<Streams>,
    metrics: Arc<GatewayMetrics>,
    shutdown: CancellationToken,
) {
    let (topics, follow) = follow(settings.mode, settings.only.clone(), wanted);
    let follower = tokio::spawn(follow);
    let bus = frame_bus::Settings {
        endpoint: endpoint.clone(),
        keys: settings.keys.clone(),
        limits: settings.limits,
        resubscribe_after: settings.resubscribe_after,
    };
    let mut client = Client::new(bus, topics, shutdown);
    let mut silence_log = LogEvery::new(Duration::from_secs(30));
    // When a full-rate frame last came: until then (or long after) only
    // previews are expected, about one a second.
    let mut last_full: Option<Instant> = None;
    // Whether events came from here, and anything else ever did.
    let (mut events_seen, mut others_seen) = (false, false);
    loop {
        let previews_only = settings.mode == Mode::OnDemand
            && last_full.is_none_or(|t| t.elapsed() >= PREVIEW_SILENCE);
        client.set_silence_floor(if events_seen && !others_seen {
            settings.resubscribe_after.max(EVENTS_SILENCE)
        } else if previews_only {
            settings.resubscribe_after.max(PREVIEW_SILENCE)
        } else {
            settings.resubscribe_after
        });
        let Some(event) = client.next().await else {
            break;
        };
        let received = match event {
            Event::Message(r) => r,
            Event::Refused(why) => {
                metrics.invalid(&endpoint, why.kind());
                continue;
            }
            Event::Silent { ever_heard } => {
                if !ever_heard
                    && settings.mode == Mode::OnDemand
                    && let Some(folded) = silence_log.check(Instant::now())
                {
                    tracing::warn!(producer = %endpoint, repeats = folded, "nothing from this producer, not even previews: if it predates wire version 3 (no previews), run the gateway with --subscribe all (an event stage is silent until its first event)");
                }
                metrics.resubscribed(&endpoint);
                continue;
            }
        };
        let message = received.message;
        let name = &message.header().stream;
        if !settings.only.is_empty() && !settings.only.contains(name) {
            continue;
        }
        // Counted by stream only once it is held here, so names beyond
        // `--max-streams` make no series.
        let (kind, bytes) = (message.kind(), received.bytes);
        if kind == frame_wire::Kind::Event {
            events_seen = true;
        } else {
            others_seen = true;
        }
        match message {
            Message::Frame(frame) => {
                last_full = Some(received.at);
                if let Some(stream) = streams.admit(&frame.header.stream, producer_index) {
                    metrics.received(&stream.name, kind, bytes);
                    stream.publish_live(&frame, &endpoint);
                }
            }
            Message::Rendition(frame) => {
                last_full = Some(received.at);
                match streams.get(&frame.header.stream) {
                    Some(stream) if stream.publish_rendition(&frame) => {
                        metrics.received(&stream.name, kind, bytes);
                    }
                    // Not announced (yet): nothing to put it in.
                    _ => metrics.renditions_ignored.inc(),
                }
            }
            Message::Info { header, renditions } => {
                if let Some(stream) = streams.admit(&header.stream, producer_index) {
                    metrics.received(&stream.name, kind, bytes);
                    stream.set_renditions((header.width, header.height), renditions.sizes());
                }
            }
            Message::Preview(preview) => {
                if let Some(stream) = streams.admit(&preview.header.stream, producer_index) {
                    metrics.received(&stream.name, kind, bytes);
                    stream.publish_preview(&preview, &endpoint);
                }
            }
            Message::Detections { header, detections } => match streams.get(&header.stream) {
                Some(stream) => {
                    metrics.received(&stream.name, kind, bytes);
                    stream.detections.publish(&header, &detections);
                }
                // No frame of it yet: a detector cannot make streams appear.
                None => metrics.detections_ignored.inc(),
            },
            Message::Event { header, event } => {
                // The stage names the stream twice (header, event); only a
                // stream held here, under either name, is one it may fill.
                match streams.get(&event.event.stream) {
                    Some(stream) if header.stream == event.event.stream => {
                        metrics.received(&stream.name, kind, bytes);
                        stream.events.publish(&event);
                    }
                    // No frame of it yet: an event stage cannot make streams appear.
                    _ => metrics.events_ignored.inc(),
                }
            }
        }
    }
    follower.abort();
}

/// The topics wanted now, and a task that keeps them following `wanted`.
fn follow(
    mode: Mode,
    only: Vec<String>,
    mut wanted: watch::Receiver<Wanted>,
) -> (
    watch::Receiver<frame_bus::topics::Topics>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let first = subscriptions::topics(mode, &only, &wanted.borrow_and_update());
    let (tx, rx) = watch::channel(first);
    let task = async move {
        while wanted.changed().await.is_ok() {
            let want = subscriptions::topics(mode, &only, &wanted.borrow_and_update());
            tx.send_if_modified(|held| {
                let changed = *held != want;
                *held = want;
                changed
            });
        }
    };
    (rx, task)
}
