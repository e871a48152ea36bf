//! The recorder's HTTP side: playback, the API, health and metrics, behind
//! the same credentials and CORS rules as the gateway (`access.rs`).
//!
//! | route | reply |
//! |---|---|
//! | `/api/recordings` | every recorded stream: `from_ms`, `to_ms`, `bytes`, `mode` |
//! | `/api/recordings/{name}?from=MS&to=MS` | recorded spans and detection events in the window (default: the last 24 h) |
//! | `/recordings/{name}/frame?at=MS` | the recorded JPEG nearest to `at` (`X-Timestamp`: its capture time) |
//! | `/recordings/{name}/stream?from=MS&speed=1` | MJPEG at the recorded pace × speed (0.25 … 16); `&type=mixed`: as `multipart/mixed` (for `fetch` in WebKit) |
//! | `/recordings/{name}/clip?from=MS&to=MS` | a Matroska download of at most an hour |
//! | `/api/events?stream=&from=MS&to=MS&label=&limit=N` | the event stage's events, newest first |
//! | `/api/events/{id}/snapshot.jpg` | an event's snapshot, as the stage sent it |
//! | `/api/events/{id}/clip` | the clip of an event, pre- and post-roll included |
//! | `/healthz`, `/metrics` | health, Prometheus |
//!
//! One warp filter takes every request and [`App::handle`] routes it by the
//! raw path: a name is the raw path segment checked by
//! [`store::safe_name`](crate::store::safe_name), so `%2e%2e`, `..`, NUL
//! and slashes are refused before anything is looked up, and a name is only
//! ever looked up in the catalog, never joined into a path. Event ids are
//! checked the same way ([`history::safe_id`](crate::history::safe_id)).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::reply::{Reply, Response};

use stream_common::access::Cors;
use stream_common::query::{Query, parse_query};

use crate::access::Access;
use crate::history::safe_id;
use crate::metrics::RecorderMetrics;
use crate::playback::{self, Clip, MAX_CLIP_MS};
use crate::store::{EventQuery, Found, Store, safe_name};

/// Events `/api/events` lists unless `limit=` says otherwise, and the most it lists.
pub const EVENTS_LIMIT: usize = 50;
pub const EVENTS_MAX: usize = 1000;

/// Most playback streams and clip downloads at once.
pub const MAX_PLAYBACKS: usize = 64;

#[derive(Clone)]
pub struct App {
    pub store: Arc<Store>,
    pub access: Arc<Access>,
    pub metrics: RecorderMetrics,
    pub playbacks: Arc<Semaphore>,
    pub shutdown: CancellationToken,
}

/// A response body fed by a task through a small channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl futures_util::Stream for ChannelBody {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

fn text(status: StatusCode, msg: &str) -> Response {
    let mut r = Response::new(format!("{msg}\n").into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    let mut r = warp::reply::json(v).into_response();
    no_cache(&mut r);
    r
}

fn no_cache(r: &mut Response) {
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
}

/// A time in ms since the Unix epoch, from the query.
/// Why a request is refused: its status and a one-line reason.
type Refusal = (StatusCode, String);

fn refuse((status, why): Refusal) -> Response {
    text(status, &why)
}

fn time_param(q: &Query, key: &str) -> Result<Option<u64>, Refusal> {
    match q.get(key) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|&ms| ms < 1 << 52)
            .map(Some)
            .ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("{key}={v:?} is not a time (milliseconds since 1970)"),
                )
            }),
    }
}

fn required(q: &Query, key: &str) -> Result<u64, Refusal> {
    time_param(q, key)?.ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            format!("{key}= is required (milliseconds since 1970)"),
        )
    })
}

fn unix_now_ms() -> u64 {
    stream_common::unix_now_ns() / 1_000_000
}

