//! What a `--source` string (or a cameras file's `source =`) names, parsed
//! once into [`SourceSpec`], the same way in every build. Whether this build
//! can open it is a separate question ([`SourceSpec::check_built`]), so a
//! plain build tells `rtmp://…` "needs the `ffmpeg` build feature" instead of
//! calling it an unknown scheme (the two used to be decided by two lists
//! that drifted apart).

use std::fmt;
use std::path::PathBuf;

/// A source, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `test-pattern`: the simulated camera.
    TestPattern,
    /// A directory of `.jpg`/`.png` images or a `.mjpeg` file.
    Files(PathBuf),
    /// `http://` / `https://` MJPEG stream to relay.
    Http(String),
    /// `v4l2:/dev/videoN` (or `v4l2:N`): the device path.
    V4l2(String),
    /// Network cameras (`rtsp://`, `rtsps://`, `rtmp://`, `srt://`), video
    /// files and `ffmpeg:ANYTHING`: what FFmpeg opens (without `ffmpeg:`).
    Ffmpeg(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("empty source")]
    Empty,
    #[error(
        "unsupported source scheme {scheme:?} (use test-pattern, a path, http://, rtsp://, rtmp://, srt:// or v4l2:/dev/videoN)"
    )]
    UnsupportedScheme { scheme: String },
    #[error(
        "{spec:?} needs the `{feature}` build feature, which this build lacks: use the Docker image or build with `--features frame-producer/{feature}`"
    )]
    NeedsFeature { spec: String, feature: &'static str },
}

/// Schemes FFmpeg reads for us.
const FFMPEG_SCHEMES: [&str; 4] = ["rtsp", "rtsps", "rtmp", "srt"];

/// File extensions of video containers FFmpeg reads for us.
const VIDEO_EXTENSIONS: [&str; 10] = [
    "mp4", "mkv", "avi", "mov", "webm", "ts", "m4v", "flv", "mpg", "mpeg",
];

impl SourceSpec {
    /// Parses a source string; says nothing about this build's features.
    pub fn parse(s: &str) -> Result<Self, SpecError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SpecError::Empty);
        }
        if s == "test-pattern" {
            return Ok(SourceSpec::TestPattern);
        }
        let lower = s.to_ascii_lowercase();
        if let Some(device) = s.strip_prefix("v4l2:") {
            return Ok(SourceSpec::V4l2(v4l2_path(device)));
        }
        if lower.starts_with("ffmpeg:") {
            return Ok(SourceSpec::Ffmpeg(s["ffmpeg:".len()..].to_string()));
        }
        let scheme = lower.split_once("://").map(|(scheme, _)| scheme);
        if matches!(scheme, Some("http" | "https")) {
            return Ok(SourceSpec::Http(s.to_string()));
        }
        let video = lower
            .rsplit_once('.')
            .is_some_and(|(_, ext)| VIDEO_EXTENSIONS.contains(&ext));
        if video || scheme.is_some_and(|sc| FFMPEG_SCHEMES.contains(&sc)) {
            return Ok(SourceSpec::Ffmpeg(s.to_string()));
        }
        if let Some(scheme) = scheme {
            return Err(SpecError::UnsupportedScheme {
                scheme: scheme.to_string(),
            });
        }
        Ok(SourceSpec::Files(PathBuf::from(s)))
    }

    /// The build feature this source needs, if any.
    pub fn feature(&self) -> Option<&'static str> {
        match self {
            SourceSpec::Ffmpeg(_) => Some("ffmpeg"),
            SourceSpec::V4l2(_) => Some("v4l2"),
            _ => None,
        }
    }

    /// Refuses a source this build cannot open, naming the missing feature.
    pub fn check_built(&self) -> Result<(), SpecError> {
        let built = match self.feature() {
            None => true,
            Some("ffmpeg") => cfg!(feature = "ffmpeg"),
            Some("v4l2") => cfg!(feature = "v4l2"),
            Some(_) => false,
        };
        match self.feature() {
            Some(feature) if !built => Err(SpecError::NeedsFeature {
                spec: self.to_string(),
                feature,
            }),
            _ => Ok(()),
        }
    }

    /// Parses and checks that this build can open it.
    pub fn parse_built(s: &str) -> Result<Self, SpecError> {
        let spec = Self::parse(s)?;
        spec.check_built()?;
        Ok(spec)
    }

    /// The spec without a password, for logs.
    pub fn redacted(&self) -> String {
        redact(&self.to_string())
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::TestPattern => f.write_str("test-pattern"),
            SourceSpec::Files(p) => write!(f, "{}", p.display()),
            SourceSpec::Http(u) | SourceSpec::Ffmpeg(u) => f.write_str(u),
            SourceSpec::V4l2(d) => write!(f, "v4l2:{d}"),
        }
    }
}

