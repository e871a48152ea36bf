//! URL → reply. Streams and snapshots are served from the latest-frame
//! slots; nothing here waits for a producer.
//!
//! | route | reply |
//! |---|---|
//! | `/` | viewer page (`?action=stream` / `?action=snapshot`: mjpg-streamer compatible) |
//! | `/video_feed` | the first stream, as the seed tutorial served it |
//! | `/stream/{name}` | a stream (`?fps=N` caps this client's rate) |
//! | `/snapshot`, `/snapshot/{name}` | the cached latest JPEG, at once |
//! | `/api/streams` | JSON state of every stream |
//! | `/healthz`, `/readyz`, `/metrics` | process health, readiness, Prometheus |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use stream_common::ratelimit::LogEvery;
use tokio_util::sync::CancellationToken;
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::config::Config;
use crate::metrics::GatewayMetrics;
use crate::part::{CONTENT_TYPE, timestamp_text};
use crate::serve::auth::Auth;
use crate::serve::direct::{self, DirectViewer, Fanout};
use crate::serve::viewer;
use crate::streams::{Stream, Streams};

const PAGE: &str = include_str!("page.html");

/// Everything the routes need, cheap to clone into each filter.
#[derive(Clone)]
pub struct App {
    pub streams: Arc<Streams>,
    pub metrics: Arc<GatewayMetrics>,
    stop: CancellationToken,
    max_clients: usize,
    instance: HeaderValue,
    instance_id: String,
    stale_after: Duration,
    auth: Arc<Auth>,
    auth_log: Arc<Mutex<LogEvery>>,
    public_metrics: bool,
    allow_origins: Arc<Vec<String>>,
    fanout: Arc<Fanout>,
}

/// A request without valid credentials.
#[derive(Debug)]
struct Unauthorized;
impl warp::reject::Reject for Unauthorized {}

impl App {
    pub fn new(
        config: &Config,
        auth: Auth,
        streams: Arc<Streams>,
        metrics: Arc<GatewayMetrics>,
        stop: CancellationToken,
    ) -> Self {
        App {
            streams,
            metrics,
            stop,
            max_clients: config.max_clients,
            instance: HeaderValue::from_str(&config.instance_id)
                .unwrap_or(HeaderValue::from_static("gateway")),
            instance_id: config.instance_id.clone(),
            stale_after: config.stale_after,
            auth: Arc::new(auth),
            auth_log: Arc::new(Mutex::new(LogEvery::new(Duration::from_secs(1)))),
            public_metrics: config.public_metrics,
            allow_origins: Arc::new(config.allow_origins.clone()),
            fanout: Arc::new(Fanout::default()),
        }
    }

    pub fn routes(
        &self,
    ) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible>
    + Clone
    + Send
    + Sync
    + 'static {
        let app = self.clone();
        let with_app = warp::any().map(move || app.clone());
        let query = warp::query::raw()
            .or(warp::any().map(String::new))
            .unify()
            .map(|q: String| parse_query(&q));
        let method = warp::get().or(warp::head()).unify();

