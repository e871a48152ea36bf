//! A slow, lossy link for tests: a TCP relay on loopback that holds every
//! byte for a fixed delay in each direction (what `tc netem delay` would
//! do; this kernel has no netem), and optional packet loss on a port made
//! with nftables, removed again when the guard drops.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Relays connections to `upstream`, delaying each direction by `delay`.
pub struct DelayLink {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DelayLink {
    pub async fn start(upstream: SocketAddr, delay: Duration) -> DelayLink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the link");
        let addr = listener.local_addr().expect("link address");
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, delay), pipe(sr, cw, delay));
                });
            }
        });
        DelayLink { addr, task }
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + delay, Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Drops `percent` % of the packets to and from a loopback TCP port (an
/// nftables table of its own) until dropped. `None` where nft cannot be used.
pub struct Loss {
    table: String,
}

impl Loss {
    pub fn on_port(port: u16, percent: u32) -> Option<Loss> {
        let table = format!("mjpegloss{port}");
        let rules = format!(
            "table ip {table} {{\n chain output {{\n  type filter hook output priority 0;\n  \
             tcp dport {port} counter\n  tcp sport {port} counter\n  \
             tcp dport {port} numgen random mod 100 < {percent} counter drop\n  \
             tcp sport {port} numgen random mod 100 < {percent} counter drop\n }}\n}}\n"
        );
        let file = crate::media::temp_dir(&table).join("loss.nft");
        std::fs::write(&file, rules).ok()?;
        let ok = Command::new("nft")
            .arg("-f")
            .arg(&file)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Loss { table })
    }

    /// Packets seen on the port and packets dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let out = Command::new("nft")
            .args(["list", "table", "ip", &self.table])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let packets = |line: &str| -> u64 {
            line.split("packets ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let (mut seen, mut dropped) = (0, 0);
        for line in out.lines().filter(|l| l.contains("counter packets")) {
            if line.contains("drop") {
                dropped += packets(line);
            } else {
                seen += packets(line);
            }
        }
        (seen, dropped)
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .status();
    }
}
