//! The gateway's Prometheus metrics. Per-stream handles are looked up once
//! when a stream appears, so the per-viewer hot path only touches atomics.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub struct GatewayMetrics {
    pub registry: Registry,
    viewers: IntGaugeVec,
    online: IntGaugeVec,
    frames_in: IntCounterVec,
    parts_out: IntCounterVec,
    bytes_out: IntCounterVec,
    rendition_viewers: IntGaugeVec,
    rendition_frames_in: IntCounterVec,
    skipped: IntCounterVec,
    fanout_missed: IntCounterVec,
    latency: HistogramVec,
    invalid: IntCounterVec,
    resubscribes: IntCounterVec,
    thread_viewers: IntGaugeVec,
    subscribed: IntGaugeVec,
    received_bytes: IntCounterVec,
    detection_messages: IntCounterVec,
    detections: IntCounterVec,
    pub detections_ignored: IntCounter,
    pub renditions_ignored: IntCounter,
    event_messages: IntCounterVec,
    pub events_ignored: IntCounter,
    pub rejected_clients: IntCounter,
    pub auth_failures: IntCounter,
    pub connections: IntGauge,
    pub viewers_total: IntGauge,
    streams_refused: IntCounterVec,
    pub streams_forgotten: IntCounter,
    pub streams: IntGauge,
    pub ws_watched_names: IntGauge,
}

/// Handles for one stream.
/// One rendition's series, labelled `stream`, `rendition` (its width).
#[derive(Clone)]
pub struct RenditionMetrics {
    pub bytes_out: IntCounter,
    pub viewers: IntGauge,
    pub frames_in: IntCounter,
}

#[derive(Clone)]
pub struct StreamMetrics {
    pub viewers: IntGauge,
    pub online: IntGauge,
    pub frames_in: IntCounter,
    pub parts_out: IntCounter,
    /// Bytes handed to viewers of the full picture (`rendition="full"`).
    pub bytes_out: IntCounter,
    /// Viewers of the full picture (`gateway_rendition_viewers`).
    pub full_viewers: IntGauge,
    pub skipped: IntCounter,
    pub fanout_missed: IntCounter,
    pub latency: Histogram,
    pub subscribed: IntGauge,
    pub detections: crate::detections::DetectionMetrics,
    pub events: crate::events::EventMetrics,
}

