//! Response heads, written one way for every answer: the stream head that
//! starts a viewer's endless multipart body, and the finite replies (page,
//! snapshots, JSON, errors) that warp builds. Bodies of the latter are small
//! and whole, so they go out with `Content-Length` in one write; the stream
//! head is prepared once per viewer and handed to the fan-out writer.
//!
//! Headers every answer carries (instance name, CORS) are added here too, so
//! no route can forget them.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use stream_common::access::Cors;

use crate::part::{CONTENT_TYPE, PREAMBLE};

/// Headers that keep browsers and proxies from caching or buffering video.
pub fn no_cache(h: &mut HeaderMap) {
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

/// What every answer of this gateway adds to its headers.
pub struct Common<'a> {
    pub instance: &'a HeaderValue,
    pub cors: &'a Cors,
    /// `Strict-Transport-Security` (`--hsts`), on HTTPS answers only.
    pub hsts: Option<&'a HeaderValue>,
}

impl Common<'_> {
    fn apply(&self, status: StatusCode, h: &mut HeaderMap) {
        // A refusal tells an anonymous caller nothing about this host.
        if status != StatusCode::UNAUTHORIZED {
            h.insert("x-gateway-instance", self.instance.clone());
        }
        self.cors.apply(h);
        if let Some(hsts) = self.hsts {
            h.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}

/// The head of a stream response: status, the stream headers, and (for GET)
/// the multipart preamble, so the first part can follow at once. A stream
/// never ends, so it is framed by closing the connection.
pub fn stream_head(common: &Common<'_>, with_preamble: bool) -> Bytes {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    no_cache(&mut h);
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let head = head(common, StatusCode::OK, h);
    if !with_preamble {
        return head;
    }
    let mut out = BytesMut::from(&head[..]);
    out.put_slice(PREAMBLE);
    out.freeze()
}

/// The content type of Server-Sent Events.
pub const EVENT_STREAM: &str = "text/event-stream";

/// The head of `/events/{name}` (detections as Server-Sent Events), with a
/// first line asking browsers to reconnect after a second, not three.
/// Like a stream, it never ends and is framed by closing the connection.
pub fn events_head(common: &Common<'_>) -> Bytes {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let head = head(common, StatusCode::OK, h);
    let mut out = BytesMut::from(&head[..]);
    out.put_slice(b"retry: 1000\n\n");
    out.freeze()
}

/// A response head with no body of its own (a stream's, a WebSocket's).
pub fn head(common: &Common<'_>, status: StatusCode, mut h: HeaderMap) -> Bytes {
    common.apply(status, &mut h);
    let mut out = BytesMut::with_capacity(512);
    write_head(&mut out, status, &h);
    out.freeze()
}

/// A finite reply, serialized whole: head with `Content-Length`, then the
/// body unless the request was HEAD.
pub fn finite(
    common: &Common<'_>,
    response: Response<Bytes>,
    head_only: bool,
    keep_alive: bool,
) -> Bytes {
    let (mut parts, body) = response.into_parts();
    let h = &mut parts.headers;
    common.apply(parts.status, h);
    if parts.status != StatusCode::NO_CONTENT && parts.status != StatusCode::NOT_MODIFIED {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    if !keep_alive {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let mut out = BytesMut::with_capacity(256 + body.len());
    write_head(&mut out, parts.status, h);
    if !head_only {
        out.put_slice(&body);
    }
    out.freeze()
}

/// The answer when a stream (named, or the default) is not there.
pub fn no_stream(name: Option<&str>) -> Response<Bytes> {
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

/// The answer when `--max-clients` viewers are already served.
pub fn at_capacity() -> Response<Bytes> {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many viewers; try again shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

/// A plain-text reply.
pub fn text(status: StatusCode, msg: &str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(format!("{msg}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn write_head(out: &mut BytesMut, status: StatusCode, h: &HeaderMap) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in h {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_head_has_the_stream_headers_and_preamble() {
        let instance = HeaderValue::from_static("gw1");
        let cors = Cors::None;
        let common = Common {
            instance: &instance,
            cors: &cors,
            hsts: None,
        };
        let head = stream_head(&common, true);
        let text = String::from_utf8_lossy(&head);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-type: multipart/x-mixed-replace; boundary=frame\r\n"));
        assert!(text.contains("cache-control: no-store"));
        assert!(text.contains("x-gateway-instance: gw1\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(head.ends_with(PREAMBLE));
        assert!(!stream_head(&common, false).ends_with(PREAMBLE));
    }

    #[test]
    fn finite_replies_carry_length_and_drop_the_body_for_head() {
        let instance = HeaderValue::from_static("gw1");
        let cors = Cors::Any;
        let common = Common {
            instance: &instance,
            cors: &cors,
            hsts: None,
        };
        let get = finite(&common, text(StatusCode::OK, "hi"), false, true);
        let s = String::from_utf8_lossy(&get);
        assert!(s.contains("content-length: 3\r\n"), "{s}");
        assert!(s.contains("access-control-allow-origin: *\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\nhi\n"));
        let head = finite(&common, text(StatusCode::OK, "hi"), true, false);
        let s = String::from_utf8_lossy(&head);
        assert!(s.contains("content-length: 3\r\n") && s.ends_with("connection: close\r\n\r\n"));
        let refused = finite(&common, text(StatusCode::UNAUTHORIZED, "no"), false, true);
        assert!(!String::from_utf8_lossy(&refused).contains("x-gateway-instance"));
        assert!(!s.contains("strict-transport-security"));
        let hsts = HeaderValue::from_static("max-age=60");
        let secure = Common {
            hsts: Some(&hsts),
            ..common
        };
        let s = String::from_utf8_lossy(&finite(&secure, text(StatusCode::OK, "hi"), false, true))
            .into_owned();
        assert!(
            s.contains("strict-transport-security: max-age=60\r\n"),
            "{s}"
        );
    }
}
