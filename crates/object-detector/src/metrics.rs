//! Detector metrics and the small HTTP listener for `/healthz` and
//! `/metrics`. Per-stream counters carry a `stream` label, the PUB socket's
//! are the process's; `/healthz` is healthy while the inference thread runs.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct DetectorMetrics {
    registry: Registry,
    pub inference_seconds: Histogram,
    analysed: IntCounterVec,
    skipped: IntCounterVec,
    bad_frames: IntCounterVec,
    detections: IntCounterVec,
    masked: IntCounterVec,
    invalid: IntCounterVec,
    /// The PUB socket's: subscribers, their queued bytes, frames dropped
    /// for a full queue, refusals (the producer's names, `detector_` first).
    pub bus: frame_bus::BusMetrics,
    /// Set by the inference thread while it runs.
    pub running: Arc<AtomicBool>,
}

impl DetectorMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("detector".into()), None)?;
        let vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let inference_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "inference_seconds",
                "Time the model takes for one frame (not decoding or publishing)",
            )
            .buckets(vec![
                0.002, 0.004, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5,
            ]),
        )?;
        registry.register(Box::new(inference_seconds.clone()))?;
        let bus = frame_bus::BusMetrics::register(&registry)?;
        Ok(DetectorMetrics {
            bus,
            inference_seconds,
            analysed: vec(
                "frames_analysed_total",
                "Frames run through the model",
                &["stream"],
            )?,
            skipped: vec(
                "frames_skipped_total",
                "Frames received but never analysed: a newer one replaced them while the \
                 stream waited for its turn (--detect-fps) or the model was busy",
                &["stream"],
            )?,
            bad_frames: vec(
                "bad_frames_total",
                "Frames that could not be analysed (corrupt JPEG), by stream and reason",
                &["stream", "reason"],
            )?,
            detections: vec(
                "detections_total",
                "Boxes reported (published), by stream and label",
                &["stream", "label"],
            )?,
            masked: vec(
                "masked_total",
                "Boxes found but not published because they stand in a mask of the \
                 cameras file, by stream and label",
                &["stream", "label"],
            )?,
            invalid: vec(
                "invalid_messages_total",
                "Bus messages refused before reaching a stream (garbage, bad MAC, too large), \
                 by producer and reason",
                &["producer", "reason"],
            )?,
            running: Arc::new(AtomicBool::new(false)),
            registry,
        })
    }

    pub fn analysed(&self, stream: &str) {
        self.analysed.with_label_values(&[stream]).inc();
    }

    pub fn skipped(&self, stream: &str) {
        self.skipped.with_label_values(&[stream]).inc();
    }

    pub fn bad_frame(&self, stream: &str, reason: &str) {
        self.bad_frames.with_label_values(&[stream, reason]).inc();
    }

    pub fn detected(&self, stream: &str, label: &str) {
        self.detections.with_label_values(&[stream, label]).inc();
    }

    pub fn masked(&self, stream: &str, label: &str) {
        self.masked.with_label_values(&[stream, label]).inc();
    }

    pub fn invalid(&self, producer: &str, reason: &str) {
        self.invalid.with_label_values(&[producer, reason]).inc();
    }

    pub fn render(&self) -> String {
        stream_common::metrics::render(&self.registry)
    }
}
