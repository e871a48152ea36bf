//! Command-line flags with environment-variable twins; with no arguments the
//! detector subscribes to a producer on localhost, analyses every stream at
//! 5 frames per second with the model `scripts/model.sh` prepared, and
//! publishes what it finds on its own PUB socket.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use stream_common::logging::LogArgs;

/// Where `scripts/model.sh` puts the model (`$XDG_CACHE_HOME` or `~/.cache`).
pub const MODEL_FILE: &str = "ssdlite-mobilenet-v2-person.onnx";
/// The ONNX Runtime library, next to the model unless `--onnxruntime` says otherwise.
pub const RUNTIME_FILE: &str = "libonnxruntime.so";

frame_bus::bus_key_args!(BusKeyArgs, "DETECTOR");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "object-detector",
    version,
    about = "Finds people in the streams on the ZeroMQ bus and publishes their boxes"
)]
pub struct Config {
    /// Producer endpoint to subscribe to; repeat the flag, or give a comma list in the variable.
    #[arg(
        long = "producer",
        env = "DETECTOR_PRODUCERS",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:5555"
    )]
    pub producers: Vec<String>,
    /// Only these streams (comma list); all streams when empty.
    #[arg(long = "streams", env = "DETECTOR_STREAMS", value_delimiter = ',')]
    pub streams: Vec<String>,
    /// Where this detector publishes detections (its own ZeroMQ PUB socket).
    #[arg(long, env = "DETECTOR_BIND", default_value = "tcp://127.0.0.1:5560")]
    pub bind: String,
    /// Most frames analysed per second and stream; newer frames replace older
    /// ones while waiting, and every frame never analysed is counted as skipped.
    #[arg(long, env = "DETECTOR_DETECT_FPS", default_value_t = 5.0, value_parser = parse_fps)]
    pub detect_fps: f64,
    /// The ONNX model (SSDLite-MobileNetV2, person); `scripts/model.sh` makes
    /// it and prints this path.
    #[arg(long, env = "DETECTOR_MODEL", default_value_os_t = default_model())]
    pub model: PathBuf,
    /// The ONNX Runtime shared library; default: `libonnxruntime.so` next to the model.
    #[arg(long, env = "DETECTOR_ONNXRUNTIME")]
    pub onnxruntime: Option<PathBuf>,
    /// Lowest score reported, 0..1.
    #[arg(long, env = "DETECTOR_THRESHOLD", default_value_t = 0.5, value_parser = stream_common::flags::parse_unit)]
    pub threshold: f32,
    /// CPU threads one inference may use.
    #[arg(long, env = "DETECTOR_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Also publish `<name>-detect`: each analysed frame with its boxes drawn,
    /// JPEG-encoded once, for clients that cannot draw them (VLC, recorders).
    #[arg(long, env = "DETECTOR_ANNOTATE")]
    pub annotate: bool,
    /// The cameras file (TOML, the event stage's `--cameras`): boxes standing
    /// in a camera's masks are dropped before they are published; its zones
    /// and filters are the event stage's. Checked at start.
    #[arg(long, env = "DETECTOR_CAMERAS")]
    pub cameras: Option<PathBuf>,
    /// HTTP address of `/metrics` and `/healthz`.
    #[arg(
        long,
        env = "DETECTOR_METRICS_LISTEN",
        default_value = "127.0.0.1:9110"
    )]
    pub metrics_listen: SocketAddr,
    /// Largest JPEG accepted from a producer; larger ones are dropped and counted.
    #[arg(long, env = "DETECTOR_MAX_FRAME_BYTES", default_value_t = frame_wire::DEFAULT_MAX_JPEG_BYTES)]
    pub max_frame_bytes: usize,
    #[command(flatten)]
    pub bus: BusKeyArgs,
    /// Most bytes of messages queued for one subscriber that does not keep
    /// up (a frozen gateway): beyond it the oldest are dropped. What a
    /// stalled subscriber can cost the detector (annotated frames included).
    #[arg(long, env = "DETECTOR_SUBSCRIBER_QUEUE_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(65_536..=(1u64 << 34)))]
    pub subscriber_queue_bytes: u64,
    /// Seconds a subscriber may take to accept one message, or leave sent
    /// data unacknowledged (TCP_USER_TIMEOUT), before it is dropped. 0:
    /// never (its queue stays bounded by --subscriber-queue-bytes).
    #[arg(long, env = "DETECTOR_SUBSCRIBER_TIMEOUT", default_value_t = 10)]
    pub subscriber_timeout: u64,
    /// Check the running instance's /healthz and exit 0 (healthy) or 1; for container health checks.
    #[arg(long)]
    pub healthcheck: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    /// The runtime library: `--onnxruntime`, or the one beside the model.
    pub fn runtime_library(&self) -> PathBuf {
        self.onnxruntime.clone().unwrap_or_else(|| {
            self.model
                .parent()
                .map_or_else(|| PathBuf::from(RUNTIME_FILE), |d| d.join(RUNTIME_FILE))
        })
    }
}

/// `$XDG_CACHE_HOME/mjpeg-fanout/models/…`, else `~/.cache/…`: where
/// `scripts/model.sh` leaves the model.
pub fn default_model() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("mjpeg-fanout").join("models").join(MODEL_FILE)
}

fn parse_fps(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
    if (0.01..=60.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} frames per second is out of range (0.01 to 60)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_no_arguments() {
        let c = Config::try_parse_from(["object-detector"]).expect("defaults");
        assert_eq!(c.producers, vec!["tcp://127.0.0.1:5555".to_string()]);
        assert!(c.streams.is_empty());
        assert_eq!(c.bind, "tcp://127.0.0.1:5560");
        assert_eq!(c.detect_fps, 5.0);
        assert_eq!(c.threshold, 0.5);
        assert!(c.metrics_listen.ip().is_loopback());
        assert!(
            c.model
                .ends_with(format!("mjpeg-fanout/models/{MODEL_FILE}"))
        );
        assert_eq!(c.runtime_library(), c.model.with_file_name(RUNTIME_FILE));
        assert!(!c.annotate);
        assert_eq!(c.subscriber_queue_bytes, 16 << 20);
        assert_eq!(c.subscriber_timeout, 10);
        assert!(c.cameras.is_none());
    }

    #[test]
    fn repeated_producers_and_bad_values() {
        let c = Config::try_parse_from([
            "d",
            "--producer",
            "tcp://a:1",
            "--producer",
            "tcp://b:2",
            "--streams",
            "cam0,cam1",
        ])
        .expect("ok");
        assert_eq!(c.producers.len(), 2);
        assert_eq!(c.streams, ["cam0", "cam1"]);
        assert!(Config::try_parse_from(["d", "--threshold", "1.5"]).is_err());
        assert!(Config::try_parse_from(["d", "--detect-fps", "0"]).is_err());
        assert!(Config::try_parse_from(["d", "--metrics-listen", "nowhere"]).is_err());
        assert!(Config::try_parse_from(["d", "--subscriber-queue-bytes", "100"]).is_err());
    }
}
