//! Where frames come from. Every source sits behind [`Source`], so cameras and
//! RTSP can be added without touching pacing, encoding or publishing.
//!
//! - `pattern`: the simulated camera (default).
//! - `files`: a directory of images or a `.mjpeg` file, looped.
//! - `http`: another server's or an IP camera's MJPEG stream, relayed.

mod files;
mod http;
mod pattern;

use std::time::Duration;

use bytes::Bytes;
use stream_common::canvas::Canvas;

use crate::config::Config;

/// A captured picture: JPEG bytes to pass through, or pixels to encode.
pub enum Picture<'a> {
    Jpeg {
        data: Bytes,
        width: u32,
        height: u32,
    },
    Rgb(&'a Canvas),
}

pub struct Captured<'a> {
    pub picture: Picture<'a>,
    pub capture_ts_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// One frame could not be read or decoded; the next one may be fine.
    #[error("bad frame from {what}: {why}")]
    BadFrame { what: String, why: String },
    /// The source is gone or not there yet; retried with backoff.
    #[error("source unavailable: {0}")]
    Unavailable(String),
}

pub trait Source: Send {
    /// A short description for logs.
    fn describe(&self) -> String;

    /// Live sources (cameras, relays) produce frames at their own pace;
    /// the others produce one whenever asked.
    fn is_live(&self) -> bool {
        false
    }

    /// The next frame. On-demand sources answer at once; live sources wait at
    /// most `timeout` and return `Ok(None)` if nothing arrived.
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Captured<'_>>, SourceError>;
}

/// Opens the source named by `--source`.
pub fn open(config: &Config) -> anyhow::Result<Box<dyn Source>> {
    let spec = config.source.as_str();
    if spec == "test-pattern" {
        return Ok(Box::new(pattern::TestPattern::new(
            config.size,
            &config.stream,
        )));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        return Ok(Box::new(http::HttpRelay::start(spec)?));
    }
    if let Some(rest) = spec.split_once("://").map(|(scheme, _)| scheme) {
        anyhow::bail!("unsupported source scheme {rest:?} (use test-pattern, a path, or http://)");
    }
    Ok(Box::new(files::FileSource::new(spec.into())))
}
