//! `frame-recorder`: subscribes to the frame bus like a gateway, writes each
//! camera's JPEGs to disk as they arrive (never re-encoded) in Matroska
//! segments of about a minute, keeps them for a while, and plays them back
//! over HTTP: the frame at a time, a paced MJPEG stream from a time, a clip
//! to download. It is one more service on the bus: viewers never wait for
//! it, and a slow or full disk costs only recorded frames.
//!
//! A frame's path: `receive.rs` takes it off the bus and hands it to its
//! camera's writer thread (`writer.rs`) through a bounded queue; the writer
//! gathers clusters (`mkv.rs`) and tells the catalog (`store.rs`) where each
//! frame landed; the event stage's events go to the history (`history.rs`,
//! kept in the catalog too); `http.rs` and `playback.rs` read through the catalog;
//! `retention.rs` deletes what is too old or too much.

mod access;
mod config;
mod history;
mod http;
mod keeper;
mod metrics;
mod mkv;
mod playback;
mod receive;
mod retention;
mod store;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use frame_wire::Limits;

use crate::config::Config;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let service = stream_common::service::Service {
        name: "frame-recorder",
        log: &config.log,
        healthcheck: config.healthcheck.then_some(config.listen),
        // Receiving and HTTP; every camera's writer has its own thread.
        worker_threads: 2,
    };
    stream_common::service::main(service, || async_main(config.clone()))
}

async fn async_main(config: Config) -> anyhow::Result<()> {
    let choice = config.choice()?;
    let auth = config.auth.auth().context("authentication settings")?;
    let access = Arc::new(access::Access::new(
        auth,
        stream_common::access::Origins::new(config.allow_origins.clone()),
        config.public_metrics,
    ));
    if !access.enabled() && !config.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.listen, "playback is open to anyone who reaches this address: set --auth-user/--auth-password or --auth-token");
    }
    let metrics = metrics::RecorderMetrics::new().context("registering metrics")?;
    metrics
        .up_since
        .set(stream_common::unix_now_ns() as f64 / 1e9);
    // Repairing what a killed recorder left may read a few files.
    let dir = config.dir.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || store::Store::open(&dir))
            .await
            .context("opening the recordings")?
            .with_context(|| format!("opening the recordings in {}", config.dir.display()))?
            .with_events(store::EventSettings {
                pre_ns: Duration::from_secs_f64(config.pre_roll.max(0.0)).as_nanos() as u64,
                post_ns: Duration::from_secs_f64(config.post_roll.max(0.0)).as_nanos() as u64,
                max_per_stream: config.max_events as usize,
            }),
    );
    let shutdown = stream_common::shutdown::on_signal();

    let app = http::App {
        store: store.clone(),
        access,
        metrics: metrics.clone(),
        playbacks: Arc::new(tokio::sync::Semaphore::new(http::MAX_PLAYBACKS)),
        shutdown: shutdown.clone(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let server = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            warp::serve(app.routes())
                .incoming(listener)
                .graceful(async move { shutdown.cancelled().await })
                .run()
                .await;
        })
    };

    let settings = writer::Settings {
        segment: Duration::from_secs(config.segment_seconds),
        // 800 ms, not 1 s: a SIGKILL loses the cluster in hand plus the
        // frames still on their way, and the promise is "at most the last
        // second" (a 1 s cluster lost 1.13 s under load).
        cluster: Duration::from_millis(800),
        idle_finish: Duration::from_secs(10),
        pre_roll: Duration::from_secs_f64(config.pre_roll.max(0.0)),
        post_roll: Duration::from_secs_f64(config.post_roll.max(0.0)),
        queue_frames: config.queue_frames.max(1),
        queue_bytes: config.queue_bytes as usize,
        record_fps: config.record_fps,
        retry_after: Duration::from_secs(1),
    };
    let history = keeper::Keeper::start(store.clone(), metrics.clone())
        .context("starting the event history's writer")?;
    let cameras = Arc::new(receive::Cameras::new(
        choice.clone(),
        store.clone(),
        settings,
        metrics.clone(),
        history,
    ));
    let limits = Limits {
        max_jpeg_bytes: config.max_frame_bytes,
    };
    let keys = config.bus.load().context("bus key")?;
    let receivers: Vec<_> = config
        .producers
        .iter()
        .map(|endpoint| {
            tokio::spawn(receive::run(
                frame_bus::Settings {
                    endpoint: endpoint.clone(),
                    keys: keys.clone(),
                    limits,
                    resubscribe_after: Duration::from_secs(1),
                },
                cameras.clone(),
                metrics.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    let retention = tokio::spawn(retention::run(
        store.clone(),
        retention::Policy {
            keep: config.keep,
            keep_events: config.keep_events,
            max_bytes: config.max_bytes.0,
        },
        metrics.clone(),
        shutdown.clone(),
    ));
    tracing::info!(
        producers = ?config.producers,
        dir = %config.dir.display(),
        listen = %config.listen,
        streams = ?choice.named,
        every_stream = choice.everything,
        keep = ?config.keep,
        max_bytes = ?config.max_bytes.0,
        "frame-recorder started"
    );

    shutdown.cancelled().await;
    for task in receivers {
        let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
    }
    // Every writer finishes its segment (Duration, index) before the exit.
    let stopping = cameras.clone();
    let _ = tokio::task::spawn_blocking(move || stopping.stop()).await;
    for task in [retention, server] {
        let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
    }
    tracing::info!("frame-recorder stopped");
    Ok(())
}