        let root = warp::path::end()
            .and(with_app.clone())
            .and(query)
            .map(
                |app: App, q: Query| match q.get("action").map(String::as_str) {
                    None => html(PAGE),
                    Some("stream") => app.stream(app.streams.first(), None, &q),
                    Some("snapshot") => app.snapshot(app.streams.first(), None),
                    Some(other) => text(
                        StatusCode::BAD_REQUEST,
                        &format!("unknown action {other:?}; use stream or snapshot"),
                    ),
                },
            );
        let video_feed = warp::path!("video_feed")
            .and(with_app.clone())
            .and(query)
            .map(|app: App, q: Query| app.stream(app.streams.first(), None, &q));
        let stream = warp::path!("stream" / String)
            .and(with_app.clone())
            .and(query)
            .map(|name: String, app: App, q: Query| {
                app.stream(app.streams.get(&name), Some(&name), &q)
            });
        let snapshot_first = warp::path!("snapshot")
            .and(with_app.clone())
            .map(|app: App| app.snapshot(app.streams.first(), None));
        let snapshot = warp::path!("snapshot" / String)
            .and(with_app.clone())
            .map(|name: String, app: App| app.snapshot(app.streams.get(&name), Some(&name)));
        let api = warp::path!("api" / "streams")
            .and(with_app.clone())
            .map(|app: App| app.api_streams());
        let healthz = warp::path!("healthz").map(|| text(StatusCode::OK, "ok"));
        let readyz = warp::path!("readyz")
            .and(with_app.clone())
            .map(|app: App| app.readyz());
        let metrics = warp::path!("metrics")
            .and(with_app.clone())
            .map(|app: App| {
                let mut r = Response::new(app.metrics.render().into());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(stream_common::metrics::CONTENT_TYPE),
                );
                r
            });

        let app_g = self.clone();
        let guard = warp::path::full()
            .and(warp::header::optional::<String>("authorization"))
            .and(query)
            .and_then(
                move |path: FullPath, authorization: Option<String>, q: Query| {
                    let app = app_g.clone();
                    async move {
                        let token = q.get("token").map(String::as_str);
                        if app.is_open(path.as_str())
                            || app.auth.allows(authorization.as_deref(), token)
                        {
                            Ok(())
                        } else {
                            app.auth_failed(path.as_str());
                            Err(warp::reject::custom(Unauthorized))
                        }
                    }
                },
            )
            .untuple_one();
        let app_c = self.clone();
        // Not `warp::options()`: its rejection would turn every unknown
        // path's 404 into a 405.
        let preflight = warp::method()
            .and_then(|m: http::Method| async move {
                if m == http::Method::OPTIONS {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            })
            .untuple_one()
            .and(warp::header::optional::<String>("origin"))
            .map(move |origin: Option<String>| {
                let mut r = Response::new(Bytes::new().into());
                *r.status_mut() = if app_c.origin_allowed(origin.as_deref()) {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::FORBIDDEN
                };
                r.headers_mut().insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                r.headers_mut().insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("authorization"),
                );
                r
            });

        let instance = self.instance.clone();
        let app_o = self.clone();
        let routes = method
            .and(guard)
            .and(
                root.or(video_feed)
                    .unify()
                    .or(stream)
                    .unify()
                    .or(snapshot_first)
                    .unify()
                    .or(snapshot)
                    .unify()
                    .or(api)
                    .unify()
                    .or(healthz)
                    .unify()
                    .or(readyz)
                    .unify()
                    .or(metrics)
                    .unify(),
            )
            .or(preflight)
            .unify()
            .recover(handle_rejection)
            .unify();
        warp::header::optional::<String>("origin")
            .and(routes)
            .map(move |origin: Option<String>, mut r: Response| {
                let h = r.headers_mut();
                h.insert("x-gateway-instance", instance.clone());
                if let Some(origin) = origin.filter(|o| app_o.origin_allowed(Some(o)))
                    && let Ok(v) = HeaderValue::from_str(&origin)
                {
                    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
                    h.insert(header::VARY, HeaderValue::from_static("Origin"));
                    if app_o.auth.enabled() {
                        h.insert(
                            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                            HeaderValue::from_static("true"),
                        );
                    }
                }
                r
            })
            .recover(handle_rejection)
            .unify()
    }

    /// Hands a stream request to the fast path (`direct.rs`) when it would
    /// succeed; otherwise gives the socket back so warp answers it.
    pub fn try_direct(
        &self,
        head: &direct::Head,
        socket: tokio::net::TcpStream,
    ) -> Option<tokio::net::TcpStream> {
        let q = parse_query(&head.query);
        let stream = match head.path.as_str() {
            "/video_feed" => self.streams.first(),
            "/" if q.get("action").map(String::as_str) == Some("stream") => self.streams.first(),
            p => p
                .strip_prefix("/stream/")
                .filter(|n| !n.contains('/'))
                .and_then(|n| self.streams.get(n)),
        };
        let token = q.get("token").map(String::as_str);
        let (Some(stream), Ok(fps_cap)) = (stream, parse_fps(&q)) else {
            return Some(socket);
        };
        if !self.auth.allows(head.authorization.as_deref(), token) || self.at_capacity() {
            return Some(socket);
        }
        let cors = head
            .origin
            .as_deref()
            .filter(|o| self.origin_allowed(Some(o)));
        let head = direct::response_head(&self.instance_id, cors, self.auth.enabled());
        let viewer = DirectViewer {
            socket,
            head,
            fps_cap,
        };
        self.fanout
            .add(stream, viewer, self.metrics.clone(), self.stop.clone());
        None
    }

    fn at_capacity(&self) -> bool {
        self.metrics.viewers_total.get() as usize >= self.max_clients
    }

    /// Routes anyone may call: health checks, and metrics if made public.
    fn is_open(&self, path: &str) -> bool {
        matches!(path, "/healthz" | "/readyz") || (path == "/metrics" && self.public_metrics)
    }

    fn auth_failed(&self, path: &str) {
        self.metrics.auth_failures.inc();
        let mut log = self.auth_log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(folded) = log.check(std::time::Instant::now()) {
            tracing::warn!(
                path,
                repeats = folded,
                "request refused: missing or wrong credentials"
            );
        }
    }

    fn origin_allowed(&self, origin: Option<&str>) -> bool {
        origin.is_some_and(|o| self.allow_origins.iter().any(|a| a == "*" || a == o))
    }

    fn stream(&self, stream: Option<Arc<Stream>>, name: Option<&str>, q: &Query) -> Response {
        let Ok(fps) = parse_fps(q) else {
            return text(
                StatusCode::BAD_REQUEST,
                "fps must be a number between 0.1 and 240",
            );
        };
        let Some(stream) = stream else {
            return self.no_stream(name);
        };
        if self.at_capacity() {
            self.metrics.rejected_clients.inc();
            tracing::warn!(
                max_clients = self.max_clients,
                "viewer refused: too many clients"
            );
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many viewers; try again shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            return r;
        }
        let body = viewer::body(stream, self.metrics.clone(), self.stop.clone(), fps);
        let mut r = warp::reply::stream(body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        no_cache(&mut r);
        r
    }

    fn snapshot(&self, stream: Option<Arc<Stream>>, name: Option<&str>) -> Response {
        let Some(stream) = stream else {
            return self.no_stream(name);
        };
        let Some(part) = stream.latest() else {
            return self.no_stream(name);
        };
        let mut r = Response::new(part.jpeg.clone().into());
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        if let Ok(v) = HeaderValue::from_str(&timestamp_text(part.capture_ts_ns)) {
            h.insert("x-timestamp", v);
        }
        h.insert(
            "x-source-online",
            HeaderValue::from_static(if part.live { "true" } else { "false" }),
        );
        no_cache(&mut r);
        r
    }

    fn no_stream(&self, name: Option<&str>) -> Response {
        match name {
            Some(name) => text(
                StatusCode::NOT_FOUND,
                &format!("no stream named {name:?}; see /api/streams"),
            ),
            None => {
                let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "no stream has arrived yet");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        }
    }

    fn api_streams(&self) -> Response {
        #[derive(Serialize)]
        struct StreamInfo {
            name: String,
            width: u32,
            height: u32,
            fps_in: f64,
            viewers: i64,
            last_frame_age_ms: u64,
            online: bool,
            producer: String,
            stream_url: String,
            snapshot_url: String,
        }
        #[derive(Serialize)]
        struct Api {
            instance: String,
            streams: Vec<StreamInfo>,
        }
        let streams = self
            .streams
            .all()
            .iter()
            .map(|s| {
                let st = s.state();
                let age = st.last_live.elapsed();
                let online = age < self.stale_after;
                let fps = if online && st.interval_ewma > 0.0 {
                    1.0 / st.interval_ewma
                } else {
                    0.0
                };
                StreamInfo {
                    name: s.name.clone(),
                    width: st.width,
                    height: st.height,
                    fps_in: (fps * 10.0).round() / 10.0,
                    viewers: s.metrics.viewers.get(),
                    last_frame_age_ms: age.as_millis() as u64,
                    online,
                    producer: st.producer,
                    stream_url: format!("/stream/{}", s.name),
                    snapshot_url: format!("/snapshot/{}", s.name),
                }
            })
            .collect();
        let body = serde_json::to_string(&Api {
            instance: self.instance_id.clone(),
            streams,
        })
        .unwrap_or_default();
        let mut r = Response::new(body.into());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    fn readyz(&self) -> Response {
        let ready = self
            .streams
            .all()
            .iter()
            .any(|s| s.state().last_live.elapsed() < self.stale_after);
        if ready {
            text(StatusCode::OK, "ready")
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "no live stream")
        }
    }
}

