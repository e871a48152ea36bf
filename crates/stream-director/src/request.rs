//! Just enough HTTP/1.x for the director: a request head read strictly with
//! limits, which requests are streams, and where a redirect points.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::pool::Gateway;

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

    /// A query parameter's raw value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    /// `Some(stream name)` for a request that opens an endless MJPEG
    /// stream (`""` when the URL does not name one): these are redirected.
    pub fn stream(&self) -> Option<&str> {
        let path = self.path();
        if let Some(name) = path.strip_prefix("/stream/") {
            return Some(name);
        }
        if path == "/video_feed" {
            return Some("");
        }
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        let wants_stream = query.split('&').any(|kv| kv == "action=stream");
        (path == "/" && wants_stream).then_some("")
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads one request head from `s`.
pub async fn read_request(s: &mut TcpStream) -> Result<Request, HeadError> {
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

/// The `Location` for sending `req` to `gw`: `template` filled in, then the
/// request's own path and query. `{host}` is the viewer's `Host` only when
/// `hosts` lists it, else the first of `hosts`, else the gateway's IP.
pub fn location(template: &str, hosts: &[String], gw: &Gateway, req: &Request) -> String {
    let ip = match gw.addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let base = template
        .replace("{ip}", &ip)
        .replace("{port}", &gw.addr.port().to_string())
        .replace("{host}", public_host(hosts, req).unwrap_or(&ip))
        .replace("{instance}", gw.instance.as_deref().unwrap_or(&ip));
    format!("{}{}", base.trim_end_matches('/'), req.target)
}

/// The name `{host}` takes for `req`: its `Host` if `hosts` lists it
/// (case-insensitively), else the first listed name.
fn public_host<'a>(hosts: &'a [String], req: &'a Request) -> Option<&'a str> {
    let asked = req.host_name();
    hosts
        .iter()
        .find(|h| asked.is_some_and(|a| a.eq_ignore_ascii_case(h)))
        .or_else(|| hosts.first())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, host: Option<&str>) -> Request {
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
    fn stream_requests_are_recognised() {
        assert_eq!(req("/stream/cam0?fps=5", None).stream(), Some("cam0"));
        assert_eq!(req("/video_feed", None).stream(), Some(""));
        assert_eq!(req("/?action=stream", None).stream(), Some(""));
        assert_eq!(req("/?x=1&action=stream", None).stream(), Some(""));
        for small in [
            "/",
            "/?action=snapshot",
            "/snapshot/cam0",
            "/api/streams",
            "/stream",
        ] {
            assert_eq!(req(small, None).stream(), None, "{small}");
        }
    }

    #[test]
    fn locations_fill_the_template() {
        let gw = Gateway {
            addr: ([172, 18, 0, 5], 8080).into(),
            instance: Some("node-2".into()),
            ready: true,
        };
        let r = req("/stream/cam0?token=abc", Some("cams.example:8080"));
        assert_eq!(
            location("http://{ip}:{port}", &[], &gw, &r),
            "http://172.18.0.5:8080/stream/cam0?token=abc"
        );
        let hosts = ["other.example".to_string(), "cams.example".to_string()];
        assert_eq!(
            location("http://{host}:{port}/", &hosts, &gw, &r),
            "http://cams.example:8080/stream/cam0?token=abc"
        );
        let evil = req("/stream/cam0?token=abc", Some("evil.example"));
        assert_eq!(
            location("http://{host}:{port}/", &hosts, &gw, &evil),
            "http://other.example:8080/stream/cam0?token=abc"
        );
        assert_eq!(
            location("http://{host}:{port}/", &[], &gw, &evil),
            "http://172.18.0.5:8080/stream/cam0?token=abc"
        );
        assert_eq!(
            location("https://{instance}.cams.example", &[], &gw, &r),
            "https://node-2.cams.example/stream/cam0?token=abc"
        );
        let v6 = req("/video_feed", Some("[::1]:8080"));
        assert_eq!(v6.host_name(), Some("[::1]"));
        assert_eq!(req("/", Some("plain")).host_name(), Some("plain"));
    }
}
