//! `stream-director`: the balancing tier for many gateways that carries no
//! video (see the library docs). Runs with no arguments.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use stream_director::choose::{Affinity, Choose, RoundRobin};
use stream_director::config::Config;
use stream_director::pool::{self, Pool};
use stream_director::serve::Director;

fn main() -> ExitCode {
    let config = Config::parse();
    stream_common::service::main(
        stream_common::service::Service {
            name: "stream-director",
            log: &config.log,
            healthcheck: config.healthcheck.then_some(config.listen),
            worker_threads: config.threads,
        },
        || run(config.clone()),
    )
}

async fn run(config: Config) -> anyhow::Result<()> {
    let cancel = stream_common::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        gateways = ?config.gateways,
        public_url = %config.public_url,
        affinity = config.affinity,
        "stream-director started"
    );
    let pool = Arc::new(Pool::default());
    let checks = tokio::spawn(pool::check_forever(
        pool.clone(),
        config.gateways.clone(),
        config.check_interval,
        config.check_timeout,
        cancel.clone(),
    ));
    let choose: Box<dyn Choose> = match config.affinity {
        0 => Box::new(RoundRobin::default()),
        width => Box::new(Affinity::new(width)),
    };
    let auth = config.auth.auth().context("authentication settings")?;
    let director = Arc::new(Director {
        auth,
        pool,
        choose,
        public_url: config.public_url.clone(),
        public_hosts: config.public_hosts.clone(),
        header_timeout: config.header_timeout,
        stats: Default::default(),
        refusals: std::sync::Mutex::new(stream_common::ratelimit::LogEvery::new(
            std::time::Duration::from_secs(1),
        )),
    });
    director.serve(listener, cancel).await;
    checks.await.context("health checks")?;
    tracing::info!("stream-director stopped");
    Ok(())
}
