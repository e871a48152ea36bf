//! The event stage's counters for `/metrics` (each name starts `events_`:
//! the events made are `events_published_total{phase}`); `/healthz` is healthy while
//! the stage's loop runs.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct EventMetrics {
    registry: Registry,
    events: IntCounterVec,
    active: IntGaugeVec,
    detections: IntCounterVec,
    invalid: IntCounterVec,
    dropped: IntCounterVec,
    pub frames_held: IntGauge,
    snapshots_missing: IntCounterVec,
    pub mqtt_connected: IntGauge,
    pub mqtt_queued: IntGauge,
    mqtt_published: IntCounterVec,
    mqtt_dropped: IntCounterVec,
    mqtt_connects: IntCounterVec,
    webhook_delivered: IntCounterVec,
    webhook_failures: IntCounterVec,
    webhook_dropped: IntCounterVec,
    /// Set while the stage's loop runs.
    pub running: Arc<AtomicBool>,
}

impl EventMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("events".into()), None)?;
        let vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let active = IntGaugeVec::new(
            Opts::new("active", "Events running now, by stream and label"),
            &["stream", "label"],
        )?;
        registry.register(Box::new(active.clone()))?;
        Ok(EventMetrics {
            events: vec(
                "published_total",
                "Event messages made (on the bus, and queued for MQTT and webhooks), by \
                 stream, label and phase (start, update, end)",
                &["stream", "label", "phase"],
            )?,
            active,
            detections: vec(
                "detections_messages_total",
                "Detections messages taken in, by stream",
                &["stream"],
            )?,
            invalid: vec(
                "invalid_messages_total",
                "Bus messages refused (garbage, bad MAC, too large), by endpoint and reason",
                &["endpoint", "reason"],
            )?,
            dropped: vec(
                "dropped_total",
                "Messages dropped inside the stage because a queue was full, by what \
                 (detections, frames, bus)",
                &["what"],
            )?,
            frames_held: gauge("frames_held", "Full-size frames held to find snapshots in")?,
            snapshots_missing: vec(
                "snapshots_missing_total",
                "Event messages sent without a snapshot (the best frame never arrived), by stream",
                &["stream"],
            )?,
            mqtt_connected: gauge("mqtt_connected", "1 while connected to the MQTT broker")?,
            mqtt_queued: gauge(
                "mqtt_queued",
                "Event messages waiting for the MQTT broker (bounded by --mqtt-queue)",
            )?,
            mqtt_published: vec(
                "mqtt_published_total",
                "MQTT messages the broker acknowledged, by what (event, state, count, snapshot, \
                 discovery, availability)",
                &["what"],
            )?,
            mqtt_dropped: vec(
                "mqtt_dropped_total",
                "Event messages dropped for MQTT because its queue was full, by phase",
                &["phase"],
            )?,
            mqtt_connects: vec(
                "mqtt_connections_total",
                "MQTT connection attempts, by result (ok, failed)",
                &["result"],
            )?,
            webhook_delivered: vec(
                "webhook_delivered_total",
                "Webhook POSTs answered with a 2xx, by hook (its index in --webhook)",
                &["hook"],
            )?,
            webhook_failures: vec(
                "webhook_failures_total",
                "Webhook tries that failed (error status, timeout, refused), by hook",
                &["hook"],
            )?,
            webhook_dropped: vec(
                "webhook_dropped_total",
                "Webhook messages given up: queue full, or every try failed; by hook and why",
                &["hook", "why"],
            )?,
            running: Arc::new(AtomicBool::new(false)),
            registry,
        })
    }

    pub fn event(&self, stream: &str, label: &str, phase: &str) {
        self.events.with_label_values(&[stream, label, phase]).inc();
    }

    pub fn set_active(&self, stream: &str, label: &str, n: usize) {
        self.active
            .with_label_values(&[stream, label])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn detections(&self, stream: &str) {
        self.detections.with_label_values(&[stream]).inc();
    }

    pub fn invalid(&self, endpoint: &str, reason: &str) {
        self.invalid.with_label_values(&[endpoint, reason]).inc();
    }

    pub fn dropped(&self, what: &str) {
        self.dropped.with_label_values(&[what]).inc();
    }

    pub fn snapshot_missing(&self, stream: &str) {
        self.snapshots_missing.with_label_values(&[stream]).inc();
    }

    pub fn mqtt_published(&self, what: &str) {
        self.mqtt_published.with_label_values(&[what]).inc();
    }

    pub fn mqtt_dropped(&self, phase: &str, n: usize) {
        self.mqtt_dropped
            .with_label_values(&[phase])
            .inc_by(n as u64);
    }

    pub fn mqtt_connect(&self, ok: bool) {
        self.mqtt_connects
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    pub fn webhook_delivered(&self, hook: &str) {
        self.webhook_delivered.with_label_values(&[hook]).inc();
    }

    pub fn webhook_failure(&self, hook: &str) {
        self.webhook_failures.with_label_values(&[hook]).inc();
    }

    pub fn webhook_dropped(&self, hook: &str, why: &str, n: usize) {
        self.webhook_dropped
            .with_label_values(&[hook, why])
            .inc_by(n as u64);
    }

    pub fn render(&self) -> String {
        stream_common::metrics::render(&self.registry)
    }
}
