//! The director's HTTP side. A stream request gets a `307` to the chosen
//! gateway and the connection closes: the video then flows from the gateway
//! to the viewer with no hop in between. Any other request is relayed to a
//! chosen gateway byte for byte (`Connection: close`), so one address serves
//! the page, snapshots and API. `/healthz`, `/readyz`,
//! `/director/gateways` and `/director/pick` are the director's own.
//! `/director/pick?stream=NAME` answers where a client that cannot follow a
//! redirect (a WebSocket: browsers fail a handshake answered with 3xx)
//! should connect: `{"url": "http://gateway:port", "instance": …}`, chosen as
//! a stream request would be. Both name internal addresses, so they ask
//! for the gateways' credentials (`--auth-*`) when those are set, as does
//! `/director/metrics`.
//!
//! Over HTTPS (`tls.rs`) every request is served the same way after the
//! handshake, with `Strict-Transport-Security` added (`--hsts`), relayed
//! replies included; gateways are reached over TLS when they serve it
//! (`upstream.rs`). Plain HTTP on the TLS port, and every request on the
//! `--redirect-http` port, gets a `308` to `https://` or a one-line `400`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::Registry;
use stream_common::access::Auth;
use stream_common::ratelimit::LogEvery;
use stream_common::tls::redirect;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::choose::Choose;
use crate::pool::{Gateway, Pool};
use crate::request::{self, Request};
use crate::tls::{Accepted, Conn, Tls};
use crate::upstream::Upstream;

/// A relayed request tries at most this many gateways.
const RELAY_TRIES: usize = 3;
/// A gateway on the same network that takes longer than this to accept is down.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Default)]
pub struct Stats {
    pub redirects: AtomicU64,
    /// `/director/*` requests refused for missing or wrong credentials.
    pub unauthorized: AtomicU64,
    pub relayed: AtomicU64,
    pub unavailable: AtomicU64,
}

pub struct Director {
    /// Credentials for `/director/*`.
    pub auth: Auth,
    pub pool: Arc<Pool>,
    pub choose: Box<dyn Choose>,
    pub public_url: String,
    /// The names `{host}` may take in `public_url`.
    pub public_hosts: Vec<String>,
    pub header_timeout: Duration,
    pub stats: Stats,
    pub refusals: Mutex<LogEvery>,
    /// HTTPS on the listening port (`tls.rs`), or plain HTTP.
    pub tls: Option<Arc<Tls>>,
    /// How gateways are reached: plain, or TLS (`--gateway-ca`).
    pub upstream: Upstream,
    /// `--redirect-http`: the HTTPS port plain-HTTP requests are sent to
    /// with a `308`, instead of being told in one line.
    pub https_port: Option<u16>,
    /// The port this director listens on.
    pub port: u16,
    /// `Strict-Transport-Security` on HTTPS answers (`--hsts`).
    pub hsts: Option<String>,
    /// The director's own metrics (`/director/metrics`).
    pub registry: Registry,
}

