//! Deciding a request, once, in one place: method, body, query, credentials,
//! CORS, whether it is a stream, which stream, `?fps=`, and a seat within
//! `--max-clients`. What comes out is a [`Decision`] the connection carries
//! out: a viewer for the fan-out writer, a stream head, a reply made here,
//! or a route for warp. Nothing after this looks at credentials again.
//!
//! A viewer's [`Seat`] holds a capacity permit taken atomically (so a burst
//! of simultaneous requests never admits more than the limit) and counts the
//! viewer in the metrics until it is dropped, whichever way the viewer left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use stream_common::ratelimit::LogEvery;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::GatewayMetrics;
use crate::serve::auth::Auth;
use crate::serve::head::Head;
use crate::serve::response::text;
use crate::serve::routes::{self, StreamTarget};
use crate::streams::{Stream, Streams};

/// The CORS answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers: the origin is not allowed (or there is none).
    None,
    /// `*`: any origin may read, without credentials (as the spec intends).
    Any,
    /// An origin listed by name; with credentials when auth is on.
    Origin {
        value: HeaderValue,
        credentials: bool,
    },
}

impl Cors {
    pub fn apply(&self, h: &mut HeaderMap) {
        match self {
            Cors::None => {}
            Cors::Any => {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            Cors::Origin { value, credentials } => {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value.clone());
                h.insert(header::VARY, HeaderValue::from_static("Origin"));
                if *credentials {
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
            }
        }
    }
}

/// A viewer's place among `--max-clients`, held while the viewer lives:
/// one per MJPEG stream response or WebSocket connection.
pub struct Seat {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<GatewayMetrics>,
    opened: Instant,
}

impl Seat {
    fn new(permit: OwnedSemaphorePermit, metrics: Arc<GatewayMetrics>) -> Self {
        metrics.viewers_total.inc();
        Seat {
            _permit: permit,
            metrics,
            opened: Instant::now(),
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.metrics.viewers_total.dec();
        tracing::debug!(
            watched_ms = self.opened.elapsed().as_millis() as u64,
            "viewer left"
        );
    }
}

/// Counts a viewer of one stream (`gateway_viewers{stream}`) while it lives,
/// and has the stream received at full rate meanwhile (`interest.rs`).
pub struct Watching {
    pub stream: Arc<Stream>,
}

impl Watching {
    pub fn new(stream: Arc<Stream>) -> Self {
        stream.metrics.viewers.inc();
        stream.viewer_joined();
        tracing::debug!(stream = %stream.name, "viewer connected");
        Watching { stream }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.stream.metrics.viewers.dec();
        self.stream.viewer_left();
    }
}

/// An admitted MJPEG viewer, ready for the fan-out.
pub struct Viewer {
    pub seat: Seat,
    pub watching: Watching,
    pub fps_cap: Option<f64>,
}

/// An admitted WebSocket viewer: its seat and the key to answer.
pub struct WsViewer {
    pub seat: Seat,
    pub key: String,
}

/// An admitted listener of `/events/{name}` (a stream's detections as
/// Server-Sent Events): a seat, and the stream.
pub struct EventsViewer {
    pub seat: Seat,
    pub stream: Arc<Stream>,
}

pub enum Decision {
    /// A GET of a stream: the socket goes to the fan-out writer.
    Stream(Viewer),
    /// A GET of a stream's detections as Server-Sent Events: to the fan-out too.
    Events(EventsViewer),
    /// A WebSocket for the page (docs/websocket.md): to the fan-out too.
    WebSocket(WsViewer),
    /// A HEAD of a stream: the stream's head, no body.
    StreamHead,
    /// Answered here: errors, refusals, CORS preflight.
    Reply(Response<Bytes>),
    /// Everything else: warp's route table answers.
    Route,
}

/// The query string as pairs; a key given twice is an error, so no two
/// readers of one request can disagree about it.
pub type Query = HashMap<String, String>;

pub fn parse_query(q: &str) -> Result<Query, String> {
    let mut out = Query::new();
    for kv in q.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("query parameter {k:?} given twice"));
        }
    }
    Ok(out)
}

/// RFC 3986 percent-decoding of one query key or value, as the page's
/// `encodeURIComponent` writes them; `+` stays a plus. A bad `%` escape or
/// bytes that are not UTF-8 are refused rather than guessed at.
pub fn percent_decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in query: {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("query is not UTF-8 once decoded: {s:?}"))
}

