//! Command-line flags, each with an environment-variable twin, and defaults
//! that make `frame-producer` with no arguments the seed's simulated camera.

use std::net::SocketAddr;

use clap::Parser;
use stream_common::logging::LogArgs;

use crate::units::{Fps, OrNative, Size};

frame_bus::bus_key_args!(BusKeyArgs, "PRODUCER");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "frame-producer",
    version,
    about = "Publishes JPEG frames on a ZeroMQ PUB socket"
)]
pub struct Config {
    /// Where frames come from: `test-pattern`; a directory of .jpg/.png
    /// images or a .mjpeg file (concatenated JPEGs); an `http://` MJPEG stream
    /// to relay; `v4l2:/dev/videoN` (or `v4l2:N`) for a USB webcam or capture card;
    /// `rtsp://user:pass@host/path` for an IP camera; or a video file
    /// (.mp4, .mkv, .avi, .mov, .webm, .ts), looped. Cameras and video files
    /// need the `v4l2` / `ffmpeg` build features (on in the Docker image).
    #[arg(long, env = "PRODUCER_SOURCE", default_value = "test-pattern")]
    pub source: String,
    /// Stream name: the ZeroMQ topic and the name viewers see (A-Z a-z 0-9 _ - .).
    #[arg(long, env = "PRODUCER_STREAM", default_value = "cam0", value_parser = parse_stream)]
    pub stream: String,
    /// WIDTHxHEIGHT. For the test pattern, its size (default 640x480). For
    /// every other source, the largest size published: bigger pictures are
    /// scaled down to fit, keeping their aspect ratio (a 4K camera with
    /// `--size 1280x720` feeds browsers 720p); cameras are asked for it.
    /// `native` (or empty): other sources keep their own size.
    #[arg(long, env = "PRODUCER_SIZE", default_value = "native")]
    pub size: OrNative<Size>,
    /// Frames per second. For the test pattern and image files, the rate
    /// (default 15). For cameras, streams and video files, a cap below their
    /// own rate (surplus frames are dropped before encoding); `native` (or
    /// empty): their own rate, video files in real time.
    #[arg(long, env = "PRODUCER_FPS", default_value = "native")]
    pub fps: OrNative<Fps>,
    /// Widths of each camera's renditions, smaller copies of its frames
    /// published on `r/<name>/<width>/` only while someone subscribes
    /// (`/stream/NAME?width=W`, the page's tiles): comma-separated even
    /// widths, 16 to 8192, at most 8; those at or above the camera's own
    /// width are left out. `0`, `none` or empty: none. A camera in the
    /// --cameras file may set its own (`renditions = [640, 320]`).
    #[arg(long, env = "PRODUCER_RENDITIONS", default_value = "640,320")]
    pub renditions: crate::units::Widths,
    /// JPEG quality, 1-100.
    #[arg(long, env = "PRODUCER_QUALITY", default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// ZeroMQ endpoint the PUB socket binds (`tcp://HOST:PORT`,
    /// `ipc:///path`). Loopback by default: frames are readable by whoever
    /// reaches this port, so bind another address on purpose (the container
    /// image does) and set a bus key when others share that network.
    #[arg(long, env = "PRODUCER_BIND", default_value = "tcp://127.0.0.1:5555")]
    pub bind: String,
    /// Address for /healthz and /metrics (no credentials; loopback by
    /// default, the container image opens it for health checks and Prometheus).
    #[arg(
        long,
        env = "PRODUCER_METRICS_LISTEN",
        default_value = "127.0.0.1:9100"
    )]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub bus: BusKeyArgs,
    /// Most bytes of frames queued for one subscriber that does not keep up
    /// (a frozen gateway): beyond it the oldest are dropped. What a stalled
    /// subscriber can cost the producer, whatever the frame size and rate.
    #[arg(long, env = "PRODUCER_SUBSCRIBER_QUEUE_BYTES", default_value_t = 32 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(65_536..=(1u64 << 34)))]
    pub subscriber_queue_bytes: u64,
    /// Largest JPEG published; bigger frames are skipped and counted.
    #[arg(long, env = "PRODUCER_MAX_FRAME_BYTES", default_value_t = frame_wire::DEFAULT_MAX_JPEG_BYTES)]
    pub max_frame_bytes: usize,
    /// Seconds a subscriber may take to accept one frame, or leave sent
    /// data unacknowledged (TCP_USER_TIMEOUT), before it is dropped: a
    /// frozen or vanished gateway is let go. 0: never (its queue stays
    /// bounded by --subscriber-queue-bytes).
    #[arg(long, env = "PRODUCER_SUBSCRIBER_TIMEOUT", default_value_t = 10)]
    pub subscriber_timeout: u64,
    /// RTSP transport: `tcp` (default: works through NAT, firewalls and
    /// container networks, no loss) or `udp` (lower latency on a clean LAN).
    #[arg(long, env = "PRODUCER_RTSP_TRANSPORT", default_value = "tcp", value_parser = ["tcp", "udp"])]
    pub rtsp_transport: String,
    /// A TOML file listing the cameras this process carries, each on its own
    /// capture thread and all on the one PUB socket: `[[camera]]` tables
    /// with `name`, `source` and optionally `size`, `fps`, `quality`,
    /// `rtsp_transport` (unset ones take these flags' values). With it,
    /// --source and --stream are ignored. See docs/cameras.md, "Many cameras in one producer".
    /// (A string, not a path, so that an empty variable means "none".)
    #[arg(long, env = "PRODUCER_CAMERAS")]
    pub cameras: Option<String>,
    /// One camera, as `name=NAME,source=SRC[,size=WxH][,fps=N][,quality=Q][,rtsp_transport=tcp|udp]`;
    /// repeat the flag for more (the variable separates cameras with `;`).
    /// Added to the --cameras file's cameras; with either, --source and
    /// --stream are ignored.
    #[arg(long = "camera", env = "PRODUCER_CAMERA", value_delimiter = ';')]
    pub camera: Vec<String>,
    /// Seconds between a camera's previews: small JPEGs on `p/<name>/`
    /// that gateways keep for every stream (tiles, /snapshot, a new
    /// viewer's first picture). They flow whether or not anyone subscribes
    /// to the camera's full rate.
    #[arg(long, env = "PRODUCER_PREVIEW_INTERVAL", default_value_t = 1.0, value_parser = parse_preview_interval)]
    pub preview_interval: f64,
    /// Largest width of a preview, in pixels (the height follows the
    /// picture's aspect ratio; smaller pictures are not enlarged).
    #[arg(long, env = "PRODUCER_PREVIEW_WIDTH", default_value_t = 320, value_parser = clap::value_parser!(u32).range(16..=4096))]
    pub preview_width: u32,
    /// Check the running instance's /healthz and exit 0 (healthy) or 1; for container health checks.
    #[arg(long)]
    pub healthcheck: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    /// Where the bus key comes from, if one is set.
    pub fn key_source(&self) -> Option<frame_wire::auth::KeySource> {
        use frame_wire::auth::KeySource;
        match (&self.bus.bus_key_file, &self.bus.bus_key) {
            (Some(path), _) => Some(KeySource::File(path.clone())),
            (None, Some(v)) => Some(KeySource::Value(v.clone())),
            (None, None) => None,
        }
    }

    /// `--preview-interval` and `--preview-width`.
    pub fn preview(&self) -> crate::preview::PreviewSettings {
        crate::preview::PreviewSettings {
            interval: std::time::Duration::from_secs_f64(self.preview_interval),
            width: self.preview_width,
        }
    }

    /// `--size`, if one was given.
    pub fn size(&self) -> Option<Size> {
        self.size.0
    }

    /// `--fps`, if one was given.
    pub fn fps(&self) -> Option<f64> {
        self.fps.0.map(|f| f.0)
    }
}

