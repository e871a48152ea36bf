//! Producer metrics and the small HTTP listener for `/healthz` and `/metrics`
//! that container health checks and Prometheus use. Per-camera metrics carry
//! a `stream` label (one process may carry many cameras); the PUB socket's
//! are the process's, unlabelled. `/healthz` is healthy while any camera
//! delivers frames (published, or skipped because nobody wants them), so one
//! dead camera does not get the others restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// A frame older than this makes `/healthz` fail.
const HEALTHY_WITHIN_NS: u64 = 5_000_000_000;

#[derive(Clone)]
pub struct ProducerMetrics {
    registry: Registry,
    published: IntCounterVec,
    captured: IntCounterVec,
    encoded: IntCounterVec,
    /// Frames encoded per rendition (`stream`, `rendition` = its width).
    pub rendition_frames: IntCounterVec,
    pub rendition_subscribers: IntGaugeVec,
    previews: IntCounterVec,
    topic_subscribers: IntGaugeVec,
    skipped: IntCounterVec,
    bad_frames: IntCounterVec,
    source_errors: IntCounterVec,
    encode_seconds: HistogramVec,
    frame_bytes: HistogramVec,
    pub bus: frame_bus::BusMetrics,
    started_ns: u64,
    last_publish_ns: Arc<AtomicU64>,
}

/// One camera's counters, all labelled `stream="NAME"`.
#[derive(Clone)]
pub struct CameraMetrics {
    pub published: IntCounter,
    /// Frames the source delivered, wanted or not.
    pub captured: IntCounter,
    /// Frames made into a full-rate JPEG (encoded, scaled or passed
    /// through) because a subscriber wanted them.
    pub encoded: IntCounter,
    /// Frames encoded per rendition, labelled by width.
    pub rendition_frames: IntCounterVec,
    /// Subscribers per rendition, labelled by width, as last seen.
    pub rendition_subscribers: IntGaugeVec,
    pub previews: IntCounter,
    /// Subscribers that want this camera's full rate, as last seen.
    pub frame_subscribers: IntGauge,
    pub skipped_late: IntCounter,
    pub skipped_rate: IntCounter,
    pub skipped_oversize: IntCounter,
    pub bad_frames: IntCounter,
    pub source_errors: IntCounter,
    pub encode_seconds: Histogram,
    pub frame_bytes: Histogram,
    last_publish_ns: Arc<AtomicU64>,
}

impl ProducerMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("producer".into()), None)?;
        let per_stream = |name: &str, help: &str| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), &["stream"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let skipped = IntCounterVec::new(
            Opts::new(
                "frames_skipped_total",
                "Frames not published, by stream and reason",
            ),
            &["stream", "reason"],
        )?;
        registry.register(Box::new(skipped.clone()))?;
        let encode_seconds = HistogramVec::new(
            HistogramOpts::new("encode_seconds", "Time to JPEG-encode one frame").buckets(vec![
                0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064,
            ]),
            &["stream"],
        )?;
        registry.register(Box::new(encode_seconds.clone()))?;
        let frame_bytes = HistogramVec::new(
            HistogramOpts::new("frame_bytes", "Size of published JPEGs")
                .buckets(prometheus::exponential_buckets(8192.0, 2.0, 10)?),
            &["stream"],
        )?;
        registry.register(Box::new(frame_bytes.clone()))?;
        let topic_subscribers = IntGaugeVec::new(
            Opts::new(
                "topic_subscribers",
                "Subscribers that want a camera's full-rate frames (f/<stream>/), as its capture loop last saw",
            ),
            &["stream"],
        )?;
        registry.register(Box::new(topic_subscribers.clone()))?;
        let rendition_frames = IntCounterVec::new(
            Opts::new(
                "rendition_frames_total",
                "Frames encoded for a rendition (r/<stream>/<width>/) because a subscriber wanted it",
            ),
            &["stream", "rendition"],
        )?;
        registry.register(Box::new(rendition_frames.clone()))?;
        let rendition_subscribers = IntGaugeVec::new(
            Opts::new(
                "rendition_subscribers",
                "Subscribers that want a camera's rendition (r/<stream>/<width>/), as its capture loop last saw",
            ),
            &["stream", "rendition"],
        )?;
        registry.register(Box::new(rendition_subscribers.clone()))?;
        let bus = frame_bus::BusMetrics::register(&registry)?;
        Ok(ProducerMetrics {
            bus,
            published: per_stream("frames_published_total", "Full-rate frames published")?,
            captured: per_stream(
                "frames_captured_total",
                "Frames the source delivered, wanted or not (a decoded camera nobody watches delivers its keyframes)",
            )?,
            encoded: per_stream(
                "frames_encoded_total",
                "Frames made into a full-rate JPEG (encoded, scaled or passed through) because a subscriber wanted them",
            )?,
            rendition_frames,
            rendition_subscribers,
            previews: per_stream(
                "previews_published_total",
                "Previews published (p/<stream>/)",
            )?,
            topic_subscribers,
            skipped,
            bad_frames: per_stream(
                "bad_frames_total",
                "Unreadable or corrupt input frames skipped",
            )?,
            source_errors: per_stream("source_errors_total", "Times the source was unavailable")?,
            encode_seconds,
            frame_bytes,
            started_ns: stream_common::unix_now_ns(),
            last_publish_ns: Arc::new(AtomicU64::new(0)),
            registry,
        })
    }

    /// The counters of camera `stream` (all present, at 0, from the start).
    pub fn camera(&self, stream: &str) -> CameraMetrics {
        let skipped = |reason: &str| self.skipped.with_label_values(&[stream, reason]);
        CameraMetrics {
            published: self.published.with_label_values(&[stream]),
            captured: self.captured.with_label_values(&[stream]),
            encoded: self.encoded.with_label_values(&[stream]),
            rendition_frames: self.rendition_frames.clone(),
            rendition_subscribers: self.rendition_subscribers.clone(),
            previews: self.previews.with_label_values(&[stream]),
            frame_subscribers: self.topic_subscribers.with_label_values(&[stream]),
            skipped_late: skipped("late"),
            skipped_rate: skipped("rate_cap"),
            skipped_oversize: skipped("oversize"),
            bad_frames: self.bad_frames.with_label_values(&[stream]),
            source_errors: self.source_errors.with_label_values(&[stream]),
            encode_seconds: self.encode_seconds.with_label_values(&[stream]),
            frame_bytes: self.frame_bytes.with_label_values(&[stream]),
            last_publish_ns: self.last_publish_ns.clone(),
        }
    }

    /// The Prometheus text of every metric.
    pub fn render(&self) -> String {
        stream_common::metrics::render(&self.registry)
    }

    /// Healthy when a camera delivered a frame recently, or during the
    /// first seconds.
    pub fn healthy(&self) -> bool {
        let now = stream_common::unix_now_ns();
        let last = self
            .last_publish_ns
            .load(Ordering::Relaxed)
            .max(self.started_ns);
        now.saturating_sub(last) < HEALTHY_WITHIN_NS
    }
}

impl CameraMetrics {
    pub fn mark_published(&self, bytes: usize) {
        self.published.inc();
        self.frame_bytes.observe(bytes as f64);
        self.mark_alive();
    }

    /// The camera delivered a frame that nobody wanted: healthy all the same.
    pub fn mark_alive(&self) {
        self.last_publish_ns
            .store(stream_common::unix_now_ns(), Ordering::Relaxed);
    }
}
