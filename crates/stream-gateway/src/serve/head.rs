//! Reading and parsing one request head, for every connection and every
//! request on it. The connection loop (`connection.rs`) owns the socket from
//! accept to close, so a stream request can leave for the fan-out writer
//! whichever request of the connection it is; this is the only place that
//! reads request bytes.
//!
//! Bounded three ways: one head is at most [`MAX_HEAD`] bytes (431), it must
//! arrive within the header timeout, and all unfinished heads of the process
//! together hold at most `--max-pending-head-bytes` (a [`HeadBudget`]
//! permit per byte held across a wait). Each read scans only its new bytes
//! for the end of the head, so a head dripped one byte at a time costs
//! linear time.

use std::io::ErrorKind;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::serve::wire::Wire;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest request head accepted; longer ones get 431.
pub const MAX_HEAD: usize = 32 * 1024;
/// Most header lines in one head.
const MAX_HEADERS: usize = 64;

/// A parsed request head: what admission, the routes and the reply need.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    /// The path without its query.
    pub path: String,
    /// What follows `?`, or empty.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: HeaderMap,
    /// The request said `Content-Length` > 0 or `Transfer-Encoding`.
    pub has_body: bool,
}

impl Head {
    /// One value of a header that must not repeat; `None` when absent.
    pub fn single(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the client wants the connection kept open after this answer.
    pub fn keep_alive(&self) -> bool {
        let connection = |token: &str| {
            self.headers
                .get_all(http::header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if self.minor_version == 0 {
            connection("keep-alive")
        } else {
            !connection("close")
        }
    }
}

/// Why a head could not be read; each maps to one answer (or none).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("request head over {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("duplicate {0} header")]
    Duplicate(&'static str),
    #[error("the server holds too many unfinished request heads")]
    Busy,
    #[error("connection closed in the middle of a request head")]
    Truncated,
    #[error("reading the request: {0}")]
    Io(String),
}

/// Bytes that unfinished request heads may hold, for the whole process.
#[derive(Clone)]
pub struct HeadBudget(Arc<Semaphore>);

impl HeadBudget {
    pub fn new(bytes: usize) -> Self {
        HeadBudget(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// Takes `bytes` of the budget (an unfinished TLS handshake's share).
    pub fn take(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes).ok()?;
        self.0.clone().try_acquire_many_owned(n).ok()
    }
}

/// Reads request heads off one connection, keeping bytes that follow a head
/// (a pipelined request) for the next call.
pub struct HeadReader {
    buf: BytesMut,
    /// How far `buf` has been searched for the end of the head.
    scanned: usize,
    budget: HeadBudget,
    /// Budget bytes held for `buf` while a head is unfinished.
    held: Option<OwnedSemaphorePermit>,
}

impl HeadReader {
    pub fn new(budget: HeadBudget) -> Self {
        HeadReader {
            buf: BytesMut::new(),
            scanned: 0,
            budget,
            held: None,
        }
    }

    /// Reads the next head. `Ok(None)` when the peer closed (or half-closed)
    /// before sending a byte of it: the end of a kept-alive connection.
    pub async fn read(&mut self, socket: &Wire) -> Result<Option<Head>, HeadError> {
        loop {
            if let Some(end) = self.find_end() {
                let bytes = self.buf.split_to(end).freeze();
                self.scanned = 0;
                self.held = None;
                return parse(&bytes).map(Some);
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            if !self.buf.is_empty() {
                self.hold()?;
            }
            if socket.readable().await.is_err() {
                return Err(HeadError::Io("socket error".into()));
            }
            let mut chunk = [0u8; 4096];
            match socket.try_read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err(HeadError::Truncated),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(HeadError::Io(e.to_string())),
            }
        }
    }

    /// Whether bytes of a next request are already here.
    #[cfg(test)]
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Takes budget for the bytes held while waiting for more.
    fn hold(&mut self) -> Result<(), HeadError> {
        let have = self.held.as_ref().map_or(0, |p| p.num_permits());
        let want = self.buf.len();
        if want <= have {
            return Ok(());
        }
        let more = u32::try_from(want - have).map_err(|_| HeadError::TooLarge)?;
        let permit = self
            .budget
            .0
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| HeadError::Busy)?;
        match self.held.as_mut() {
            Some(p) => p.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }

    /// The length of the head in `buf`, scanning only what was not scanned
    /// before.
    fn find_end(&mut self) -> Option<usize> {
        let found = head_end(&self.buf, self.scanned);
        self.scanned = self.buf.len();
        found
    }
}

/// The length of the head at the start of `buf` (through its blank line),
/// given that `buf[..scanned]` held no end: only the new bytes (and the two
/// before them, where a terminator may have been cut) are looked at. Bare LF
/// line ends are accepted, as RFC 9112 allows.
pub fn head_end(buf: &[u8], scanned: usize) -> Option<usize> {
    let from = scanned.min(buf.len()).saturating_sub(2);
    buf[from..]
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .find_map(|(i, _)| {
            let at = from + i;
            let rest = &buf[at + 1..];
            if rest.first() == Some(&b'\n') {
                Some(at + 2)
            } else if rest.starts_with(b"\r\n") {
                Some(at + 3)
            } else {
                None
            }
        })
}

/// Parses one complete head (`buf` ends with its blank line).
pub fn parse(buf: &Bytes) -> Result<Head, HeadError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Malformed("incomplete".into())),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    }
    let bad = |what: &str| HeadError::Malformed(what.to_string());
    let method = Method::from_bytes(req.method.ok_or_else(|| bad("method"))?.as_bytes())
        .map_err(|_| bad("method"))?;
    let target = req.path.ok_or_else(|| bad("target"))?;
    if !target.starts_with('/') {
        return Err(bad("request target must be a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut has_body = false;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("header value"))?;
        if name == http::header::TRANSFER_ENCODING
            || (name == http::header::CONTENT_LENGTH && value.as_bytes() != b"0")
        {
            has_body = true;
        }
        headers.append(name, value);
    }
    // One rule for every path: credentials and origins must be unambiguous.
    for (name, label) in [
        (http::header::AUTHORIZATION, "Authorization"),
        (http::header::ORIGIN, "Origin"),
        (http::header::HOST, "Host"),
    ] {
        if headers.get_all(&name).iter().count() > 1 {
            return Err(HeadError::Duplicate(label));
        }
    }
    Ok(Head {
        method,
        path: path.to_string(),
        query: query.to_string(),
        minor_version: req.version.unwrap_or(1),
        headers,
        has_body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    fn parse_str(s: &str) -> Result<Head, HeadError> {
        parse(&Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn parses_path_query_and_headers() {
        let h = parse_str(
            "GET /stream/cam0?fps=5&token=x HTTP/1.1\r\nHost: a\r\nOrigin: http://o\r\n\r\n",
        )
        .expect("valid");
        assert_eq!(h.method, Method::GET);
        assert_eq!(
            (h.path.as_str(), h.query.as_str()),
            ("/stream/cam0", "fps=5&token=x")
        );
        assert_eq!(h.single(&http::header::ORIGIN), Some("http://o"));
        assert!(h.keep_alive());
        assert!(!h.has_body);
    }

    #[test]
    fn bare_lf_line_ends_are_accepted() {
        let h = parse_str("GET /healthz HTTP/1.1\nHost: x\n\n").expect("bare LF");
        assert_eq!(h.path, "/healthz");
        assert_eq!(h.single(&http::header::HOST), Some("x"));
    }

    #[test]
    fn duplicate_credentials_and_origins_are_refused() {
        let two_auth = "GET /stream/cam0 HTTP/1.1\r\nAuthorization: Bearer wrong\r\nAuthorization: Bearer right\r\n\r\n";
        assert_eq!(
            parse_str(two_auth).err(),
            Some(HeadError::Duplicate("Authorization"))
        );
        let two_origins = "GET / HTTP/1.1\r\nOrigin: http://a\r\norigin: http://b\r\n\r\n";
        assert_eq!(
            parse_str(two_origins).err(),
            Some(HeadError::Duplicate("Origin"))
        );
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        assert!(
            !parse_str("GET / HTTP/1.0\r\n\r\n")
                .expect("ok")
                .keep_alive()
        );
        assert!(
            parse_str("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .expect("ok")
                .keep_alive()
        );
        assert!(
            !parse_str("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
                .expect("ok")
                .keep_alive()
        );
    }

    #[test]
    fn bodies_garbage_and_absolute_targets() {
        assert!(
            parse_str("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n")
                .expect("ok")
                .has_body
        );
        assert!(
            !parse_str("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
                .expect("ok")
                .has_body
        );
        assert!(matches!(
            parse_str("\x16\x03\x01 definitely not http\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse_str("GET http://x/ HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    async fn pair() -> (TcpStream, Wire) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        (c.expect("connect"), Wire::Plain(s.expect("accept").0))
    }

    #[tokio::test]
    async fn pipelined_heads_come_out_one_by_one_and_eof_ends() {
        let (mut client, server) = pair().await;
        client
            .write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\nHost: y\n\n")
            .await
            .expect("write");
        client.shutdown().await.expect("half-close");
        let mut r = HeadReader::new(HeadBudget::new(1 << 20));
        assert_eq!(r.read(&server).await.expect("a").expect("head").path, "/a");
        assert!(r.has_buffered());
        assert_eq!(r.read(&server).await.expect("b").expect("head").path, "/b");
        assert!(r.read(&server).await.expect("eof").is_none());
    }

    #[tokio::test]
    async fn a_dripped_head_is_found_across_reads() {
        let (mut client, server) = pair().await;
        let mut r = HeadReader::new(HeadBudget::new(1 << 20));
        let writer = tokio::spawn(async move {
            for b in b"GET /drip HTTP/1.1\r\nX: y\r\n\r\n" {
                client.write_all(&[*b]).await.expect("byte");
                client.flush().await.expect("flush");
                tokio::task::yield_now().await;
            }
            client
        });
        assert_eq!(
            r.read(&server).await.expect("ok").expect("head").path,
            "/drip"
        );
        drop(writer.await);
    }

    #[tokio::test]
    async fn oversized_and_over_budget_heads_are_refused() {
        let (mut client, server) = pair().await;
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        let send = tokio::spawn(async move {
            let _ = client.write_all(big.as_bytes()).await;
            client
        });
        let mut r = HeadReader::new(HeadBudget::new(1 << 20));
        assert_eq!(r.read(&server).await.err(), Some(HeadError::TooLarge));
        drop(send.await);

        // A budget of 10 bytes: an unfinished head of 20 cannot wait.
        let (mut client, server) = pair().await;
        client
            .write_all(b"GET / HTTP/1.1\r\nX: 1234")
            .await
            .expect("write");
        let mut r = HeadReader::new(HeadBudget::new(10));
        assert_eq!(r.read(&server).await.err(), Some(HeadError::Busy));
        // A whole head needs no budget.
        let (mut client, server) = pair().await;
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut r = HeadReader::new(HeadBudget::new(10));
        assert!(r.read(&server).await.expect("ok").is_some());
    }
}
