//! The cameras one producer process carries, listed once: from a TOML file
//! (`--cameras FILE`), from repeated `--camera name=…,source=…` flags, or,
//! with neither, the one camera of `--source`/`--stream`/`--size`/`--fps`.
//! Everything is validated before anything starts; an error names the file,
//! line and field (or the flag), and the binary exits with code 2.
//!
//! ```toml
//! [[camera]]
//! name = "lobby"                      # stream name (topic), unique
//! source = "rtsp://user:pass@10.0.0.5/stream1"
//! size = "1280x720"                   # optional; default --size
//! fps = 15                            # optional; default --fps ("native" allowed)
//! quality = 80                        # optional; default --quality
//! rtsp_transport = "udp"              # optional; default --rtsp-transport
//! renditions = [640, 320]             # optional; default --renditions ([] or [0]: none)
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::Config;
use crate::source::SourceSpec;
use crate::units::{Fps, OrNative, Size, Widths};

/// One camera, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    pub name: String,
    pub source: SourceSpec,
    pub size: Option<Size>,
    pub fps: Option<f64>,
    pub quality: u8,
    pub rtsp_transport: String,
    /// Widths of its renditions, largest first.
    pub renditions: Widths,
}

impl Camera {
    pub fn source_options(&self) -> crate::source::Options<'_> {
        crate::source::Options {
            stream: &self.name,
            size: self.size,
            fps: self.fps,
            rtsp_transport: &self.rtsp_transport,
        }
    }
}

/// The cameras to run, and whether they were listed (file or flags) rather
/// than the single camera of `--source`.
#[derive(Debug)]
pub struct CameraList {
    pub cameras: Vec<Camera>,
    pub listed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CamerasError {
    #[error("cannot read the cameras file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("--camera {text:?}: {problem}")]
    Flag { text: String, problem: String },
    #[error("--source {source_text:?}: {problem}")]
    Source {
        source_text: String,
        problem: String,
    },
    #[error("camera {name:?} is listed twice ({first} and {second}): stream names must be unique")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
    #[error("{0}: no cameras listed (add [[camera]] tables with name and source)")]
    Empty(PathBuf),
}

const FIELDS: &str = "name, source, size, fps, quality, rtsp_transport, renditions";

/// The raw values of one camera, before validation.
#[derive(Default)]
struct Raw<'a> {
    name: Option<&'a str>,
    source: Option<&'a str>,
    size: Option<&'a str>,
    fps: Option<FpsIn<'a>>,
    quality: Option<i64>,
    rtsp_transport: Option<&'a str>,
    renditions: Option<RenditionsIn<'a>>,
}

/// Rendition widths as a file's array or a flag's `640:320`.
enum RenditionsIn<'a> {
    List(Vec<i64>),
    Text(&'a str),
}

#[derive(Clone, Copy)]
enum FpsIn<'a> {
    Number(f64),
    Text(&'a str),
}

/// A field that failed validation, and why.
struct Invalid {
    field: &'static str,
    problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        field,
        problem: problem.into(),
    }
}

/// Checks one camera's values; unset ones come from the flags.
fn validate(raw: &Raw<'_>, defaults: &Config) -> Result<Camera, Invalid> {
    let name = raw
        .name
        .ok_or_else(|| invalid("name", "missing (every camera needs a name)"))?;
    frame_wire::validate_stream_name(name).map_err(|e| invalid("name", e.to_string()))?;
    let source = raw
        .source
        .ok_or_else(|| invalid("source", "missing (every camera needs a source)"))?;
    let source = SourceSpec::parse_built(source).map_err(|e| invalid("source", e.to_string()))?;
    let size = match raw.size {
        None => defaults.size(),
        Some(s) => {
            s.parse::<OrNative<Size>>()
                .map_err(|e| invalid("size", e))?
                .0
        }
    };
    let fps = match raw.fps {
        None => defaults.fps(),
        Some(FpsIn::Number(v)) => Some(
            v.to_string()
                .parse::<Fps>()
                .map_err(|e| invalid("fps", e))?
                .0,
        ),
        Some(FpsIn::Text(s)) => s
            .parse::<OrNative<Fps>>()
            .map_err(|e| invalid("fps", e))?
            .0
            .map(|f| f.0),
    };
    let quality = match raw.quality {
        None => defaults.quality,
        Some(q) => u8::try_from(q)
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| invalid("quality", format!("must be 1 to 100, got {q}")))?,
    };
    let rtsp_transport = match raw.rtsp_transport {
        None => defaults.rtsp_transport.clone(),
        Some(t @ ("tcp" | "udp")) => t.to_string(),
        Some(t) => {
            return Err(invalid(
                "rtsp_transport",
                format!("must be \"tcp\" or \"udp\", got {t:?}"),
            ));
        }
    };
    let renditions = match &raw.renditions {
        None => Ok(defaults.renditions.clone()),
        Some(RenditionsIn::List(l)) => Widths::from_list(l),
        Some(RenditionsIn::Text(t)) => t.parse(),
    }
    .map_err(|e| invalid("renditions", e))?;
    Ok(Camera {
        name: name.to_string(),
        source,
        size,
        fps,
        quality,
        rtsp_transport,
        renditions,
    })
}

