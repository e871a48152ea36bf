//! A real `frame-producer` on free loopback ports, for tests that read its
//! frames with a ZeroMQ subscriber and its counters from /metrics.

use std::net::SocketAddr;

use crate::process::Proc;

pub struct Producer {
    pub proc: Proc,
    /// `tcp://127.0.0.1:PORT` of its PUB socket.
    pub endpoint: String,
    pub metrics: SocketAddr,
}

impl Producer {
    /// Starts the producer with `extra` flags after its bind and metrics flags.
    pub fn start(extra: &[&str]) -> Producer {
        let (proc, endpoint, metrics) = crate::process::start_on_bus("frame-producer", extra);
        Producer {
            proc,
            endpoint,
            metrics,
        }
    }

    /// The sum of a metric's samples whose labels contain all of `labels`;
    /// 0 while /metrics cannot be read.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        crate::metrics::metric(self.metrics, name, labels).await
    }
}
