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
use crate::rendition::{Choice, Width};
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

/// Counts a viewer of one stream (`gateway_viewers{stream}`) and of the
/// picture it is served (`gateway_rendition_viewers{stream,rendition}`)
/// while it lives, and has that picture received at full rate meanwhile
/// (`interest.rs`).
pub struct Watching {
    pub stream: Arc<Stream>,
    /// The full picture (`None`) or the rendition it is served.
    choice: Choice,
}

impl Watching {
    pub fn new(stream: Arc<Stream>, choice: Choice) -> Self {
        stream.metrics.viewers.inc();
        stream.viewer_joined(choice);
        tracing::debug!(stream = %stream.name, ?choice, "viewer connected");
        Watching { stream, choice }
    }

    /// The picture it is served: its writer's.
    pub fn choice(&self) -> Choice {
        self.choice
    }

    /// Counts it at `to` from now on (and has `to` received) rather than
    /// at its picture so far: for moving a viewer to another rendition's
    /// writer (adaptation, `?width=auto`).
    #[allow(dead_code)]
    pub fn switch(&mut self, to: Choice) {
        if to != self.choice {
            self.stream.viewer_joined(to);
            self.stream.viewer_left(self.choice);
            self.choice = to;
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.stream.metrics.viewers.dec();
        self.stream.viewer_left(self.choice);
    }
}

/// An admitted MJPEG viewer, ready for the fan-out.
pub struct Viewer {
    pub seat: Seat,
    pub watching: Watching,
    /// What it asked for (`?width=`): adaptation starts from here.
    #[allow(dead_code)]
    pub width: Width,
    pub fps_cap: Option<f64>,
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
