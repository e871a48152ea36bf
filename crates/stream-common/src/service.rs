//! The start of every binary, written once: answer `--healthcheck`, set up
//! logging, run the async main on a runtime of the given size, and turn an
//! error into one log line, one stderr line and exit code 1. (clap has already
//! exited with code 2 on a bad flag.)

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use crate::logging::LogArgs;

/// What a binary tells [`main`] about itself.
pub struct Service<'a> {
    pub name: &'a str,
    pub log: &'a LogArgs,
    /// `Some(addr)` when `--healthcheck` was given: probe `addr` and exit.
    pub healthcheck: Option<SocketAddr>,
    pub worker_threads: usize,
}

pub fn main<F, Fut, E>(service: Service<'_>, async_main: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if let Some(addr) = service.healthcheck {
        return crate::health::exit_code(addr);
    }
    crate::logging::init(service.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(service.worker_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: starting the async runtime: {e}", service.name);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async_main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{}: {e:#}", service.name);
            ExitCode::FAILURE
        }
    }
}