type Query = HashMap<String, String>;

/// `?fps=N` for one client's rate cap: absent, or a number in 0.1..=240.
fn parse_fps(q: &Query) -> Result<Option<f64>, ()> {
    match q.get("fps").map(|v| v.parse::<f64>()) {
        None => Ok(None),
        Some(Ok(f)) if (0.1..=240.0).contains(&f) => Ok(Some(f)),
        Some(_) => Err(()),
    }
}

fn parse_query(q: &str) -> Query {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn text(status: StatusCode, msg: &str) -> Response {
    let mut r = Response::new(Bytes::from(format!("{msg}\n")).into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn html(page: &'static str) -> Response {
    let mut r = Response::new(page.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Headers that keep browsers and proxies from caching or buffering video.
fn no_cache(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::EXPIRES,
        HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

async fn handle_rejection(err: Rejection) -> Result<Response, std::convert::Infallible> {
    let r = if err.find::<Unauthorized>().is_some() {
        let mut r = text(StatusCode::UNAUTHORIZED, "authentication required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"stream-gateway\", charset=\"UTF-8\""),
        );
        r
    } else if err.is_not_found() {
        text(StatusCode::NOT_FOUND, "not found")
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed; use GET or HEAD",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    } else {
        tracing::debug!(rejection = ?err, "request rejected");
        text(StatusCode::BAD_REQUEST, "bad request")
    };
    Ok(r)
}
