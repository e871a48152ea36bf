//! Just enough HTTP/1.x for the director: a request head read strictly with
//! limits, and its route, parsed by the gateway's own table
//! (`stream_common::route`), so both agree on what a stream is.

use stream_common::query::{Query, parse_query};
use stream_common::route::Route;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request head accepted (the gateway's own limit is 32 KiB).
pub const MAX_HEAD: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("connection closed before a whole request head")]
    Closed,
    #[error("malformed request line")]
    Malformed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A parsed request head; `raw` holds every byte read so far (head and any
/// body bytes after it), `head_len` where the head ends.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    /// Lower-cased names, values trimmed.
    pub headers: Vec<(String, String)>,
    pub raw: Vec<u8>,
    pub head_len: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }

    /// The host name the client used (from `Host`, without the port).
    pub fn host_name(&self) -> Option<&str> {
        let h = self.header("host")?;
        let name = if let Some(rest) = h.strip_prefix('[') {
            // [v6]:port → [v6]
            &h[..rest.find(']').map_or(h.len(), |i| i + 2)]
        } else {
            h.rsplit_once(':').map_or(h, |(n, _)| n)
        };
        (!name.is_empty()).then_some(name)
    }

    /// A GET of `target` with only a `Host` header, for tests.
    #[cfg(test)]
    pub(crate) fn get(target: &str, host: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            target: target.into(),
            version: "HTTP/1.1".into(),
            headers: host
                .map(|h| vec![("host".to_string(), h.to_string())])
                .unwrap_or_default(),
            raw: Vec::new(),
            head_len: 0,
        }
    }

    /// The query, decoded; `Err` for a bad escape or a key given twice.
    pub fn query(&self) -> Result<Query, String> {
        let query = self.target.split(['#']).next().unwrap_or("");
        parse_query(query.split_once('?').map_or("", |(_, q)| q))
    }

    /// What the request asks for, by the gateway's route table; a query
    /// the gateway would refuse makes it [`Route::NotFound`] here, so it is
    /// relayed and the gateway answers why.
    pub fn route(&self) -> Route {
        match self.query() {
            Ok(q) => Route::parse(self.path(), &q),
            Err(_) => Route::NotFound,
        }
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads one request head from `s`.
pub async fn read_request<S: AsyncRead + Unpin + ?Sized>(s: &mut S) -> Result<Request, HeadError> {
    let mut raw = Vec::with_capacity(1024);
    let end = loop {
        let searched = raw.len().min(MAX_HEAD + 4);
        if let Some(at) = raw[..searched].windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if raw.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        if s.read_buf(&mut raw).await? == 0 {
            return Err(HeadError::Closed);
        }
    };
    let text = std::str::from_utf8(&raw[..end]).map_err(|_| HeadError::Malformed)?;
    if !strict_head(text) {
        return Err(HeadError::Malformed);
    }
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(HeadError::Malformed);
    };
    if !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed);
    }
    let headers = lines
        .map(|l| {
            l.split_once(':')
                .filter(|(k, _)| is_token(k))
                .ok_or(HeadError::Malformed)
        })
        .map(|kv| kv.map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect::<Result<_, _>>()?;
    Ok(Request {
        method: method.into(),
        target: target.into(),
        version: version.into(),
        headers,
        head_len: end + 4,
        raw,
    })
}

/// Whether a head (without its final blank line) has lines ended by CRLF
/// only, and no control characters but tabs in header values: a bare CR or
/// LF, a NUL or an escape is how requests are smuggled and headers injected,
/// so such a request is refused rather than relayed or redirected.
fn strict_head(text: &str) -> bool {
    text.split("\r\n").enumerate().all(|(i, line)| {
        !line.is_empty()
            && line
                .bytes()
                .all(|b| !(b.is_ascii_control() || b == 0x7f) || (b == b'\t' && i > 0))
    }) && !text.split("\r\n").next().unwrap_or("").contains('\t')
}

/// An RFC 9110 token: a header name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Status and headers of a response head (for health checks).
pub struct ResponseHead {
    pub status: u16,
    headers: Vec<(String, String)>,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

pub fn parse_response_head(buf: &[u8]) -> Option<ResponseHead> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(ResponseHead { status, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, host: Option<&str>) -> Request {
        Request::get(target, host)
    }

    #[test]
    fn heads_are_strict() {
        assert!(strict_head("GET / HTTP/1.1\r\nHost: a\r\nX: b\tc"));
        assert!(!strict_head(
            "GET /stream/cam0?x\nSet-Cookie:pwn=1 HTTP/1.1\r\nHost: a"
        ));
        assert!(!strict_head(
            "GET / HTTP/1.1\r\nHost: a\nGET /stream/cam0 HTTP/1.1"
        ));
        assert!(!strict_head("GET / HTTP/1.1\r\nHost: a\rb"));
        assert!(!strict_head("GET / HTTP/1.1\r\nHost: a\x00"));
        assert!(!strict_head("GET / HTTP/1.1\r\n\r\nHost: a"));
        assert!(is_token("content-type") && !is_token("Host ") && !is_token(""));
    }

    #[test]
    fn streams_are_what_the_gateway_calls_streams() {
        let endless = |t: &str| req(t, None).route().endless_stream().map(str::to_string);
        assert_eq!(endless("/stream/cam0?fps=5").as_deref(), Some("cam0"));
        assert_eq!(endless("/video_feed").as_deref(), Some(""));
        assert_eq!(endless("/?action=stream").as_deref(), Some(""));
        assert_eq!(endless("/?x=1&action=stream").as_deref(), Some(""));
        assert_eq!(endless("/events/cam0").as_deref(), Some("cam0"));
        for small in [
            "/",
            "/?action=snapshot",
            "/snapshot/cam0",
            "/api/streams",
            "/stream",
            "/stream/",
            "/stream/a/b",
            "/ws",
            "/stream/cam0?fps=1&fps=2",
        ] {
            assert_eq!(endless(small), None, "{small}");
        }
        assert_eq!(
            req("/director/pick?stream=a%2Fb", None)
                .query()
                .expect("query")
                .get("stream")
                .map(String::as_str),
            Some("a/b")
        );
    }
}
