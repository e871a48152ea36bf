//! `frame-producer`: captures or generates frames, JPEG-encodes each one once
//! and publishes it on a ZeroMQ PUB socket for any number of gateways.
//!
//! Where things happen: `source/` captures, `capture.rs` paces, `encode.rs`
//! (with `scale.rs`) makes the JPEG,
//! `publish.rs` puts frames on the wire, `metrics.rs` answers health checks.

mod capture;
mod config;
mod encode;
mod metrics;
mod pacing;
mod publish;
mod scale;
mod source;

use anyhow::Context;
use clap::Parser;

use crate::config::Config;

fn main() -> std::process::ExitCode {
    // clap exits with code 2 and a clear message on a bad flag value.
    let config = Config::parse();
    let service = stream_common::service::Service {
        name: "frame-producer",
        log: &config.log,
        healthcheck: config.healthcheck.then_some(config.metrics_listen),
        worker_threads: 1,
    };
    stream_common::service::main(service, || async_main(config.clone()))
}

async fn async_main(config: Config) -> anyhow::Result<()> {
    let shutdown = stream_common::shutdown::on_signal();
    let metrics = metrics::ProducerMetrics::new(&config.stream).context("registering metrics")?;
    let subscriber_timeout = std::time::Duration::from_secs(config.subscriber_timeout);
    let publisher = publish::Publisher::bind(&config.bind, &config.stream, subscriber_timeout)
        .await
        .with_context(|| format!("binding the PUB socket on {}", config.bind))?;
    let publisher_id = publisher.producer_id();
    let metrics_server = metrics::serve(config.metrics_listen, metrics.clone(), shutdown.clone())
        .await
        .with_context(|| format!("binding the metrics listener on {}", config.metrics_listen))?;
    let handle = tokio::runtime::Handle::current();
    let loop_shutdown = shutdown.clone();
    let settings = capture::Settings::from_config(&config);
    // The source is opened on the capture thread and never leaves it.
    let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
    let thread_config = config.clone();
    let capture = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || match source::open(&thread_config) {
            Ok(source) => {
                let _ = opened_tx.send(Ok(source.describe()));
                capture::run(source, publisher, settings, metrics, loop_shutdown, handle)
            }
            Err(e) => {
                let _ = opened_tx.send(Err(e));
            }
        })
        .context("starting the capture thread")?;
    let described = tokio::task::spawn_blocking(move || opened_rx.recv())
        .await
        .context("waiting for the capture thread")?
        .context("the capture thread ended while opening the source")?
        .with_context(|| format!("opening source {:?}", config.source))?;
    let producer_id = publisher_id;
    tracing::info!(
        stream = %config.stream,
        source = %described,
        bind = %config.bind,
        metrics = %config.metrics_listen,
        size = config.size().map(|s| s.to_string()).unwrap_or_else(|| "native".into()),
        fps = config.fps().map(|f| f.to_string()).unwrap_or_else(|| "native".into()),
        producer_id = format_args!("{producer_id:016x}"),
        "frame-producer started"
    );

    shutdown.cancelled().await;
    // The capture thread notices the token within one frame interval; a source
    // stuck in a blocking read must not hold up exit, so wait only briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(700);
    while !capture.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    metrics_server.abort();
    tracing::info!("frame-producer stopped");
    Ok(())
}
