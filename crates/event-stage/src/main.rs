//! `event-stage`: turns the detector's boxes into events. It follows each
//! detected object across a stream's detections messages, so one person
//! walking past is one event with a start, updates and an end, judged
//! against the camera's zones and masks, with the best frame kept as a
//! full-size snapshot. Events go out on its own ZeroMQ PUB socket (`e/NAME/`,
//! signed like everything on the bus), to Home Assistant over MQTT, and to
//! webhooks. Like detection, it is one more service on the bus: nothing
//! waits for it, and a broker or hook that is down slows nothing.
//!
//! A detection's path through this crate: `receive.rs` takes it off the bus
//! (through the shared bus client, `frame_bus`; `bus.rs` loads the key) to the stage's loop (`stage.rs`), whose per-stream
//! tracker (`track.rs`, with the zones and masks of
//! `stream_common::rules`, shared with the detector) says what started,
//! changed or ended; the snapshot comes
//! from the frames kept in `snapshot.rs`; `publish.rs` sends the bus message,
//! and `notice.rs` prepares what `mqtt.rs` and `webhook.rs` deliver, each
//! through its own bounded queue (`outbox.rs`).

mod bus;
mod config;
mod metrics;
mod mqtt;
mod notice;
mod outbox;
mod publish;
mod receive;
mod snapshot;
mod stage;
mod track;
mod webhook;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use frame_wire::Limits;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How long, after a stop is asked for, MQTT and the webhooks may take to
/// deliver the ends of the events that were running.
const DRAIN: Duration = Duration::from_secs(3);

fn main() -> std::process::ExitCode {
    // clap exits with code 2 and a clear message on a bad flag value.
    let config = Config::parse();
    let service = stream_common::service::Service {
        name: "event-stage",
        log: &config.log,
        healthcheck: config.healthcheck.then_some(config.metrics_listen),
        worker_threads: 2,
    };
    stream_common::service::main(service, || async_main(config.clone()))
}