/// The cameras `config` asks for.
pub fn from_config(config: &Config) -> Result<CameraList, CamerasError> {
    let mut cameras: Vec<(Camera, String)> = Vec::new();
    let file = config
        .cameras
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|source| CamerasError::Read {
            path: path.clone(),
            source,
        })?;
        let listed = parse_file(path, &text, config)?;
        if listed.is_empty() && config.camera.is_empty() {
            return Err(CamerasError::Empty(path.clone()));
        }
        cameras.extend(listed);
    }
    for text in config.camera.iter().filter(|t| !t.trim().is_empty()) {
        let camera = parse_flag(text, config)?;
        cameras.push((camera, format!("--camera {text:?}")));
    }
    if !cameras.is_empty() {
        check_unique(&cameras)?;
        return Ok(CameraList {
            cameras: cameras.into_iter().map(|(c, _)| c).collect(),
            listed: true,
        });
    }
    let source = SourceSpec::parse_built(&config.source).map_err(|e| CamerasError::Source {
        source_text: config.source.clone(),
        problem: e.to_string(),
    })?;
    Ok(CameraList {
        cameras: vec![Camera {
            name: config.stream.clone(),
            source,
            size: config.size(),
            fps: config.fps(),
            quality: config.quality,
            rtsp_transport: config.rtsp_transport.clone(),
            renditions: config.renditions.clone(),
        }],
        listed: false,
    })
}

