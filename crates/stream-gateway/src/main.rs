//! `stream-gateway`: subscribes to one or more frame producers and serves
//! every stream to any number of browsers as MJPEG.
//!
//! A frame's path through this crate, by folder:
//! `receive/` takes it off the ZeroMQ socket and puts it, as a ready-made
//! multipart part, into its stream's latest-frame slot (`streams.rs`, `part.rs`);
//! `serve/` writes the newest part to every viewer whose socket can take it:
//! `serve/direct.rs` is the fan-out writer that stream requests are handed
//! to, `serve/routes.rs` (warp) answers everything else.
//! `keeper.rs` re-sends the last frame while a source is idle and swaps in a
//! "NO SIGNAL" placeholder when it goes stale.

mod config;
mod keeper;
mod metrics;
mod part;
mod placeholder;
mod receive;
mod serve;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::config::Config;

fn main() -> std::process::ExitCode {
    // clap exits with code 2 and a clear message on a bad flag value.
    let config = Config::parse();
    let service = stream_common::service::Service {
        name: "stream-gateway",
        log: &config.log,
        healthcheck: config.healthcheck.then_some(config.listen),
        worker_threads: config.threads,
    };
    stream_common::service::main(service, || async_main(config.clone()))
}

async fn async_main(config: Config) -> anyhow::Result<()> {
    let shutdown = stream_common::shutdown::on_signal();
    let metrics = Arc::new(metrics::GatewayMetrics::new().context("registering metrics")?);
    let streams = Arc::new(streams::Streams::new(metrics.clone()));
    let listener = serve::server::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        producers = ?config.producers,
        instance = %config.instance_id,
        url = %format!("http://{}/", display_addr(config.listen)),
        "stream-gateway started"
    );

    let mut tasks = Vec::new();
    for endpoint in &config.producers {
        tasks.push(tokio::spawn(receive::run(
            endpoint.clone(),
            receive::Settings::from_config(&config),
            streams.clone(),
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(keeper::run(
        streams.clone(),
        keeper::Settings::from_config(&config),
        shutdown.clone(),
    )));

    let auth = serve::auth::Auth::new(
        config.auth_user.clone(),
        config.auth_password.clone(),
        config.auth_password_file.clone(),
        config.auth_token.clone(),
    )
    .context("authentication settings")?;
    if !auth.enabled() && !config.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.listen,
            "no authentication: anyone who can reach this address can watch every stream \
             (set GATEWAY_AUTH_USER/GATEWAY_AUTH_PASSWORD or GATEWAY_AUTH_TOKEN)"
        );
    }
    let app = serve::routes::App::new(&config, auth, streams, metrics, shutdown.clone());
    serve::server::run(
        listener,
        app,
        serve::server::Settings::from_config(&config),
        shutdown.clone(),
    )
    .await;

    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_millis(200), t).await;
    }
    tracing::info!("stream-gateway stopped");
    Ok(())
}

/// The address to print for people: a wildcard bind is reachable as localhost.
fn display_addr(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}