impl Director {
    /// Accepts until `cancel`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) {
        loop {
            let (socket, peer) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let d = self.clone();
            tokio::spawn(async move {
                if let Err(e) = d.accepted(socket, peer).await {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    }

    /// Serves `--redirect-http`: every request gets a `308` to HTTPS, until `cancel`.
    pub async fn redirect_http(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) {
        loop {
            let socket = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed on the redirect port");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let d = self.clone();
            tokio::spawn(async move { d.plain_on_tls_port(socket).await });
        }
    }

    /// A new connection: its TLS handshake first when this port speaks HTTPS.
    async fn accepted(&self, tcp: TcpStream, peer: SocketAddr) -> anyhow::Result<()> {
        let _ = tcp.set_nodelay(true);
        let conn: Conn = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => match tls.accept(tcp, peer, self.header_timeout).await {
                Accepted::Tls(conn) => conn,
                Accepted::PlainHttp(tcp) => {
                    self.plain_on_tls_port(tcp).await;
                    return Ok(());
                }
                Accepted::Failed => return Ok(()),
            },
        };
        self.connection(conn, peer).await
    }

    /// Answers a plain-HTTP request on the HTTPS port or the redirect port:
    /// a `308` to the same path on `https://` when `--redirect-http` is on,
    /// else one line naming that URL.
    async fn plain_on_tls_port(&self, mut s: TcpStream) {
        let req =
            match tokio::time::timeout(self.header_timeout, request::read_request(&mut s)).await {
                Ok(Ok(r)) => r,
                Ok(Err(request::HeadError::TooLarge)) => {
                    let _ = respond(&mut s, "431 Request Header Fields Too Large", &[], "").await;
                    return;
                }
                Ok(Err(request::HeadError::Malformed)) => {
                    let _ = respond(&mut s, "400 Bad Request", &[], "").await;
                    return;
                }
                _ => return,
            };
        let port = self.https_port.unwrap_or(self.port);
        let location = redirect::https_location(req.header("host"), port, &req.target);
        let _ = match (self.https_port, location) {
            (Some(_), Some(location)) => {
                let body = format!("{location}\n");
                respond(
                    &mut s,
                    "308 Permanent Redirect",
                    &[("Location", &location)],
                    &body,
                )
                .await
            }
            (None, Some(location)) => {
                let body = format!("This port speaks HTTPS: use {location}\n");
                respond(&mut s, "400 Bad Request", &[], &body).await
            }
            (_, None) => {
                let body = "This port speaks HTTPS; the request names no host to redirect to\n";
                respond(&mut s, "400 Bad Request", &[], body).await
            }
        };
    }

    /// Answers with `Strict-Transport-Security` added when it is on.
    async fn respond(
        &self,
        s: &mut Conn,
        status: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<()> {
        let mut all = headers.to_vec();
        if let Some(hsts) = &self.hsts {
            all.push(("Strict-Transport-Security", hsts));
        }
        respond(s, status, &all, body).await
    }

    async fn connection(&self, mut s: Conn, peer: SocketAddr) -> anyhow::Result<()> {
        let req =
            match tokio::time::timeout(self.header_timeout, request::read_request(&mut s)).await {
                Err(_) => return Ok(()),
                Ok(Err(request::HeadError::TooLarge)) => {
                    return self
                        .respond(&mut s, "431 Request Header Fields Too Large", &[], "")
                        .await;
                }
                Ok(Err(request::HeadError::Malformed)) => {
                    return self.respond(&mut s, "400 Bad Request", &[], "").await;
                }
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(r)) => r,
            };
        if req.path().starts_with("/director/") && !self.authorized(&req) {
            let challenge = self.auth.challenge("stream-director");
            let challenge = challenge.to_str().unwrap_or("Bearer");
            return self
                .respond(
                    &mut s,
                    "401 Unauthorized",
                    &[("WWW-Authenticate", challenge)],
                    "authentication required\n",
                )
                .await;
        }
        match req.path() {
            "/healthz" => return self.respond(&mut s, "200 OK", &[], "ok\n").await,
            "/readyz" => {
                return if self.pool.candidates().is_empty() {
                    self.respond(&mut s, "503 Service Unavailable", &[], "no gateway\n")
                        .await
                } else {
                    self.respond(&mut s, "200 OK", &[], "ready\n").await
                };
            }
            "/director/metrics" => {
                let body = stream_common::metrics::render(&self.registry);
                return self
                    .respond(
                        &mut s,
                        "200 OK",
                        &[("Content-Type", stream_common::metrics::CONTENT_TYPE)],
                        &body,
                    )
                    .await;
            }
            "/director/gateways" => {
                let body = self.state_json().to_string();
                return self
                    .respond(
                        &mut s,
                        "200 OK",
                        &[("Content-Type", "application/json")],
                        &body,
                    )
                    .await;
            }
            _ => {}
        }
        let candidates = self.pool.candidates();
        if candidates.is_empty() {
            self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
            return self
                .respond(
                    &mut s,
                    "503 Service Unavailable",
                    &[("Retry-After", "1")],
                    "no gateway available\n",
                )
                .await;
        }
        let pick = (req.path() == "/director/pick").then(|| {
            req.query()
                .ok()
                .and_then(|q| q.get("stream").cloned())
                .unwrap_or_default()
        });
        if let Some(stream) = pick {
            let Some(gw) = self.pick_answering(&stream, candidates).await else {
                self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                return self
                    .respond(
                        &mut s,
                        "503 Service Unavailable",
                        &[("Retry-After", "1")],
                        "",
                    )
                    .await;
            };
            let base = crate::redirect::location(
                &self.public_url,
                &self.public_hosts,
                &gw,
                &Request {
                    target: String::new(),
                    ..req
                },
            );
            let body = serde_json::json!({ "url": base, "instance": gw.instance }).to_string();
            return self
                .respond(
                    &mut s,
                    "200 OK",
                    &[
                        ("Content-Type", "application/json"),
                        ("Cache-Control", "no-store"),
                    ],
                    &body,
                )
                .await;
        }
        let route = req.route();
        if let Some(stream) = route.endless_stream() {
            let Some(gw) = self.pick_answering(stream, candidates).await else {
                self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                return self
                    .respond(
                        &mut s,
                        "503 Service Unavailable",
                        &[("Retry-After", "1")],
                        "no gateway answered\n",
                    )
                    .await;
            };
            let gw = &gw;
            let location =
                crate::redirect::location(&self.public_url, &self.public_hosts, gw, &req);
            self.stats.redirects.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, location = %stream_common::redact::url(&location), "redirect");
            let instance = gw.instance.clone().unwrap_or_default();
            return self
                .respond(
                    &mut s,
                    "307 Temporary Redirect",
                    &[
                        ("Location", &location),
                        ("Cache-Control", "no-store"),
                        ("X-Gateway-Instance", &instance),
                    ],
                    "",
                )
                .await;
        }
        self.relay(s, peer, &req, candidates).await
    }

    /// Whether a request carries the credentials `/director/*` asks for
    /// (always, when none are set); refusals are counted and logged at
    /// most once a second.
    fn authorized(&self, req: &Request) -> bool {
        let query = req.query().unwrap_or_default();
        let token = query.get("token").map(String::as_str);
        if self.auth.allows(req.header("authorization"), token) {
            return true;
        }
        self.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut log = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(folded) = log.check(Instant::now()) {
            tracing::warn!(
                path = req.path(),
                repeats = folded,
                "request refused: missing or wrong credentials"
            );
        }
        false
    }

    /// The chosen gateway, once it has just accepted a connection. A gateway
    /// killed since the last health round (a container whose address is
    /// gone answers nothing, so a viewer sent there would hang in connect
    /// for many seconds) is dropped from the pool at once and the choice
    /// made again among the rest.
    async fn pick_answering(&self, stream: &str, mut candidates: Vec<Gateway>) -> Option<Gateway> {
        while !candidates.is_empty() {
            let gw = candidates.swap_remove(self.choose.choose(stream, &candidates));
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(gw.addr)).await {
                Ok(Ok(_)) => return Some(gw),
                _ => {
                    tracing::warn!(gateway = %gw.addr, "gateway did not accept a connection; dropped until it answers a health check");
                    self.pool.remove(gw.addr);
                }
            }
        }
        None
    }

