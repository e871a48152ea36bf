//! Many cameras behind one gateway, for the page tests: one real
//! `frame-producer` (test pattern) per camera on its own loopback port, and
//! one real `stream-gateway` subscribed to all of them. A camera can be
//! taken offline and brought back on the same endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::process::Proc;
use crate::{free_port, http, wait_for};

pub struct Wall {
    pub gateway: Proc,
    pub http: SocketAddr,
    /// Camera names, in the order they were started.
    pub names: Vec<String>,
    endpoints: Vec<String>,
    producers: Vec<Option<Proc>>,
    producer_args: Vec<String>,
}

impl Wall {
    /// `n` cameras named `cam00`, `cam01`, … each publishing with
    /// `producer_args` (e.g. `--fps 10 --size 160x120`), and a gateway with
    /// `gateway_args`; returns once the gateway lists every camera online.
    pub async fn start(n: usize, producer_args: &[&str], gateway_args: &[&str]) -> Wall {
        let names: Vec<String> = (0..n).map(|i| format!("cam{i:02}")).collect();
        let endpoints: Vec<String> = (0..n)
            .map(|_| format!("tcp://127.0.0.1:{}", free_port()))
            .collect();
        let producer_args: Vec<String> = producer_args.iter().map(|s| s.to_string()).collect();
        let producers = (0..n)
            .map(|i| Some(start_camera(&endpoints[i], &names[i], &producer_args)))
            .collect();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let listen = http.to_string();
        let mut args: Vec<&str> = Vec::new();
        for e in &endpoints {
            args.extend(["--producer", e.as_str()]);
        }
        args.extend(["--listen", listen.as_str()]);
        args.extend_from_slice(gateway_args);
        let gateway = Proc::start("stream-gateway", &args, &[]);
        let wall = Wall {
            gateway,
            http,
            names,
            endpoints,
            producers,
            producer_args,
        };
        wait_for(
            &format!("{n} cameras online"),
            Duration::from_secs(40),
            || async { (wall.online().await.ok()?.len() == n).then_some(()) },
        )
        .await;
        wall
    }

    /// `/api/streams`, parsed.
    pub async fn api(&self) -> anyhow::Result<Value> {
        let r = http::get(self.http, "/api/streams").await?;
        anyhow::ensure!(r.head.status == 200, "/api/streams: {}", r.head.status);
        Ok(serde_json::from_str(&r.text())?)
    }

    /// Names the gateway lists as online now.
    pub async fn online(&self) -> anyhow::Result<Vec<String>> {
        let v = self.api().await?;
        Ok(v["streams"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["online"] == true)
                    .filter_map(|s| Some(s["name"].as_str()?.to_string()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Stops camera `i`'s producer.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.producers[i].take() {
            p.kill();
        }
    }

    /// Starts camera `i`'s producer again on the same endpoint.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.producers[i] = Some(start_camera(
            &self.endpoints[i],
            &self.names[i],
            &self.producer_args,
        ));
    }

    /// The sum of a gateway metric's samples whose labels contain `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        match http::get(self.http, "/metrics").await {
            Ok(r) => crate::metrics::metric_value(&r.text(), name, labels),
            Err(_) => f64::NAN,
        }
    }
}

fn start_camera(endpoint: &str, name: &str, extra: &[String]) -> Proc {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "--bind",
        endpoint,
        "--stream",
        name,
        "--metrics-listen",
        metrics.as_str(),
    ];
    args.extend(extra.iter().map(String::as_str));
    Proc::start("frame-producer", &args, &[])
}
