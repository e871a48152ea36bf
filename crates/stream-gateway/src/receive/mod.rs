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

pub mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use frame_wire::Limits;
use stream_common::ratelimit::LogEvery;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketOptions, SocketRecv};

use crate::config::Config;
use crate::metrics::GatewayMetrics;
use crate::streams::Streams;

#[derive(Clone)]
pub struct Settings {
    pub resubscribe_after: Duration,
    pub limits: Limits,
    /// Streams to accept; all when empty.
    pub only: Vec<String>,
    /// Bus key, if any: frames must be signed with it.
    pub bus: verify::BusAuth,
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
        }
    }
}

/// Receives from `endpoint`, the `producer_index`-th `--producer`, until shutdown.
pub async fn run(
    endpoint: String,
    producer_index: usize,
    settings: Settings,
    streams: Arc<Streams>,
    metrics: Arc<GatewayMetrics>,
    shutdown: CancellationToken,
) {
    let mut invalid_log = LogEvery::new(Duration::from_secs(1));
    let mut connect_log = LogEvery::new(Duration::from_secs(30));
    // Smoothed gap between messages: a producer sending slower than the
    // watchdog period must not be resubscribed on every frame.
    let mut gap_ewma = 0.0f64;
    let mut ever_received = false;
    while !shutdown.is_cancelled() {
        let mut options = SocketOptions::default();
        options.connect_timeout(Duration::from_millis(300));
        let mut socket = zeromq::SubSocket::with_options(options);
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.connect(&endpoint) => r,
        };
        if let Err(e) = connected {
            if connect_log.check(Instant::now()).is_some() {
                tracing::warn!(producer = %endpoint, error = %e, "cannot reach producer; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        let mut proved = Ok(());
        let mut ring_seen = 0;
        settings.bus.tokens_if_changed(&mut ring_seen);
        for token in settings.bus.tokens() {
            proved = proved.and(socket.subscribe(&token).await);
        }
        let subscribed = if proved.is_err() {
            proved
        } else if settings.only.is_empty() {
            socket.subscribe("").await
        } else {
            let mut r = Ok(());
            for name in &settings.only {
                r = r.and(socket.subscribe(name).await);
            }
            r
        };
        if let Err(e) = subscribed {
            tracing::warn!(producer = %endpoint, error = %e, "subscribe failed");
            continue;
        }
        tracing::debug!(producer = %endpoint, "SUB socket connected");

        let mut last = Instant::now();
        loop {
            let watchdog = settings
                .resubscribe_after
                .max(Duration::from_secs_f64(gap_ewma * 3.0));
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(watchdog, socket.recv()) => r,
            };
            let msg = match msg {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(producer = %endpoint, error = %e, "receive failed; reconnecting");
                    break;
                }
                Err(_) => {
                    if ever_received {
                        tracing::debug!(producer = %endpoint, silent_ms = last.elapsed().as_millis() as u64, "producer silent; recreating SUB socket");
                    }
                    metrics.resubscribed(&endpoint);
                    break;
                }
            };
            let now = Instant::now();
            let gap = now.duration_since(last).as_secs_f64().min(60.0);
            gap_ewma = if ever_received {
                0.9 * gap_ewma + 0.1 * gap
            } else {
                0.0
            };
            last = now;
            ever_received = true;
            let decoded = settings.bus.decode(&msg.into_vec(), &settings.limits);
            for token in settings
                .bus
                .tokens_if_changed(&mut ring_seen)
                .unwrap_or_default()
            {
                let _ = socket.subscribe(&token).await;
            }
            match decoded {
                Ok(frame) => {
                    if !settings.only.is_empty() && !settings.only.contains(&frame.header.stream) {
                        continue;
                    }
                    streams
                        .get_or_create(&frame.header.stream, producer_index)
                        .publish_live(&frame, &endpoint);
                }
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
