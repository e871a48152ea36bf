//! Keeps every stream's viewers fed when the producer is not: re-sends the
//! last frame about once a second while a source is idle (Chromium otherwise
//! holds back the newest frame, and a write is how dead clients are found),
//! and switches to a "NO SIGNAL" placeholder once a stream is stale; clears
//! detections nobody has refreshed for a while (`detections.rs`); forgets
//! streams gone for `--forget-after` (`streams.rs`).
//! One task for all streams, so nothing here is per viewer.
//!
//! The placeholder is rendered once each time a stream goes stale, at a
//! bounded size (`placeholder.rs`), then re-sent like any idle frame: a
//! header claiming a huge picture costs one small render, not one a second.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::placeholder;
use crate::streams::Streams;

pub struct Settings {
    pub stale_after: Duration,
    pub idle_resend: Duration,
    pub detections_stale_after: Duration,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            stale_after: c.stale_after,
            idle_resend: c.idle_resend,
            detections_stale_after: c.detections_stale_after,
        }
    }
}

pub async fn run(streams: Arc<Streams>, settings: Settings, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        streams.forget_gone(std::time::Instant::now());
        for stream in streams.all() {
            stream.detections.expire(settings.detections_stale_after);
            let Some(since) = stream.check_stale(settings.stale_after) else {
                stream.resend_if_idle(settings.idle_resend);
                continue;
            };
            if stream.latest().is_some_and(|p| !p.live) {
                // Its placeholder is up already: the same picture again.
                stream.resend_if_idle(settings.idle_resend);
                continue;
            }
            let st = stream.state();
            let (name, w, h) = (stream.name.clone(), st.width, st.height);
            match tokio::task::spawn_blocking(move || placeholder::render(&name, w, h, since)).await
            {
                Ok(Ok(jpeg)) => {
                    // The producer may have come back while we rendered.
                    if stream.check_stale(settings.stale_after).is_some() {
                        stream.publish_placeholder(&jpeg);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(stream = %stream.name, error = %e, "rendering the placeholder failed")
                }
                Err(e) => tracing::warn!(error = %e, "placeholder task failed"),
            }
        }
    }
}
