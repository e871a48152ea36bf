//! Helpers every end-to-end test uses, in one place: start the real binaries
//! on free loopback ports, read HTTP and MJPEG exactly as a client would, and
//! wait for conditions with a deadline instead of sleeping.

pub mod detector;
pub mod director;
pub mod docker;
pub mod events;
pub mod gateway;
pub mod http;
pub mod keys;
pub mod link;
pub mod marionette;
pub mod media;
pub mod metrics;
pub mod mosquitto;
pub mod process;
pub mod producer;
pub mod publisher;
pub mod recorder;
pub mod sse;
pub mod stack;
pub mod tls;
pub mod wall;
pub mod watch;
pub mod webdriver;
pub mod webhook;
pub mod zmq;

use std::future::Future;
use std::time::{Duration, Instant};

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    // The kernel may hand the same port to two binds in a row once the first
    // listener is closed (seen: a producer's and a gateway's port collided),
    // so never give out a port twice in one test process.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// `n` consecutive TCP ports that were free a moment ago on every address
/// (a compose service publishes one per replica from such a range).
pub fn free_port_range(n: u16) -> std::ops::RangeInclusive<u16> {
    // Below the kernel's ephemeral range (32768+), so outgoing connections
    // do not take them meanwhile; start somewhere different every time.
    let seed = std::process::id() as u64 ^ stream_common::unix_now_ns();
    for attempt in 0..1000u64 {
        let first = 20_000 + ((seed.wrapping_add(attempt * 7919)) % 12_000) as u16;
        let ports = first..=first + n - 1;
        if ports
            .clone()
            .all(|p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok())
        {
            return ports;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Directory for files a test leaves behind for people to look at
/// (screenshots, logs): `<workspace>/test-artifacts`.
pub fn artifact_dir() -> std::path::PathBuf {
    let dir = process::workspace_root().join("test-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir
}
