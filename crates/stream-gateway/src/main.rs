//! `stream-gateway`: subscribes to one or more frame producers and serves
//! every stream to any number of browsers as MJPEG.
//!
//! A frame's path through this crate, by folder:
//! `receive/` takes it off the ZeroMQ socket and puts it, as a ready-made
//! multipart part, into its stream's latest-frame slot (`streams.rs`, `part.rs`);
//! `serve/` writes the newest part to every viewer whose socket can take it:
//! serving threads (`serve/server.rs`) read each request
//! (`serve/connection.rs`), decide it once (`serve/admission.rs`), hand
//! every viewer to a serving thread (`serve/handover.rs`) where the one
//! writer every viewer goes through writes it (`serve/writer.rs`);
//! `serve/routes.rs` answers the finite routes through warp.
//! `detections.rs` keeps each stream's latest detections (from a detector on
//! the bus) beside its frame slot, prepared once for every listener;
//! `events.rs` each stream's recent events (from the event stage), the same way.
//! `keeper.rs` re-sends the last frame while a source is idle and swaps in a
//! "NO SIGNAL" placeholder when it goes stale.
//! `interest.rs` counts each stream's viewers, so that `receive/` asks the
//! producers for full-rate frames only of the streams watched here.

mod adapt;
mod config;
mod detections;
mod events;
mod interest;
mod keeper;
mod metrics;
mod part;
mod placeholder;
mod receive;
mod rendition;
mod serve;
mod streams;
mod zones;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::config::Config;

fn main() -> std::process::ExitCode {
    // clap exits with code 2 and a clear message on a bad flag value.
    let config = Config::parse();
    if config.healthcheck && config.tls_cert.is_some() {
        return stream_common::tls::health::exit_code(config.listen);
    }
    let service = stream_common::service::Service {
        name: "stream-gateway",
        log: &config.log,
        healthcheck: config.healthcheck.then_some(config.listen),
        // Receiving, the keeper and start-up; the serving threads are
        // started by `serve::server::run`.
        worker_threads: 1,
    };
    stream_common::service::main(service, || async_main(config.clone()))
}

async fn async_main(config: Config) -> anyhow::Result<()> {
    // An unusable bus key stops start-up before anything is served.
    let receive = receive::Settings::from_config(&config)?;
    let shutdown = stream_common::shutdown::on_signal();
    let metrics = Arc::new(metrics::GatewayMetrics::new().context("registering metrics")?);
    let interest = Arc::new(interest::Interest::new(
        config.subscribe,
        config.subscribe_linger,
        metrics.clone(),
    ));
    let streams = Arc::new(
        streams::Streams::new(
            metrics.clone(),
            config.default_stream.clone(),
            interest.clone(),
        )
        .with_limits(streams::Limits {
            max_streams: config.max_streams,
            forget_after: config.forget_after(),
            recent_events: config.recent_events,
        }),
    );
    let listener = serve::server::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let threads = config.serving_threads();
    tracing::info!(
        listen = %config.listen,
        producers = ?config.producers,
        instance = %config.instance_id,
        threads,
        url = %format!(
            "{}://{}/",
            if config.tls_cert.is_some() { "https" } else { "http" },
            display_addr(config.listen)
        ),
        "stream-gateway started"
    );

    let mut tasks = Vec::new();
    for (index, endpoint) in config.producers.iter().enumerate() {
        tasks.push(tokio::spawn(receive::run(
            endpoint.clone(),
            index,
            receive.clone(),
            interest.watch(),
            streams.clone(),
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(interest::run(interest, shutdown.clone())));
    tasks.push(tokio::spawn(keeper::run(
        streams.clone(),
        keeper::Settings::from_config(&config),
        shutdown.clone(),
    )));

    let auth = config.auth.auth().context("authentication settings")?;
    warn_about_settings(&config, &auth);
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = serve::tls::Tls::new(
                cert.clone(),
                key.clone(),
                config.tls_kernel,
                &metrics.registry,
            )
            .context("TLS certificate and key")?;
            tasks.push(tokio::spawn(
                tls.clone().watch(config.tls_reload_every, shutdown.clone()),
            ));
            Some(tls)
        }
        _ => None,
    };
    let (fanout, inboxes) = serve::handover::Fanout::new(threads, streams.clone(), &metrics);
    let rules = stream_common::rules::load(config.cameras.as_deref())
        .context("the cameras file (--cameras)")?;
    let zones = Arc::new(zones::Zones::new(&rules));
    let app = serve::routes::App::new(&config, streams.clone(), metrics.clone(), zones);
    let shared = Arc::new(serve::connection::Shared {
        admission: serve::admission::Admission::new(
            serve::admission::Policy {
                auth,
                public_metrics: config.public_metrics,
                allow_origins: stream_common::access::Origins::new(config.allow_origins.clone()),
                max_clients: config.max_clients,
            },
            streams,
            metrics.clone(),
        ),
        fanout,
        routes: warp::Filter::boxed(app.routes()),
        metrics,
        instance: http::HeaderValue::from_str(&config.instance_id)
            .unwrap_or(http::HeaderValue::from_static("gateway")),
        budget: serve::head::HeadBudget::new(config.max_pending_head_bytes),
        header_timeout: config.header_timeout,
        write_timeout: config.viewer_timeout,
        tls: tls.clone(),
        https_port: config.redirect_http.map(|_| config.listen.port()),
        hsts: stream_common::tls::redirect::hsts(config.hsts)
            .and_then(|v| http::HeaderValue::from_str(&v).ok()),
    });
    if let Some(addr) = config.redirect_http {
        let plain = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (--redirect-http)"))?;
        tracing::info!(listen = %addr, "redirecting plain HTTP to HTTPS");
        tasks.push(tokio::spawn(serve::server::redirect_http(
            plain,
            shared.clone(),
            shutdown.clone(),
        )));
    }
    serve::server::run(
        listener,
        shared,
        inboxes,
        serve::server::Settings::from_config(&config),
        shutdown.clone(),
    )
    .await
    .context("starting the serving threads")?;

    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_millis(200), t).await;
    }
    tracing::info!("stream-gateway stopped");
    Ok(())
}

/// Settings that work but expose more than the user may think.
fn warn_about_settings(config: &Config, auth: &stream_common::access::Auth) {
    if !auth.enabled() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.listen,
            "no authentication: anyone who can reach this address can watch every stream \
             (set GATEWAY_AUTH_USER/GATEWAY_AUTH_PASSWORD or GATEWAY_AUTH_TOKEN)"
        );
    }
    let on_command_line =
        |flag: &str| std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    for flag in ["--auth-password", "--auth-token"] {
        if on_command_line(flag) {
            tracing::warn!(
                flag,
                "a secret on the command line is visible to every user of this host (ps); \
                 use GATEWAY_AUTH_PASSWORD_FILE, GATEWAY_AUTH_PASSWORD or GATEWAY_AUTH_TOKEN instead"
            );
        }
    }
    if config.allow_origins.iter().any(|o| o == "*") {
        tracing::warn!(
            "--allow-origin '*': any website may read streams, snapshots and the API \
             without credentials (Access-Control-Allow-Origin: *); credentials are only \
             honoured cross-origin for origins listed by name"
        );
    }
}

/// The address to print for people: a wildcard bind is reachable as localhost.
fn display_addr(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}