impl App {
    /// The warp filter that hands every request to [`App::handle`].
    pub fn routes(self) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
        warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::headers_cloned())
            .then(
                move |method: Method,
                      path: warp::path::FullPath,
                      query: String,
                      headers: HeaderMap| {
                    let app = self.clone();
                    async move { app.handle(method, path.as_str(), &query, &headers).await }
                },
            )
    }

    pub async fn handle(
        &self,
        method: Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Response {
        for name in [header::AUTHORIZATION, header::ORIGIN] {
            if headers.get_all(&name).iter().count() > 1 {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("two {name} headers: there is no way to pick which one counts"),
                );
            }
        }
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let cors = self.access.cors(origin);
        let mut r = self.route(method, path, query, headers).await;
        apply_cors(&mut r, &cors);
        r
    }

    async fn route(
        &self,
        method: Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Response {
        if method == Method::OPTIONS {
            let mut r = Response::new(Bytes::new().into());
            *r.status_mut() = StatusCode::NO_CONTENT;
            stream_common::access::preflight_headers(r.headers_mut());
            return r;
        }
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET");
        }
        if path == "/healthz" {
            return text(StatusCode::OK, "ok");
        }
        let q = match parse_query(query) {
            Ok(q) => q,
            Err(why) => return text(StatusCode::BAD_REQUEST, &why),
        };
        let is_metrics = path == "/metrics";
        if !(is_metrics && self.access.public_metrics) {
            let authorization = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if !self
                .access
                .auth()
                .allows(authorization, q.get("token").map(String::as_str))
            {
                self.access.refused(path);
                self.metrics.auth_failed();
                let mut r = text(StatusCode::UNAUTHORIZED, "credentials required");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    self.access.auth().challenge("recordings"),
                );
                return r;
            }
        }
        if is_metrics {
            let mut r = Response::new(self.metrics.render().into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(stream_common::metrics::CONTENT_TYPE),
            );
            return r;
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["api", "recordings"] | ["api", "recordings", ""] => {
                json(&serde_json::json!({ "streams": self.store.list() }))
            }
            ["api", "recordings", name] => self.with_name(name, |n| self.spans(n, &q)),
            ["api", "events"] | ["api", "events", ""] => self.events(&q),
            ["api", "events", id, "snapshot.jpg"] => match self.event(id) {
                Ok(found) => self.snapshot(found).await,
                Err(r) => refuse(r),
            },
            ["api", "events", id, "clip"] => match self.event(id) {
                Ok(found) => self.event_clip(found).await,
                Err(r) => refuse(r),
            },
            ["recordings", name, what] => match *what {
                "frame" => match self.named(name) {
                    Ok(n) => self.frame(n, &q).await,
                    Err(r) => refuse(r),
                },
                "stream" => match self.named(name) {
                    Ok(n) => self.stream(n, &q),
                    Err(r) => refuse(r),
                },
                "clip" => match self.named(name) {
                    Ok(n) => self.clip(n, &q).await,
                    Err(r) => refuse(r),
                },
                _ => text(StatusCode::NOT_FOUND, "no such route; see /api/recordings"),
            },
            _ => text(StatusCode::NOT_FOUND, "no such route; see /api/recordings"),
        }
    }

    /// The stream a path names, checked: 400 for a name that cannot be one,
    /// 404 for one never recorded.
    fn named<'a>(&self, raw: &'a str) -> Result<&'a str, Refusal> {
        if !safe_name(raw) {
            return Err((
                StatusCode::BAD_REQUEST,
                "not a stream name (1 to 64 of A-Z a-z 0-9 _ - ., not starting with a dot)".into(),
            ));
        }
        if !self.store.has(raw) {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no recordings of {raw:?}; see /api/recordings"),
            ));
        }
        Ok(raw)
    }

    fn with_name(&self, raw: &str, f: impl FnOnce(&str) -> Response) -> Response {
        match self.named(raw) {
            Ok(n) => f(n),
            Err(r) => refuse(r),
        }
    }

    fn spans(&self, name: &str, q: &Query) -> Response {
        let now = unix_now_ms();
        let (to, from) = match (time_param(q, "to"), time_param(q, "from")) {
            (Ok(to), Ok(from)) => {
                let to = to.unwrap_or(now);
                (to, from.unwrap_or(to.saturating_sub(86_400_000)))
            }
            (Err(r), _) | (_, Err(r)) => return refuse(r),
        };
        if from > to {
            return text(StatusCode::BAD_REQUEST, "from is after to");
        }
        let Some((spans, events)) = self.store.spans(name, from, to) else {
            return text(StatusCode::NOT_FOUND, &format!("no recordings of {name:?}"));
        };
        let spans: Vec<_> = spans
            .into_iter()
            .map(|(a, b)| serde_json::json!({"from_ms": a, "to_ms": b}))
            .collect();
        // Detections (`at_ms`, `labels`) and the stage's events in one list,
        // in time order: the page marks every `at_ms`; events add their id,
        // end and links.
        let mut events: Vec<serde_json::Value> = events
            .into_iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        let kept = self.store.find_events(&EventQuery {
            stream: Some(name),
            from_ns: from.saturating_mul(1_000_000),
            to_ns: to.saturating_mul(1_000_000),
            label: None,
            limit: EVENTS_MAX,
        });
        events.extend(kept.iter().map(|f| {
            let e = &f.kept.event;
            serde_json::json!({
                "at_ms": e.start_ts_ns / 1_000_000,
                "labels": [&e.label],
                "id": &e.id,
                "end_ms": e.end_ts_ns / 1_000_000,
                "snapshot_url": snapshot_url(&e.id),
                "clip_url": clip_url(&e.id),
                "recorded": f.recorded,
            })
        }));
        events.sort_by_key(|e| e["at_ms"].as_u64().unwrap_or(0));
        json(&serde_json::json!({
            "name": name, "from_ms": from, "to_ms": to, "spans": spans, "events": events
        }))
    }

    /// `GET /api/events`: the query checked (400 with the reason), then the
    /// events newest first, each its JSON shape plus links and `recorded`.
    fn events(&self, q: &Query) -> Response {
        let stream = match q.get("stream").map(String::as_str) {
            None | Some("") => None,
            Some(s) if safe_name(s) => Some(s),
            Some(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "stream= is not a stream name (1 to 64 of A-Z a-z 0-9 _ - ., not starting with a dot)",
                );
            }
        };
        let label = match q.get("label").map(String::as_str) {
            None | Some("") => None,
            Some(l)
                if l.len() <= frame_wire::event::MAX_NAME
                    && l.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
            {
                Some(l)
            }
            Some(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "label= is not 1 to 64 printable ASCII characters",
                );
            }
        };
        let (from, to) = match (time_param(q, "from"), time_param(q, "to")) {
            (Ok(a), Ok(b)) => (a.unwrap_or(0), b.unwrap_or(1 << 52)),
            (Err(r), _) | (_, Err(r)) => return refuse(r),
        };
        if from > to {
            return text(StatusCode::BAD_REQUEST, "from is after to");
        }
        let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
            None => EVENTS_LIMIT,
            Some(Ok(n)) if (1..=EVENTS_MAX).contains(&n) => n,
            Some(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("limit= must be a number from 1 to {EVENTS_MAX}"),
                );
            }
        };
        let found = self.store.find_events(&EventQuery {
            stream,
            from_ns: from.saturating_mul(1_000_000),
            to_ns: to.saturating_mul(1_000_000),
            label,
            limit,
        });
        let events: Vec<serde_json::Value> = found.iter().map(event_json).collect();
        json(&serde_json::json!({ "events": events }))
    }

    /// The event a path names: 400 for an id that cannot be one, 404 for one not kept.
    fn event(&self, raw: &str) -> Result<Found, Refusal> {
        if !safe_id(raw) {
            return Err((
                StatusCode::BAD_REQUEST,
                "not an event id (1 to 128 of A-Z a-z 0-9 _ - ., not starting with a dot)".into(),
            ));
        }
        self.store.find_event(raw).ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("no event {raw:?}; see /api/events"),
            )
        })
    }

    async fn snapshot(&self, found: Found) -> Response {
        let Some(path) = found.snapshot else {
            return text(StatusCode::NOT_FOUND, "this event has no snapshot");
        };
        match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
            Ok(Ok(jpeg)) => {
                let mut r = Response::new(jpeg.into());
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
                no_cache(&mut r);
                r
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                text(StatusCode::NOT_FOUND, "this event has no snapshot")
            }
            _ => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the snapshot",
            ),
        }
    }

    /// The clip of an event: from its start − pre-roll to its end +
    /// post-roll (at most an hour from its start − pre-roll).
    async fn event_clip(&self, found: Found) -> Response {
        let e = &found.kept.event;
        let (a, b) = self.store.event_settings().window(e);
        let (from, to) = (a / 1_000_000, (b / 1_000_000).max(a / 1_000_000 + 1));
        let to = to.min(from + MAX_CLIP_MS);
        self.send_clip(&e.stream, from, to, &format!("{}.mkv", e.id))
            .await
    }

    async fn frame(&self, name: &str, q: &Query) -> Response {
        let at = match required(q, "at") {
            Ok(v) => v,
            Err(r) => return refuse(r),
        };
        match playback::frame_at(
            self.store.clone(),
            name.to_string(),
            at.saturating_mul(1_000_000),
        )
        .await
        {
            Ok(Some((ts, jpeg))) => {
                let mut r = Response::new(jpeg.into());
                let h = r.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
                if let Ok(v) = HeaderValue::from_str(&stream_common::multipart::timestamp_text(ts))
                {
                    h.insert("x-timestamp", v);
                }
                no_cache(&mut r);
                r
            }
            Ok(None) => text(StatusCode::NOT_FOUND, "nothing recorded at that time"),
            Err(e) => {
                tracing::warn!(stream = name, error = %e, "reading a recorded frame");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot read the recording",
                )
            }
        }
    }

    fn stream(&self, name: &str, q: &Query) -> Response {
        let from = match required(q, "from") {
            Ok(v) => v,
            Err(r) => return refuse(r),
        };
        let speed = match q.get("speed").map(|s| s.parse::<f64>()) {
            None => 1.0,
            Some(Ok(s)) if (0.25..=16.0).contains(&s) => s,
            Some(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "speed must be a number from 0.25 to 16",
                );
            }
        };
        // `type=mixed` sends the same parts as `multipart/mixed`: WebKit's
        // fetch() fails on a `multipart/x-mixed-replace` body ("Load
        // failed"), which it only lets an <img> read, so the page asks so.
        let content_type = match q.get("type").map(String::as_str) {
            None | Some("x-mixed-replace") => "multipart/x-mixed-replace; boundary=frame",
            Some("mixed") => "multipart/mixed; boundary=frame",
            Some(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "type must be x-mixed-replace or mixed",
                );
            }
        };
        let Ok(permit) = self.playbacks.clone().try_acquire_owned() else {
            return busy();
        };
        let (tx, rx) = mpsc::channel(2);
        let (store, name_owned, shutdown) =
            (self.store.clone(), name.to_string(), self.shutdown.clone());
        tokio::spawn(async move {
            playback::stream(
                store,
                name_owned,
                from.saturating_mul(1_000_000),
                speed,
                tx,
                shutdown,
            )
            .await;
            drop(permit);
        });
        let mut r = warp::reply::stream(ChannelBody(rx)).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        no_cache(&mut r);
        r
    }

    async fn clip(&self, name: &str, q: &Query) -> Response {
        let (from, to) = match (required(q, "from"), required(q, "to")) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(r), _) | (_, Err(r)) => return refuse(r),
        };
        if from >= to {
            return text(StatusCode::BAD_REQUEST, "from must be before to");
        }
        if to - from > MAX_CLIP_MS {
            return text(
                StatusCode::BAD_REQUEST,
                "a clip is at most one hour; ask for several",
            );
        }
        self.send_clip(name, from, to, &format!("{name}-{from}-{to}.mkv"))
            .await
    }

    /// A Matroska download of `[from, to)` (ms) of `name`, as `filename`.
    async fn send_clip(&self, name: &str, from: u64, to: u64, filename: &str) -> Response {
        let Ok(permit) = self.playbacks.clone().try_acquire_owned() else {
            return busy();
        };
        let clip = match Clip::find(
            self.store.clone(),
            name.to_string(),
            from.saturating_mul(1_000_000),
            to.saturating_mul(1_000_000),
        )
        .await
        {
            Ok(Some(c)) => c,
            Ok(None) => return text(StatusCode::NOT_FOUND, "nothing recorded in that range"),
            Err(e) => {
                tracing::warn!(stream = name, error = %e, "reading a recording for a clip");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot read the recording",
                );
            }
        };
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            clip.send(tx).await;
            drop(permit);
        });
        let mut r = warp::reply::stream(ChannelBody(rx)).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("video/x-matroska"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        no_cache(&mut r);
        r
    }
}

fn snapshot_url(id: &str) -> String {
    format!("/api/events/{id}/snapshot.jpg")
}

fn clip_url(id: &str) -> String {
    format!("/api/events/{id}/clip")
}

/// An event as `/api/events` lists it: `frame_wire`'s one JSON shape, plus
/// its phase, links and whether anything of its window is recorded.
fn event_json(f: &Found) -> serde_json::Value {
    let e = &f.kept.event;
    let mut v = serde_json::to_value(e.json()).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("phase".into(), f.kept.phase.name().into());
        o.insert("snapshot_url".into(), snapshot_url(&e.id).into());
        o.insert("clip_url".into(), clip_url(&e.id).into());
        o.insert("recorded".into(), f.recorded.into());
    }
    v
}

fn busy() -> Response {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many playbacks at once; try again",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

fn apply_cors(r: &mut Response, cors: &Cors) {
    if *cors == Cors::None {
        return;
    }
    let h = r.headers_mut();
    cors.apply(h);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-Timestamp, Content-Disposition"),
    );
}
