//! Command-line flags with environment-variable twins; with no arguments the
//! event stage reads a detector and a producer on localhost, makes events
//! with no zones, and publishes them on its own PUB socket. MQTT and
//! webhooks are off until named.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use stream_common::logging::LogArgs;

/// The MQTT topic prefix unless `--mqtt-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "mjpeg-fanout";

frame_bus::bus_key_args!(BusKeyArgs, "EVENTS");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "event-stage",
    version,
    about = "Turns detections into events (tracked objects, zones, masks) for the bus, Home Assistant (MQTT) and webhooks"
)]
pub struct Config {
    /// Detector endpoint whose detections (`d/NAME/`) are followed; repeat
    /// the flag, or give a comma list in the variable.
    #[arg(
        long = "detector",
        env = "EVENTS_DETECTORS",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:5560"
    )]
    pub detectors: Vec<String>,
    /// Producer endpoint the full-size frames for snapshots come from (only
    /// of the streams with an object in view); repeat, or a comma list.
    #[arg(
        long = "producer",
        env = "EVENTS_PRODUCERS",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:5555"
    )]
    pub producers: Vec<String>,
    /// Only these streams (comma list); all streams when empty.
    #[arg(long = "streams", env = "EVENTS_STREAMS", value_delimiter = ',')]
    pub streams: Vec<String>,
    /// Where events are published (this stage's own ZeroMQ PUB socket, `e/NAME/`).
    #[arg(long, env = "EVENTS_BIND", default_value = "tcp://127.0.0.1:5570")]
    pub bind: String,
    /// Zones, masks, required zones and per-label minimums per camera (TOML; docs/events.md).
    #[arg(long, env = "EVENTS_CAMERAS")]
    pub cameras: Option<PathBuf>,
    /// Seconds an object must be seen before it is an event (against flicker).
    #[arg(long, env = "EVENTS_MIN_SECONDS", default_value_t = 1.0, value_parser = parse_seconds)]
    pub event_min_seconds: f64,
    /// Seconds an object must be gone before its event ends.
    #[arg(long, env = "EVENTS_END_AFTER", default_value_t = 5.0, value_parser = parse_seconds)]
    pub event_end_after: f64,
    /// Least box overlap (intersection over union) for a box to continue a track.
    #[arg(long, env = "EVENTS_MIN_IOU", default_value_t = 0.3, value_parser = stream_common::flags::parse_unit)]
    pub min_iou: f32,
    /// Full-size frames kept per followed stream to find snapshots in.
    #[arg(long, env = "EVENTS_FRAMES_KEPT", default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=300))]
    pub frames_kept: u16,
    /// MQTT broker for Home Assistant, `mqtt://host:1883`; off when empty.
    #[arg(long, env = "EVENTS_MQTT", default_value = "")]
    pub mqtt: String,
    /// MQTT user name.
    #[arg(long, env = "EVENTS_MQTT_USER")]
    pub mqtt_user: Option<String>,
    /// File holding the MQTT password (first line); or the variable below.
    #[arg(long, env = "EVENTS_MQTT_PASSWORD_FILE")]
    pub mqtt_password_file: Option<PathBuf>,
    /// The MQTT password itself (environment only: a command line is visible to every user).
    #[arg(
        long,
        env = "EVENTS_MQTT_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    pub mqtt_password: Option<String>,
    /// Prefix of every state and event topic (`<prefix>/available`, `<prefix>/<camera>/<label>`, …).
    #[arg(long, env = "EVENTS_MQTT_PREFIX", default_value = DEFAULT_PREFIX)]
    pub mqtt_prefix: String,
    /// Home Assistant's discovery prefix.
    #[arg(
        long,
        env = "EVENTS_MQTT_DISCOVERY_PREFIX",
        default_value = "homeassistant"
    )]
    pub mqtt_discovery_prefix: String,
    /// MQTT client id (unique per broker).
    #[arg(
        long,
        env = "EVENTS_MQTT_CLIENT_ID",
        default_value = "mjpeg-fanout-events"
    )]
    pub mqtt_client_id: String,
    /// Labels Home Assistant gets sensors for on every camera (more appear when seen).
    #[arg(
        long,
        env = "EVENTS_MQTT_LABELS",
        value_delimiter = ',',
        default_value = "person"
    )]
    pub mqtt_labels: Vec<String>,
    /// Messages waiting for the broker at most; beyond it updates are dropped first (counted).
    #[arg(long, env = "EVENTS_MQTT_QUEUE", default_value_t = 1000)]
    pub mqtt_queue: usize,
    /// URL to POST every event's start and end to (JSON); repeat for more hooks.
    #[arg(long = "webhook", env = "EVENTS_WEBHOOKS", value_delimiter = ',')]
    pub webhooks: Vec<String>,
    /// Seconds one webhook request may take.
    #[arg(long, env = "EVENTS_WEBHOOK_TIMEOUT", default_value_t = 5.0, value_parser = parse_seconds)]
    pub webhook_timeout: f64,
    /// Tries per webhook message (the first and the retries), with doubling back-off from 0.5 s.
    #[arg(long, env = "EVENTS_WEBHOOK_TRIES", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub webhook_tries: u32,
    /// Messages waiting per hook at most; beyond it the oldest start without an end is dropped (counted).
    #[arg(long, env = "EVENTS_WEBHOOK_QUEUE", default_value_t = 100)]
    pub webhook_queue: usize,
    /// HTTP address of `/metrics` and `/healthz`.
    #[arg(long, env = "EVENTS_METRICS_LISTEN", default_value = "127.0.0.1:9120")]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub bus: BusKeyArgs,
    /// Check the running instance's /healthz and exit 0 (healthy) or 1; for container health checks.
    #[arg(long)]
    pub healthcheck: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    pub fn min_seconds(&self) -> Duration {
        Duration::from_secs_f64(self.event_min_seconds)
    }

    pub fn end_after(&self) -> Duration {
        Duration::from_secs_f64(self.event_end_after)
    }

    /// The MQTT password: the file's first line, else the variable.
    pub fn mqtt_password(&self) -> anyhow::Result<Option<String>> {
        match &self.mqtt_password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("reading the MQTT password file {}: {e}", path.display())
                })?;
                Ok(Some(text.lines().next().unwrap_or_default().to_string()))
            }
            None => Ok(self.mqtt_password.clone()),
        }
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
    if (0.0..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} seconds is out of range (0 to 3600)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_no_arguments() {
        let c = Config::try_parse_from(["event-stage"]).expect("defaults");
        assert_eq!(c.detectors, ["tcp://127.0.0.1:5560"]);
        assert_eq!(c.producers, ["tcp://127.0.0.1:5555"]);
        assert_eq!(c.min_seconds(), Duration::from_secs(1));
        assert_eq!(c.end_after(), Duration::from_secs(5));
        assert!(c.mqtt.is_empty());
        assert!(c.webhooks.is_empty());
        assert_eq!(c.mqtt_prefix, DEFAULT_PREFIX);
        assert!(c.metrics_listen.ip().is_loopback());
    }

    #[test]
    fn repeated_hooks_and_bad_values() {
        let c = Config::try_parse_from(["e", "--webhook", "http://a/1", "--webhook", "http://b/2"])
            .expect("ok");
        assert_eq!(c.webhooks.len(), 2);
        assert!(Config::try_parse_from(["e", "--event-end-after", "-1"]).is_err());
        assert!(Config::try_parse_from(["e", "--min-iou", "2"]).is_err());
        assert!(Config::try_parse_from(["e", "--webhook-tries", "0"]).is_err());
    }
}
