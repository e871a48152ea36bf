//! One viewer's MJPEG response body. Each time hyper asks for more (that is,
//! when the viewer's socket has taken the previous part) it gets the newest
//! part in the stream's slot, or waits for the next one. Nothing is queued per
//! viewer: the part is shared by all of them, and a viewer that was slow simply
//! skips the frames it missed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream as FuturesStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::GatewayMetrics;
use crate::part::PREAMBLE;
use crate::streams::{Slot, Stream};

/// Counts a viewer while its response is alive.
pub struct ViewerGuard {
    stream: Arc<Stream>,
    metrics: Arc<GatewayMetrics>,
    opened: Instant,
}

impl ViewerGuard {
    pub fn new(stream: Arc<Stream>, metrics: Arc<GatewayMetrics>) -> Self {
        stream.metrics.viewers.inc();
        metrics.viewers_total.inc();
        tracing::debug!(stream = %stream.name, "viewer connected");
        ViewerGuard {
            stream,
            metrics,
            opened: Instant::now(),
        }
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.stream.metrics.viewers.dec();
        self.metrics.viewers_total.dec();
        tracing::debug!(stream = %self.stream.name, watched_ms = self.opened.elapsed().as_millis() as u64, "viewer left");
    }
}

struct Viewer {
    rx: watch::Receiver<Slot>,
    stop: CancellationToken,
    /// Minimum time between parts for `?fps=N`.
    min_interval: Option<Duration>,
    next_allowed: Instant,
    last_seq: Option<u64>,
    started: bool,
    guard: ViewerGuard,
}

/// The body stream for one viewer.
pub fn body(
    stream: Arc<Stream>,
    metrics: Arc<GatewayMetrics>,
    stop: CancellationToken,
    fps_cap: Option<f64>,
) -> impl FuturesStream<Item = Result<Bytes, Infallible>> + Send + Sync + 'static {
    let mut rx = stream.subscribe();
    // Send the current frame at once rather than waiting for the next one.
    rx.mark_changed();
    let viewer = Viewer {
        rx,
        stop,
        min_interval: fps_cap.map(|f| Duration::from_secs_f64(1.0 / f)),
        next_allowed: Instant::now(),
        last_seq: None,
        started: false,
        guard: ViewerGuard::new(stream, metrics),
    };
    futures_util::stream::unfold(viewer, |mut v| async move {
        if !v.started {
            v.started = true;
            return Some((Ok(Bytes::from_static(PREAMBLE)), v));
        }
        let part = v.next_part().await?;
        Some((Ok(part), v))
    })
}

impl Viewer {
    async fn next_part(&mut self) -> Option<Bytes> {
        if self.min_interval.is_some() {
            tokio::select! {
                _ = self.stop.cancelled() => return None,
                _ = tokio::time::sleep_until(self.next_allowed.into()) => {}
            }
        }
        loop {
            tokio::select! {
                r = self.rx.changed() => r.ok()?,
                _ = self.stop.cancelled() => return None,
            }
            let Some(part) = self.rx.borrow_and_update().clone() else {
                continue;
            };
            let m = &self.guard.stream.metrics;
            if let Some(last) = self.last_seq {
                m.skipped.inc_by(part.seq.saturating_sub(last + 1));
            }
            self.last_seq = Some(part.seq);
            m.parts_out.inc();
            m.bytes_out.inc_by(part.bytes.len() as u64);
            if part.live {
                let age_ns = stream_common::unix_now_ns().saturating_sub(part.capture_ts_ns);
                m.latency.observe(age_ns as f64 / 1e9);
            }
            if let Some(iv) = self.min_interval {
                self.next_allowed = Instant::now() + iv;
            }
            return Some(part.bytes.clone());
        }
    }
}
