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
use stream_director::tls::Tls;
use stream_director::upstream::Upstream;

fn main() -> ExitCode {
    let config = Config::parse();
    if config.healthcheck && config.tls_cert.is_some() {
        return stream_common::tls::health::exit_code(config.listen);
    }
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
        public_url = %config.public_url(),
        https = config.tls_cert.is_some(),
        gateways_https = config.gateway_ca.is_some(),
        affinity = config.affinity,
        "stream-director started"
    );
    let registry = prometheus::Registry::new_custom(Some("director".into()), None)
        .context("registering metrics")?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = Tls::new(
                cert.clone(),
                key.clone(),
                config.max_pending_handshakes,
                &registry,
            )
            .context("TLS certificate and key")?;
            tokio::spawn(tls.clone().watch(config.tls_reload_every, cancel.clone()));
            Some(tls)
        }
        _ => None,
    };
    let upstream =
        Upstream::new(config.gateway_ca.as_deref()).context("the gateways' CA (--gateway-ca)")?;
    let redirect_listener = match config.redirect_http {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} (--redirect-http)"))?,
        ),
        None => None,
    };
    if tls.is_some() && config.public_url().starts_with("http://") {
        tracing::warn!(
            public_url = %config.public_url(),
            "this director speaks HTTPS but sends viewers to plain-HTTP gateways: browsers \
             block such streams in HTTPS pages (serve HTTPS on the gateways and give --gateway-ca)"
        );
    }
    let pool = Arc::new(Pool::default());
    let checks = tokio::spawn(pool::check_forever(
        pool.clone(),
        upstream.clone(),
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
        public_url: config.public_url(),
        public_hosts: config.public_hosts.clone(),
        header_timeout: config.header_timeout,
        stats: Default::default(),
        refusals: std::sync::Mutex::new(stream_common::ratelimit::LogEvery::new(
            std::time::Duration::from_secs(1),
        )),
        hsts: tls
            .as_ref()
            .and(stream_common::tls::redirect::hsts(config.hsts)),
        tls,
        upstream,
        https_port: config.redirect_http.map(|_| config.listen.port()),
        port: config.listen.port(),
        registry,
    });
    if let Some(plain) = redirect_listener {
        tracing::info!(listen = ?config.redirect_http, "redirecting plain HTTP to HTTPS");
        tokio::spawn(director.clone().redirect_http(plain, cancel.clone()));
    }
    director.serve(listener, cancel).await;
    checks.await.context("health checks")?;
    tracing::info!("stream-director stopped");
    Ok(())
}