fn check_unique(cameras: &[(Camera, String)]) -> Result<(), CamerasError> {
    for (i, (c, at)) in cameras.iter().enumerate() {
        if let Some((_, first)) = cameras[..i].iter().find(|(o, _)| o.name == c.name) {
            return Err(CamerasError::Duplicate {
                name: c.name.clone(),
                first: first.clone(),
                second: at.clone(),
            });
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    camera: Vec<Spanned<FileCamera>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCamera {
    name: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    size: Option<Spanned<String>>,
    fps: Option<Spanned<toml::Value>>,
    quality: Option<Spanned<i64>>,
    rtsp_transport: Option<Spanned<String>>,
    renditions: Option<Spanned<Vec<i64>>>,
}

/// Line number (1-based) of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

fn parse_file(
    path: &Path,
    text: &str,
    defaults: &Config,
) -> Result<Vec<(Camera, String)>, CamerasError> {
    let file_error = |problem: String| CamerasError::File {
        path: path.to_path_buf(),
        problem,
    };
    let doc: FileDoc = toml::from_str(text).map_err(|e| {
        // The line itself names the field even when TOML's message does not
        // (`source = test-pattern` is "invalid boolean": strings need quotes).
        let place = e
            .span()
            .map(|s| {
                let line = line_of(text, s.start);
                let shown: String = text
                    .lines()
                    .nth(line - 1)
                    .unwrap_or_default()
                    .trim()
                    .chars()
                    .take(80)
                    .collect();
                format!("line {line} ({shown}): ")
            })
            .unwrap_or_default();
        let message = e.message().trim_end().replace('\n', " ");
        let hint = if message.contains("expected one of") {
            String::new()
        } else {
            format!(" (camera fields: {FIELDS}; text values in quotes)")
        };
        file_error(format!("{place}{message}{hint}"))
    })?;
    let mut out = Vec::new();
    for (index, table) in doc.camera.iter().enumerate() {
        let c = table.get_ref();
        let fps = match c.fps.as_ref().map(|v| v.get_ref()) {
            None => None,
            Some(toml::Value::Integer(i)) => Some(FpsIn::Number(*i as f64)),
            Some(toml::Value::Float(f)) => Some(FpsIn::Number(*f)),
            Some(toml::Value::String(s)) => Some(FpsIn::Text(s)),
            Some(other) => {
                let line = c.fps.as_ref().map_or(0, |v| line_of(text, v.span().start));
                return Err(file_error(format!(
                    "line {line}: fps: expected a number or \"native\", got a {}",
                    other.type_str()
                )));
            }
        };
        let raw = Raw {
            name: c.name.as_ref().map(|v| v.get_ref().as_str()),
            source: c.source.as_ref().map(|v| v.get_ref().as_str()),
            size: c.size.as_ref().map(|v| v.get_ref().as_str()),
            fps,
            quality: c.quality.as_ref().map(|v| *v.get_ref()),
            rtsp_transport: c.rtsp_transport.as_ref().map(|v| v.get_ref().as_str()),
            renditions: c
                .renditions
                .as_ref()
                .map(|v| RenditionsIn::List(v.get_ref().clone())),
        };
        let span_of = |field: &str| -> Range<usize> {
            let s = match field {
                "name" => c.name.as_ref().map(|v| v.span()),
                "source" => c.source.as_ref().map(|v| v.span()),
                "size" => c.size.as_ref().map(|v| v.span()),
                "fps" => c.fps.as_ref().map(|v| v.span()),
                "quality" => c.quality.as_ref().map(|v| v.span()),
                "rtsp_transport" => c.rtsp_transport.as_ref().map(|v| v.span()),
                "renditions" => c.renditions.as_ref().map(|v| v.span()),
                _ => None,
            };
            s.unwrap_or_else(|| table.span())
        };
        let camera = validate(&raw, defaults).map_err(|bad| {
            file_error(format!(
                "line {}: camera #{} ({}): {}: {}",
                line_of(text, span_of(bad.field).start),
                index + 1,
                raw.name.unwrap_or("unnamed"),
                bad.field,
                bad.problem
            ))
        })?;
        let at = format!(
            "{} line {}",
            path.display(),
            line_of(text, span_of("name").start)
        );
        out.push((camera, at));
    }
    Ok(out)
}

/// `name=lobby,source=rtsp://…,size=1280x720,fps=15,quality=70,rtsp_transport=udp,renditions=640:320`
/// (values cannot hold commas: use the file for such a source).
fn parse_flag(text: &str, defaults: &Config) -> Result<Camera, CamerasError> {
    let flag_error = |problem: String| CamerasError::Flag {
        text: text.to_string(),
        problem,
    };
    let mut raw = Raw::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| flag_error(format!("{part:?} is not KEY=VALUE ({FIELDS})")))?;
        let value = value.trim();
        match key.trim() {
            "name" => raw.name = Some(value),
            "source" => raw.source = Some(value),
            "size" => raw.size = Some(value),
            "fps" => raw.fps = Some(FpsIn::Text(value)),
            "quality" => {
                raw.quality = Some(value.parse().map_err(|_| {
                    flag_error(format!("quality: must be 1 to 100, got {value:?}"))
                })?);
            }
            "rtsp_transport" => raw.rtsp_transport = Some(value),
            "renditions" => raw.renditions = Some(RenditionsIn::Text(value)),
            other => {
                return Err(flag_error(format!(
                    "unknown field {other:?} (fields: {FIELDS})"
                )));
            }
        }
    }
    validate(&raw, defaults).map_err(|bad| flag_error(format!("{}: {}", bad.field, bad.problem)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(extra: &[&str]) -> Config {
        let mut args = vec!["frame-producer"];
        args.extend_from_slice(extra);
        Config::try_parse_from(args).expect("flags")
    }

    fn file(text: &str) -> Result<Vec<Camera>, String> {
        parse_file(Path::new("cams.toml"), text, &flags(&["--quality", "70"]))
            .map(|v| v.into_iter().map(|(c, _)| c).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_lists_cameras_with_the_flags_as_defaults() {
        let cams = file(
            r#"
[[camera]]
name = "lobby"
source = "test-pattern"
size = "320x240"
fps = 10

[[camera]]
name = "yard"
source = "/frames"
fps = "native"
quality = 95
rtsp_transport = "udp"
"#,
        )
        .expect("valid");
        assert_eq!(cams.len(), 2);
        assert_eq!(cams[0].name, "lobby");
        assert_eq!(cams[0].source, SourceSpec::TestPattern);
        assert_eq!(
            cams[0].size,
            Some(Size {
                width: 320,
                height: 240
            })
        );
        assert_eq!((cams[0].fps, cams[0].quality), (Some(10.0), 70));
        assert_eq!(cams[0].rtsp_transport, "tcp");
        assert_eq!(cams[1].source, SourceSpec::Files("/frames".into()));
        assert_eq!(
            (cams[1].size, cams[1].fps, cams[1].quality),
            (None, None, 95)
        );
        assert_eq!(cams[1].rtsp_transport, "udp");
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let cases = [
            (
                "[[camera]]\nname = \"a\"\nsource = \"test-pattern\"\nsize = \"641x480\"\n",
                "line 4: camera #1 (a): size:",
            ),
            (
                "[[camera]]\nname = \"a\"\nsource = \"test-pattern\"\n\n[[camera]]\nname = \"b c\"\nsource = \"test-pattern\"\n",
                "line 6: camera #2 (b c): name:",
            ),
            (
                "[[camera]]\nname = \"a\"\nsource = \"gopher://x\"\n",
                "line 3: camera #1 (a): source: unsupported source scheme",
            ),
            (
                "[[camera]]\nname = \"a\"\nsource = \"test-pattern\"\nfps = 0\n",
                "line 4: camera #1 (a): fps:",
            ),
            (
                "[[camera]]\nname = \"a\"\nsource = \"test-pattern\"\nquality = 101\n",
                "line 4: camera #1 (a): quality: must be 1 to 100",
            ),
            (
                "[[camera]]\nname = \"a\"\nsource = \"test-pattern\"\nrtsp_transport = \"http\"\n",
                "line 4: camera #1 (a): rtsp_transport:",
            ),
            (
                "[[camera]]\nname = \"a\"\nsorce = \"test-pattern\"\n",
                "line 3 (sorce = \"test-pattern\"): unknown field `sorce`",
            ),
            (
                "[[camera]]\nname = \"a\"\n\n",
                "camera #1 (a): source: missing",
            ),
            (
                "[[camera]]\nname = \"a\"\nsource = test-pattern\n",
                "line 3 (source = test-pattern):",
            ),
            (
                "[[camera]]\nname = \"a\"\nsource = \"test-pattern\"\nfps = [1]\n",
                "line 4: fps: expected a number",
            ),
        ];
        for (text, want) in cases {
            let err = file(text).expect_err(text);
            assert!(err.starts_with("cams.toml: "), "{err}");
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }

    #[test]
    fn plain_builds_refuse_camera_sources_naming_the_feature() {
        let r = file("[[camera]]\nname = \"door\"\nsource = \"rtsp://cam/1\"\n");
        if cfg!(feature = "ffmpeg") {
            assert!(r.is_ok());
        } else {
            let err = r.expect_err("needs ffmpeg");
            assert!(
                err.contains("line 3") && err.contains("`ffmpeg` build feature"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../../../deploy/cameras.example.toml");
        let r = parse_file(Path::new("cameras.example.toml"), text, &flags(&[]));
        if cfg!(feature = "ffmpeg") {
            let names: Vec<_> = r.expect("valid").into_iter().map(|(c, _)| c.name).collect();
            assert_eq!(names, ["lobby", "garage", "yard", "clip"]);
        } else {
            let err = r.expect_err("the video needs ffmpeg").to_string();
            assert!(err.contains("(clip)") && err.contains("`ffmpeg`"), "{err}");
        }
    }

    #[test]
    fn repeated_flags_list_cameras() {
        let c = flags(&[
            "--camera",
            "name=lobby,source=test-pattern,size=320x240,fps=15",
            "--camera",
            "name=yard, source=/frames, quality=60, rtsp_transport=udp",
        ]);
        let list = from_config(&c).expect("valid");
        assert!(list.listed);
        assert_eq!(list.cameras.len(), 2);
        assert_eq!(list.cameras[0].fps, Some(15.0));
        assert_eq!(list.cameras[1].quality, 60);
        for (bad, want) in [
            ("name=a,source=test-pattern,size=big", "size:"),
            (
                "name=a,source=test-pattern,colour=red",
                "unknown field \"colour\"",
            ),
            ("name=a", "source: missing"),
            ("name=a,source=test-pattern,quality=x", "quality:"),
            ("lobby", "not KEY=VALUE"),
        ] {
            let err = from_config(&flags(&["--camera", bad]))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
        let err = from_config(&flags(&[
            "--camera",
            "name=a,source=test-pattern",
            "--camera",
            "name=a,source=/frames",
        ]))
        .expect_err("duplicate")
        .to_string();
        assert!(err.contains("listed twice"), "{err}");
    }

    #[test]
    fn empty_options_mean_none() {
        let list = from_config(&flags(&["--cameras", "", "--camera", ""])).expect("valid");
        assert!(!list.listed);
        assert_eq!(list.cameras[0].name, "cam0");
    }

    #[test]
    fn without_a_list_it_is_the_one_camera_of_the_flags() {
        let list = from_config(&flags(&["--stream", "lab", "--fps", "20"])).expect("valid");
        assert!(!list.listed);
        assert_eq!(list.cameras.len(), 1);
        assert_eq!(list.cameras[0].name, "lab");
        assert_eq!(list.cameras[0].source, SourceSpec::TestPattern);
        assert_eq!(list.cameras[0].fps, Some(20.0));
        let err = from_config(&flags(&["--source", "gopher://x"]))
            .expect_err("bad source")
            .to_string();
        assert!(err.contains("unsupported source scheme"), "{err}");
    }
}
