//! Where frames come from. Every source sits behind [`Source`], so cameras and
//! RTSP can be added without touching pacing, encoding or publishing.
//!
//! - `pattern`: the simulated camera (default).
//! - `files`: a directory of images or a `.mjpeg` file, looped.
//! - `http`: another server's or an IP camera's MJPEG stream, relayed.
//! - `v4l2`: USB webcams and capture cards (`v4l2:/dev/videoN`).
//! - `ffmpeg`: RTSP cameras and video files, decoded with FFmpeg.
//!
//! A source is opened on the capture thread and stays there, so it need not
//! be `Send` (FFmpeg's scaler is not).

#[cfg(feature = "ffmpeg")]
mod ffmpeg;
mod files;
mod http;
mod pattern;
pub mod v4l2;

use std::time::Duration;

use bytes::Bytes;
use stream_common::canvas::Canvas;
use stream_common::jpeg::Yuv420;

use crate::config::Config;

/// A captured picture: JPEG bytes to pass through, or pixels to encode.
pub enum Picture<'a> {
    Jpeg {
        data: Bytes,
        width: u32,
        height: u32,
    },
    Rgb(&'a Canvas),
    /// Camera and decoder pictures, encoded from YUV without an RGB detour.
    #[cfg_attr(not(any(feature = "ffmpeg", feature = "v4l2")), allow(dead_code))]
    Yuv420(Yuv420<'a>),
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

pub trait Source {
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

/// Opens the source named by `--source`. Cameras and files are opened
/// lazily by their first `next_frame`, so a camera that is not there yet is a
/// retried error rather than a failed start.
pub fn open(config: &Config) -> anyhow::Result<Box<dyn Source>> {
    let spec = config.source.as_str();
    if spec == "test-pattern" {
        let size = config.size().unwrap_or(crate::config::DEFAULT_PATTERN_SIZE);
        return Ok(Box::new(pattern::TestPattern::new(size, &config.stream)));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        return Ok(Box::new(http::HttpRelay::start(spec)?));
    }
    if let Some(device) = spec.strip_prefix("v4l2:") {
        return open_v4l2(&v4l2_path(device), config);
    }
    if is_ffmpeg(spec) {
        return open_ffmpeg(spec, config);
    }
    if let Some(rest) = spec.split_once("://").map(|(scheme, _)| scheme) {
        anyhow::bail!(
            "unsupported source scheme {rest:?} (use test-pattern, a path, http://, rtsp:// or v4l2:/dev/videoN)"
        );
    }
    Ok(Box::new(files::FileSource::new(spec.into())))
}

/// `v4l2:0` is short for `v4l2:/dev/video0`.
fn v4l2_path(device: &str) -> String {
    match device.parse::<u32>() {
        Ok(n) => format!("/dev/video{n}"),
        Err(_) => device.to_string(),
    }
}

fn is_ffmpeg(spec: &str) -> bool {
    #[cfg(feature = "ffmpeg")]
    return ffmpeg::handles(spec);
    #[cfg(not(feature = "ffmpeg"))]
    {
        let lower = spec.to_ascii_lowercase();
        lower.starts_with("rtsp") || lower.starts_with("ffmpeg:") || {
            [".mp4", ".mkv", ".avi", ".mov", ".webm", ".ts"]
                .iter()
                .any(|e| lower.ends_with(e))
        }
    }
}

#[cfg(feature = "ffmpeg")]
fn open_ffmpeg(spec: &str, config: &Config) -> anyhow::Result<Box<dyn Source>> {
    Ok(Box::new(ffmpeg::FfmpegSource::new(
        spec,
        &config.rtsp_transport,
        config.size(),
    )?))
}

#[cfg(not(feature = "ffmpeg"))]
fn open_ffmpeg(spec: &str, _config: &Config) -> anyhow::Result<Box<dyn Source>> {
    anyhow::bail!(
        "{spec:?} needs FFmpeg, and this build has no `ffmpeg` feature: use the Docker image or build with `--features frame-producer/ffmpeg`"
    )
}

#[cfg(feature = "v4l2")]
fn open_v4l2(device: &str, config: &Config) -> anyhow::Result<Box<dyn Source>> {
    let want = v4l2::negotiate::Want {
        size: config.size().map(|s| (s.width, s.height)),
        fps: config.fps(),
    };
    Ok(Box::new(v4l2::V4l2Source::new(device, want)))
}

#[cfg(not(feature = "v4l2"))]
fn open_v4l2(device: &str, _config: &Config) -> anyhow::Result<Box<dyn Source>> {
    anyhow::bail!(
        "v4l2:{device} needs the `v4l2` build feature: use the Docker image or build with `--features frame-producer/v4l2`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4l2_devices_by_path_or_number() {
        assert_eq!(v4l2_path("0"), "/dev/video0");
        assert_eq!(v4l2_path("12"), "/dev/video12");
        assert_eq!(
            v4l2_path("/dev/v4l/by-id/usb-cam"),
            "/dev/v4l/by-id/usb-cam"
        );
    }

    #[test]
    fn sources_without_their_build_feature_or_scheme_are_refused_clearly() {
        use clap::Parser;
        let open_spec = |spec: &str| {
            let config = Config::try_parse_from(["p", "--source", spec]).expect("config");
            open(&config).err().map(|e| e.to_string())
        };
        let err = open_spec("gopher://camera").expect("unknown scheme refused");
        assert!(err.contains("unsupported source scheme"), "{err}");
        if cfg!(not(feature = "ffmpeg")) {
            let err = open_spec("rtsp://cam/stream").expect("needs ffmpeg");
            assert!(err.contains("`ffmpeg` feature"), "{err}");
        }
        if cfg!(not(feature = "v4l2")) {
            let err = open_spec("v4l2:0").expect("needs v4l2");
            assert!(err.contains("`v4l2` build feature"), "{err}");
        }
    }
}