/// `?fps=N` for one client's rate cap: absent, or a number in 0.1..=240.
pub fn parse_fps(q: &Query) -> Result<Option<f64>, ()> {
    match q.get("fps").map(|v| v.parse::<f64>()) {
        None => Ok(None),
        Some(Ok(f)) if (0.1..=240.0).contains(&f) => Ok(Some(f)),
        Some(_) => Err(()),
    }
}

/// Settings for [`Admission`], from the command line.
pub struct Policy {
    pub auth: Auth,
    pub public_metrics: bool,
    pub allow_origins: Vec<String>,
    pub max_clients: usize,
}

pub struct Admission {
    policy: Policy,
    seats: Arc<Semaphore>,
    streams: Arc<Streams>,
    metrics: Arc<GatewayMetrics>,
    auth_log: Mutex<LogEvery>,
    capacity_log: Mutex<LogEvery>,
}

impl Admission {
    pub fn new(policy: Policy, streams: Arc<Streams>, metrics: Arc<GatewayMetrics>) -> Self {
        Admission {
            seats: Arc::new(Semaphore::new(
                policy.max_clients.min(Semaphore::MAX_PERMITS),
            )),
            policy,
            streams,
            metrics,
            auth_log: Mutex::new(LogEvery::new(Duration::from_secs(1))),
            capacity_log: Mutex::new(LogEvery::new(Duration::from_secs(5))),
        }
    }

    /// The CORS answer for a request from `origin`.
    pub fn cors(&self, origin: Option<&str>) -> Cors {
        let Some(origin) = origin else {
            return Cors::None;
        };
        let listed = origin != "null" && self.policy.allow_origins.iter().any(|a| a == origin);
        match HeaderValue::from_str(origin) {
            Ok(value) if listed => Cors::Origin {
                value,
                credentials: self.policy.auth.enabled(),
            },
            _ if self.policy.allow_origins.iter().any(|a| a == "*") => Cors::Any,
            _ => Cors::None,
        }
    }

    /// Decides what to do with a request.
    pub fn decide(&self, head: &Head) -> Decision {
        let is_get = head.method == Method::GET;
        if head.method == Method::OPTIONS {
            return Decision::Reply(self.preflight(head));
        }
        if !is_get && head.method != Method::HEAD {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed; use GET or HEAD",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Decision::Reply(r);
        }
        if head.has_body {
            return Decision::Reply(text(
                StatusCode::BAD_REQUEST,
                "this server takes no request bodies",
            ));
        }
        let q = match parse_query(&head.query) {
            Ok(q) => q,
            Err(e) => return Decision::Reply(text(StatusCode::BAD_REQUEST, &e)),
        };
        if !self.is_open(&head.path) {
            let token = q.get("token").map(String::as_str);
            if !self
                .policy
                .auth
                .allows(head.single(&header::AUTHORIZATION), token)
            {
                return Decision::Reply(self.unauthorized(&head.path));
            }
        }
        if head.path == "/ws" {
            return self.websocket(head);
        }
        if let Some(name) = head.path.strip_prefix("/events/") {
            return self.events(name, is_get);
        }
        let Some(target) = routes::stream_target(&head.path, &q) else {
            return Decision::Route;
        };
        let Ok(fps_cap) = parse_fps(&q) else {
            return Decision::Reply(text(
                StatusCode::BAD_REQUEST,
                "fps must be a number between 0.1 and 240",
            ));
        };
        let stream = match target {
            StreamTarget::Default => self.streams.default_stream(),
            StreamTarget::Named(name) => self.streams.get(name),
        };
        let Some(stream) = stream else {
            return Decision::Reply(routes::no_stream(match target {
                StreamTarget::Default => None,
                StreamTarget::Named(name) => Some(name),
            }));
        };
        if !is_get {
            return Decision::StreamHead;
        }
        match self.seat() {
            Some(seat) => Decision::Stream(Viewer {
                seat,
                watching: Watching::new(stream),
                fps_cap,
            }),
            None => Decision::Reply(at_capacity()),
        }
    }