pub use stream_common::redact::url as redact;

/// `v4l2:0` is short for `v4l2:/dev/video0`.
fn v4l2_path(device: &str) -> String {
    match device.parse::<u32>() {
        Ok(n) => format!("/dev/video{n}"),
        Err(_) => device.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_the_same_in_every_build() {
        use SourceSpec::*;
        for (s, want) in [
            ("test-pattern", TestPattern),
            ("/frames", Files("/frames".into())),
            ("clip.mjpeg", Files("clip.mjpeg".into())),
            ("file:///clip.mp4", Ffmpeg("file:///clip.mp4".into())),
            ("http://cam/video", Http("http://cam/video".into())),
            ("https://cam/video", Http("https://cam/video".into())),
            ("v4l2:0", V4l2("/dev/video0".into())),
            ("v4l2:12", V4l2("/dev/video12".into())),
            (
                "v4l2:/dev/v4l/by-id/usb-cam",
                V4l2("/dev/v4l/by-id/usb-cam".into()),
            ),
            (
                "rtsp://10.0.0.5:554/stream1",
                Ffmpeg("rtsp://10.0.0.5:554/stream1".into()),
            ),
            ("RTSP://cam/x", Ffmpeg("RTSP://cam/x".into())),
            ("rtsps://cam/x", Ffmpeg("rtsps://cam/x".into())),
            ("rtmp://live/app", Ffmpeg("rtmp://live/app".into())),
            ("srt://cam:9000", Ffmpeg("srt://cam:9000".into())),
            ("/footage/lobby.mp4", Ffmpeg("/footage/lobby.mp4".into())),
            ("clip.MKV", Ffmpeg("clip.MKV".into())),
            ("a.mpeg", Ffmpeg("a.mpeg".into())),
            ("ffmpeg:/dev/video0", Ffmpeg("/dev/video0".into())),
        ] {
            assert_eq!(SourceSpec::parse(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn unknown_schemes_and_empty_sources_are_refused() {
        assert_eq!(
            SourceSpec::parse("gopher://camera"),
            Err(SpecError::UnsupportedScheme {
                scheme: "gopher".into()
            })
        );
        let text = SourceSpec::parse("gopher://camera")
            .expect_err("refused")
            .to_string();
        assert!(text.contains("unsupported source scheme"), "{text}");
        assert_eq!(SourceSpec::parse("  "), Err(SpecError::Empty));
    }

    #[test]
    fn a_build_without_the_feature_names_it() {
        let ffmpeg = SourceSpec::parse_built("rtmp://live/app");
        let v4l2 = SourceSpec::parse_built("v4l2:0");
        if cfg!(feature = "ffmpeg") {
            assert!(ffmpeg.is_ok());
        } else {
            let e = ffmpeg.expect_err("plain build refuses rtmp");
            assert_eq!(
                e,
                SpecError::NeedsFeature {
                    spec: "rtmp://live/app".into(),
                    feature: "ffmpeg"
                }
            );
            assert!(e.to_string().contains("`ffmpeg` build feature"), "{e}");
        }
        if cfg!(feature = "v4l2") {
            assert!(v4l2.is_ok());
        } else {
            let e = v4l2.expect_err("plain build refuses v4l2");
            assert!(e.to_string().contains("`v4l2` build feature"), "{e}");
        }
        for plain in ["test-pattern", "/frames", "http://cam/video"] {
            assert!(SourceSpec::parse_built(plain).is_ok(), "{plain}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        let spec = SourceSpec::parse("rtsp://admin:secret@10.0.0.5/live").expect("parses");
        assert_eq!(spec.redacted(), "rtsp://***@10.0.0.5/live");
        assert_eq!(redact("/a/b.mp4"), "/a/b.mp4");
    }
}
