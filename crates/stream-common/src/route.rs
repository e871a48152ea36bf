//! Every URL the gateway answers, parsed once into a [`Route`]: the gateway
//! decides and answers from it, and the stream-director asks it which
//! requests open an endless response (those it redirects, never relays),
//! so the two cannot disagree about what a stream is.
//!
//! | path | route |
//! |---|---|
//! | `/` | the viewer page; `?action=stream` / `?action=snapshot` as mjpg-streamer |
//! | `/video_feed` | the default stream, as the seed tutorial served it |
//! | `/stream/{name}` | a stream |
//! | `/snapshot`, `/snapshot/{name}` | the latest JPEG |
//! | `/events/{name}` | a stream's detections as Server-Sent Events |
//! | `/ws` | the page's WebSocket |
//! | `/api/streams`, `/api/streams/{name}/detections`, `/api/streams/{name}/events` | JSON |
//! | `/healthz`, `/readyz`, `/metrics` | health, readiness, Prometheus |
//!
//! A `{name}` is one non-empty path segment.

use crate::query::Query;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Page,
    /// A stream; `None` is the default stream.
    Stream(Option<String>),
    /// The latest picture; `None` is the default stream's.
    Snapshot(Option<String>),
    Events(String),
    WebSocket,
    Streams,
    Detections(String),
    /// A stream's recent events (`/api/streams/{name}/events`).
    RecentEvents(String),
    /// A camera's zones and masks (`/api/streams/{name}/zones`).
    Zones(String),
    Healthz,
    Readyz,
    Metrics,
    /// `/?action=` with something else than `stream` or `snapshot`.
    UnknownAction(String),
    NotFound,
}

impl Route {
    pub fn parse(path: &str, q: &Query) -> Route {
        let name = |n: &str| (!n.is_empty() && !n.contains('/')).then(|| n.to_string());
        match path {
            "/" => match q.get("action").map(String::as_str) {
                None => Route::Page,
                Some("stream") => Route::Stream(None),
                Some("snapshot") => Route::Snapshot(None),
                Some(other) => Route::UnknownAction(other.to_string()),
            },
            "/video_feed" => Route::Stream(None),
            "/snapshot" => Route::Snapshot(None),
            "/ws" => Route::WebSocket,
            "/api/streams" => Route::Streams,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            p => {
                let named = |prefix: &str| p.strip_prefix(prefix).and_then(name);
                if let Some(n) = named("/stream/") {
                    Route::Stream(Some(n))
                } else if let Some(n) = named("/snapshot/") {
                    Route::Snapshot(Some(n))
                } else if let Some(n) = named("/events/") {
                    Route::Events(n)
                } else if let Some(n) = p
                    .strip_prefix("/api/streams/")
                    .and_then(|rest| rest.strip_suffix("/detections"))
                    .and_then(name)
                {
                    Route::Detections(n)
                } else if let Some(n) = p
                    .strip_prefix("/api/streams/")
                    .and_then(|rest| rest.strip_suffix("/events"))
                    .and_then(name)
                {
                    Route::RecentEvents(n)
                } else if let Some(n) = p
                    .strip_prefix("/api/streams/")
                    .and_then(|rest| rest.strip_suffix("/zones"))
                    .and_then(name)
                {
                    Route::Zones(n)
                } else {
                    Route::NotFound
                }
            }
        }
    }

    /// For a response that never ends and is about one stream (an MJPEG
    /// stream, a stream's events): that stream's name, `""` for the default
    /// one. The page's WebSocket carries many streams and is not one of these.
    pub fn endless_stream(&self) -> Option<&str> {
        match self {
            Route::Stream(name) => Some(name.as_deref().unwrap_or("")),
            Route::Events(name) => Some(name),
            _ => None,
        }
    }

    /// Routes anyone may call: health checks, and metrics if made public.
    pub fn is_open(&self, public_metrics: bool) -> bool {
        matches!(self, Route::Healthz | Route::Readyz)
            || (*self == Route::Metrics && public_metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_query;

    fn route(target: &str) -> Route {
        let (path, q) = target.split_once('?').unwrap_or((target, ""));
        Route::parse(path, &parse_query(q).expect("query"))
    }

    #[test]
    fn every_url_has_one_route() {
        let named = |s: &str| Some(s.to_string());
        assert_eq!(route("/"), Route::Page);
        assert_eq!(route("/?action=stream"), Route::Stream(None));
        assert_eq!(route("/?x=1&action=stream"), Route::Stream(None));
        assert_eq!(route("/?action=snapshot"), Route::Snapshot(None));
        assert_eq!(route("/?action=x"), Route::UnknownAction("x".into()));
        assert_eq!(route("/video_feed"), Route::Stream(None));
        assert_eq!(route("/stream/cam0"), Route::Stream(named("cam0")));
        assert_eq!(route("/snapshot"), Route::Snapshot(None));
        assert_eq!(route("/snapshot/cam0"), Route::Snapshot(named("cam0")));
        assert_eq!(route("/events/cam0"), Route::Events("cam0".into()));
        assert_eq!(route("/ws"), Route::WebSocket);
        assert_eq!(route("/api/streams"), Route::Streams);
        assert_eq!(
            route("/api/streams/cam0/detections"),
            Route::Detections("cam0".into())
        );
        assert_eq!(
            route("/api/streams/cam0/zones"),
            Route::Zones("cam0".into())
        );
        assert_eq!(route("/api/streams//zones"), Route::NotFound);
        assert_eq!(
            route("/api/streams/cam0/events"),
            Route::RecentEvents("cam0".into())
        );
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert!(route(path) != Route::NotFound, "{path}");
        }
        for nothing in [
            "/stream",
            "/stream/",
            "/stream/a/b",
            "/snapshot/",
            "/events/",
            "/events/a/b",
            "/api/streams//detections",
            "/api/streams/a/b/detections",
            "/api/streams//events",
            "/api/streams/a/b/events",
            "/video_feed/x",
            "/nope",
        ] {
            assert_eq!(route(nothing), Route::NotFound, "{nothing}");
        }
    }

    #[test]
    fn endless_streams_are_named() {
        assert_eq!(route("/stream/cam0").endless_stream(), Some("cam0"));
        assert_eq!(route("/video_feed").endless_stream(), Some(""));
        assert_eq!(route("/?action=stream").endless_stream(), Some(""));
        assert_eq!(route("/events/cam0").endless_stream(), Some("cam0"));
        for finite in [
            "/",
            "/?action=snapshot",
            "/snapshot/cam0",
            "/api/streams",
            "/api/streams/cam0/events",
            "/ws",
        ] {
            assert_eq!(route(finite).endless_stream(), None, "{finite}");
        }
        assert!(route("/healthz").is_open(false));
        assert!(!route("/metrics").is_open(false));
        assert!(route("/metrics").is_open(true));
        assert!(!route("/").is_open(true));
    }
}
