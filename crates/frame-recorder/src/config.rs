//! Command-line flags with environment-variable twins; with no arguments the
//! recorder subscribes to a producer on localhost, records every stream
//! continuously into `./recordings`, keeps 7 days, and serves playback on
//! `127.0.0.1:8090`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use stream_common::logging::LogArgs;

use crate::store::Mode;

frame_bus::bus_key_args!(BusKeyArgs, "RECORDER");
stream_common::auth_args!(AuthArgs, "RECORDER");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "frame-recorder",
    version,
    about = "Records the cameras on the ZeroMQ bus to disk and plays them back over HTTP"
)]
pub struct Config {
    /// Endpoint to subscribe to (a producer, or a detector for events); repeat
    /// the flag, or give a comma list in the variable.
    #[arg(
        long = "producer",
        env = "RECORDER_PRODUCERS",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:5555"
    )]
    pub producers: Vec<String>,
    /// Streams to record, comma list, each `NAME` (recorded in --mode) or
    /// `NAME=continuous|events|off`; every stream when empty.
    #[arg(long = "streams", env = "RECORDER_STREAMS", value_delimiter = ',')]
    pub streams: Vec<String>,
    /// How streams without a mode of their own are recorded.
    #[arg(long, env = "RECORDER_MODE", default_value = "continuous", value_parser = parse_mode)]
    pub mode: Mode,
    /// A cameras file (the producer's format); each `[[camera]]` may say
    /// `record = "continuous" | "events" | "off"`. --streams wins over it.
    #[arg(long, env = "RECORDER_CAMERAS")]
    pub cameras: Option<PathBuf>,
    /// Where recordings go.
    #[arg(long, env = "RECORDER_DIR", default_value = "./recordings")]
    pub dir: PathBuf,
    /// HTTP address for playback, the API, /healthz and /metrics.
    #[arg(long, env = "RECORDER_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Keep at most this many frames per second and camera (fewer bytes on disk).
    #[arg(long, env = "RECORDER_RECORD_FPS", value_parser = parse_fps)]
    pub record_fps: Option<f64>,
    /// How long continuous recordings are kept (`7d`, `12h`, `30m`, `90s`).
    #[arg(long, env = "RECORDER_KEEP", default_value = "7d", value_parser = parse_duration)]
    pub keep: Duration,
    /// How long event recordings, and the event stage's events (with their
    /// snapshots), are kept; a recording reaching into a kept event's
    /// pre/post-roll is kept as long as an event recording.
    #[arg(long, env = "RECORDER_KEEP_EVENTS", default_value = "30d", value_parser = parse_duration)]
    pub keep_events: Duration,
    /// Most bytes all recordings together may take (`50G`, `500M`); the
    /// oldest finished segments go first. No bound when unset, empty (as
    /// compose files pass an unset variable) or `none`.
    #[arg(long, env = "RECORDER_MAX_BYTES", default_value = "none", value_parser = parse_bound)]
    pub max_bytes: Bound,
    /// Most of the event stage's events kept per stream (the oldest go first).
    #[arg(long, env = "RECORDER_MAX_EVENTS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_events: u64,
    /// Length of a segment (capture time), in seconds.
    #[arg(long, env = "RECORDER_SEGMENT_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub segment_seconds: u64,
    /// Events mode: seconds recorded before a detection or an event's start
    /// (and an event's clip starts this long before it).
    #[arg(long, env = "RECORDER_PRE_ROLL", default_value_t = 5.0)]
    pub pre_roll: f64,
    /// Events mode: seconds recorded after the last detection or an event's
    /// end (and an event's clip ends this long after it).
    #[arg(long, env = "RECORDER_POST_ROLL", default_value_t = 10.0)]
    pub post_roll: f64,
    /// Frames that may wait for one camera's writer; beyond it they are dropped and counted.
    #[arg(long, env = "RECORDER_QUEUE_FRAMES", default_value_t = 120)]
    pub queue_frames: usize,
    /// Bytes that may wait for one camera's writer.
    #[arg(long, env = "RECORDER_QUEUE_BYTES", default_value = "64M", value_parser = parse_bytes)]
    pub queue_bytes: u64,
    /// Largest JPEG accepted from the bus.
    #[arg(long, env = "RECORDER_MAX_FRAME_BYTES", default_value_t = frame_wire::DEFAULT_MAX_JPEG_BYTES)]
    pub max_frame_bytes: usize,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Serve /metrics without authentication even when authentication is on.
    #[arg(long, env = "RECORDER_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// Origins allowed to read responses cross-origin (CORS); comma list, `*` for any.
    #[arg(
        long = "allow-origin",
        env = "RECORDER_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origins: Vec<String>,
    #[command(flatten)]
    pub bus: BusKeyArgs,
    /// Check the running instance's /healthz and exit 0 (healthy) or 1; for container health checks.
    #[arg(long)]
    pub healthcheck: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Deserialize)]
struct CamerasFile {
    #[serde(default)]
    camera: Vec<CameraEntry>,
}

#[derive(Debug, Deserialize)]
struct CameraEntry {
    name: String,
    record: Option<String>,
}

/// Which streams are recorded how.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Streams named (by --streams or the cameras file) with their mode.
    pub named: BTreeMap<String, Mode>,
    /// Whether streams not named are recorded (in `default`).
    pub everything: bool,
    pub default: Mode,
}

impl Choice {
    pub fn mode_of(&self, stream: &str) -> Mode {
        match self.named.get(stream) {
            Some(m) => *m,
            None if self.everything => self.default,
            None => Mode::Off,
        }
    }
}

