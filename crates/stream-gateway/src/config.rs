//! Command-line flags with environment-variable twins; with no arguments the
//! gateway subscribes to a producer on localhost and serves on port 8080.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use stream_common::logging::LogArgs;

frame_bus::bus_key_args!(BusKeyArgs, "GATEWAY");
stream_common::auth_args!(AuthArgs, "GATEWAY");

#[derive(Debug, Clone, Parser)]
#[command(
    name = "stream-gateway",
    version,
    about = "Fans ZeroMQ frames out to browsers as MJPEG"
)]
pub struct Config {
    /// Producer endpoint to subscribe to; repeat the flag, or give a comma list in the variable.
    #[arg(
        long = "producer",
        env = "GATEWAY_PRODUCERS",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:5555"
    )]
    pub producers: Vec<String>,
    /// Only these streams (comma list); all streams when empty.
    #[arg(long = "streams", env = "GATEWAY_STREAMS", value_delimiter = ',')]
    pub only_streams: Vec<String>,
    /// The stream `/video_feed`, `/snapshot` and `/?action=stream` serve. Unset:
    /// the first stream, in `--producer` order and then by name.
    #[arg(long, env = "GATEWAY_DEFAULT_STREAM")]
    pub default_stream: Option<String>,
    /// HTTP listen address.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Seconds without a frame after which a stream is shown as offline.
    #[arg(long, env = "GATEWAY_STALE_AFTER", default_value = "3", value_parser = parse_secs)]
    pub stale_after: Duration,
    /// Seconds after which a stream's detections are old news: replaced by an
    /// empty set (sent to listeners), so boxes do not stay when a detector stops.
    #[arg(long, env = "GATEWAY_DETECTIONS_STALE_AFTER", default_value = "3", value_parser = parse_secs)]
    pub detections_stale_after: Duration,
    /// A stream name belongs to the producer that first published it;
    /// another producer (on another endpoint) may take it over only once
    /// the owner has sent nothing of it for this many seconds. 0: no
    /// ownership, any producer may publish any name.
    #[arg(long, env = "GATEWAY_STREAM_TAKEOVER_AFTER", default_value = "3", value_parser = parse_secs_or_zero)]
    pub stream_takeover_after: Duration,
    /// Seconds without any frame from a producer before its socket is recreated
    /// (zmq.rs alone can take 30 s to reconnect).
    #[arg(long, env = "GATEWAY_RESUBSCRIBE_AFTER", default_value = "1", value_parser = parse_secs)]
    pub resubscribe_after: Duration,
    /// What to ask producers for: `on-demand` takes every stream's preview
    /// (a small picture about once a second) and full-rate frames only of
    /// the streams viewers watch here; `all` takes every frame, for
    /// publishers that send no previews (wire versions 1 and 2).
    #[arg(
        long,
        env = "GATEWAY_SUBSCRIBE",
        value_enum,
        default_value = "on-demand"
    )]
    pub subscribe: crate::receive::subscriptions::Mode,
    /// Seconds a stream stays subscribed at full rate after its last viewer
    /// here left (a reload or a quick switch back costs nothing).
    #[arg(long, env = "GATEWAY_SUBSCRIBE_LINGER", default_value = "10", value_parser = parse_secs)]
    pub subscribe_linger: Duration,
    /// Most seconds `/snapshot` of a stream nobody watches waits for its
    /// next full-size frame (subscribing meanwhile) before it answers with
    /// the preview instead (`X-Snapshot: preview`); about a frame interval
    /// plus a camera's keyframe interval. 0: never wait.
    #[arg(long, env = "GATEWAY_SNAPSHOT_WAIT", default_value = "1.5", value_parser = parse_secs_or_zero)]
    pub snapshot_wait: Duration,
    /// Re-send the latest frame after this many idle seconds (browsers hold back
    /// the last frame of a multipart stream until the next one starts).
    #[arg(long, env = "GATEWAY_IDLE_RESEND", default_value = "1", value_parser = parse_secs)]
    pub idle_resend: Duration,
    /// Most streams this gateway holds at once; a frame for a new stream
    /// beyond it is dropped and counted (`gateway_streams_refused_total`).
    #[arg(long, env = "GATEWAY_MAX_STREAMS", default_value_t = 256)]
    pub max_streams: usize,
    /// Seconds a stream may be gone (no frame, no preview) before it is
    /// forgotten: gone from /api/streams, its slot freed. A stream with
    /// viewers is kept while they stay. 0: never forget.
    #[arg(long, env = "GATEWAY_FORGET_AFTER", default_value = "600", value_parser = parse_secs_or_zero)]
    pub forget_after: Duration,
    /// Most events kept per stream for `/api/streams/{name}/events` (newest
    /// first, one entry per event, without snapshots).
    #[arg(long, env = "GATEWAY_RECENT_EVENTS", default_value_t = 50)]
    pub recent_events: usize,
    /// The cameras file with zones and masks (the detector's and the event
    /// stage's, docs/events.md): the page draws them over the picture
    /// (`/api/streams/{name}/zones`). Checked at start.
    #[arg(long, env = "GATEWAY_CAMERAS")]
    pub cameras: Option<std::path::PathBuf>,
    /// Most concurrent stream viewers; more get 503 with Retry-After.
    #[arg(long, env = "GATEWAY_MAX_CLIENTS", default_value_t = 10_000)]
    pub max_clients: usize,
    /// Largest JPEG accepted from a producer; larger ones are dropped and counted.
    #[arg(long, env = "GATEWAY_MAX_FRAME_BYTES", default_value_t = frame_wire::DEFAULT_MAX_JPEG_BYTES)]
    pub max_frame_bytes: usize,
    /// Kernel send buffer per viewer socket, in bytes: bounds how much stale
    /// video a slow viewer can have queued (0 keeps the system default).
    #[arg(long, env = "GATEWAY_SEND_BUFFER", default_value_t = 256 * 1024)]
    pub send_buffer: usize,
    /// Seconds a viewer may leave sent data unacknowledged (a stalled or
    /// vanished client) before its connection is dropped (TCP_USER_TIMEOUT).
    #[arg(long, env = "GATEWAY_VIEWER_TIMEOUT", default_value = "30", value_parser = parse_secs)]
    pub viewer_timeout: Duration,
    /// Most bytes queued but not yet sent per viewer socket (TCP_NOTSENT_LOWAT):
    /// a slow viewer's stale backlog in the kernel stays this small, so it
    /// skips frames instead of lagging (0 leaves the system default).
    #[arg(long, env = "GATEWAY_UNSENT_LIMIT", default_value_t = 64 * 1024)]
    pub unsent_limit: u32,
    /// Seconds a client may take to send its request headers.
    #[arg(long, env = "GATEWAY_HEADER_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub header_timeout: Duration,
    /// Most bytes all unfinished request heads together may hold; a client
    /// that would need more while waiting gets 503.
    #[arg(long, env = "GATEWAY_MAX_PENDING_HEAD_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_pending_head_bytes: usize,
    /// Name of this gateway in responses (X-Gateway-Instance) and /api/streams.
    #[arg(long, env = "GATEWAY_INSTANCE_ID", default_value_t = default_instance())]
    pub instance_id: String,
    /// Serving threads, each with its own share of the viewers (0: one per CPU core).
    #[arg(long, env = "GATEWAY_THREADS", default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Serve /metrics without authentication even when authentication is on.
    #[arg(long, env = "GATEWAY_PUBLIC_METRICS")]
    pub public_metrics: bool,
    /// Origins allowed to read responses cross-origin (CORS); comma list, `*` for any. Off by default.
    #[arg(
        long = "allow-origin",
        env = "GATEWAY_ALLOW_ORIGIN",
        value_delimiter = ','
    )]
    pub allow_origins: Vec<String>,

    /// Who may show the viewer page in a frame (its CSP `frame-ancestors`):
    /// comma list of origins such as `https://dash.example`, or `'self'`
    /// (the default) or `'none'`.
    #[arg(
        long = "frame-ancestors",
        env = "GATEWAY_FRAME_ANCESTORS",
        value_delimiter = ',',
        default_value = "'self'",
        value_parser = parse_frame_ancestor
    )]
    pub frame_ancestors: Vec<String>,
    /// Check the running instance's /healthz and exit 0 (healthy) or 1; for container health checks.
    #[arg(long)]
    pub healthcheck: bool,
    #[command(flatten)]
    pub bus: BusKeyArgs,
    /// Serve HTTPS with this PEM certificate chain (server certificate
    /// first); re-read when it changes. Needs `--tls-key`.
    #[arg(long, env = "GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Seconds between checks of the certificate and key files for changes.
    #[arg(long, env = "GATEWAY_TLS_RELOAD_EVERY", default_value = "5", value_parser = parse_secs)]
    pub tls_reload_every: Duration,
    #[command(flatten)]
    pub log: LogArgs,
}

