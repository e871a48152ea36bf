//! The recorder's Prometheus metrics (`recorder_…`): per stream what was
//! written and dropped (by reason), queue depth, segments, the oldest
//! recording; for the disk, free and used bytes and retention's deletions;
//! the latency of each cluster's write; what became of event messages.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

#[derive(Clone)]
pub struct RecorderMetrics {
    registry: Registry,
    frames: IntCounterVec,
    bytes: IntCounterVec,
    segments: IntCounterVec,
    dropped: IntCounterVec,
    queue: IntGaugeVec,
    pub write_seconds: Histogram,
    pub disk_free: IntGauge,
    pub disk_used: IntGauge,
    oldest: prometheus::GaugeVec,
    deleted: IntCounterVec,
    invalid: IntCounterVec,
    events: IntCounterVec,
    auth_failures: prometheus::IntCounter,
    pub up_since: Gauge,
}

impl RecorderMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("recorder".into()), None)?;
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let write_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "write_seconds",
                "Time one cluster (about a second of one camera) takes to reach the file",
            )
            .buckets(vec![
                0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
            ]),
        )?;
        registry.register(Box::new(write_seconds.clone()))?;
        let disk_free = IntGauge::new(
            "disk_free_bytes",
            "Bytes free for unprivileged users on --dir's filesystem",
        )?;
        registry.register(Box::new(disk_free.clone()))?;
        let disk_used = IntGauge::new("recorded_bytes", "Bytes of every recording under --dir")?;
        registry.register(Box::new(disk_used.clone()))?;
        let queue = IntGaugeVec::new(
            Opts::new("queue_frames", "Frames waiting for a camera's writer"),
            &["stream"],
        )?;
        registry.register(Box::new(queue.clone()))?;
        let oldest = prometheus::GaugeVec::new(
            Opts::new(
                "oldest_recording_timestamp_seconds",
                "Capture time of a stream's oldest recorded frame (Unix seconds)",
            ),
            &["stream"],
        )?;
        registry.register(Box::new(oldest.clone()))?;
        let up_since = Gauge::new(
            "start_time_seconds",
            "When this recorder started (Unix seconds)",
        )?;
        registry.register(Box::new(up_since.clone()))?;
        let auth_failures = prometheus::IntCounter::new(
            "auth_failures_total",
            "Requests refused for missing or wrong credentials",
        )?;
        registry.register(Box::new(auth_failures.clone()))?;
        Ok(RecorderMetrics {
            frames: counter(
                "frames_written_total",
                "Frames written to disk",
                &["stream"],
            )?,
            bytes: counter(
                "bytes_written_total",
                "Bytes written to disk (container included)",
                &["stream"],
            )?,
            segments: counter(
                "segments_finished_total",
                "Segments finished (Duration and index written)",
                &["stream"],
            )?,
            dropped: counter(
                "dropped_frames_total",
                "Frames not recorded: queue_full (disk too slow), disk_full, write_error, out_of_order",
                &["stream", "reason"],
            )?,
            deleted: counter(
                "retention_deleted_segments_total",
                "Segments deleted by retention, by reason (age, bytes)",
                &["reason"],
            )?,
            invalid: counter(
                "invalid_messages_total",
                "Bus messages refused (malformed, unsigned, forged), by reason",
                &["reason"],
            )?,
            events: counter(
                "event_messages_total",
                "Event messages (e/NAME/) by what became of them: stored, queue_full, refused (bad id or stream), write_error",
                &["result"],
            )?,
            registry,
            auth_failures,
            queue,
            write_seconds,
            disk_free,
            disk_used,
            oldest,
            up_since,
        })
    }

    pub fn written(&self, stream: &str, frames: u64, bytes: u64) {
        self.frames.with_label_values(&[stream]).inc_by(frames);
        self.bytes.with_label_values(&[stream]).inc_by(bytes);
    }

    pub fn dropped(&self, stream: &str, reason: &str, n: u64) {
        self.dropped.with_label_values(&[stream, reason]).inc_by(n);
    }

    pub fn queue_depth(&self, stream: &str, delta: i64) {
        self.queue.with_label_values(&[stream]).add(delta);
    }

    pub fn segment_finished(&self, stream: &str) {
        self.segments.with_label_values(&[stream]).inc();
    }

    pub fn deleted(&self, reason: &str) {
        self.deleted.with_label_values(&[reason]).inc();
    }

    pub fn invalid(&self, reason: &str) {
        self.invalid.with_label_values(&[reason]).inc();
    }

    pub fn event_message(&self, result: &str) {
        self.events.with_label_values(&[result]).inc();
    }

    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    pub fn oldest(&self, stream: &str, ms: Option<u64>) {
        match ms {
            Some(ms) => self
                .oldest
                .with_label_values(&[stream])
                .set(ms as f64 / 1000.0),
            None => {
                let _ = self.oldest.remove_label_values(&[stream]);
            }
        }
    }

    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
