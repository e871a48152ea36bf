//! One way to start a real `stream-gateway` for a test: on a free loopback
//! port, reading the given producers, with the test's own flags and
//! environment. Tests that need a producer too use `stack::Stack`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::process::Proc;
use crate::{free_port, http, metrics, wait_for};

pub struct Gateway {
    pub proc: Proc,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl Gateway {
    /// Starts a gateway reading every endpoint in `producers` (`--producer`
    /// each), listening on a free port, with `extra` flags and `env`.
    pub fn start(producers: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Gateway {
        Self::start_on("127.0.0.1", producers, extra, env)
    }

    /// Like [`start`](Self::start), listening on every address (`0.0.0.0`),
    /// so a client in a test's network namespace (`netns.rs`) reaches it
    /// too; `addr` is still its loopback address.
    pub fn start_reachable(producers: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Gateway {
        Self::start_on("0.0.0.0", producers, extra, env)
    }

    fn start_on(ip: &str, producers: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Gateway {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .expect("loopback address");
        let listen = format!("{ip}:{port}");
        let mut args = vec!["--listen", listen.as_str()];
        for p in producers {
            args.extend_from_slice(&["--producer", p]);
        }
        args.extend_from_slice(extra);
        Gateway {
            proc: Proc::start("stream-gateway", &args, env),
            addr,
        }
    }

    /// The sum of a metric's samples whose labels contain all of `labels`;
    /// 0 while `/metrics` cannot be read.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metrics::metric(self.addr, name, labels).await
    }

    /// Waits until the gateway lists `stream` in `/api/streams`.
    pub async fn wait_stream(&self, stream: &str, timeout: Duration) {
        let addr = self.addr;
        wait_for(
            &format!("the gateway to list {stream}"),
            timeout,
            || async move {
                let r = http::get(addr, "/api/streams").await.ok()?;
                let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
                v["streams"]
                    .as_array()?
                    .iter()
                    .any(|s| s["name"] == stream)
                    .then_some(())
            },
        )
        .await;
    }
}