async fn async_main(config: Config) -> anyhow::Result<()> {
    let rules = stream_common::rules::load(config.cameras.as_deref())?;
    for url in &config.webhooks {
        webhook::check_url(url).map_err(anyhow::Error::msg)?;
    }
    let mqtt_settings = if config.mqtt.trim().is_empty() {
        None
    } else {
        let (host, port) = mqtt::parse_url(config.mqtt.trim())?;
        Some(mqtt::Settings {
            host,
            port,
            user: config.mqtt_user.clone(),
            password: config.mqtt_password()?,
            prefix: config.mqtt_prefix.trim_end_matches('/').to_string(),
            discovery_prefix: config
                .mqtt_discovery_prefix
                .trim_end_matches('/')
                .to_string(),
            client_id: config.mqtt_client_id.clone(),
            labels: config.mqtt_labels.clone(),
        })
    };
    let bus = bus::keys(&config)?;
    let shutdown = stream_common::shutdown::on_signal();
    let metrics = metrics::EventMetrics::new().context("registering metrics")?;
    let running = metrics.running.clone();
    let render = metrics.clone();
    let metrics_server = stream_common::status::serve(
        config.metrics_listen,
        move || (!running.load(Ordering::Relaxed)).then_some("event loop not running"),
        move || render.render(),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("binding the metrics listener on {}", config.metrics_listen))?;
    let socket = publish::bind(&config.bind)
        .await
        .with_context(|| format!("binding the PUB socket on {}", config.bind))?;
    tracing::info!(
        detectors = ?config.detectors,
        producers = ?config.producers,
        bind = %config.bind,
        metrics = %config.metrics_listen,
        cameras = ?rules.listed(),
        mqtt = mqtt_settings.as_ref().map(|m| format!("{}:{}", m.host, m.port)),
        webhooks = ?config.webhooks.iter().map(|u| webhook::shown(u)).collect::<Vec<_>>(),
        "event-stage started"
    );

    let (bus_tx, bus_rx) = mpsc::channel(256);
    let publisher = tokio::spawn(publish::run(socket, bus_rx));
    let (follow_tx, follow_rx) = watch::channel(BTreeSet::new());
    let (cameras_tx, cameras_rx) = watch::channel(BTreeSet::new());
    // Stops delivery for good once the drain time after shutdown is over.
    let stop = CancellationToken::new();

    let mqtt_outbox = mqtt_settings
        .as_ref()
        .map(|_| Arc::new(outbox::Outbox::new(config.mqtt_queue)));
    let mqtt_task = match (mqtt_settings, &mqtt_outbox) {
        (Some(s), Some(o)) => Some(tokio::spawn(mqtt::run(
            s,
            o.clone(),
            cameras_rx,
            metrics.clone(),
            stop.clone(),
        ))),
        _ => None,
    };
    let hook_settings = webhook::Settings {
        timeout: Duration::from_secs_f64(config.webhook_timeout.max(0.1)),
        tries: config.webhook_tries,
    };
    let hooks: Vec<_> = config
        .webhooks
        .iter()
        .map(|_| Arc::new(outbox::Outbox::new(config.webhook_queue)))
        .collect();
    let hook_tasks: Vec<_> = config
        .webhooks
        .iter()
        .zip(&hooks)
        .enumerate()
        .map(|(i, (url, o))| {
            tokio::spawn(webhook::run(
                i,
                url.clone(),
                hook_settings.clone(),
                o.clone(),
                metrics.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let settings = receive::Settings {
        limits: Limits {
            max_jpeg_bytes: frame_wire::DEFAULT_MAX_JPEG_BYTES,
        },
        only: config.streams.clone(),
        keys: bus.clone(),
        resubscribe_after: Duration::from_secs(2),
    };
    let (det_tx, det_rx) = mpsc::channel(1024);
    let (frame_tx, frame_rx) = mpsc::channel(64);
    let mut receivers = Vec::new();
    for endpoint in &config.detectors {
        receivers.push(tokio::spawn(receive::detections(
            endpoint.clone(),
            settings.clone(),
            det_tx.clone(),
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    for endpoint in &config.producers {
        receivers.push(tokio::spawn(receive::frames(
            endpoint.clone(),
            settings.clone(),
            follow_rx.clone(),
            frame_tx.clone(),
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    drop((det_tx, frame_tx, follow_rx));

    let stage_settings = stage::Settings {
        track: track::Settings {
            min_ns: duration_ns(config.min_seconds()),
            end_after_ns: duration_ns(config.end_after()),
            min_iou: config.min_iou,
            update_every_ns: 1_000_000_000,
        },
        frames_kept: usize::from(config.frames_kept),
    };
    let outputs = stage::Outputs {
        bus: bus_tx,
        bus_keys: bus,
        mqtt: mqtt_outbox,
        hooks,
        follow: follow_tx,
        cameras: cameras_tx,
    };
    metrics.running.store(true, Ordering::Relaxed);
    let inputs = stage::Inputs {
        detections: det_rx,
        frames: frame_rx,
    };
    stage::run(
        stage_settings,
        rules,
        inputs,
        outputs,
        metrics.clone(),
        shutdown.clone(),
    )
    .await;
    metrics.running.store(false, Ordering::Relaxed);
    // The ends of running events are queued; give them a moment to go out.
    let delivery: Vec<_> = mqtt_task.into_iter().chain(hook_tasks).collect();
    let drained = tokio::time::timeout(DRAIN, async {
        for t in delivery {
            let _ = t.await;
        }
    });
    let _ = drained.await;
    stop.cancel();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(500), publisher).await;
    for task in receivers.into_iter().chain([metrics_server]) {
        let _ = tokio::time::timeout(Duration::from_millis(200), task).await;
    }
    tracing::info!("event-stage stopped");
    Ok(())
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