impl Config {
    /// The streams and their modes from --streams, --mode and --cameras.
    pub fn choice(&self) -> anyhow::Result<Choice> {
        let mut named = BTreeMap::new();
        if let Some(path) = &self.cameras {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let file: CamerasFile =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            for c in file.camera {
                frame_wire::validate_stream_name(&c.name)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let mode = match c.record.as_deref() {
                    None => self.mode,
                    Some(m) => Mode::parse(m).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}: camera {:?}: record = {m:?} is not continuous, events or off",
                            path.display(),
                            c.name
                        )
                    })?,
                };
                named.insert(c.name, mode);
            }
        }
        let from_file = !named.is_empty();
        for s in self.streams.iter().filter(|s| !s.is_empty()) {
            let (name, mode) = match s.split_once('=') {
                Some((n, m)) => (
                    n,
                    Mode::parse(m).ok_or_else(|| {
                        anyhow::anyhow!("--streams {s}: {m:?} is not continuous, events or off")
                    })?,
                ),
                None => (s.as_str(), self.mode),
            };
            frame_wire::validate_stream_name(name)
                .map_err(|e| anyhow::anyhow!("--streams: {e}"))?;
            named.insert(name.to_string(), mode);
        }
        // `RECORDER_STREAMS=` (compose's default) is one empty entry: every
        // stream, as when the flag is absent.
        let listed = self.streams.iter().any(|s| !s.is_empty());
        Ok(Choice {
            everything: !listed && !from_file,
            named,
            default: self.mode,
        })
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| format!("{s:?} is not continuous, events or off"))
}

fn parse_fps(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
    if (0.01..=120.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} frames per second is out of range (0.01 to 120)"
        ))
    }
}

/// `7d`, `12h`, `30m`, `90s` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (say 7d, 12h, 30m or 90s)"))?;
    let secs = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 7.0 * 86_400.0,
        _ => return Err(format!("unknown unit in {s:?} (s, m, h, d, w)")),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(Duration::from_secs_f64(n * secs))
}

/// `50G`, `500M`, `64K`, `1T` (powers of 1024) or a number of bytes.
/// A byte bound that may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound(pub Option<u64>);

fn parse_bound(s: &str) -> Result<Bound, String> {
    match s.trim() {
        "" | "none" => Ok(Bound(None)),
        v => parse_bytes(v).map(|b| Bound(Some(b))),
    }
}

pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {s:?} (say 50G, 500M or 64K)"))?;
    let mult = match unit.trim_end_matches(['B', 'b', 'i']) {
        "" => 1u64,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => return Err(format!("unknown unit in {s:?} (K, M, G, T)")),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_no_arguments() {
        let c = Config::try_parse_from(["frame-recorder"]).expect("defaults");
        assert_eq!(c.producers, ["tcp://127.0.0.1:5555"]);
        assert_eq!(c.dir, PathBuf::from("./recordings"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8090");
        assert_eq!(c.keep, Duration::from_secs(7 * 86_400));
        assert_eq!(c.max_bytes, Bound(None));
        assert_eq!(parse_bound(""), Ok(Bound(None)));
        let choice = c.choice().expect("choice");
        assert!(choice.everything);
        assert_eq!(choice.mode_of("anything"), Mode::Continuous);
    }

    #[test]
    fn an_empty_streams_variable_records_every_stream() {
        // Compose passes `RECORDER_STREAMS: ""` when nothing is chosen.
        let c = Config::try_parse_from(["r", "--streams", ""]).expect("parses");
        let choice = c.choice().expect("choice");
        assert!(choice.everything && choice.named.is_empty());
    }

    #[test]
    fn streams_with_modes_and_units() {
        let c = Config::try_parse_from([
            "r",
            "--streams",
            "cam0,cam1=events,cam2=off",
            "--max-bytes",
            "1.5G",
            "--keep",
            "12h",
        ])
        .expect("ok");
        let choice = c.choice().expect("choice");
        assert_eq!(choice.mode_of("cam0"), Mode::Continuous);
        assert_eq!(choice.mode_of("cam1"), Mode::Events);
        assert_eq!(choice.mode_of("cam2"), Mode::Off);
        assert_eq!(choice.mode_of("cam3"), Mode::Off);
        assert_eq!(c.max_bytes, Bound(Some(1_610_612_736)));
        assert_eq!(c.keep, Duration::from_secs(12 * 3600));
        assert!(Config::try_parse_from(["r", "--keep", "7x"]).is_err());
        assert!(Config::try_parse_from(["r", "--max-bytes", "-1"]).is_err());
        assert!(Config::try_parse_from(["r", "--mode", "sometimes"]).is_err());
        let bad = Config::try_parse_from(["r", "--streams", "../etc"]).expect("parses");
        assert!(bad.choice().is_err());
    }

    #[test]
    fn cameras_file_modes() {
        let path = std::env::temp_dir().join(format!("rec-cams-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[[camera]]\nname = \"lobby\"\nsource = \"test-pattern\"\nrecord = \"events\"\n\n[[camera]]\nname = \"yard\"\nsource = \"test-pattern\"\n",
        )
        .expect("write");
        let c =
            Config::try_parse_from(["r", "--cameras", path.to_str().expect("utf-8")]).expect("ok");
        let choice = c.choice().expect("choice");
        assert_eq!(choice.mode_of("lobby"), Mode::Events);
        assert_eq!(choice.mode_of("yard"), Mode::Continuous);
        assert_eq!(choice.mode_of("garage"), Mode::Off);
        let _ = std::fs::remove_file(path);
    }
}
