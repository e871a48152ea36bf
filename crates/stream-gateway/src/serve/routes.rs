//! URL → reply. Streams and snapshots are served from the latest-frame
//! slots; nothing here waits for a producer.
//!
//! | route | reply |
//! |---|---|
//! | `/` | viewer page (`?action=stream` / `?action=snapshot`: mjpg-streamer compatible) |
//! | `/video_feed` | the default stream (`--default-stream`, else the first), as the seed tutorial served it |
//! | `/stream/{name}` | a stream (`?fps=N` caps this client's rate) |
//! | `/snapshot`, `/snapshot/{name}` | the cached latest JPEG, at once |
//! | `/api/streams` | JSON state of every stream, in stream order |
//! | `/api/streams/{name}/detections` | the stream's latest detections, JSON (`detections.rs`) |
//! | `/healthz`, `/readyz`, `/metrics` | process health, readiness, Prometheus |
//!
//! Stream routes ([`stream_target`]) and `/events/{name}` (detections as
//! Server-Sent Events) are matched by admission and answered by the
//! fan-out writer, never by warp; warp's table below has the rest. Both
//! run after admission (`admission.rs`), which has already checked
//! credentials, so the handlers here are plain.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::config::Config;
use crate::metrics::GatewayMetrics;
use crate::part::timestamp_text;
use crate::serve::admission::{Query, parse_query};
use crate::serve::response::{no_cache, text};
use crate::streams::{Stream, Streams};

const PAGE: &str = include_str!("page.html");

/// Which stream a stream request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamTarget<'a> {
    /// `/video_feed`, `/?action=stream`: the default stream.
    Default,
    /// `/stream/{name}`.
    Named(&'a str),
}

/// The stream routes: `Some` when `path` (with its query) is a stream request.
pub fn stream_target<'a>(path: &'a str, q: &Query) -> Option<StreamTarget<'a>> {
    match path {
        "/video_feed" => Some(StreamTarget::Default),
        "/" if q.get("action").map(String::as_str) == Some("stream") => Some(StreamTarget::Default),
        p => p
            .strip_prefix("/stream/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .map(StreamTarget::Named),
    }
}

/// The answer when a stream (named, or the default) is not there.
pub fn no_stream(name: Option<&str>) -> http::Response<Bytes> {
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

/// Everything the routes need, cheap to clone into each filter.
#[derive(Clone)]
pub struct App {
    pub streams: Arc<Streams>,
    pub metrics: Arc<GatewayMetrics>,
    instance_id: String,
    stale_after: Duration,
    detections_stale_after: Duration,
}

impl App {
    pub fn new(config: &Config, streams: Arc<Streams>, metrics: Arc<GatewayMetrics>) -> Self {
        App {
            streams,
            metrics,
            instance_id: config.instance_id.clone(),
            stale_after: config.stale_after,
            detections_stale_after: config.detections_stale_after,
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
            .map(|q: String| parse_query(&q).unwrap_or_default());
        let method = warp::get().or(warp::head()).unify();

        let root = warp::path::end()
            .and(with_app.clone())
            .and(query)
            .map(
                |app: App, q: Query| match q.get("action").map(String::as_str) {
                    None => html(PAGE),
                    Some("snapshot") => app.snapshot(app.streams.default_stream(), None),
                    Some(other) => text(
                        StatusCode::BAD_REQUEST,
                        &format!("unknown action {other:?}; use stream or snapshot"),
                    )
                    .map(Into::into),
                },
            );
        let snapshot_first = warp::path!("snapshot")
            .and(with_app.clone())
            .map(|app: App| app.snapshot(app.streams.default_stream(), None));
        let snapshot = warp::path!("snapshot" / String)
            .and(with_app.clone())
            .map(|name: String, app: App| app.snapshot(app.streams.get(&name), Some(&name)));
        let api = warp::path!("api" / "streams")
            .and(with_app.clone())
            .map(|app: App| app.api_streams());
        let detections = warp::path!("api" / "streams" / String / "detections")
            .and(with_app.clone())
            .map(|name: String, app: App| app.detections(&name));
        let healthz = warp::path!("healthz").map(|| text(StatusCode::OK, "ok").map(Into::into));
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

        method
            .and(
                root.or(snapshot_first)
                    .unify()
                    .or(snapshot)
                    .unify()
                    .or(api)
                    .unify()
                    .or(detections)
                    .unify()
                    .or(healthz)
                    .unify()
                    .or(readyz)
                    .unify()
                    .or(metrics)
                    .unify(),
            )
            .recover(handle_rejection)
            .unify()
    }

    fn snapshot(&self, stream: Option<Arc<Stream>>, name: Option<&str>) -> Response {
        let Some(part) = stream.and_then(|s| s.latest()) else {
            return no_stream(name).map(Into::into);
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
        no_cache(h);
        r
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
            /// What `/video_feed` and `/snapshot` serve.
            default_stream: Option<String>,
            streams: Vec<StreamInfo>,
        }
        let streams = self
            .streams
            .all()
            .iter()
            .map(|s| {
                let st = s.state();
                let age = st.last_live.elapsed();
                let online = st.is_fresh(self.stale_after);
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
            default_stream: self.streams.default_name(),
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

    /// The latest detections of a stream, prepared when they arrived; an
    /// empty `boxes` when there are none (or only stale ones).
    fn detections(&self, name: &str) -> Response {
        let Some(stream) = self.streams.get(name) else {
            return no_stream(Some(name)).map(Into::into);
        };
        let mut r = Response::new(stream.detections.json(self.detections_stale_after).into());
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
            .any(|s| s.state().is_fresh(self.stale_after));
        if ready {
            text(StatusCode::OK, "ready").map(Into::into)
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "no live stream").map(Into::into)
        }
    }
}

fn html(page: &'static str) -> Response {
    let mut r = Response::new(page.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(csp) = HeaderValue::from_str(&PAGE_CSP) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    r.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The page's Content-Security-Policy: only this origin, and inline
/// `<script>`/`<style>` blocks only by the sha256 of their text as shipped,
/// computed here from the page itself so the policy follows every edit.
/// Pictures and sockets may also come from other hosts: behind a
/// stream-director the page's `/stream/` redirects and its WebSocket go to
/// the gateway the director picks, and the recorder's API and playback may
/// live on another origin (`?recorder=URL`), so `fetch` may reach other
/// hosts too; scripts, styles and frames stay this page's own.
static PAGE_CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| csp_for(PAGE));

fn csp_for(page: &str) -> String {
    let scripts = inline_hashes(page, "script");
    let styles = inline_hashes(page, "style");
    format!(
        "default-src 'self'; script-src 'self'{scripts}; style-src 'self'{styles}; \
         img-src 'self' http: https: blob: data:; connect-src 'self' http: https: ws: wss:; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
    )
}

/// ` 'sha256-…'` for the text of every inline `<tag>…</tag>` in `page`.
fn inline_hashes(page: &str, tag: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut out = String::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(gt) = after.find('>') else { break };
        let attrs = &after[..gt];
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        if !attrs.contains("src=") {
            let digest = sha2::Sha256::digest(&body.as_bytes()[..end]);
            let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
            out.push_str(&format!(" 'sha256-{b64}'"));
        }
        rest = &body[end + close.len()..];
    }
    out
}

async fn handle_rejection(err: Rejection) -> Result<Response, std::convert::Infallible> {
    let r = if err.is_not_found() {
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
    Ok(r.map(Into::into))
}