    /// Relays one small request to a gateway, trying the next on a failed connect.
    async fn relay(
        &self,
        mut client: Conn,
        peer: SocketAddr,
        req: &Request,
        mut candidates: Vec<Gateway>,
    ) -> anyhow::Result<()> {
        for _ in 0..RELAY_TRIES.min(candidates.len()) {
            let i = self.choose.choose("", &candidates);
            let gw = candidates.swap_remove(i);
            let Ok(mut upstream) = self
                .upstream
                .connect(gw.addr, &gw.host, CONNECT_TIMEOUT)
                .await
            else {
                tracing::debug!(gateway = %gw.addr, "relay: connect failed, trying another");
                continue;
            };
            upstream.write_all(&relay_head(req, peer)).await?;
            upstream.write_all(&req.raw[req.head_len..]).await?;
            upstream.flush().await?;
            self.stats.relayed.fetch_add(1, Ordering::Relaxed);
            if let Some(hsts) = &self.hsts {
                self.relay_head_with(&mut upstream, &mut client, hsts)
                    .await?;
            }
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
            return Ok(());
        }
        self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
        self.respond(
            &mut client,
            "502 Bad Gateway",
            &[("Retry-After", "1")],
            "no gateway answered\n",
        )
        .await
    }

    /// Passes the gateway's response head on with `Strict-Transport-Security`
    /// added unless it has one. A head that does not end within
    /// `request::MAX_HEAD` bytes or the header timeout is passed on as it is.
    async fn relay_head_with(
        &self,
        upstream: &mut Conn,
        client: &mut Conn,
        hsts: &str,
    ) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(1024);
        let read = async {
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return Some(end);
                }
                if buf.len() > request::MAX_HEAD {
                    return None;
                }
                match upstream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        let end = tokio::time::timeout(self.header_timeout, read)
            .await
            .ok()
            .flatten();
        let out = match end {
            Some(end) => with_header(&buf, end, "strict-transport-security", hsts),
            None => buf,
        };
        client.write_all(&out).await?;
        Ok(())
    }

    fn state_json(&self) -> serde_json::Value {
        let live = self.pool.live();
        serde_json::json!({
            "gateways": live.iter().map(|g| serde_json::json!({
                "addr": g.addr.to_string(),
                "instance": g.instance,
                "ready": g.ready,
            })).collect::<Vec<_>>(),
            "redirects": self.stats.redirects.load(Ordering::Relaxed),
            "relayed": self.stats.relayed.load(Ordering::Relaxed),
            "unavailable": self.stats.unavailable.load(Ordering::Relaxed),
            "unauthorized": self.stats.unauthorized.load(Ordering::Relaxed),
        })
    }
}