impl GatewayMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("gateway".into()), None)?;
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry.register(Box::new(m.clone()))?;
                m
            }};
        }
        let s = &["stream"];
        Ok(GatewayMetrics {
            viewers: reg!(IntGaugeVec::new(
                Opts::new("viewers", "Open stream responses"),
                s
            )?),
            online: reg!(IntGaugeVec::new(
                Opts::new("stream_online", "1 while a stream receives frames"),
                s
            )?),
            frames_in: reg!(IntCounterVec::new(
                Opts::new("frames_in_total", "Frames received from producers"),
                s
            )?),
            parts_out: reg!(IntCounterVec::new(
                Opts::new("parts_out_total", "Multipart parts handed to viewers"),
                s
            )?),
            bytes_out: reg!(IntCounterVec::new(
                Opts::new(
                    "bytes_out_total",
                    "Bytes handed to viewers, by stream and rendition (full, or its width)"
                ),
                &["stream", "rendition"]
            )?),
            rendition_viewers: reg!(IntGaugeVec::new(
                Opts::new(
                    "rendition_viewers",
                    "Viewers of each stream's full picture and renditions (full, or its width)"
                ),
                &["stream", "rendition"]
            )?),
            rendition_frames_in: reg!(IntCounterVec::new(
                Opts::new(
                    "rendition_frames_in_total",
                    "Rendition frames received from producers, by stream and width"
                ),
                &["stream", "rendition"]
            )?),
            skipped: reg!(IntCounterVec::new(
                Opts::new(
                    "frames_skipped_total",
                    "Frames a slow viewer skipped to stay current"
                ),
                s
            )?),
            fanout_missed: reg!(IntCounterVec::new(
                Opts::new(
                    "fanout_missed_frames_total",
                    "Frames a fan-out writer had no time to send to any of its viewers (CPU saturated)"
                ),
                s
            )?),
            latency: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "capture_to_send_seconds",
                    "From capture to handing the part to a viewer's socket"
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
                ]),
                s
            )?),
            invalid: reg!(IntCounterVec::new(
                Opts::new(
                    "invalid_messages_total",
                    "Messages from producers that failed to decode"
                ),
                &["producer", "reason"]
            )?),
            resubscribes: reg!(IntCounterVec::new(
                Opts::new(
                    "resubscribes_total",
                    "SUB sockets recreated after a silent period"
                ),
                &["producer"]
            )?),
            thread_viewers: reg!(IntGaugeVec::new(
                Opts::new("thread_viewers", "Viewers served by each serving thread"),
                &["thread"]
            )?),
            detection_messages: reg!(IntCounterVec::new(
                Opts::new(
                    "detection_messages_total",
                    "Detections messages received for a stream"
                ),
                s
            )?),
            detections: reg!(IntCounterVec::new(
                Opts::new(
                    "detections_total",
                    "Boxes received in detections messages, by label (at most 32 labels a stream, then other)"
                ),
                &["stream", "label"]
            )?),
            renditions_ignored: reg!(IntCounter::new(
                "rendition_frames_ignored_total",
                "Rendition frames of a stream or width this gateway has not been told of"
            )?),
            detections_ignored: reg!(IntCounter::new(
                "detection_messages_ignored_total",
                "Detections messages for a stream this gateway has no frame of"
            )?),
            event_messages: reg!(IntCounterVec::new(
                Opts::new(
                    "event_messages_total",
                    "Event messages received for a stream, by phase (start, update, end)"
                ),
                &["stream", "phase"]
            )?),
            events_ignored: reg!(IntCounter::new(
                "event_messages_ignored_total",
                "Event messages for a stream this gateway has no frame of"
            )?),
            subscribed: reg!(IntGaugeVec::new(
                Opts::new(
                    "stream_subscribed",
                    "1 while this gateway receives a stream's full-rate frames (watched here, or --subscribe all)"
                ),
                s
            )?),
            received_bytes: reg!(IntCounterVec::new(
                Opts::new(
                    "received_bytes_total",
                    "Bytes of valid messages received from producers, by stream and kind (frame, preview, detections, event)"
                ),
                &["stream", "kind"]
            )?),
            rejected_clients: reg!(IntCounter::new(
                "rejected_clients_total",
                "Viewers refused at --max-clients"
            )?),
            auth_failures: reg!(IntCounter::new(
                "auth_failures_total",
                "Requests refused for missing or wrong credentials"
            )?),
            connections: reg!(IntGauge::new(
                "connections",
                "Open HTTP connections that are not (yet) streaming"
            )?),
            viewers_total: reg!(IntGauge::new(
                "viewers_total",
                "Open stream responses, all streams"
            )?),
            streams_refused: reg!(IntCounterVec::new(
                Opts::new(
                    "streams_refused_total",
                    "Frames and previews dropped because they would make a new stream: cap (--max-streams held already)"
                ),
                &["reason"]
            )?),
            streams_forgotten: reg!(IntCounter::new(
                "streams_forgotten_total",
                "Streams forgotten after being gone for --forget-after"
            )?),
            streams: reg!(IntGauge::new(
                "streams",
                "Streams this gateway holds (at most --max-streams)"
            )?),
            ws_watched_names: reg!(IntGauge::new(
                "ws_watched_names",
                "Names held in WebSocket watch lists, all connections (each list: the streams known plus at most 16)"
            )?),
            registry,
        })
    }

    pub fn for_stream(&self, name: &str) -> StreamMetrics {
        StreamMetrics {
            viewers: self.viewers.with_label_values(&[name]),
            online: self.online.with_label_values(&[name]),
            frames_in: self.frames_in.with_label_values(&[name]),
            parts_out: self.parts_out.with_label_values(&[name]),
            bytes_out: self.bytes_out.with_label_values(&[name, "full"]),
            full_viewers: self.rendition_viewers.with_label_values(&[name, "full"]),
            skipped: self.skipped.with_label_values(&[name]),
            fanout_missed: self.fanout_missed.with_label_values(&[name]),
            latency: self.latency.with_label_values(&[name]),
            subscribed: self.subscribed.with_label_values(&[name]),
            detections: crate::detections::DetectionMetrics {
                messages: self.detection_messages.with_label_values(&[name]),
                boxes: self.detections.clone(),
            },
            events: crate::events::EventMetrics {
                start: self.event_messages.with_label_values(&[name, "start"]),
                update: self.event_messages.with_label_values(&[name, "update"]),
                end: self.event_messages.with_label_values(&[name, "end"]),
            },
        }
    }

    /// The counters of `stream`'s rendition `width` pixels wide.
    pub fn for_rendition(&self, stream: &str, width: u32) -> RenditionMetrics {
        let label = width.to_string();
        RenditionMetrics {
            bytes_out: self.bytes_out.with_label_values(&[stream, &label]),
            viewers: self.rendition_viewers.with_label_values(&[stream, &label]),
            frames_in: self
                .rendition_frames_in
                .with_label_values(&[stream, &label]),
        }
    }

    /// Drops the series of a rendition a stream no longer has.
    pub fn forget_rendition(&self, stream: &str, width: u32) {
        let label = width.to_string();
        let _ = self.bytes_out.remove_label_values(&[stream, &label]);
        let _ = self
            .rendition_viewers
            .remove_label_values(&[stream, &label]);
        let _ = self
            .rendition_frames_in
            .remove_label_values(&[stream, &label]);
    }

    /// A message for a new stream was dropped, for `reason`.
    pub fn stream_refused(&self, reason: &str) {
        self.streams_refused.with_label_values(&[reason]).inc();
    }

    /// Drops the series of a forgotten stream, so that names coming and
    /// going cost nothing here for good. `labels`: its detections' labels.
    pub fn forget_stream(&self, name: &str, labels: &[String]) {
        for vec in [
            &self.frames_in,
            &self.parts_out,
            &self.skipped,
            &self.fanout_missed,
            &self.detection_messages,
        ] {
            let _ = vec.remove_label_values(&[name]);
        }
        for vec in [&self.viewers, &self.online, &self.subscribed] {
            let _ = vec.remove_label_values(&[name]);
        }
        let _ = self.latency.remove_label_values(&[name]);
        let _ = self.bytes_out.remove_label_values(&[name, "full"]);
        let _ = self.rendition_viewers.remove_label_values(&[name, "full"]);
        for kind in frame_wire::Kind::ALL {
            let _ = self
                .received_bytes
                .remove_label_values(&[name, kind.name()]);
        }
        for label in labels {
            let _ = self.detections.remove_label_values(&[name, label]);
        }
        for phase in ["start", "update", "end"] {
            let _ = self.event_messages.remove_label_values(&[name, phase]);
        }
    }

    pub fn for_thread(&self, index: usize) -> IntGauge {
        self.thread_viewers.with_label_values(&[&index.to_string()])
    }

    pub fn invalid(&self, producer: &str, reason: &str) {
        self.invalid.with_label_values(&[producer, reason]).inc();
    }

    pub fn set_subscribed(&self, stream: &str, on: bool) {
        self.subscribed
            .with_label_values(&[stream])
            .set(i64::from(on));
    }

    /// A valid message of `bytes` (all its parts) for `stream`.
    pub fn received(&self, stream: &str, kind: frame_wire::Kind, bytes: usize) {
        self.received_bytes
            .with_label_values(&[stream, kind.name()])
            .inc_by(bytes as u64);
    }

    pub fn resubscribed(&self, producer: &str) {
        self.resubscribes.with_label_values(&[producer]).inc();
    }

    pub fn render(&self) -> String {
        stream_common::metrics::render(&self.registry)
    }
}