impl Config {
    /// Serving threads: `--threads`, or one per core the process may use.
    pub fn serving_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// `--forget-after`, `None` for never (0).
    pub fn forget_after(&self) -> Option<Duration> {
        Some(self.forget_after).filter(|d| !d.is_zero())
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("not a number of seconds: {s:?}"))?;
    if (0.05..=86_400.0).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{v} s is out of range"))
    }
}

/// Like `parse_secs`, and `0` (off).
fn parse_secs_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim().parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    parse_secs(s)
}

fn default_instance() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("gateway-{}", std::process::id()))
}

/// One `frame-ancestors` source: `'self'`, `'none'`, or a scheme, host or
/// origin with no spaces, quotes, `;` or control characters, so nothing can
/// be added to the page's policy through it.
fn parse_frame_ancestor(s: &str) -> Result<String, String> {
    let s = s.trim();
    let keyword = matches!(s, "'self'" | "'none'");
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b";,'\"\\".contains(&b));
    if keyword || plain {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a frame-ancestors source (an origin such as https://dash.example, 'self' or 'none')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_no_arguments() {
        let c = Config::try_parse_from(["stream-gateway"]).expect("defaults");
        assert_eq!(c.producers, vec!["tcp://127.0.0.1:5555".to_string()]);
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.stale_after, Duration::from_secs(3));
        assert_eq!(c.stream_takeover_after, Duration::from_secs(3));
        let c = Config::try_parse_from(["g", "--stream-takeover-after", "0"]).expect("off");
        assert_eq!(c.stream_takeover_after, Duration::ZERO);
        assert!(c.serving_threads() >= 1);
        assert_eq!(c.default_stream, None);
        assert_eq!(c.subscribe, crate::receive::subscriptions::Mode::OnDemand);
        assert_eq!(c.subscribe_linger, Duration::from_secs(10));
        assert_eq!(c.max_streams, 256);
        assert_eq!(c.recent_events, 50);
        assert_eq!(c.forget_after(), Some(Duration::from_secs(600)));
    }

    #[test]
    fn forget_after_zero_is_never() {
        let c = Config::try_parse_from(["g", "--forget-after", "0"]).expect("ok");
        assert_eq!(c.forget_after(), None);
        let c = Config::try_parse_from(["g", "--forget-after", "2.5"]).expect("ok");
        assert_eq!(c.forget_after(), Some(Duration::from_millis(2500)));
        assert!(Config::try_parse_from(["g", "--forget-after", "-3"]).is_err());
    }

    #[test]
    fn producers_repeat_and_bad_values_fail() {
        let c = Config::try_parse_from(["g", "--producer", "tcp://a:1", "--producer", "tcp://b:2"])
            .expect("ok");
        assert_eq!(c.producers.len(), 2);
        assert!(Config::try_parse_from(["g", "--stale-after", "-1"]).is_err());
        assert!(Config::try_parse_from(["g", "--listen", "nowhere"]).is_err());
        assert!(Config::try_parse_from(["g", "--subscribe", "some"]).is_err());
        let c = Config::try_parse_from(["g", "--subscribe", "all"]).expect("ok");
        assert_eq!(c.subscribe, crate::receive::subscriptions::Mode::All);
    }
}
