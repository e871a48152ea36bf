//! `object-detector`: subscribes to one or more frame producers, finds the
//! people in each stream a few times a second and publishes their boxes on
//! its own ZeroMQ PUB socket, for gateways to pass on to browsers that draw
//! them. Detection is one more service on the bus: the video's fan-out never
//! waits for it, and a detector that dies or stalls changes nothing for viewers.
//!
//! A frame's path through this crate: `receive.rs` takes it off the bus
//! (through the shared bus client, `frame_bus`; `bus.rs` loads the key) into its stream's latest-value slot
//! (`latest.rs`); the inference thread (`analyse.rs`) takes the newest frame
//! of a stream that is due, prepares it (`preprocess.rs`), runs the model
//! (`model.rs`), keeps the people (`postprocess.rs`) but those standing in a
//! mask of the cameras file (`--cameras`, `stream_common::rules`), optionally draws them
//! (`annotate.rs`), and `publish.rs` sends the result.

mod analyse;
mod annotate;
mod bus;
mod config;
mod latest;
mod metrics;
mod model;
mod postprocess;
mod preprocess;
mod publish;
mod receive;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use frame_wire::Limits;
use tokio::sync::mpsc;

use crate::config::Config;

fn main() -> std::process::ExitCode {
    // clap exits with code 2 and a clear message on a bad flag value.
    let config = Config::parse();
    let service = stream_common::service::Service {
        name: "object-detector",
        log: &config.log,
        healthcheck: config.healthcheck.then_some(config.metrics_listen),
        // Receiving and publishing; inference has its own thread.
        worker_threads: 1,
    };
    stream_common::service::main(service, || async_main(config.clone()))
}

async fn async_main(config: Config) -> anyhow::Result<()> {
    // The model first: without it there is nothing to do, and the error
    // says which script makes it.
    // The cameras file is checked before the model loads: a mistake in it
    // is reported at once, naming its line and field.
    let rules = stream_common::rules::load(config.cameras.as_deref())?;
    let runtime = config.runtime_library();
    let model = model::Model::load(&config.model, &runtime, usize::from(config.threads))?;
    let bus = bus::keys(&config)?;
    let shutdown = stream_common::shutdown::on_signal();
    let metrics = metrics::DetectorMetrics::new().context("registering metrics")?;
    let running = metrics.running.clone();
    let render = metrics.clone();
    let metrics_server = stream_common::status::serve(
        config.metrics_listen,
        move || (!running.load(Ordering::Relaxed)).then_some("inference thread not running"),
        move || render.render(),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("binding the metrics listener on {}", config.metrics_listen))?;
    let bus_settings = frame_bus::BusSettings {
        queue_bytes: config.subscriber_queue_bytes as usize,
        subscriber_timeout: Duration::from_secs(config.subscriber_timeout),
        keys: bus.store().cloned(),
    };
    let server = publish::bind(&config.bind, bus_settings, metrics.bus.clone())
        .with_context(|| format!("binding the PUB socket on {}", config.bind))?;
    if let Some(store) = bus.store() {
        tokio::spawn(frame_bus::publisher::follow_keys(
            store.clone(),
            server.handle(),
            shutdown.clone(),
        ));
    }
    tracing::info!(
        producers = ?config.producers,
        streams = ?config.streams,
        bind = %config.bind,
        metrics = %config.metrics_listen,
        model = %config.model.display(),
        detect_fps = config.detect_fps,
        threshold = config.threshold,
        annotate = config.annotate,
        cameras = ?rules.listed(),
        masks = rules.any_masks(),
        "object-detector started"
    );

    let (out, outgoing) = mpsc::channel(64);
    let publisher = tokio::spawn(publish::run(server, outgoing, shutdown.clone()));
    let latest = Arc::new(latest::Latest::new(Duration::from_secs_f64(
        1.0 / config.detect_fps,
    )));
    let settings = receive::Settings {
        limits: Limits {
            max_jpeg_bytes: config.max_frame_bytes,
        },
        only: config.streams.clone(),
        keys: bus.clone(),
        resubscribe_after: Duration::from_secs(1),
    };
    let receivers: Vec<_> = config
        .producers
        .iter()
        .map(|endpoint| {
            tokio::spawn(receive::run(
                endpoint.clone(),
                settings.clone(),
                latest.clone(),
                metrics.clone(),
                shutdown.clone(),
            ))
        })
        .collect();

    let analyse_settings = analyse::Settings {
        threshold: config.threshold,
        rules,
        annotate: config.annotate,
        bus,
    };
    let inference = {
        let (latest, metrics, shutdown) = (latest.clone(), metrics.clone(), shutdown.clone());
        tokio::task::spawn_blocking(move || {
            let result = analyse::run(model, latest, analyse_settings, metrics, out);
            // However it ended, the process ends with it.
            shutdown.cancel();
            result
        })
    };
    shutdown.cancelled().await;
    latest.close();
    let result = inference.await.context("inference thread")?;
    for task in receivers.into_iter().chain([publisher, metrics_server]) {
        let _ = tokio::time::timeout(Duration::from_millis(200), task).await;
    }
    result.context("inference")?;
    tracing::info!("object-detector stopped");
    Ok(())
}
