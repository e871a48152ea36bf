//! A deliberately plain HTTP/1.1 client over a raw TCP socket, so tests see
//! exactly the bytes a browser would: status line, headers, chunked framing,
//! and every multipart part checked strictly (Content-Length, SOI/EOI).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, Bytes, BytesMut};
use stream_common::multipart::{MultipartParser, boundary_from_content_type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A byte stream a [`Connection`] can speak HTTP over: a `TcpStream`, or a
/// TLS session (`tokio_rustls::client::TlsStream`).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        stream_common::multipart::find_header(&self.headers, name)
    }
}

#[derive(Debug)]
pub struct Response {
    pub head: Head,
    pub body: Bytes,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Body framing of a response.
enum Framing {
    Chunked { remaining: usize, done: bool },
    Length(usize),
    Close,
}

/// An open response whose body is decoded as it arrives.
pub struct Connection {
    stream: Box<dyn Io>,
    buf: BytesMut,
    framing: Framing,
    pub head: Head,
    eof: bool,
}

impl Connection {
    /// Sends `GET path` (or another method) and reads the response head.
    pub async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::request_with_body(addr, method, path, extra, b"").await
    }

    /// Like [`request`](Self::request), sending `body` after the headers.
    pub async fn request_with_body(
        addr: SocketAddr,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        Self::request_on(stream, addr, method, path, extra, body).await
    }

    /// Sends the request on an already connected socket (for tests that tune
    /// the socket first, or a TLS session) and reads the response head.
    pub async fn request_on(
        stream: impl Io + 'static,
        addr: SocketAddr,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Self> {
        Self::request_boxed(Box::new(stream), addr, method, path, extra, body).await
    }

    async fn request_boxed(
        mut stream: Box<dyn Io>,
        addr: SocketAddr,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Self> {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test-support\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        let mut buf = BytesMut::with_capacity(256 * 1024);
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if buf.len() > 64 * 1024 {
                bail!("response head too long");
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!(
                    "connection closed before the response head ({} bytes)",
                    buf.len()
                );
            }
        };
        let head_bytes = buf.split_to(end + 4);
        let text = String::from_utf8_lossy(&head_bytes[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let head = Head { status, headers };
        let framing = if method == "HEAD" || status == 204 || status == 304 {
            Framing::Length(0)
        } else if head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            Framing::Chunked {
                remaining: 0,
                done: false,
            }
        } else if let Some(len) = head.header("content-length") {
            Framing::Length(len.parse().context("bad Content-Length")?)
        } else {
            Framing::Close
        };
        Ok(Connection {
            stream,
            buf,
            framing,
            head,
            eof: false,
        })
    }

    /// Up to `out`'s worth of decoded body bytes appended to `out`; 0 at the end.
    pub async fn read_body(&mut self, out: &mut BytesMut) -> anyhow::Result<usize> {
        loop {
            let available = match &mut self.framing {
                Framing::Length(0) => return Ok(0),
                Framing::Length(n) => (*n).min(self.buf.len()),
                Framing::Close => self.buf.len(),
                Framing::Chunked { done: true, .. } => return Ok(0),
                Framing::Chunked { remaining, done } => {
                    if *remaining == usize::MAX {
                        // Expect the CRLF that ends a chunk's data.
                        if self.buf.len() < 2 {
                            if !self.fill().await? {
                                bail!("connection closed inside chunked framing");
                            }
                            continue;
                        }
                        if &self.buf[..2] != b"\r\n" {
                            bail!("chunk not followed by CRLF");
                        }
                        self.buf.advance(2);
                        *remaining = 0;
                    }
                    if *remaining == 0 {
                        let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                            if !self.fill().await? {
                                bail!("connection closed inside chunked framing");
                            }
                            continue;
                        };
                        let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                        let size_text = line.split(';').next().unwrap_or_default().trim();
                        let size = usize::from_str_radix(size_text, 16)
                            .with_context(|| format!("bad chunk size {line:?}"))?;
                        self.buf.advance(at + 2);
                        if size == 0 {
                            *done = true;
                            return Ok(0);
                        }
                        *remaining = size;
                    }
                    let take = (*remaining).min(self.buf.len());
                    if take == 0 {
                        if !self.fill().await? {
                            bail!("connection closed inside a chunk");
                        }
                        continue;
                    }
                    out.extend_from_slice(&self.buf[..take]);
                    self.buf.advance(take);
                    *remaining -= take;
                    if *remaining == 0 {
                        *remaining = usize::MAX;
                    }
                    return Ok(take);
                }
            };
            if available > 0 {
                out.extend_from_slice(&self.buf[..available]);
                self.buf.advance(available);
                if let Framing::Length(n) = &mut self.framing {
                    *n -= available;
                }
                return Ok(available);
            }
            if !self.fill().await? {
                return match self.framing {
                    Framing::Close => Ok(0),
                    _ => bail!("connection closed before the body ended"),
                };
            }
        }
    }

    async fn fill(&mut self) -> anyhow::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// Reads the rest of this body, then sends the next request on the same
    /// (kept-alive) connection: the reply, and the next response opened.
    pub async fn then(
        mut self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(Response, Connection)> {
        let mut out = BytesMut::new();
        while self.read_body(&mut out).await? > 0 {}
        if !self.buf.is_empty() {
            bail!("{} bytes after the body", self.buf.len());
        }
        let reply = Response {
            head: self.head,
            body: out.freeze(),
        };
        let next = Self::request_boxed(self.stream, addr, method, path, extra, b"").await?;
        Ok((reply, next))
    }

    /// Reads the rest of the body.
    pub async fn body(mut self) -> anyhow::Result<Response> {
        let mut out = BytesMut::new();
        while self.read_body(&mut out).await? > 0 {}
        Ok(Response {
            head: self.head,
            body: out.freeze(),
        })
    }
}

/// A complete request: `GET path`, the whole body, within 10 s.
/// Just the status of `GET path`.
pub async fn status(addr: SocketAddr, path: &str) -> u16 {
    get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
        .head
        .status
}

pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    request(addr, "GET", path, &[]).await
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<Response> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut h: Vec<(&str, &str)> = vec![("Connection", "close")];
        h.extend_from_slice(extra);
        Connection::request(addr, method, path, &h)
            .await?
            .body()
            .await
    })
    .await
    .with_context(|| format!("{method} {path} timed out"))?
}