/// The request head as sent upstream: one request per connection, and the
/// client's address in `X-Forwarded-For`. `Upgrade` is dropped on purpose: a
/// WebSocket relayed here would carry video through the director (the page
/// then falls back to MJPEG, which is redirected; or it asks
/// `/director/pick` where to open its socket).
fn relay_head(req: &Request, peer: SocketAddr) -> Vec<u8> {
    let mut h = format!("{} {} {}\r\n", req.method, req.target, req.version);
    let mut forwarded = None;
    for (k, v) in &req.headers {
        match k.as_str() {
            "connection" | "keep-alive" | "proxy-connection" | "upgrade" => {}
            "x-forwarded-for" => forwarded = Some(v.clone()),
            _ => h.push_str(&format!("{k}: {v}\r\n")),
        }
    }
    let ip = peer.ip();
    let xff = forwarded.map_or_else(|| ip.to_string(), |f| format!("{f}, {ip}"));
    h.push_str(&format!(
        "x-forwarded-for: {xff}\r\nconnection: close\r\n\r\n"
    ));
    h.into_bytes()
}

/// A response head of `buf` (ending at `end`, before its blank line) with
/// `name: value` added after the status line unless it has that header.
fn with_header(buf: &[u8], end: usize, name: &str, value: &str) -> Vec<u8> {
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let has = head
        .split("\r\n")
        .skip(1)
        .any(|l| l.split(':').next().is_some_and(|k| k.trim() == name));
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return buf.to_vec();
    };
    if has {
        return buf.to_vec();
    }
    let mut out = Vec::with_capacity(buf.len() + name.len() + value.len() + 4);
    out.extend_from_slice(&buf[..line_end + 2]);
    out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    out.extend_from_slice(&buf[line_end + 2..]);
    out
}

async fn respond<S: AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    status: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        out.push_str("Content-Type: text/plain\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(out.as_bytes()).await?;
    s.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_added_once() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let end = head.len() - 6;
        let out = with_header(head, end, "strict-transport-security", "max-age=5");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nstrict-transport-security: max-age=5\r\nContent-Length: 2\r\n\r\nhi"
        );
        let again = with_header(
            &out,
            out.len() - 6,
            "strict-transport-security",
            "max-age=9",
        );
        assert_eq!(again, out);
    }
}
