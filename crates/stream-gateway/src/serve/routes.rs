//! The finite routes' replies: the page, snapshots, the JSON API (streams,
//! a stream's detections and recent events), health,
//! readiness and metrics, answered from the latest-frame slots. Only a
//! snapshot of a stream nobody watches waits, and only briefly
//! (`--snapshot-wait`, asynchronously): for its next full-size frame
//! rather than answer with the small preview (`X-Snapshot: preview` says
//! when it had to). The request was parsed into its
//! [`Route`] once, by admission, which has also checked credentials;
//! the connection hands it to warp's service with the request, and the one
//! filter here answers from the route alone, never from the URL again.
//! Streams, `/events/{name}` and the WebSocket never come here: the fan-out
//! serves them.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use stream_common::query::parse_query;
use stream_common::route::Route;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::config::Config;
use crate::metrics::GatewayMetrics;
use crate::part::timestamp_text;
use crate::rendition::Width;
use crate::serve::response::{no_cache, no_stream, text};
use crate::streams::{Stream, Streams};
use crate::zones::Zones;

const PAGE: &str = include_str!("page.html");

/// The request's query string, which the connection hands over with its
/// [`Route`] (a snapshot's `?width=`).
#[derive(Clone, Debug)]
pub struct RawQuery(pub String);

/// Everything the routes need, cheap to clone into each filter.
#[derive(Clone)]
pub struct App {
    pub streams: Arc<Streams>,
    pub metrics: Arc<GatewayMetrics>,
    instance_id: String,
    /// The page's Content-Security-Policy, made once at start.
    csp: Option<HeaderValue>,
    stale_after: Duration,
    detections_stale_after: Duration,
    snapshot_wait: Duration,
    zones: Arc<Zones>,
}

impl App {
    pub fn new(
        config: &Config,
        streams: Arc<Streams>,
        metrics: Arc<GatewayMetrics>,
        zones: Arc<Zones>,
    ) -> Self {
        App {
            streams,
            metrics,
            instance_id: config.instance_id.clone(),
            csp: HeaderValue::from_str(&csp_for(PAGE, &config.frame_ancestors.join(" "))).ok(),
            stale_after: config.stale_after,
            detections_stale_after: config.detections_stale_after,
            snapshot_wait: config.snapshot_wait,
            zones,
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
        warp::ext::get::<Route>()
            .and(warp::ext::get::<RawQuery>())
            .then(move |route: Route, query: RawQuery| {
                let app = app.clone();
                async move { app.answer(route, &query.0).await }
            })
            .recover(handle_rejection)
            .unify()
    }

    /// The reply to a finite route (`query`: the request's, for snapshots).
    async fn answer(&self, route: Route, query: &str) -> Response {
        match route {
            Route::Page => html(PAGE, self.csp.as_ref()),
            Route::Snapshot(None) => {
                self.snapshot(self.streams.default_stream(), None, query)
                    .await
            }
            Route::Snapshot(Some(name)) => {
                self.snapshot(self.streams.get(&name), Some(&name), query)
                    .await
            }
            Route::Streams => self.api_streams(),
            Route::Detections(name) => self.detections(&name),
            Route::RecentEvents(name) => self.recent_events(&name),
            Route::Zones(name) => self.zones(&name),
            Route::Healthz => text(StatusCode::OK, "ok").map(Into::into),
            Route::Readyz => self.readyz(),
            Route::Metrics => {
                let mut r = Response::new(self.metrics.render().into());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(stream_common::metrics::CONTENT_TYPE),
                );
                r
            }
            Route::UnknownAction(other) => text(
                StatusCode::BAD_REQUEST,
                &format!("unknown action {other:?}; use stream or snapshot"),
            )
            .map(Into::into),
            Route::NotFound | Route::Stream(_) | Route::Events(_) | Route::WebSocket => {
                text(StatusCode::NOT_FOUND, "not found").map(Into::into)
            }
        }
    }

    /// The current picture, full size (or of the rendition `?width=`
    /// asks for): at once while its frames arrive, else the next one, for
    /// at most `--snapshot-wait`; then the preview, saying so.
    async fn snapshot(
        &self,
        stream: Option<Arc<Stream>>,
        name: Option<&str>,
        query: &str,
    ) -> Response {
        let width = match parse_query(query).and_then(|q| Width::from_query(&q)) {
            Ok(Width::Auto { max: Some(w) }) => Width::AtLeast(w),
            Ok(Width::Auto { max: None }) => Width::Full,
            Ok(w) => w,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e).map(Into::into),
        };
        let Some(stream) = stream else {
            return no_stream(name).map(Into::into);
        };
        let choice = stream.choose(width);
        let (part, fresh) = if stream.state().is_fresh(self.stale_after) {
            stream.fresh_at(choice, self.snapshot_wait).await
        } else {
            // Offline: its placeholder, at once.
            (stream.latest_at(choice), false)
        };
        let Some(part) = part else {
            return no_stream(name).map(Into::into);
        };
        let mut r = Response::new(part.jpeg.clone().into());
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        if part.live {
            h.insert(
                "x-snapshot",
                HeaderValue::from_static(if fresh { "frame" } else { "preview" }),
            );
        }
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
            /// Smaller copies, ascending (`?width=`); not the full picture.
            renditions: Vec<Size>,
        }
        #[derive(Serialize)]
        struct Size {
            width: u32,
            height: u32,
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
                    renditions: s
                        .renditions()
                        .into_iter()
                        .map(|(width, height)| Size { width, height })
                        .collect(),
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
        json(stream.detections.json(self.detections_stale_after))
    }

    /// A stream's recent events, newest first, prepared when they arrived;
    /// an empty list when there are none.
    /// A camera's zones and masks: for a stream this gateway has or the
    /// cameras file lists, else 404 like the other per-stream routes.
    fn zones(&self, name: &str) -> Response {
        if self.streams.get(name).is_none() && !self.zones.lists(name) {
            return no_stream(Some(name)).map(Into::into);
        }
        let mut r = Response::new(self.zones.of(name).into());
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        no_cache(h);
        r
    }

    fn recent_events(&self, name: &str) -> Response {
        let Some(stream) = self.streams.get(name) else {
            return no_stream(Some(name)).map(Into::into);
        };
        json(stream.events.json())
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

/// A JSON body, never cached.
fn json(body: bytes::Bytes) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(page: &'static str, csp: Option<&HeaderValue>) -> Response {
    let mut r = Response::new(page.into());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(csp) = csp {
        r.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp.clone());
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
/// hosts too; scripts, styles and frames stay this page's own. Who may
/// frame the page is `--frame-ancestors` (`'self'` by default).
fn csp_for(page: &str, frame_ancestors: &str) -> String {
    let scripts = inline_hashes(page, "script");
    let styles = inline_hashes(page, "style");
    format!(
        "default-src 'self'; script-src 'self'{scripts}; style-src 'self'{styles}; \
         img-src 'self' http: https: blob: data:; connect-src 'self' http: https: ws: wss:; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
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

/// Only reached when a request came without its route: a bug, not a client's fault.
async fn handle_rejection(err: Rejection) -> Result<Response, std::convert::Infallible> {
    tracing::warn!(rejection = ?err, "a finite request came without its route");
    Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "internal error").map(Into::into))
}
