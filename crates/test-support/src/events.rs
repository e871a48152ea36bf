//! A real `event-stage` on free loopback ports, following real detectors
//! and producers, with its counters read from /metrics.

use std::net::SocketAddr;

use crate::process::Proc;

pub struct EventStage {
    pub proc: Proc,
    /// `tcp://127.0.0.1:PORT` of its PUB socket, where its `e/NAME/` events go.
    pub endpoint: String,
    pub metrics: SocketAddr,
}

impl EventStage {
    /// Starts the stage following `detectors` (detections) and `producers`
    /// (snapshot frames), with `extra` flags after its own.
    pub fn start(detectors: &[&str], producers: &[&str], extra: &[&str]) -> EventStage {
        let mut args = Vec::new();
        for d in detectors {
            args.extend(["--detector", d]);
        }
        for p in producers {
            args.extend(["--producer", p]);
        }
        args.extend_from_slice(extra);
        let (proc, endpoint, metrics) = crate::process::start_on_bus("event-stage", &args);
        EventStage {
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
