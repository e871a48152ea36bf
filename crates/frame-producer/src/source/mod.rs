//! Where frames come from. Every source sits behind [`Source`], so cameras and
//! RTSP can be added without touching pacing, encoding or publishing.
//!
//! - `pattern`: the simulated camera (default).
//! - `files`: a directory of images or a `.mjpeg` file, looped.
//! - `http`: another server's or an IP camera's MJPEG stream, relayed.
//! - `v4l2`: USB webcams and capture cards (`v4l2:/dev/videoN`).
//! - `ffmpeg`: RTSP cameras and video files, decoded with FFmpeg.
//!
//! `spec` parses what `--source` names, the same in every build.
//!
//! A source is opened on the capture thread and stays there, so it need not
//! be `Send` (FFmpeg's scaler is not).

#[cfg(feature = "ffmpeg")]
mod ffmpeg;
mod files;
mod http;
mod pattern;
pub mod spec;
pub mod v4l2;

use std::time::Duration;

use bytes::Bytes;
use stream_common::canvas::Canvas;
use stream_common::jpeg::Yuv420;

pub use spec::{SourceSpec, SpecError};

/// A captured picture: JPEG bytes to pass through, or pixels to encode.
/// Cloning is cheap (shared bytes, or borrowed pixels).
#[derive(Clone)]
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

impl Picture<'_> {
    /// Its width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Picture::Jpeg { width, height, .. } => (*width, *height),
            Picture::Rgb(c) => (c.width(), c.height()),
            Picture::Yuv420(y) => (y.width, y.height),
        }
    }
}

/// What the capture loop needs of the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// A subscriber wants the camera's full rate: every frame counts.
    pub full_rate: bool,
    /// The next frame's pixels will be looked at (full rate, or a preview
    /// is due). The test pattern draws only then.
    pub picture: bool,
}

pub struct Captured<'a> {
    pub picture: Picture<'a>,
    pub capture_ts_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// One frame could not be read or decoded; the next one may be fine.
    /// `repeat`: the source reported this same fault before, so it is
    /// counted but not logged again.
    #[error("bad frame from {what}: {fault}")]
    BadFrame {
        what: String,
        fault: FrameFault,
        repeat: bool,
    },
    /// The source is gone or not there yet; retried with backoff.
    #[error("source unavailable: {0}")]
    Unavailable(#[from] Unavailable),
}

impl SourceError {
    /// A first-time bad frame from `what`.
    pub fn bad(what: impl Into<String>, fault: FrameFault) -> Self {
        SourceError::BadFrame {
            what: what.into(),
            fault,
            repeat: false,
        }
    }
}

/// Why one frame was skipped.
// Camera sources (feature builds) use every variant.
#[cfg_attr(not(any(feature = "ffmpeg", feature = "v4l2")), allow(dead_code))]
#[derive(Debug, thiserror::Error)]
pub enum FrameFault {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error("not a complete JPEG (SOI/EOI missing)")]
    NotJpeg,
    #[error("unreadable JPEG header")]
    JpegHeader,
    #[error("broken JPEG ({0} bytes)")]
    BrokenJpeg(usize),
    #[error("PNG: {0}")]
    Png(#[from] png::DecodingError),
    #[error("unsupported picture size {width}x{height}")]
    Size { width: u32, height: u32 },
    #[error("converting the camera's pixels: {0}")]
    Convert(#[from] v4l2::convert::ConvertError),
    #[cfg(feature = "ffmpeg")]
    #[error("{doing}: {source}")]
    Ffmpeg {
        doing: String,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("decoder produced an unexpected {0}")]
    Decoded(String),
}

/// Why a source cannot deliver now.
// Camera sources (feature builds) use every variant.
#[cfg_attr(not(any(feature = "ffmpeg", feature = "v4l2")), allow(dead_code))]
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("{doing} {path}: {source}{hint}")]
    Io {
        doing: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
        /// What to check, for the errors people hit (may be empty).
        hint: &'static str,
    },
    #[error("no images in {0}")]
    NoImages(std::path::PathBuf),
    #[error("{path}: {problem}")]
    Device { path: String, problem: String },
    #[cfg(feature = "ffmpeg")]
    #[error("{doing} {what}: {source}")]
    Ffmpeg {
        doing: &'static str,
        what: String,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("{0} has no video stream")]
    NoVideo(String),
    #[error("the stream ended")]
    Ended,
    #[error("the {0} thread stopped")]
    ThreadGone(&'static str),
}

