//! A running system for tests: a real `frame-producer` and a real
//! `stream-gateway` subscribed to it, on free loopback ports.

use std::net::SocketAddr;
use std::time::Duration;

use crate::process::Proc;
use crate::{free_port, http, metrics, wait_for};

pub struct Stack {
    pub producer: Option<Proc>,
    pub gateway: Proc,
    /// The producer's PUB endpoint.
    pub zmq: String,
    /// The gateway's HTTP address.
    pub http: SocketAddr,
    producer_args: Vec<String>,
    gateway_args: Vec<String>,
}

impl Stack {
    /// Starts a producer with `producer_args` and a gateway with
    /// `gateway_args` (its `--producer` and `--listen` are set here), and
    /// waits until the gateway serves the producer's frames.
    pub async fn start(producer_args: &[&str], gateway_args: &[&str]) -> Stack {
        let zmq = format!("tcp://127.0.0.1:{}", free_port());
        let producer_args: Vec<String> = producer_args.iter().map(|s| s.to_string()).collect();
        let producer = Some(start_producer(&zmq, &producer_args));
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let listen = http.to_string();
        let mut args = vec!["--producer", zmq.as_str(), "--listen", listen.as_str()];
        args.extend_from_slice(gateway_args);
        let gateway = Proc::start("stream-gateway", &args, &[]);
        let gateway_args = args.iter().map(|s| s.to_string()).collect();
        let stack = Stack {
            producer,
            gateway,
            zmq,
            http,
            producer_args,
            gateway_args,
        };
        stack.wait_ready().await;
        stack
    }

    /// Waits for `/readyz` to answer 200.
    pub async fn wait_ready(&self) {
        let addr = self.http;
        wait_for("gateway ready", Duration::from_secs(20), || async move {
            let r = http::get(addr, "/readyz").await.ok()?;
            (r.head.status == 200).then_some(())
        })
        .await;
    }

    /// Kills the gateway and starts a new one with the same arguments (same
    /// port), then waits until it is ready.
    pub async fn restart_gateway(&mut self) {
        self.gateway.kill();
        let args: Vec<&str> = self.gateway_args.iter().map(String::as_str).collect();
        self.gateway = Proc::start("stream-gateway", &args, &[]);
        self.wait_ready().await;
    }

    pub fn kill_producer(&mut self) {
        if let Some(mut p) = self.producer.take() {
            p.kill();
        }
    }

    /// Starts a new producer process on the same endpoint.
    pub fn restart_producer(&mut self) {
        self.kill_producer();
        self.producer = Some(start_producer(&self.zmq, &self.producer_args));
    }

    /// The sum of a metric's samples whose line contains every `labels` part.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        metrics::metric(self.http, name, labels).await
    }
}

/// Waits until the gateway at `addr` counts exactly `n` viewers.
pub async fn wait_viewers(addr: SocketAddr, n: usize, timeout: Duration) {
    wait_for(&format!("{n} viewers"), timeout, || async move {
        let text = metrics::scrape(addr).await?;
        (metrics::metric_value(&text, "gateway_viewers_total", &[]) == n as f64).then_some(())
    })
    .await;
}

fn start_producer(zmq: &str, extra: &[String]) -> Proc {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--bind", zmq, "--metrics-listen", metrics.as_str()];
    args.extend(extra.iter().map(String::as_str));
    Proc::start("frame-producer", &args, &[])
}
