//! The streaming fast path. A stream response never ends and is the same
//! bytes for every viewer, so it does not need hyper's per-connection
//! machinery or a task per viewer: once the request head says "stream" (and
//! auth, limits and the stream check out), the socket moves to its stream's
//! fan-out writer. That one task walks its viewers once per frame and writes
//! the shared part with one `write()` each, keeping a viewer's unsent
//! remainder (and waiting for its socket to drain) instead of queueing
//! frames. The benchmark (bench/README.md) showed hyper + per-viewer tasks
//! to be what separated the gateway from the raw-socket floor.
//!
//! Every other request, and any stream request that would get an error,
//! goes to warp with the bytes already read, so responses stay identical.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::GatewayMetrics;
use crate::part::PREAMBLE;
use crate::streams::Stream;

/// Longest request head read here; longer ones go to hyper (which answers 431).
const MAX_HEAD: usize = 32 * 1024;

/// Reads a request head. `Ok(true)` when `buf` holds a complete head,
/// `Ok(false)` when it grew too long or the peer closed first.
pub async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<bool> {
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(true);
        }
        if buf.len() >= MAX_HEAD {
            return Ok(false);
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
}

/// The parts of a request the fast path looks at.
pub struct Head {
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub origin: Option<String>,
}

/// Parses a complete head; `None` unless it is a plain GET (no body).
pub fn parse(buf: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf).ok()? else {
        return None;
    };
    if req.method? != "GET" || len != buf.len() {
        return None;
    }
    let mut head = Head {
        path: String::new(),
        query: String::new(),
        authorization: None,
        origin: None,
    };
    let target = req.path?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    head.path = path.to_string();
    head.query = query.to_string();
    for h in req.headers.iter() {
        let value = || std::str::from_utf8(h.value).ok().map(str::to_string);
        if h.name.eq_ignore_ascii_case("authorization") {
            head.authorization = value();
        } else if h.name.eq_ignore_ascii_case("origin") {
            head.origin = value();
        } else if h.name.eq_ignore_ascii_case("content-length")
            || h.name.eq_ignore_ascii_case("transfer-encoding")
        {
            return None;
        }
    }
    Some(head)
}

/// A viewer handed to a fan-out writer: its socket (response head already
/// queued) and its rate cap.
pub struct DirectViewer {
    pub socket: TcpStream,
    pub head: Bytes,
    pub fps_cap: Option<f64>,
}

/// One fan-out writer per stream, started on its first direct viewer.
#[derive(Default)]
pub struct Fanout {
    writers: Mutex<HashMap<String, mpsc::UnboundedSender<DirectViewer>>>,
}

