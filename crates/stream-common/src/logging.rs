//! One logging set-up for every binary: `--log-level` takes a tracing filter,
//! `--log-format json` prints one JSON object per event.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `info,stream_gateway=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Installs the global subscriber. hyper's per-connection errors are quietened:
/// a viewer closing its tab is not an error worth a line.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(format!(
        "{},warp::server=off,hyper=warn,zeromq=warn",
        args.log_level
    ))
    .unwrap_or_else(|_| EnvFilter::new("info,warp::server=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
