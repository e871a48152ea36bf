//! The gateways the director may choose from: every address the configured
//! names resolve to, checked with `GET /readyz` every round. A gateway that
//! does not answer drops out at the next round (a killed one within about
//! `--check-interval` + `--check-timeout`); one that appears joins.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Target;
use crate::upstream::Upstream;

/// A gateway that answered its last health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Where the director reaches it.
    pub addr: SocketAddr,
    /// The name in `--gateways` it was found under (its TLS name).
    pub host: String,
    /// Its `X-Gateway-Instance`.
    pub instance: Option<String>,
    /// `/readyz` said 200: it has live video. An alive gateway that is not
    /// ready (cut off from its producer) is chosen only when none is ready.
    pub ready: bool,
}

/// The current set of live gateways, replaced whole by each health round.
#[derive(Default)]
pub struct Pool {
    live: RwLock<Arc<Vec<Gateway>>>,
}

impl Pool {
    /// Every gateway that answered the last round, ready or not, by address.
    pub fn live(&self) -> Arc<Vec<Gateway>> {
        self.live.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// The gateways to choose from: the ready ones, or, when none is ready
    /// (every producer gone), all live ones, whose viewers see NO SIGNAL
    /// until video returns.
    pub fn candidates(&self) -> Vec<Gateway> {
        let live = self.live();
        let ready: Vec<Gateway> = live.iter().filter(|g| g.ready).cloned().collect();
        if ready.is_empty() {
            live.to_vec()
        } else {
            ready
        }
    }

    /// Drops one gateway until the next health round finds it answering.
    pub fn remove(&self, addr: std::net::SocketAddr) {
        if let Ok(mut g) = self.live.write()
            && g.iter().any(|x| x.addr == addr)
        {
            *g = Arc::new(g.iter().filter(|x| x.addr != addr).cloned().collect());
        }
    }

    fn set(&self, gateways: Vec<Gateway>) {
        if let Ok(mut g) = self.live.write() {
            *g = Arc::new(gateways);
        }
    }
}

/// Health rounds until `cancel`: resolve every target, check every address
/// at once (over TLS when `upstream` says so), publish the result.
pub async fn check_forever(
    pool: Arc<Pool>,
    upstream: Upstream,
    targets: Vec<Target>,
    interval: Duration,
    timeout: Duration,
    cancel: CancellationToken,
) {
    loop {
        let next = tokio::time::Instant::now() + interval;
        let addrs = resolve(&targets).await;
        let mut probes = JoinSet::new();
        for (addr, host) in addrs {
            let upstream = upstream.clone();
            probes.spawn(async move {
                match tokio::time::timeout(timeout, probe(&upstream, addr, host, timeout)).await {
                    Ok(Ok(g)) => Some(g),
                    _ => None,
                }
            });
        }
        let mut live: Vec<Gateway> = probes.join_all().await.into_iter().flatten().collect();
        live.sort_by_key(|g| g.addr);
        log_changes(&pool.live(), &live);
        pool.set(live);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// Every address of every target, with the name it was found under.
async fn resolve(targets: &[Target]) -> Vec<(SocketAddr, String)> {
    let mut out = Vec::new();
    for t in targets {
        for port in t.ports.clone() {
            match tokio::net::lookup_host((t.host.as_str(), port)).await {
                Ok(addrs) => out.extend(addrs.map(|a| (a, t.host.clone()))),
                // A service with no running replica has no DNS entry.
                Err(e) => tracing::debug!(host = %t.host, port, error = %e, "not resolved"),
            }
        }
    }
    out.sort();
    out.dedup_by_key(|(a, _)| *a);
    out
}

/// `GET /readyz`: any HTTP answer means alive, 200 means ready.
async fn probe(
    upstream: &Upstream,
    addr: SocketAddr,
    host: String,
    timeout: Duration,
) -> std::io::Result<Gateway> {
    let mut s = upstream.connect(addr, &host, timeout).await?;
    s.write_all(
        b"GET /readyz HTTP/1.0\r\nHost: stream-director\r\nUser-Agent: stream-director\r\n\r\n",
    )
    .await?;
    let mut buf = Vec::with_capacity(1024);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        if s.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    let head = crate::request::parse_response_head(&buf).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response")
    })?;
    Ok(Gateway {
        addr,
        host,
        instance: head.header("x-gateway-instance").map(String::from),
        ready: head.status == 200,
    })
}

fn log_changes(old: &[Gateway], new: &[Gateway]) {
    for g in new {
        match old.iter().find(|o| o.addr == g.addr) {
            None => {
                tracing::info!(gateway = %g.addr, instance = ?g.instance, ready = g.ready, "gateway joined")
            }
            Some(o) if o.ready != g.ready => {
                tracing::info!(gateway = %g.addr, ready = g.ready, "gateway readiness changed")
            }
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|g| g.addr == o.addr) {
            tracing::warn!(gateway = %o.addr, instance = ?o.instance, "gateway left (no answer)");
        }
    }
}
