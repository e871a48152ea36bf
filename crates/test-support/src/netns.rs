//! A link with a real bandwidth limit for tests: a network namespace joined
//! to this one by a veth pair, with a token-bucket qdisc (`tc qdisc … tbf`)
//! on the host's end, so everything a server on the host sends to a client
//! in the namespace goes at most at the given rate (what a phone on a
//! mobile link sees; this kernel has tbf but no netem). The limit can be
//! changed or lifted mid-test; namespace and veth go when the guard drops.
//!
//! A client gets into the namespace by way of [`Throttled::connect`]: the
//! socket is made on a thread that entered the namespace (`setns`), and a
//! socket stays in the namespace it was made in, so the rest of the test
//! uses it as any other. A server that should be reached both from the
//! namespace and unthrottled from loopback listens on `0.0.0.0`
//! ([`crate::gateway::Gateway::start_reachable`]).
//!
//! Needs root (`ip netns add`); [`Throttled::new`] returns `None` where it
//! cannot be made, for the test to say so.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace behind a rate-limited veth pair.
pub struct Throttled {
    ns: String,
    host_if: String,
    /// The host's address on the veth: what a client in the namespace
    /// connects to to reach a server on the host.
    pub host_ip: Ipv4Addr,
    /// The namespace's address.
    pub ns_ip: Ipv4Addr,
}

/// Runs `ip`/`tc` with `args`; true when it succeeded.
fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Throttled {
    /// A namespace whose traffic from the host goes at most `kbit` kbit/s.
    /// `None` where namespaces or tbf cannot be used (not root, no `ip`).
    pub fn new(kbit: u32) -> Option<Throttled> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // Unique among concurrent test processes: the pid and a counter,
        // which also pick the /30 subnet (10.231.0.0/16 holds 16384).
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id().wrapping_mul(8).wrapping_add(n)) % 16384;
        // Interface names hold 15 bytes: "thh" + pid (7 digits at most) + "x" + n.
        let tag = format!("{}x{n}", std::process::id());
        let t = Throttled {
            ns: format!("tsthr{tag}"),
            host_if: format!("thh{tag}"),
            host_ip: Ipv4Addr::new(10, 231, (id >> 6) as u8, ((id & 63) * 4 + 1) as u8),
            ns_ip: Ipv4Addr::new(10, 231, (id >> 6) as u8, ((id & 63) * 4 + 2) as u8),
        };
        clean_stale();
        let ns_if = format!("thn{tag}");
        let host_cidr = format!("{}/30", t.host_ip);
        let ns_cidr = format!("{}/30", t.ns_ip);
        if !run("ip", &["netns", "add", &t.ns]) {
            return None;
        }
        // From here on, dropping `t` cleans up whatever was made.
        let ok = run(
            "ip",
            &[
                "link", "add", &t.host_if, "type", "veth", "peer", "name", &ns_if,
            ],
        ) && run("ip", &["link", "set", &ns_if, "netns", &t.ns])
            && run("ip", &["addr", "add", &host_cidr, "dev", &t.host_if])
            && run("ip", &["link", "set", &t.host_if, "up"])
            && run("ip", &["-n", &t.ns, "addr", "add", &ns_cidr, "dev", &ns_if])
            && run("ip", &["-n", &t.ns, "link", "set", &ns_if, "up"])
            && run("ip", &["-n", &t.ns, "link", "set", "lo", "up"])
            && t.set_rate(Some(kbit));
        ok.then_some(t)
    }

    /// Limits what the host sends into the namespace to `kbit` kbit/s, or
    /// lifts the limit (`None`). True when `tc` took it.
    pub fn set_rate(&self, kbit: Option<u32>) -> bool {
        match kbit {
            Some(kbit) => {
                let rate = format!("{kbit}kbit");
                // A bucket of 16 KB and 100 ms of queue: the rate holds
                // over any stretch longer than a few frames.
                run(
                    "tc",
                    &[
                        "qdisc",
                        "replace",
                        "dev",
                        &self.host_if,
                        "root",
                        "tbf",
                        "rate",
                        &rate,
                        "burst",
                        "16kb",
                        "latency",
                        "100ms",
                    ],
                )
            }
            None => {
                run("tc", &["qdisc", "del", "dev", &self.host_if, "root"]);
                // Gone whether it was there or not.
                !self.rate_limited()
            }
        }
    }

    /// True while a tbf qdisc is on the host's end.
    pub fn rate_limited(&self) -> bool {
        Command::new("tc")
            .args(["qdisc", "show", "dev", &self.host_if])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("tbf"))
    }

    /// A host address (`host_ip`) with `port`, for a client in the namespace.
    pub fn host_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.host_ip, port))
    }

    /// A TCP connection made from inside the namespace to `addr`.
    pub async fn connect(&self, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
        let path = format!("/run/netns/{}", self.ns);
        let std_stream = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            // A thread of its own enters the namespace and ends with it:
            // no other task ever runs in the namespace.
            std::thread::spawn(move || -> anyhow::Result<std::net::TcpStream> {
                let ns = std::fs::File::open(&path)?;
                // Affects only this thread, which does nothing else before it ends.
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let s = std::net::TcpStream::connect_timeout(
                    &addr,
                    std::time::Duration::from_secs(10),
                )?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
        })
        .await??;
        Ok(tokio::net::TcpStream::from_std(std_stream)?)
    }
}

/// Deletes the namespaces (and so their veths' ends) of test processes
/// that ended without dropping theirs (killed at a timeout): their names
/// carry the pid.
fn clean_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(tag) = name.strip_prefix("tsthr") else {
            continue;
        };
        // The tag is the pid that made it, "x", a counter.
        let alive = tag
            .split_once('x')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .is_none_or(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            run("ip", &["link", "del", &format!("thh{tag}")]);
            run("ip", &["netns", "del", &name]);
        }
    }
}

impl Drop for Throttled {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes both; the namespace goes last.
        run("ip", &["link", "del", &self.host_if]);
        run("ip", &["netns", "del", &self.ns]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes from the host to a client in the namespace take at least as
    /// long as the rate says (a lower bound: load only slows it more), and
    /// lifting the limit leaves the link working.
    #[tokio::test]
    async fn the_rate_bounds_what_the_host_sends_into_the_namespace() {
        let Some(link) = Throttled::new(2000) else {
            eprintln!("skipped: no network namespaces here (needs root and ip/tc)");
            return;
        };
        assert!(link.rate_limited());
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            s.write_all(&vec![7u8; 300_000]).await.expect("write");
            let (mut s2, _) = listener.accept().await.expect("accept");
            s2.write_all(&[1u8; 1000]).await.expect("write");
        });
        let mut c = link.connect(link.host_addr(port)).await.expect("connect");
        let start = std::time::Instant::now();
        let mut got = vec![0u8; 300_000];
        c.read_exact(&mut got).await.expect("read");
        // 300 KB at 2 Mbit/s is 1.2 s; less the 16 KB bucket, over 1.1 s.
        assert!(
            start.elapsed() > std::time::Duration::from_millis(1000),
            "300 KB came in {:?}: not limited",
            start.elapsed()
        );
        assert!(link.set_rate(None));
        assert!(!link.rate_limited());
        let mut c2 = link.connect(link.host_addr(port)).await.expect("connect");
        let mut small = [0u8; 1000];
        c2.read_exact(&mut small).await.expect("read after lifting");
        server.await.expect("server");
    }
}