fn parse_preview_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
    if (0.1..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("preview interval must be 0.1 to 3600 s, got {v}"))
    }
}

fn parse_stream(s: &str) -> Result<String, String> {
    frame_wire::validate_stream_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::DEFAULT_FPS;

    #[test]
    fn defaults_are_the_simulated_camera() {
        let c = Config::try_parse_from(["frame-producer"]).expect("no arguments needed");
        assert_eq!(c.source, "test-pattern");
        assert_eq!((c.size(), c.fps()), (None, None));
        assert_eq!(
            (c.fps().unwrap_or(DEFAULT_FPS), c.quality, c.stream.as_str()),
            (15.0, 80, "cam0")
        );
        assert_eq!(c.rtsp_transport, "tcp");
        assert_eq!(c.bind, "tcp://127.0.0.1:5555");
        assert!(c.metrics_listen.ip().is_loopback());
        assert_eq!(c.subscriber_queue_bytes, 32 << 20);
        assert!(c.bus.bus_key_file.is_none() && c.bus.bus_key.is_none());
        assert!(c.cameras.is_none() && c.camera.is_empty());
        assert_eq!(c.preview().interval, std::time::Duration::from_secs(1));
        assert_eq!(c.preview().width, 320);
        // Compose passes unset variables as empty ones.
        let c =
            Config::try_parse_from(["p", "--cameras", "", "--camera", ""]).expect("empty is none");
        assert_eq!(c.cameras.as_deref(), Some(""));
    }

    #[test]
    fn native_or_empty_means_the_sources_own() {
        for v in ["native", "", "auto"] {
            let c = Config::try_parse_from(["p", "--size", v, "--fps", v]).expect("accepted");
            assert_eq!((c.size(), c.fps()), (None, None), "{v:?}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["p", "--size", "640"][..],
            &["p", "--size", "641x480"],
            &["p", "--fps", "0"],
            &["p", "--quality", "101"],
            &["p", "--stream", "bad name"],
            &["p", "--rtsp-transport", "http"],
            &["p", "--subscriber-queue-bytes", "100"],
            &["p", "--bus-key", "aa", "--bus-key-file", "/k"],
            &["p", "--preview-interval", "0"],
            &["p", "--preview-width", "8"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?}");
        }
        let c = Config::try_parse_from(["p", "--size", "600x400", "--fps", "10"])
            .expect("seed settings");
        assert_eq!(
            (c.size(), c.fps()),
            (
                Some(Size {
                    width: 600,
                    height: 400
                }),
                Some(10.0)
            )
        );
    }
}