    /// A seat within `--max-clients`, or `None` (counted and logged).
    fn seat(&self) -> Option<Seat> {
        match self.seats.clone().try_acquire_owned() {
            Ok(permit) => Some(Seat::new(permit, self.metrics.clone())),
            Err(_) => {
                self.at_capacity_seen();
                None
            }
        }
    }

    /// `/events/{name}` (credentials already checked): a seat like any viewer.
    fn events(&self, name: &str, is_get: bool) -> Decision {
        let Some(stream) = self.streams.get(name) else {
            return Decision::Reply(routes::no_stream(Some(name)));
        };
        if !is_get {
            let mut r = Response::new(Bytes::new());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::serve::response::EVENT_STREAM),
            );
            return Decision::Reply(r);
        }
        match self.seat() {
            Some(seat) => Decision::Events(EventsViewer { seat, stream }),
            None => Decision::Reply(at_capacity()),
        }
    }

    /// A WebSocket upgrade (credentials already checked): only from this
    /// gateway's own pages or origins listed by name, since browsers send
    /// cached credentials with a WebSocket from any site.
    fn websocket(&self, head: &Head) -> Decision {
        let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
        let has_token = |name: &str, token: &str| {
            header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if head.method != Method::GET
            || !has_token("upgrade", "websocket")
            || !has_token("connection", "upgrade")
        {
            let mut r = text(
                StatusCode::UPGRADE_REQUIRED,
                "a WebSocket upgrade is expected here",
            );
            r.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return Decision::Reply(r);
        }
        let (Some(key), Some("13")) =
            (header("sec-websocket-key"), header("sec-websocket-version"))
        else {
            return Decision::Reply(text(
                StatusCode::BAD_REQUEST,
                "WebSocket version 13 with a Sec-WebSocket-Key is required",
            ));
        };
        if let Some(origin) = head.single(&header::ORIGIN) {
            // The same host on any port: a page served by this gateway, or by
            // the stream-director in front of it (docs/websocket.md).
            let host = head
                .single(&header::HOST)
                .map(host_name)
                .unwrap_or_default();
            let same = origin
                .split_once("://")
                .is_some_and(|(_, authority)| host_name(authority).eq_ignore_ascii_case(host));
            let listed = self
                .policy
                .allow_origins
                .iter()
                .any(|a| a == origin || (a == "*" && !self.policy.auth.enabled()));
            if !same && !listed {
                return Decision::Reply(text(
                    StatusCode::FORBIDDEN,
                    "this origin may not open a WebSocket here",
                ));
            }
        }
        match self.seat() {
            Some(seat) => Decision::WebSocket(WsViewer {
                seat,
                key: key.to_string(),
            }),
            None => Decision::Reply(at_capacity()),
        }
    }

    /// Routes anyone may call: health checks, and metrics if made public.
    fn is_open(&self, path: &str) -> bool {
        matches!(path, "/healthz" | "/readyz") || (path == "/metrics" && self.policy.public_metrics)
    }

    fn preflight(&self, head: &Head) -> Response<Bytes> {
        let allowed = self.cors(head.single(&header::ORIGIN)) != Cors::None;
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = if allowed {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::FORBIDDEN
        };
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization"),
        );
        r
    }

    fn unauthorized(&self, path: &str) -> Response<Bytes> {
        self.metrics.auth_failures.inc();
        let mut log = self.auth_log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(folded) = log.check(Instant::now()) {
            tracing::warn!(
                path,
                repeats = folded,
                "request refused: missing or wrong credentials"
            );
        }
        let mut r = text(StatusCode::UNAUTHORIZED, "authentication required");
        let challenge = if self.policy.auth.has_basic() {
            "Basic realm=\"stream-gateway\", charset=\"UTF-8\""
        } else {
            "Bearer realm=\"stream-gateway\""
        };
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        r
    }

    fn at_capacity_seen(&self) {
        self.metrics.rejected_clients.inc();
        let mut log = self.capacity_log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(folded) = log.check(Instant::now()) {
            tracing::warn!(
                max_clients = self.policy.max_clients,
                repeats = folded,
                "viewer refused: too many clients"
            );
        }
    }
}

/// `host` of `host:port` (brackets kept for IPv6 literals).
fn host_name(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    }
}