/// One frame as a viewer receives it.
#[derive(Debug, Clone)]
pub struct ReceivedFrame {
    pub jpeg: Bytes,
    pub headers: Vec<(String, String)>,
}

impl ReceivedFrame {
    pub fn header(&self, name: &str) -> Option<&str> {
        stream_common::multipart::find_header(&self.headers, name)
    }

    /// Capture time from `X-Timestamp`, in Unix seconds.
    pub fn timestamp(&self) -> Option<f64> {
        self.header("x-timestamp")?.parse().ok()
    }
}

/// Reads an MJPEG response part by part, strictly.
pub struct MjpegReader {
    conn: Connection,
    parser: MultipartParser,
    scratch: BytesMut,
}

impl MjpegReader {
    pub async fn open(addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        let conn = Connection::request(addr, "GET", path, &[]).await?;
        Self::from_connection(conn, path)
    }

    /// Like [`open`](Self::open), but follows redirects (a balancing
    /// director answers a stream request with `307` to a gateway) as a
    /// browser does, at most `max_hops` of them; also returns where the
    /// stream came from. `Location` must be `http://HOST:PORT/...` or a path.
    pub async fn open_following(
        addr: SocketAddr,
        path: &str,
        max_hops: usize,
    ) -> anyhow::Result<(Self, SocketAddr)> {
        let (mut addr, mut path) = (addr, path.to_string());
        for _ in 0..=max_hops {
            let conn = Connection::request(addr, "GET", &path, &[]).await?;
            if matches!(conn.head.status, 301 | 302 | 303 | 307 | 308) {
                let location = conn
                    .head
                    .header("location")
                    .with_context(|| format!("{} without Location", conn.head.status))?;
                (addr, path) = resolve_location(addr, location).await?;
                continue;
            }
            return Ok((Self::from_connection(conn, &path)?, addr));
        }
        bail!("more than {max_hops} redirects")
    }

    /// Reads the stream of a response already opened (e.g. with headers of
    /// the caller's choosing, or on a kept-alive connection).
    pub fn from_connection(conn: Connection, path: &str) -> anyhow::Result<Self> {
        if conn.head.status != 200 {
            bail!("GET {path}: status {}", conn.head.status);
        }
        let ct = conn.head.header("content-type").unwrap_or_default();
        let boundary =
            boundary_from_content_type(ct).with_context(|| format!("not multipart: {ct:?}"))?;
        Ok(MjpegReader {
            conn,
            parser: MultipartParser::new(&boundary, true, 64 << 20),
            scratch: BytesMut::new(),
        })
    }

    pub fn head(&self) -> &Head {
        &self.conn.head
    }

    /// The next whole part, checked: Content-Type image/jpeg, right length, SOI/EOI.
    pub async fn next_frame(&mut self) -> anyhow::Result<ReceivedFrame> {
        loop {
            if let Some(part) = self.parser.next_part()? {
                if part.header("content-type") != Some("image/jpeg") {
                    bail!("part Content-Type {:?}", part.header("content-type"));
                }
                if !frame_wire::looks_like_jpeg(&part.body) {
                    bail!("part of {} bytes is not a whole JPEG", part.body.len());
                }
                return Ok(ReceivedFrame {
                    jpeg: part.body,
                    headers: part.headers,
                });
            }
            self.scratch.clear();
            if self.conn.read_body(&mut self.scratch).await? == 0 {
                bail!("stream ended");
            }
            self.parser.push(&self.scratch);
        }
    }

    /// Reads until a part whose `X-Source-Online` is `online` arrives, each
    /// part within `per_frame`; returns how long that took. Errors if it takes
    /// longer than `within` or the stream breaks.
    pub async fn wait_online(
        &mut self,
        online: bool,
        within: Duration,
        per_frame: Duration,
    ) -> anyhow::Result<Duration> {
        let start = std::time::Instant::now();
        let want = if online { "true" } else { "false" };
        loop {
            let f = self
                .next_frame_within(per_frame)
                .await
                .context("the connection stopped delivering")?;
            if f.header("x-source-online") == Some(want) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                bail!("no part with X-Source-Online: {want} within {within:?}");
            }
        }
    }

    /// The next frame within `timeout`.
    pub async fn next_frame_within(&mut self, timeout: Duration) -> anyhow::Result<ReceivedFrame> {
        tokio::time::timeout(timeout, self.next_frame())
            .await
            .context("no frame in time")?
    }
}

/// Where a `Location` points: `http://HOST:PORT/path` or `https://…` (HOST
/// resolved) or a path on the same server.
pub async fn resolve_location(
    from: SocketAddr,
    location: &str,
) -> anyhow::Result<(SocketAddr, String)> {
    if location.starts_with('/') {
        return Ok((from, location.to_string()));
    }
    let (rest, default_port) = match location.strip_prefix("https://") {
        Some(rest) => (rest, 443),
        None => (
            location
                .strip_prefix("http://")
                .with_context(|| format!("unsupported Location {location:?}"))?,
            80,
        ),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let addr = tokio::net::lookup_host(authority.as_str())
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let path = if path.is_empty() { "/" } else { path };
    Ok((addr, path.to_string()))
}
