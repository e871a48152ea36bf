//! The V4L2 driver side: open, negotiate, stream through memory-mapped
//! buffers. Any failure drops the session; the next call reopens it, so an
//! unplugged camera comes back by itself when it is plugged in again (the
//! capture loop retries with backoff and logs the reason).

use std::io;
use std::time::Duration;

use bytes::Bytes;
use v4l::buffer::Type;
use v4l::framesize::FrameSizeEnum;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC, Fraction};

use super::convert::I420;
use super::negotiate::{Offer, PixelKind, Want, choose};
use crate::source::{Captured, FrameFault, Picture, Source, SourceError, Unavailable};

pub struct V4l2Source {
    path: String,
    want: Want,
    session: Option<Session>,
    raw: I420,
}

/// An open, streaming camera. Field order matters: the stream (buffers,
/// STREAMOFF) is dropped before the device is closed.
struct Session {
    stream: Stream<'static>,
    _device: Device,
    kind: PixelKind,
    width: u32,
    height: u32,
    stride: usize,
}

impl V4l2Source {
    pub fn new(path: &str, want: Want) -> Self {
        V4l2Source {
            path: path.to_string(),
            want,
            session: None,
            raw: I420::default(),
        }
    }

    fn open(&self, timeout: Duration) -> Result<Session, SourceError> {
        let path = &self.path;
        let device = Device::with_path(path).map_err(|e| unavailable(path, "opening", e))?;
        let caps = device
            .query_caps()
            .map_err(|e| unavailable(path, "querying", e))?;
        let can = v4l::capability::Flags::VIDEO_CAPTURE | v4l::capability::Flags::STREAMING;
        if !caps.capabilities.contains(can) {
            return Err(Unavailable::Device {
                path: path.clone(),
                problem: format!("({}) is not a streaming capture device", caps.card),
            }
            .into());
        }
        let offers =
            offers(&device, self.want).map_err(|e| unavailable(path, "listing formats of", e))?;
        let choice = choose(&offers, self.want).ok_or_else(|| Unavailable::Device {
            path: path.clone(),
            problem: format!(
                "offers no format this producer reads (MJPEG, YUYV, NV12, YU12); it offers {}",
                offers
                    .iter()
                    .map(|o| String::from_utf8_lossy(&o.fourcc).into_owned())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        let asked = Format::new(choice.width, choice.height, FourCC::new(&choice.fourcc));
        let got = device
            .set_format(&asked)
            .map_err(|e| unavailable(path, "setting the format of", e))?;
        let kind = PixelKind::from_fourcc(got.fourcc.repr).ok_or_else(|| Unavailable::Device {
            path: path.clone(),
            problem: format!("switched to unsupported format {}", got.fourcc),
        })?;
        let fps = match choice.fps {
            Some(fps) => {
                let interval = Fraction::new(1000, (fps * 1000.0).round() as u32);
                device
                    .set_params(&v4l::video::capture::Parameters::new(interval))
                    .ok()
                    .map(|p| {
                        f64::from(p.interval.denominator) / f64::from(p.interval.numerator.max(1))
                    })
            }
            None => None,
        };
        tracing::info!(
            device = %path,
            card = %caps.card,
            driver = %caps.driver,
            requested = format_args!(
                "{} {}x{} @ {}",
                String::from_utf8_lossy(&choice.fourcc),
                choice.width,
                choice.height,
                choice.fps.map_or("driver default".into(), |f| format!("{f} fps"))
            ),
            actual = format_args!(
                "{} {}x{} @ {}",
                got.fourcc,
                got.width,
                got.height,
                fps.map_or("unknown".into(), |f| format!("{f:.2} fps"))
            ),
            passthrough = kind == PixelKind::Mjpeg,
            "camera opened"
        );
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, 4)
            .map_err(|e| unavailable(path, "mapping buffers of", e))?;
        stream.set_timeout(timeout);
        Ok(Session {
            stream,
            _device: device,
            kind,
            width: got.width,
            height: got.height,
            stride: got.stride as usize,
        })
    }
}

/// Every (format, size) the camera lists, with its rates. Stepwise sizes are
/// represented by their largest size and the requested one if it fits.
fn offers(device: &Device, want: Want) -> io::Result<Vec<Offer>> {
    let mut out = Vec::new();
    for format in device.enum_formats()? {
        let fourcc = format.fourcc.repr;
        if PixelKind::from_fourcc(fourcc).is_none() {
            out.push(Offer {
                fourcc,
                width: 0,
                height: 0,
                fps: Vec::new(),
            });
            continue;
        }
        let mut sizes = Vec::new();
        for size in device.enum_framesizes(format.fourcc).unwrap_or_default() {
            match size.size {
                FrameSizeEnum::Discrete(d) => sizes.push((d.width, d.height)),
                FrameSizeEnum::Stepwise(s) => {
                    sizes.push((s.max_width, s.max_height));
                    if let Some((w, h)) = want.size
                        && (s.min_width..=s.max_width).contains(&w)
                        && (s.min_height..=s.max_height).contains(&h)
                    {
                        sizes.push((w, h));
                    }
                }
            }
        }
        for (width, height) in sizes {
            let fps = device
                .enum_frameintervals(format.fourcc, width, height)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| match i.interval {
                    v4l::frameinterval::FrameIntervalEnum::Discrete(f) if f.numerator > 0 => {
                        Some(f64::from(f.denominator) / f64::from(f.numerator))
                    }
                    v4l::frameinterval::FrameIntervalEnum::Stepwise(s) if s.min.numerator > 0 => {
                        Some(f64::from(s.min.denominator) / f64::from(s.min.numerator))
                    }
                    _ => None,
                })
                .collect();
            out.push(Offer {
                fourcc,
                width,
                height,
                fps,
            });
        }
    }
    Ok(out)
}

fn unavailable(path: &str, doing: &'static str, e: io::Error) -> SourceError {
    let hint = match e.raw_os_error() {
        Some(2) | Some(19) | Some(6) => {
            " (no such device: is the camera plugged in, and passed to the container with `devices:`?)"
        }
        Some(13) => " (permission denied: add the user to the `video` group)",
        Some(16) => " (device busy: another program is using the camera)",
        Some(25) => " (not a V4L2 device)",
        _ => "",
    };
    Unavailable::Io {
        doing,
        path: path.to_string(),
        source: e,
        hint,
    }
    .into()
}

impl Source for V4l2Source {
    fn describe(&self) -> String {
        format!("v4l2:{}", self.path)
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Captured<'_>>, SourceError> {
        if self.session.is_none() {
            self.session = Some(self.open(timeout)?);
        }
        let Some(session) = self.session.as_mut() else {
            return Ok(None);
        };
        let (kind, width, height, stride) =
            (session.kind, session.width, session.height, session.stride);
        let data = match session.stream.next() {
            Ok((buf, meta)) => {
                let used = (meta.bytesused as usize).min(buf.len());
                &buf[..if used == 0 { buf.len() } else { used }]
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(None),
            Err(e) => {
                let err = unavailable(&self.path, "reading from", e);
                self.session = None;
                return Err(err);
            }
        };
        let capture_ts_ns = stream_common::unix_now_ns();
        if kind == PixelKind::Mjpeg {
            if !frame_wire::looks_like_jpeg(data) {
                return Err(SourceError::bad(
                    self.path.clone(),
                    FrameFault::BrokenJpeg(data.len()),
                ));
            }
            let (w, h) = stream_common::jpeg::dimensions(data).unwrap_or((width, height));
            return Ok(Some(Captured {
                picture: Picture::Jpeg {
                    data: Bytes::copy_from_slice(data),
                    width: w,
                    height: h,
                },
                capture_ts_ns,
            }));
        }
        self.raw
            .convert(kind, data, width, height, stride)
            .map_err(|e| SourceError::bad(self.path.clone(), FrameFault::Convert(e)))?;
        Ok(Some(Captured {
            picture: Picture::Yuv420(self.raw.view()),
            capture_ts_ns,
        }))
    }
}
