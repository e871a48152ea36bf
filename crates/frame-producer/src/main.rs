//! `frame-producer`: captures or generates frames, JPEG-encodes each one once
//! and publishes it on a ZeroMQ PUB socket for any number of gateways.
//!
//! Where things happen: `cameras.rs` says which cameras (one from the flags,
//! or many from a file), `source/` captures, `capture.rs` paces (a thread
//! per camera), `encode.rs` (with `scale.rs`) makes the JPEG when a
//! subscriber wants it, `renditions.rs` the smaller copies made only while
//! subscribed, `preview.rs` the small one a second that gateways
//! always keep, `publish.rs` puts every camera's frames and previews on the
//! one PUB socket, `metrics.rs` answers health checks.

mod cameras;
mod capture;
mod config;
mod encode;
mod metrics;
mod pacing;
mod preview;
mod publish;
mod renditions;
mod scale;
mod source;
mod units;

use anyhow::Context;
use clap::Parser;

use crate::config::Config;

fn main() -> std::process::ExitCode {
    // clap exits with code 2 and a clear message on a bad flag value; a bad
    // source or cameras file is the same kind of mistake and gets the same.
    let config = Config::parse();
    let cameras = if config.healthcheck {
        cameras::CameraList {
            cameras: Vec::new(),
            listed: false,
        }
    } else {
        match cameras::from_config(&config) {
            Ok(list) => list,
            Err(e) => {
                eprintln!("frame-producer: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    };
    let service = stream_common::service::Service {
        name: "frame-producer",
        log: &config.log,
        healthcheck: config.healthcheck.then_some(config.metrics_listen),
        worker_threads: 1,
    };
    stream_common::service::main(service, || async_main(config.clone(), cameras))
}

async fn async_main(config: Config, list: cameras::CameraList) -> anyhow::Result<()> {
    let shutdown = stream_common::shutdown::on_signal();
    let metrics = metrics::ProducerMetrics::new().context("registering metrics")?;
    let subscriber_timeout = std::time::Duration::from_secs(config.subscriber_timeout);
    let keys = bus_keys(&config)?;
    if (config.subscriber_queue_bytes as usize) < config.max_frame_bytes {
        anyhow::bail!(
            "--subscriber-queue-bytes ({}) must be at least --max-frame-bytes ({}): a frame must fit in a subscriber's queue",
            config.subscriber_queue_bytes,
            config.max_frame_bytes
        );
    }
    let bus_settings = frame_bus::BusSettings {
        queue_bytes: config.subscriber_queue_bytes as usize,
        subscriber_timeout,
        keys: keys.clone(),
    };
    let publisher = publish::Publisher::bind(&config.bind, bus_settings, metrics.bus.clone())
        .await
        .with_context(|| format!("binding the PUB socket on {}", config.bind))?;
    warn_if_exposed(&config, keys.as_ref());
    if list.listed {
        tracing::info!(
            cameras = list.cameras.len(),
            "cameras listed (--cameras / --camera): --source and --stream are not used"
        );
    }
    if let Some(keys) = keys {
        tokio::spawn(frame_bus::publisher::follow_keys(
            keys,
            publisher.bus_handle(),
            shutdown.clone(),
        ));
    }
    let producer_id = publisher.producer_id();
    let health = metrics.clone();
    let render = metrics.clone();
    let metrics_server = stream_common::status::serve(
        config.metrics_listen,
        move || (!health.healthy()).then_some("no frame published recently"),
        move || render.render(),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("binding the metrics listener on {}", config.metrics_listen))?;
    // Each source is opened on its camera's thread and never leaves it.
    let mut threads = Vec::new();
    let mut opening = Vec::new();
    let mut names = Vec::new();
    for camera in list.cameras {
        let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
        let settings =
            capture::Settings::for_camera(&camera, config.max_frame_bytes, config.preview());
        let stream = publisher.stream(&camera.name);
        let camera_metrics = metrics.camera(&camera.name);
        let loop_shutdown = shutdown.clone();
        let name = camera.name.clone();
        let redacted = camera.source.redacted();
        // A listed camera that cannot be set up is retried; the single
        // camera of --source stops start-up, as it always did.
        let retry_open = list.listed;
        let thread = std::thread::Builder::new()
            .name(format!("capture-{name}"))
            .spawn(move || {
                capture::camera_thread(
                    camera,
                    stream,
                    settings,
                    camera_metrics,
                    loop_shutdown,
                    retry_open,
                    opened_tx,
                )
            })
            .with_context(|| format!("starting the capture thread of camera {name:?}"))?;
        threads.push(thread);
        opening.push(opened_rx);
        names.push((name, redacted));
    }
    let described = tokio::task::spawn_blocking(move || {
        opening.into_iter().map(|rx| rx.recv()).collect::<Vec<_>>()
    })
    .await
    .context("waiting for the capture threads")?;
    let mut started = 0;
    for ((camera, source), result) in names.iter().zip(described) {
        match result {
            Ok(Ok(described)) => {
                started += 1;
                tracing::info!(stream = %camera, source = %described, "camera started");
            }
            Ok(Err(e)) if list.listed => {
                tracing::error!(stream = %camera, source = %source, error = %e, "camera not started yet; retrying");
            }
            Ok(Err(e)) => {
                return Err(e).with_context(|| format!("opening source {:?}", config.source));
            }
            Err(_) => anyhow::bail!("the capture thread of {camera:?} ended while opening"),
        }
    }
    tracing::info!(
        cameras = threads.len(),
        started,
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
    while !threads.iter().all(|t| t.is_finished()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    metrics_server.abort();
    drop(publisher);
    tracing::info!("frame-producer stopped");
    Ok(())
}

/// The bus key ring, if one is configured; a bad key stops start-up.
fn bus_keys(config: &Config) -> anyhow::Result<Option<frame_wire::auth::KeyStore>> {
    frame_bus::keys::warn_if_on_command_line("PRODUCER_BUS_KEY_FILE", "PRODUCER_BUS_KEY");
    let Some(source) = config.key_source() else {
        return Ok(None);
    };
    let store = frame_wire::auth::KeyStore::load(source).context("loading the bus key")?;
    Ok(Some(store))
}

/// Says once, loudly, when frames can be read from other hosts.
fn warn_if_exposed(config: &Config, keys: Option<&frame_wire::auth::KeyStore>) {
    let local = frame_bus::listen::is_local_endpoint(&config.bind);
    match (local, keys) {
        (true, None) => {}
        (false, None) => tracing::warn!(
            bind = %config.bind,
            "FRAME BUS OPEN: anyone who can reach {} can watch every frame, and gateways \
             cannot tell this producer's frames from a forger's. Set PRODUCER_BUS_KEY_FILE \
             (and the same key on every gateway), or bind a loopback or private address",
            config.bind
        ),
        (_, Some(k)) => tracing::info!(
            bind = %config.bind,
            keys = %k.ring().ids(),
            "bus key set: frames are signed and only subscribers holding the key get them; \
             the bus is NOT encrypted, so keep it on a private network"
        ),
    }
    if !config.metrics_listen.ip().is_loopback() {
        tracing::info!(
            metrics = %config.metrics_listen,
            "/metrics and /healthz answer anyone who can reach this address (counters only, no frames)"
        );
    }
}
