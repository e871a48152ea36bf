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
pub mod netns;
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
    // so never give out a port twice: not in this process, and not in any
    // other test process of the run (nextest runs each test in its own), by
    // way of a shared, locked list of recently given ports.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut shared = SharedPorts::open();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        if !given.contains(&port) && shared.claim(port) {
            given.push(port);
            return port;
        }
    }
}

/// Ports given out by every test process on this machine in the last
/// [`SharedPorts::KEEP`] seconds: one line `port unix_secs` each, in a file
/// held under an exclusive lock while it is read and extended.
struct SharedPorts {
    file: Option<std::fs::File>,
    recent: Vec<u16>,
}

impl SharedPorts {
    const KEEP: u64 = 600;

    fn open() -> SharedPorts {
        use std::io::Read;
        let path = std::env::temp_dir().join("test-support-free-ports");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .ok()
            .filter(|f| f.lock().is_ok());
        let mut text = String::new();
        if let Some(mut f) = file.as_ref() {
            let _ = f.read_to_string(&mut text);
        }
        let now = stream_common::unix_now_ns() / 1_000_000_000;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.split_once(' ')
                    .and_then(|(_, at)| at.parse::<u64>().ok())
                    .is_some_and(|at| now.saturating_sub(at) < Self::KEEP)
            })
            .collect();
        let recent = kept
            .iter()
            .filter_map(|l| l.split_once(' ')?.0.parse().ok())
            .collect();
        // Forget what is too old to matter, now and then.
        if let Some(mut f) = file.as_ref()
            && text.len() > 64 * 1024
            && f.set_len(0).is_ok()
        {
            use std::io::Write;
            let _ = f.write_all(
                kept.iter()
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
                    .as_bytes(),
            );
        }
        SharedPorts { file, recent }
    }

    /// True (and recorded) when no test process was given `port` lately.
    fn claim(&mut self, port: u16) -> bool {
        use std::io::Write;
        if self.recent.contains(&port) {
            return false;
        }
        self.recent.push(port);
        if let Some(f) = self.file.as_mut() {
            let now = stream_common::unix_now_ns() / 1_000_000_000;
            let _ = writeln!(f, "{port} {now}");
        }
        true
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