impl Fanout {
    pub fn add(
        &self,
        stream: Arc<Stream>,
        viewer: DirectViewer,
        metrics: Arc<GatewayMetrics>,
        stop: CancellationToken,
    ) {
        stream.metrics.viewers.inc();
        metrics.viewers_total.inc();
        tracing::debug!(stream = %stream.name, "viewer connected");
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let viewer = match writers.get(&stream.name) {
            Some(tx) => match tx.send(viewer) {
                Ok(()) => return,
                // That writer ended (shutdown); start another.
                Err(mpsc::error::SendError(v)) => v,
            },
            None => viewer,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(viewer);
        writers.insert(stream.name.clone(), tx);
        tokio::spawn(writer(stream, metrics, rx, stop));
    }
}

struct Viewer {
    socket: Arc<TcpStream>,
    /// Bytes not yet written (response head, or the rest of a part) and how far we got.
    pending: Option<(Bytes, usize)>,
    waiting: bool,
    min_interval: Option<Duration>,
    next_allowed: Instant,
    last_seq: Option<u64>,
}

enum Wrote {
    Done,
    Partial,
    Gone,
}

impl Viewer {
    /// Writes as much of the pending bytes as the socket takes now.
    fn flush(&mut self) -> Wrote {
        let Some((buf, off)) = self.pending.take() else {
            return Wrote::Done;
        };
        let mut off = off;
        loop {
            match self.socket.try_write(&buf[off..]) {
                Ok(0) => return Wrote::Gone,
                Ok(n) if off + n == buf.len() => return Wrote::Done,
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.pending = Some((buf, off));
                    return Wrote::Partial;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Wrote::Gone,
            }
        }
    }
}

async fn writer(
    stream: Arc<Stream>,
    metrics: Arc<GatewayMetrics>,
    mut incoming: mpsc::UnboundedReceiver<DirectViewer>,
    stop: CancellationToken,
) {
    let mut slot = stream.subscribe();
    let mut viewers: Vec<Option<Viewer>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut drains = FuturesUnordered::new();
    let m = stream.metrics.clone();
    let remove = |viewers: &mut Vec<Option<Viewer>>, free: &mut Vec<usize>, i: usize| {
        if viewers[i].take().is_some() {
            free.push(i);
            m.viewers.dec();
            metrics.viewers_total.dec();
            tracing::debug!(stream = %stream.name, "viewer left");
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            new = incoming.recv() => {
                let Some(v) = new else { break };
                let viewer = Viewer {
                    socket: Arc::new(v.socket),
                    pending: Some((v.head, 0)),
                    waiting: false,
                    min_interval: v.fps_cap.map(|f| Duration::from_secs_f64(1.0 / f)),
                    next_allowed: Instant::now(),
                    last_seq: None,
                };
                let i = free.pop().unwrap_or_else(|| { viewers.push(None); viewers.len() - 1 });
                viewers[i] = Some(viewer);
                // Head, then the current frame at once rather than at the next one.
                let part = slot.borrow().clone();
                if let Some(v) = viewers[i].as_mut() {
                    let (gone, wait) = send(v, part.as_deref(), &m);
                    if gone { remove(&mut viewers, &mut free, i); } else if wait { drains.push(drained(v, i)); }
                }
            }
            changed = slot.changed() => {
                if changed.is_err() { break }
                let Some(part) = slot.borrow_and_update().clone() else { continue };
                let now = Instant::now();
                for i in 0..viewers.len() {
                    let Some(v) = viewers[i].as_mut() else { continue };
                    if v.waiting || v.next_allowed > now {
                        // Still writing an older part (or capped): skip this frame.
                        continue;
                    }
                    let (gone, wait) = send(v, Some(&part), &m);
                    if gone { remove(&mut viewers, &mut free, i); } else if wait { drains.push(drained(v, i)); }
                }
            }
            Some(i) = drains.next(), if !drains.is_empty() => {
                let Some(v) = viewers.get_mut(i).and_then(Option::as_mut) else { continue };
                v.waiting = false;
                match v.flush() {
                    Wrote::Done => {}
                    Wrote::Partial => drains.push(drained(v, i)),
                    Wrote::Gone => remove(&mut viewers, &mut free, i),
                }
            }
        }
    }
    for i in 0..viewers.len() {
        remove(&mut viewers, &mut free, i);
    }
}

/// Queues `part` for a viewer (after any pending head) and writes what the
/// socket takes. Returns (gone, must wait for the socket to drain).
fn send(
    v: &mut Viewer,
    part: Option<&crate::part::Part>,
    m: &crate::metrics::StreamMetrics,
) -> (bool, bool) {
    if v.pending.is_some() {
        match v.flush() {
            Wrote::Gone => return (true, false),
            Wrote::Partial => return (false, true),
            Wrote::Done => {}
        }
    }
    let Some(part) = part else {
        return (false, false);
    };
    if let Some(last) = v.last_seq {
        m.skipped.inc_by(part.seq.saturating_sub(last + 1));
    }
    v.last_seq = Some(part.seq);
    if part.live {
        let age_ns = stream_common::unix_now_ns().saturating_sub(part.capture_ts_ns);
        m.latency.observe(age_ns as f64 / 1e9);
    }
    if let Some(iv) = v.min_interval {
        v.next_allowed = Instant::now() + iv;
    }
    m.parts_out.inc();
    m.bytes_out.inc_by(part.bytes.len() as u64);
    v.pending = Some((part.bytes.clone(), 0));
    match v.flush() {
        Wrote::Done => (false, false),
        Wrote::Partial => (false, true),
        Wrote::Gone => (true, false),
    }
}

/// Resolves with `i` once the viewer's socket can take more.
fn drained(v: &mut Viewer, i: usize) -> Pin<Box<dyn std::future::Future<Output = usize> + Send>> {
    v.waiting = true;
    let socket = v.socket.clone();
    Box::pin(async move {
        let _ = socket.writable().await;
        i
    })
}

/// A socket whose first bytes were already read: hyper gets them back first.
pub struct Rewind {
    prefix: BytesMut,
    inner: TcpStream,
}

impl Rewind {
    pub fn new(prefix: BytesMut, inner: TcpStream) -> Self {
        Rewind { prefix, inner }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The response head for a direct stream: the same headers warp's route
/// sends, with `Connection: close` framing instead of chunks.
pub fn response_head(instance: &str, cors_origin: Option<&str>, credentials: bool) -> Bytes {
    let mut h = String::with_capacity(512);
    h.push_str("HTTP/1.1 200 OK\r\n");
    h.push_str(&format!("content-type: {}\r\n", crate::part::CONTENT_TYPE));
    h.push_str("cache-control: no-store, no-cache, must-revalidate, max-age=0\r\n");
    h.push_str(
        "pragma: no-cache\r\nexpires: Thu, 01 Jan 1970 00:00:00 GMT\r\nx-accel-buffering: no\r\n",
    );
    h.push_str(&format!("x-gateway-instance: {instance}\r\n"));
    if let Some(origin) = cors_origin {
        h.push_str(&format!(
            "access-control-allow-origin: {origin}\r\nvary: Origin\r\n"
        ));
        if credentials {
            h.push_str("access-control-allow-credentials: true\r\n");
        }
    }
    h.push_str("connection: close\r\n\r\n");
    let mut b = BytesMut::from(h.as_bytes());
    b.extend_from_slice(PREAMBLE);
    b.freeze()
}