fn at_capacity() -> Response<Bytes> {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many viewers; try again shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::head::parse;

    fn admission(policy: Policy) -> (Admission, Arc<Streams>) {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let interest = crate::interest::Interest::new(
            crate::receive::subscriptions::Mode::OnDemand,
            Duration::from_secs(10),
            metrics.clone(),
        );
        let streams = Arc::new(Streams::new(metrics.clone(), None, Arc::new(interest)));
        let frame = frame_wire::Frame {
            header: frame_wire::FrameHeader {
                version: frame_wire::VERSION,
                seq: 0,
                capture_ts_ns: 1,
                width: 2,
                height: 2,
                producer_id: 1,
                stream: "cam0".into(),
            },
            jpeg: Bytes::from_static(b"\xFF\xD8\xFF\xD9"),
        };
        streams.get_or_create("cam0", 0).publish_live(&frame, "p");
        (Admission::new(policy, streams.clone(), metrics), streams)
    }

    fn open(max_clients: usize) -> Policy {
        Policy {
            auth: Auth::default(),
            public_metrics: false,
            allow_origins: vec![],
            max_clients,
        }
    }

    fn head(s: &str) -> Head {
        parse(&Bytes::copy_from_slice(s.as_bytes())).expect("valid head")
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Stream(_) => 1,
            Decision::StreamHead => 2,
            Decision::WebSocket(_) => 4,
            Decision::Events(_) => 5,
            Decision::Route => 3,
            Decision::Reply(r) => r.status().as_u16(),
        }
    }

    #[test]
    fn queries_parse_and_refuse_duplicates() {
        let q = parse_query("fps=5&token=a&flag").expect("ok");
        assert_eq!(q.get("fps").map(String::as_str), Some("5"));
        assert_eq!(q.get("flag").map(String::as_str), Some(""));
        assert!(parse_query("token=a&token=b").is_err());
        let q = parse_query("token=a%2Bb%2Fc%25d%26e+f").expect("ok");
        assert_eq!(q.get("token").map(String::as_str), Some("a+b/c%d&e+f"));
        assert!(parse_query("token=%zz").is_err());
        assert!(parse_query("token=%2").is_err());
        assert!(parse_query("token=%ff").is_err());
        assert!(parse_query("token=a&%74oken=b").is_err());
        assert_eq!(parse_fps(&parse_query("fps=5").expect("q")), Ok(Some(5.0)));
        for bad in ["fps=0", "fps=241", "fps=x", "fps="] {
            assert!(parse_fps(&parse_query(bad).expect("q")).is_err(), "{bad}");
        }
        assert_eq!(parse_fps(&Query::new()), Ok(None));
    }

    #[test]
    fn streams_routes_and_errors_are_decided_once() {
        let (a, _) = admission(open(10));
        assert_eq!(
            status(&a.decide(&head("GET /stream/cam0 HTTP/1.1\r\n\r\n"))),
            1
        );
        assert_eq!(
            status(&a.decide(&head("GET /video_feed HTTP/1.1\r\n\r\n"))),
            1
        );
        assert_eq!(
            status(&a.decide(&head("GET /?action=stream HTTP/1.1\r\n\r\n"))),
            1
        );
        assert_eq!(
            status(&a.decide(&head("HEAD /stream/cam0 HTTP/1.1\r\n\r\n"))),
            2
        );
        assert_eq!(
            status(&a.decide(&head("GET /snapshot HTTP/1.1\r\n\r\n"))),
            3
        );
        assert_eq!(
            status(&a.decide(&head("GET /?action=snapshot HTTP/1.1\r\n\r\n"))),
            3
        );
        assert_eq!(
            status(&a.decide(&head("GET /stream/nope HTTP/1.1\r\n\r\n"))),
            404
        );
        assert_eq!(
            status(&a.decide(&head("GET /events/cam0 HTTP/1.1\r\n\r\n"))),
            5
        );
        assert_eq!(
            status(&a.decide(&head("GET /events/nope HTTP/1.1\r\n\r\n"))),
            404
        );
        assert_eq!(
            status(&a.decide(&head("GET /stream/cam0?fps=0 HTTP/1.1\r\n\r\n"))),
            400
        );
        assert_eq!(
            status(&a.decide(&head("GET /stream/cam0?fps=1&fps=2 HTTP/1.1\r\n\r\n"))),
            400
        );
        assert_eq!(
            status(&a.decide(&head("DELETE /stream/cam0 HTTP/1.1\r\n\r\n"))),
            405
        );
        assert_eq!(
            status(&a.decide(&head(
                "GET /stream/cam0 HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
            ))),
            400
        );
    }

    #[test]
    fn credentials_are_checked_for_every_path_but_health() {
        let policy = Policy {
            auth: Auth::new(None, None, None, Some("right".into())).expect("auth"),
            ..open(10)
        };
        let (a, _) = admission(policy);
        for path in [
            "/stream/cam0",
            "/video_feed",
            "/snapshot",
            "/api/streams",
            "/api/streams/cam0/detections",
            "/events/cam0",
            "/metrics",
            "/",
        ] {
            let d = a.decide(&head(&format!("GET {path} HTTP/1.1\r\n\r\n")));
            assert_eq!(status(&d), 401, "{path}");
        }
        assert_eq!(status(&a.decide(&head("GET /healthz HTTP/1.1\r\n\r\n"))), 3);
        let bearer = "GET /stream/cam0 HTTP/1.1\r\nAuthorization: Bearer right\r\n\r\n";
        assert_eq!(status(&a.decide(&head(bearer))), 1);
        assert_eq!(
            status(&a.decide(&head("GET /stream/cam0?token=right HTTP/1.1\r\n\r\n"))),
            1
        );
        assert_eq!(
            status(&a.decide(&head(
                "GET /stream/cam0?token=right&token=wrong HTTP/1.1\r\n\r\n"
            ))),
            400
        );
        let Decision::Reply(r) = a.decide(&head("GET /snapshot HTTP/1.1\r\n\r\n")) else {
            panic!("refused")
        };
        assert!(
            r.headers()
                .get(header::WWW_AUTHENTICATE)
                .is_some_and(|v| v.as_bytes().starts_with(b"Bearer"))
        );
    }

    #[test]
    fn cors_star_never_grants_credentials() {
        let policy = Policy {
            auth: Auth::new(None, None, None, Some("t".into())).expect("auth"),
            allow_origins: vec!["*".into(), "https://ok.example".into()],
            ..open(10)
        };
        let (a, _) = admission(policy);
        assert_eq!(a.cors(Some("https://evil.example")), Cors::Any);
        assert_eq!(a.cors(Some("null")), Cors::Any);
        assert_eq!(a.cors(None), Cors::None);
        assert!(matches!(
            a.cors(Some("https://ok.example")),
            Cors::Origin {
                credentials: true,
                ..
            }
        ));
        let mut h = HeaderMap::new();
        a.cors(Some("https://evil.example")).apply(&mut h);
        assert_eq!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        assert_eq!(
            h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.as_bytes()),
            Some(&b"*"[..])
        );
        let listed_only = Policy {
            allow_origins: vec!["https://ok.example".into()],
            ..open(1)
        };
        let (a, _) = admission(listed_only);
        assert_eq!(a.cors(Some("https://evil.example")), Cors::None);
        let preflight = head("OPTIONS /snapshot HTTP/1.1\r\nOrigin: https://evil.example\r\n\r\n");
        assert_eq!(status(&a.decide(&preflight)), 403);
    }

    #[test]
    fn capacity_holds_under_a_burst_of_simultaneous_requests() {
        let (a, streams) = admission(open(2));
        let a = Arc::new(a);
        let barrier = Arc::new(std::sync::Barrier::new(40));
        let admitted: Vec<Decision> = (0..40)
            .map(|_| {
                let (a, barrier) = (a.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    a.decide(&head("GET /stream/cam0 HTTP/1.1\r\n\r\n"))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let seats = admitted
            .iter()
            .filter(|d| matches!(d, Decision::Stream(_)))
            .count();
        let refused = admitted.iter().filter(|d| status(d) == 503).count();
        assert_eq!((seats, refused), (2, 38));
        let cam = streams.get("cam0").expect("cam0");
        assert_eq!(cam.metrics.viewers.get(), 2);
        drop(admitted);
        // Seats come back when viewers leave.
        assert_eq!(cam.metrics.viewers.get(), 0);
        assert_eq!(
            status(&a.decide(&head("GET /stream/cam0 HTTP/1.1\r\n\r\n"))),
            1
        );
    }
}
