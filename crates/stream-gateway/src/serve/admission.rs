//! Deciding a request, once, in one place: method, body, query, credentials,
//! CORS, which route (`stream_common::route`), which stream, `?fps=`, and a
//! seat within `--max-clients` (`seats.rs`). What comes out is a
//! [`Decision`] the connection carries out: a viewer for the fan-out, a
//! stream head, a reply made here, or a finite route for `routes.rs`.
//! Nothing after this looks at credentials or at the URL again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use stream_common::access::{Auth, Cors, Origins};
use stream_common::query::{Query, parse_query};
use stream_common::ratelimit::LogEvery;
use stream_common::route::Route;
use tokio::sync::Semaphore;

use crate::metrics::GatewayMetrics;
use crate::rendition::Width;
use crate::serve::head::Head;
use crate::serve::response::{at_capacity, no_stream, text};
use crate::serve::seats::{EventsViewer, Seat, Viewer, Watching, WsViewer};
use crate::streams::Streams;

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
    /// A finite route, answered by `routes.rs`.
    Finite(Route),
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
    pub allow_origins: Origins,
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
        self.policy
            .allow_origins
            .cors(origin, self.policy.auth.enabled())
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
        let route = Route::parse(&head.path, &q);
        if !route.is_open(self.policy.public_metrics) {
            let token = q.get("token").map(String::as_str);
            if !self
                .policy
                .auth
                .allows(head.single(&header::AUTHORIZATION), token)
            {
                return Decision::Reply(self.unauthorized(&head.path));
            }
        }
        match route {
            Route::WebSocket => self.websocket(head),
            Route::Events(name) => self.events(&name, is_get),
            Route::Stream(name) => self.stream(name.as_deref(), &q, is_get),
            finite => Decision::Finite(finite),
        }
    }

    /// A stream, named or the default one (credentials already checked).
    fn stream(&self, name: Option<&str>, q: &Query, is_get: bool) -> Decision {
        let Ok(fps_cap) = parse_fps(q) else {
            return Decision::Reply(text(
                StatusCode::BAD_REQUEST,
                "fps must be a number between 0.1 and 240",
            ));
        };
        let width = match Width::from_query(q) {
            Ok(w) => w,
            Err(e) => return Decision::Reply(text(StatusCode::BAD_REQUEST, &e)),
        };
        let stream = match name {
            None => self.streams.default_stream(),
            Some(name) => self.streams.get(name),
        };
        let Some(stream) = stream else {
            return Decision::Reply(no_stream(name));
        };
        if !is_get {
            return Decision::StreamHead;
        }
        match self.seat() {
            Some(seat) => Decision::Stream(Viewer {
                seat,
                watching: Watching::new(stream.clone(), stream.choose(width)),
                width,
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
            return Decision::Reply(no_stream(Some(name)));
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
            let origins = &self.policy.allow_origins;
            let listed = origins.lists(origin) || (origins.any() && !self.policy.auth.enabled());
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

    fn preflight(&self, head: &Head) -> Response<Bytes> {
        let allowed = self.cors(head.single(&header::ORIGIN)) != Cors::None;
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = if allowed {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::FORBIDDEN
        };
        stream_common::access::preflight_headers(r.headers_mut());
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
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            self.policy.auth.challenge("stream-gateway"),
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
            allow_origins: Origins::default(),
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
            Decision::Finite(_) => 3,
            Decision::Reply(r) => r.status().as_u16(),
        }
    }

    #[test]
    fn fps_caps_parse() {
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
            allow_origins: Origins::new(vec!["*".into(), "https://ok.example".into()]),
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
        let listed_only = Policy {
            allow_origins: Origins::new(vec!["https://ok.example".into()]),
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
