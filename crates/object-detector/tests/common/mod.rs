//! A real `object-detector` on free loopback ports, and what its tests share:
//! the model (prepared by scripts/model.sh), Debian darknet's test pictures
//! and a subscriber for its detections messages.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use frame_wire::{Kind, Message};
use test_support::free_port;
use test_support::process::Proc;
use zeromq::{Socket, SocketRecv};

/// Where scripts/model.sh leaves the model (the detector's default --model).
pub fn model_path() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    let path = cache.join("mjpeg-fanout/models/ssdlite-mobilenet-v2-person.onnx");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/model.sh (scripts/test.sh runs scripts/setup.sh, which does)",
        path.display()
    );
    path
}

/// A directory holding one picture from Debian's darknet package
/// (/usr/share/darknet/data), for the producer's file source.
pub fn picture_dir(name: &str) -> PathBuf {
    let src = PathBuf::from("/usr/share/darknet/data").join(name);
    assert!(
        src.is_file(),
        "{} is missing: install Debian's darknet package (scripts/setup.sh does)",
        src.display()
    );
    let dir = std::env::temp_dir().join(format!(
        "detector-{}-{}-{name}",
        std::process::id(),
        stream_common::unix_now_ns()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(&src, dir.join(name)).expect("copy picture");
    dir
}

pub struct Detector {
    pub proc: Proc,
    /// `tcp://127.0.0.1:PORT` of its PUB socket.
    pub endpoint: String,
    pub metrics: SocketAddr,
}

impl Detector {
    /// Starts the detector on `producers` with `extra` flags.
    pub fn start(producers: &[&str], extra: &[&str]) -> Detector {
        let endpoint = format!("tcp://127.0.0.1:{}", free_port());
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let metrics_s = metrics.to_string();
        let model = model_path();
        let model_s = model.to_string_lossy().into_owned();
        let mut args = vec![
            "--bind",
            endpoint.as_str(),
            "--metrics-listen",
            metrics_s.as_str(),
            "--model",
            model_s.as_str(),
        ];
        for p in producers {
            args.extend(["--producer", p]);
        }
        args.extend_from_slice(extra);
        Detector {
            proc: Proc::start("object-detector", &args, &[]),
            endpoint,
            metrics,
        }
    }

    /// The sum of a metric's samples whose labels contain all of `labels`;
    /// 0 while /metrics cannot be read.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        match test_support::http::get(self.metrics, "/metrics").await {
            Ok(r) => test_support::stack::metric_value(&r.text(), name, labels),
            Err(_) => 0.0,
        }
    }

    /// A subscriber to what this detector publishes of `kind` (all streams).
    pub async fn subscribe(&self, kind: Kind) -> Sub {
        let mut socket = zeromq::SubSocket::new();
        socket
            .connect(&self.endpoint)
            .await
            .expect("connect to the detector");
        let topic = frame_wire::subscription(kind, None);
        socket
            .subscribe(std::str::from_utf8(&topic).expect("ascii topic"))
            .await
            .expect("subscribe");
        Sub { socket }
    }
}

pub struct Sub {
    socket: zeromq::SubSocket,
}

impl Sub {
    /// The next message, decoded with the real wire codec, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Message> {
        self.next_with(timeout, None).await
    }

    /// The next message, which must be signed with a key of `keys` if given.
    pub async fn next_with(
        &mut self,
        timeout: Duration,
        keys: Option<&frame_wire::auth::KeyRing>,
    ) -> anyhow::Result<Message> {
        let msg = tokio::time::timeout(timeout, self.socket.recv())
            .await
            .context("no message in time")??;
        Ok(frame_wire::decode_message(
            &msg.into_vec(),
            &frame_wire::Limits::default(),
            keys,
        )?)
    }
}
