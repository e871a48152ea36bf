//! The capture loop, on its own thread: wait for the next tick, take a frame
//! from the source, JPEG-encode it if it is not JPEG already, publish it.
//! Nothing is queued: a frame that cannot be produced in time is skipped and
//! counted, and an unavailable source is retried with backoff.

use std::time::{Duration, Instant};

use bytes::Bytes;
use stream_common::jpeg::JpegEncoder;
use stream_common::ratelimit::LogEvery;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::ProducerMetrics;
use crate::pacing::Pacer;
use crate::publish::{PublishError, Publisher};
use crate::source::{Picture, Source, SourceError};

pub struct Settings {
    pub fps: f64,
    pub quality: u8,
    pub max_frame_bytes: usize,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            fps: c.fps,
            quality: c.quality,
            max_frame_bytes: c.max_frame_bytes,
        }
    }
}

pub fn run(
    mut source: Box<dyn Source>,
    mut publisher: Publisher,
    settings: Settings,
    metrics: ProducerMetrics,
    shutdown: CancellationToken,
    runtime: tokio::runtime::Handle,
) {
    publisher.set_max_frame_bytes(settings.max_frame_bytes);
    let mut encoder = match JpegEncoder::new(settings.quality) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the JPEG encoder");
            shutdown.cancel();
            return;
        }
    };
    let interval = Duration::from_secs_f64(1.0 / settings.fps);
    let mut pacer = Pacer::new(Instant::now(), settings.fps);
    let mut last_live_publish: Option<Instant> = None;
    let mut backoff = Duration::from_millis(200);
    let mut source_log = LogEvery::new(Duration::from_secs(10));
    let mut publish_log = LogEvery::new(Duration::from_secs(5));

    while !shutdown.is_cancelled() {
        let live = source.is_live();
        if !live && !sleep_until(pacer.deadline(), &shutdown) {
            break;
        }
        let captured = match source.next_frame(interval.max(Duration::from_millis(100))) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(SourceError::BadFrame { what, why }) => {
                metrics.bad_frames.inc();
                if !what.is_empty() {
                    tracing::warn!(file = %what, reason = %why, "skipping unreadable frame");
                }
                if !live {
                    pacer.advance(Instant::now());
                }
                continue;
            }
            Err(e @ SourceError::Unavailable(_)) => {
                metrics.source_errors.inc();
                if let Some(folded) = source_log.check(Instant::now()) {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, repeats = folded, "source unavailable");
                }
                if !sleep_until(Instant::now() + backoff, &shutdown) {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                pacer = Pacer::new(Instant::now(), settings.fps);
                continue;
            }
        };
        backoff = Duration::from_millis(200);

        if live {
            // Live sources run at their own pace; `--fps` caps it.
            let now = Instant::now();
            if last_live_publish.is_some_and(|t| now.duration_since(t) < interval.mul_f64(0.9)) {
                metrics.skipped_rate.inc();
                continue;
            }
            last_live_publish = Some(now);
        }

        let ts = captured.capture_ts_ns;
        let encoded: Result<(Bytes, u32, u32), String> = match captured.picture {
            Picture::Jpeg {
                data,
                width,
                height,
            } => Ok((data, width, height)),
            Picture::Rgb(canvas) => {
                let t = Instant::now();
                let r = encoder.encode(canvas).map_err(|e| e.to_string());
                metrics.encode_seconds.observe(t.elapsed().as_secs_f64());
                r.map(|j| (j, canvas.width(), canvas.height()))
            }
        };
        match encoded {
            Ok((jpeg, w, h)) => {
                let len = jpeg.len();
                match runtime.block_on(publisher.publish(jpeg, w, h, ts)) {
                    Ok(_) => metrics.mark_published(len),
                    Err(PublishError::Wire(frame_wire::WireError::JpegTooLarge { size, max })) => {
                        metrics.skipped_oversize.inc();
                        if publish_log.check(Instant::now()).is_some() {
                            tracing::warn!(
                                size,
                                max,
                                "frame larger than --max-frame-bytes skipped"
                            );
                        }
                    }
                    Err(e) => {
                        metrics.bad_frames.inc();
                        if publish_log.check(Instant::now()).is_some() {
                            tracing::warn!(error = %e, "publishing a frame failed");
                        }
                    }
                }
            }
            Err(e) => {
                metrics.bad_frames.inc();
                tracing::warn!(error = %e, "encoding a frame failed");
            }
        }

        if !live {
            let skipped = pacer.advance(Instant::now());
            if skipped > 0 {
                metrics.skipped_late.inc_by(skipped);
                tracing::debug!(skipped, "frames skipped: capture fell behind");
            }
        }
    }
    tracing::debug!("capture loop ended");
}

/// Sleeps until `deadline` in short steps; false if shutdown came first.
fn sleep_until(deadline: Instant, shutdown: &CancellationToken) -> bool {
    loop {
        if shutdown.is_cancelled() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}
