//! One logging set-up for every binary: `--log-level` takes a tracing filter,
//! `--log-format json` prints one JSON object per event. Text is coloured
//! only on a terminal: a log file or `docker logs` gets no ANSI codes.

use std::io::IsTerminal;

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
    let ansi = use_color(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Colour codes in text logs: only when stderr is a terminal, and never
/// with `NO_COLOR` set to anything non-empty (https://no-color.org).
pub fn use_color(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::use_color;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_color(true, None));
        assert!(
            !use_color(false, None),
            "a file or a pipe gets no ANSI codes"
        );
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(use_color(true, Some(OsStr::new(""))));
        assert!(!use_color(false, Some(OsStr::new(""))));
    }

    #[test]
    fn a_log_written_to_a_pipe_has_no_escape_codes() {
        // The same builder settings as `init`, writing into a buffer (not a
        // terminal), as stderr redirected to a file would be.
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(use_color(false, None))
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(stream = "cam0", "a line");
        });
        let text = String::from_utf8(buf.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert!(text.contains("a line"), "logged: {text:?}");
        assert!(!text.contains('\x1b'), "ANSI codes in {text:?}");
    }

    struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Writer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
