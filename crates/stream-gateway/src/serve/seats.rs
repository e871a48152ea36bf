//! What an admitted viewer holds while it lives, so that ownership does the
//! accounting: a [`Seat`] within `--max-clients` (a capacity permit taken
//! atomically, so a burst of simultaneous requests never admits more than
//! the limit, counted in the metrics until dropped, whichever way the
//! viewer left), a [`Watching`] per stream it watches, and the admitted
//! viewer of each kind that admission hands to the fan-out, which counts
//! it in its serving thread's [`Load`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use prometheus::IntGauge;
use tokio::sync::OwnedSemaphorePermit;

use crate::metrics::GatewayMetrics;
use crate::rendition::Width;
use crate::streams::Stream;

/// A viewer's place among `--max-clients`, held while the viewer lives:
/// one per MJPEG stream response, events listener or WebSocket connection.
pub struct Seat {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<GatewayMetrics>,
    opened: Instant,
}

impl Seat {
    pub fn new(permit: OwnedSemaphorePermit, metrics: Arc<GatewayMetrics>) -> Self {
        metrics.viewers_total.inc();
        Seat {
            _permit: permit,
            metrics,
            opened: Instant::now(),
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.metrics.viewers_total.dec();
        tracing::debug!(
            watched_ms = self.opened.elapsed().as_millis() as u64,
            "viewer left"
        );
    }
}

/// Counts a viewer of one stream (`gateway_viewers{stream}`) while it lives,
/// and has the rendition it gets (`level`: `None` = the full picture)
/// received at full rate meanwhile (`interest.rs`); an `auto` viewer's
/// writer moves it to another rendition with [`Watching::moved`].
pub struct Watching {
    pub stream: Arc<Stream>,
    pub level: Option<u32>,
}

impl Watching {
    /// A viewer of the full picture.
    pub fn new(stream: Arc<Stream>) -> Self {
        Self::at(stream, None)
    }

    /// A viewer of rendition `level`.
    pub fn at(stream: Arc<Stream>, level: Option<u32>) -> Self {
        stream.metrics.viewers.inc();
        stream.viewer_joined_at(level);
        tracing::debug!(stream = %stream.name, ?level, "viewer connected");
        Watching { stream, level }
    }

    /// Now a viewer of rendition `level` instead: that one is received
    /// before the old one may stop.
    pub fn moved(&mut self, level: Option<u32>) {
        if level != self.level {
            self.stream.viewer_joined_at(level);
            self.stream.viewer_left_at(self.level);
            self.level = level;
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.stream.metrics.viewers.dec();
        self.stream.viewer_left_at(self.level);
    }
}

/// An admitted MJPEG viewer, ready for the fan-out.
pub struct Viewer {
    pub seat: Seat,
    pub watching: Watching,
    pub fps_cap: Option<f64>,
    /// The picture it asked for (`?width=`, `auto`).
    pub width: Width,
}

/// An admitted WebSocket viewer: its seat and the key to answer.
pub struct WsViewer {
    pub seat: Seat,
    pub key: String,
}

/// An admitted listener of `/events/{name}` (a stream's detections as
/// Server-Sent Events): a seat, and the stream.
pub struct EventsViewer {
    pub seat: Seat,
    pub stream: Arc<Stream>,
}

/// A viewer with a socket of its own (the page's WebSocket shares one
/// socket among its streams' writers instead).
pub enum OwnSocket {
    Mjpeg(Viewer),
    Events(EventsViewer),
}

impl OwnSocket {
    /// The stream whose writer serves it.
    pub fn stream(&self) -> &Arc<Stream> {
        match self {
            OwnSocket::Mjpeg(v) => &v.watching.stream,
            OwnSocket::Events(v) => &v.stream,
        }
    }
}

/// Counts a viewer in its serving thread's load (and that thread's gauge)
/// while it lives; new viewers go to the least loaded thread.
pub struct Load(Arc<AtomicUsize>, IntGauge);

impl Load {
    pub fn new(load: Arc<AtomicUsize>, gauge: IntGauge) -> Self {
        load.fetch_add(1, Ordering::Relaxed);
        gauge.inc();
        Load(load, gauge)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.dec();
    }
}