/// Why a source could not be set up at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("starting the {what} thread: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[cfg(feature = "ffmpeg")]
    #[error("initialising FFmpeg: {0}")]
    Ffmpeg(#[source] ffmpeg_next::Error),
}

pub trait Source {
    /// A short description for logs.
    fn describe(&self) -> String;

    /// Live sources (cameras, relays) produce frames at their own pace;
    /// the others produce one whenever asked.
    fn is_live(&self) -> bool {
        false
    }

    /// What the next frame is needed for, told before asking for it. A
    /// source may skip work nobody needs; cameras are read either way, so
    /// their connection stays up.
    fn set_demand(&mut self, _demand: Demand) {}

    /// The next frame. On-demand sources answer at once; live sources wait at
    /// most `timeout` and return `Ok(None)` if nothing arrived.
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Captured<'_>>, SourceError>;
}

/// What a source needs besides its spec: one camera's settings.
// Camera sources (feature builds) use every variant.
#[cfg_attr(not(any(feature = "ffmpeg", feature = "v4l2")), allow(dead_code))]
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The stream name, drawn by the test pattern.
    pub stream: &'a str,
    pub size: Option<crate::units::Size>,
    pub fps: Option<f64>,
    pub rtsp_transport: &'a str,
}

/// Opens a source. Cameras and files are opened lazily by their first
/// `next_frame`, so a camera that is not there yet is a retried error rather
/// than a failed start.
pub fn open(spec: &SourceSpec, options: &Options<'_>) -> Result<Box<dyn Source>, OpenError> {
    spec.check_built()?;
    match spec {
        SourceSpec::TestPattern => {
            let size = options.size.unwrap_or(crate::units::DEFAULT_PATTERN_SIZE);
            Ok(Box::new(pattern::TestPattern::new(size, options.stream)))
        }
        SourceSpec::Files(path) => Ok(Box::new(files::FileSource::new(path.clone()))),
        SourceSpec::Http(url) => Ok(Box::new(http::HttpRelay::start(url)?)),
        SourceSpec::V4l2(device) => open_v4l2(device, options),
        SourceSpec::Ffmpeg(url) => open_ffmpeg(url, options),
    }
}

#[cfg(feature = "ffmpeg")]
fn open_ffmpeg(url: &str, options: &Options<'_>) -> Result<Box<dyn Source>, OpenError> {
    Ok(Box::new(ffmpeg::FfmpegSource::new(
        url,
        options.rtsp_transport,
        options.size,
    )?))
}

#[cfg(not(feature = "ffmpeg"))]
fn open_ffmpeg(url: &str, _options: &Options<'_>) -> Result<Box<dyn Source>, OpenError> {
    // check_built refused it already; kept total for the type checker.
    Err(SpecError::NeedsFeature {
        spec: url.to_string(),
        feature: "ffmpeg",
    }
    .into())
}

#[cfg(feature = "v4l2")]
fn open_v4l2(device: &str, options: &Options<'_>) -> Result<Box<dyn Source>, OpenError> {
    let want = v4l2::negotiate::Want {
        size: options.size.map(|s| (s.width, s.height)),
        fps: options.fps,
    };
    Ok(Box::new(v4l2::V4l2Source::new(device, want)))
}

#[cfg(not(feature = "v4l2"))]
fn open_v4l2(device: &str, _options: &Options<'_>) -> Result<Box<dyn Source>, OpenError> {
    Err(SpecError::NeedsFeature {
        spec: format!("v4l2:{device}"),
        feature: "v4l2",
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options<'static> {
        Options {
            stream: "cam0",
            size: None,
            fps: None,
            rtsp_transport: "tcp",
        }
    }

    #[test]
    fn sources_without_their_build_feature_are_refused_naming_it() {
        let open_spec = |s: &str| {
            let spec = SourceSpec::parse(s).expect("parses in every build");
            open(&spec, &options()).err().map(|e| e.to_string())
        };
        if cfg!(not(feature = "ffmpeg")) {
            for s in ["rtsp://cam/stream", "rtmp://live/app", "clip.mp4"] {
                let err = open_spec(s).expect("needs ffmpeg");
                assert!(err.contains("`ffmpeg` build feature"), "{err}");
            }
        }
        if cfg!(not(feature = "v4l2")) {
            let err = open_spec("v4l2:0").expect("needs v4l2");
            assert!(err.contains("`v4l2` build feature"), "{err}");
        }
        assert!(open_spec("test-pattern").is_none());
    }
}
