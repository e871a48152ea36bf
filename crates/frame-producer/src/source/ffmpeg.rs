//! IP cameras (`rtsp://`) and video files (`.mp4`, `.mkv`, ...), demuxed and
//! decoded with FFmpeg's libraries (the `ffmpeg` build feature).
//!
//! Decoded pictures go to the encoder as I420 planes borrowed from the
//! decoder when they fit `--size` (H.264/H.265 decode to 4:2:0 already);
//! otherwise swscale converts and scales them in one pass, which is several
//! times cheaper than scaling afterwards. A stream that is MJPEG already is
//! passed through untouched (and scaled later only if it must shrink).
//! Files play in real time by their timestamps and loop; a camera that drops
//! or stalls (5 s without data) is reopened by the capture loop's backoff.
//!
//! While nobody wants the camera's full rate, only its keyframes are decoded
//! (each on its own, drained at once, for the previews); the packets between
//! are read and dropped, so the connection stays up. When a subscriber
//! comes, decoding resumes at the next keyframe: the first viewer waits at
//! most one keyframe interval.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ff::format::Pixel;
use ff::media::Type as Media;
use ffmpeg_next as ff;
use stream_common::jpeg::Yuv420;

use super::{Captured, Demand, FrameFault, OpenError, Picture, Source, SourceError, Unavailable};
use crate::scale::fit;
use crate::units::Size;

/// Socket timeout for network inputs: a camera silent this long is reopened.
const NETWORK_TIMEOUT_US: &str = "5000000";

pub struct FfmpegSource {
    url: String,
    network: bool,
    rtsp_transport: String,
    max: Option<Size>,
    session: Option<Session>,
    /// Where the next loop of a file starts on the wall clock.
    loop_start: Option<Instant>,
    opened_once: bool,
    /// Nobody wants the full rate: decode keyframes only.
    keyframes_only: bool,
}

struct Session {
    input: ff::format::context::Input,
    index: usize,
    /// `None` for MJPEG streams, whose packets are JPEGs already.
    decoder: Option<ff::decoder::Video>,
    time_base: f64,
    frame_secs: f64,
    frame: ff::frame::Video,
    converted: ff::frame::Video,
    /// swscale context for (source format, source size, target size).
    #[allow(clippy::type_complexity)]
    scaler: Option<(Pixel, u32, u32, u32, u32, ff::software::scaling::Context)>,
    /// Anchor of file playback: wall-clock instant of timestamp `.1`.
    clock: Option<(Instant, f64)>,
    last_due: Option<Instant>,
    /// A decoded frame waiting for its time (files only).
    pending: Option<Instant>,
    jpeg: Option<Bytes>,
    /// The decoder has had every packet since the last keyframe; when not
    /// (packets were dropped), decoding resumes at the next keyframe.
    synced: bool,
    /// A keyframe was sent alone and drained: flush before the next packet.
    key_drained: bool,
}

impl FfmpegSource {
    /// `url`: what FFmpeg opens (`SourceSpec::Ffmpeg`'s, without `ffmpeg:`).
    pub fn new(url: &str, rtsp_transport: &str, max: Option<Size>) -> Result<Self, OpenError> {
        ff::init().map_err(OpenError::Ffmpeg)?;
        // FFmpeg's own chatter (per-packet warnings) would flood the log;
        // failures reach us as errors and are logged once with context.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
        let url = url.to_string();
        let network = url.contains("://") && !url.starts_with("file://");
        Ok(FfmpegSource {
            url,
            network,
            rtsp_transport: rtsp_transport.to_string(),
            max,
            session: None,
            loop_start: None,
            opened_once: false,
            keyframes_only: false,
        })
    }

    fn open(&mut self) -> Result<Session, SourceError> {
        let mut options = ff::Dictionary::new();
        if self.network {
            options.set("rtsp_transport", &self.rtsp_transport);
            options.set("timeout", NETWORK_TIMEOUT_US);
            options.set("rw_timeout", NETWORK_TIMEOUT_US);
            // Live view: hand packets over as they come.
            options.set("fflags", "nobuffer");
            options.set("max_delay", "200000");
            // Start quickly: the SDP and the first keyframe say what is needed.
            options.set("analyzeduration", "500000");
            options.set("probesize", "262144");
        }
        let input = ff::format::input_with_dictionary(&self.url, options).map_err(|source| {
            Unavailable::Ffmpeg {
                doing: "opening",
                what: self.redacted(),
                source,
            }
        })?;
        let stream = input
            .streams()
            .best(Media::Video)
            .ok_or_else(|| Unavailable::NoVideo(self.redacted()))?;
        let index = stream.index();
        let tb = stream.time_base();
        let time_base = f64::from(tb.numerator()) / f64::from(tb.denominator().max(1));
        let rate = stream.avg_frame_rate();
        let fps = if rate.numerator() > 0 && rate.denominator() > 0 {
            f64::from(rate.numerator()) / f64::from(rate.denominator())
        } else {
            25.0
        };
        let context = ff::codec::context::Context::from_parameters(stream.parameters()).map_err(
            |source| Unavailable::Ffmpeg {
                doing: "reading the codec parameters of",
                what: self.redacted(),
                source,
            },
        )?;
        let codec = context.id();
        let passthrough = codec == ff::codec::Id::MJPEG;
        let video = context
            .decoder()
            .video()
            .map_err(|source| Unavailable::Ffmpeg {
                doing: "finding a decoder (this FFmpeg may lack one) for",
                what: format!("{codec:?} in {}", self.redacted()),
                source,
            })?;
        let size = (video.width(), video.height());
        let decoder = (!passthrough).then_some(video);
        if !self.opened_once || self.network {
            tracing::info!(
                source = %self.redacted(),
                codec = ?codec,
                size = format_args!("{}x{}", size.0, size.1),
                fps = format_args!("{fps:.2}"),
                passthrough,
                "video opened"
            );
        }
        self.opened_once = true;
        Ok(Session {
            input,
            index,
            decoder,
            time_base,
            frame_secs: 1.0 / fps.clamp(1.0, 240.0),
            frame: ff::frame::Video::empty(),
            converted: ff::frame::Video::empty(),
            scaler: None,
            clock: None,
            last_due: None,
            pending: None,
            jpeg: None,
            synced: true,
            key_drained: false,
        })
    }

    /// The URL without a password, for logs.
    fn redacted(&self) -> String {
        super::spec::redact(&self.url)
    }

    /// Reads packets until a picture is ready in the session, the input
    /// ends, or `deadline` passes (live inputs only).
    fn decode_next(&mut self, deadline: Instant) -> Result<Step, SourceError> {
        let network = self.network;
        let keyframes_only = self.keyframes_only;
        let Some(s) = self.session.as_mut() else {
            return Ok(Step::Waiting);
        };
        let mut packet = ff::Packet::empty();
        loop {
            if let Some(decoder) = s.decoder.as_mut() {
                match decoder.receive_frame(&mut s.frame) {
                    Ok(()) => {
                        let ts = s.frame.timestamp().map(|t| t as f64 * s.time_base);
                        return Ok(Step::Ready(ts));
                    }
                    Err(ff::Error::Eof) if s.key_drained => {
                        // The lone keyframe is out: ready for more packets.
                        decoder.flush();
                        s.key_drained = false;
                    }
                    Err(ff::Error::Eof) => return Ok(Step::Ended),
                    Err(_) => {} // needs more input
                }
            }
            if network && Instant::now() >= deadline {
                return Ok(Step::Waiting);
            }
            match packet.read(&mut s.input) {
                Ok(()) => {}
                Err(ff::Error::Eof) => {
                    // Drain the frames the decoder still holds.
                    match s.decoder.as_mut().map(|d| d.send_eof()) {
                        Some(Ok(())) => continue,
                        _ => return Ok(Step::Ended),
                    }
                }
                Err(source) => {
                    return Err(Unavailable::Ffmpeg {
                        doing: "reading",
                        what: super::spec::redact(&self.url),
                        source,
                    }
                    .into());
                }
            }
            if packet.stream() != s.index {
                continue;
            }
            match s.decoder.as_mut() {
                None => {
                    let Some(data) = packet.data() else { continue };
                    s.jpeg = Some(Bytes::copy_from_slice(data));
                    let ts = packet.pts().map(|t| t as f64 * s.time_base);
                    return Ok(Step::Ready(ts));
                }
                Some(d) => {
                    if (keyframes_only || !s.synced) && !packet.is_key() {
                        // Read, not decoded: nobody wants the frames between
                        // keyframes, or they refer to frames that were not.
                        s.synced = false;
                        continue;
                    }
                    if let Err(source) = d.send_packet(&packet) {
                        return Err(SourceError::bad(
                            "decoder",
                            FrameFault::Ffmpeg {
                                doing: "the decoder refused a packet".into(),
                                source,
                            },
                        ));
                    }
                    if keyframes_only {
                        // Out now, not after the decoder's reorder delay.
                        s.key_drained = d.send_eof().is_ok();
                        s.synced = false;
                    } else {
                        s.synced = true;
                    }
                }
            }
        }
    }
}

/// What reading the input came to.
enum Step {
    /// A picture is ready; its timestamp in seconds, if known.
    Ready(Option<f64>),
    /// Nothing before the deadline.
    Waiting,
    /// End of file, or the camera closed the stream.
    Ended,
}

impl Source for FfmpegSource {
    fn describe(&self) -> String {
        self.redacted()
    }

    fn is_live(&self) -> bool {
        true
    }

    fn set_demand(&mut self, demand: Demand) {
        self.keyframes_only = !demand.full_rate;
    }

    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Captured<'_>>, SourceError> {
        let started = Instant::now();
        let deadline = started + timeout;
        if self.session.is_none() {
            let session = self.open()?;
            self.session = Some(session);
        }
        // A file's frame decoded earlier may still be waiting for its time.
        let waiting = self.session.as_ref().and_then(|s| s.pending);
        let due = match waiting {
            Some(due) => Some(due),
            None => {
                let ts = match self.decode_next(deadline) {
                    Ok(Step::Ready(ts)) => ts,
                    Ok(Step::Waiting) => return Ok(None),
                    Ok(Step::Ended) if self.network => {
                        self.session = None;
                        return Err(Unavailable::Ended.into());
                    }
                    Ok(Step::Ended) => {
                        // Loop: the next pass starts one frame after the last.
                        self.loop_start = self.session.as_ref().and_then(|s| {
                            s.last_due
                                .map(|d| d + Duration::from_secs_f64(s.frame_secs))
                        });
                        self.session = None;
                        return Ok(None);
                    }
                    Err(e @ SourceError::Unavailable(_)) => {
                        self.session = None;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                if self.network {
                    None
                } else {
                    let loop_start = self.loop_start.take();
                    self.session.as_mut().map(|s| s.due(ts, loop_start))
                }
            }
        };
        if let (Some(due), Some(s)) = (due, self.session.as_mut()) {
            let now = Instant::now();
            if due > now {
                if due > deadline {
                    s.pending = Some(due);
                    std::thread::sleep(deadline.saturating_duration_since(now));
                    return Ok(None);
                }
                std::thread::sleep(due - now);
            }
            s.pending = None;
        }
        let capture_ts_ns = stream_common::unix_now_ns();
        let Some(s) = self.session.as_mut() else {
            return Ok(None);
        };
        if let Some(jpeg) = s.jpeg.take() {
            let (w, h) = stream_common::jpeg::dimensions(&jpeg)
                .ok_or_else(|| SourceError::bad("stream", FrameFault::BrokenJpeg(jpeg.len())))?;
            return Ok(Some(Captured {
                picture: Picture::Jpeg {
                    data: jpeg,
                    width: w,
                    height: h,
                },
                capture_ts_ns,
            }));
        }
        let picture = s.picture(self.max)?;
        Ok(Some(Captured {
            picture,
            capture_ts_ns,
        }))
    }
}

impl Session {
    /// When the picture with timestamp `ts` is due on the wall clock.
    fn due(&mut self, ts: Option<f64>, loop_start: Option<Instant>) -> Instant {
        let now = Instant::now();
        let previous = self.last_due;
        let due = match (ts, self.clock) {
            (Some(ts), Some((at, base))) => {
                let due = at + Duration::from_secs_f64((ts - base).max(0.0));
                // Timestamps jumped backwards or far ahead: re-anchor.
                let sane = previous.is_none_or(|p| due + Duration::from_secs(1) >= p)
                    && due <= now + Duration::from_secs(2);
                if sane { Some(due) } else { None }
            }
            _ => None,
        };
        let due = due.unwrap_or_else(|| {
            let at = loop_start
                .or_else(|| previous.map(|p| p + Duration::from_secs_f64(self.frame_secs)))
                .unwrap_or(now)
                .max(now - Duration::from_millis(100));
            if let Some(ts) = ts {
                self.clock = Some((at, ts));
            }
            at
        });
        self.last_due = Some(due);
        due
    }

    /// The decoded frame as I420 planes no larger than `max`: borrowed from
    /// the decoder when it fits, else converted and scaled by swscale.
    fn picture(&mut self, max: Option<Size>) -> Result<Picture<'_>, SourceError> {
        let (format, sw, sh) = (self.frame.format(), self.frame.width(), self.frame.height());
        let target = max.and_then(|m| fit(sw, sh, m));
        let (w, h) = target.unwrap_or((sw, sh));
        let frame = match (format, target) {
            (Pixel::YUV420P | Pixel::YUVJ420P, None) => &self.frame,
            _ => {
                let fresh = !matches!(&self.scaler, Some((f, cw, ch, tw, th, _)) if *f == format && *cw == sw && *ch == sh && *tw == w && *th == h);
                if fresh {
                    // Area averaging: no aliasing on large reductions.
                    let ctx = ff::software::scaling::Context::get(
                        format,
                        sw,
                        sh,
                        Pixel::YUV420P,
                        w,
                        h,
                        ff::software::scaling::Flags::AREA,
                    )
                    .map_err(|source| {
                        SourceError::bad(
                            "decoder",
                            FrameFault::Ffmpeg {
                                doing: format!("no conversion from {format:?}"),
                                source,
                            },
                        )
                    })?;
                    self.scaler = Some((format, sw, sh, w, h, ctx));
                }
                if let Some((_, _, _, _, _, scaler)) = self.scaler.as_mut() {
                    scaler
                        .run(&self.frame, &mut self.converted)
                        .map_err(|source| {
                            SourceError::bad(
                                "decoder",
                                FrameFault::Ffmpeg {
                                    doing: format!("converting {format:?}"),
                                    source,
                                },
                            )
                        })?;
                }
                &self.converted
            }
        };
        let image = Yuv420 {
            width: w,
            height: h,
            planes: [frame.data(0), frame.data(1), frame.data(2)],
            strides: [frame.stride(0), frame.stride(1), frame.stride(2)],
        };
        if !image.is_valid() {
            return Err(SourceError::bad(
                "decoder",
                FrameFault::Decoded(format!("{w}x{h} {format:?} picture")),
            ));
        }
        Ok(Picture::Yuv420(image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        let s = FfmpegSource::new("rtsp://admin:secret@10.0.0.5/live", "tcp", None).expect("init");
        assert_eq!(s.describe(), "rtsp://***@10.0.0.5/live");
        assert!(!s.describe().contains("secret"));
    }

    #[test]
    fn a_missing_file_is_unavailable_not_a_crash() {
        let mut s = FfmpegSource::new("/nonexistent/clip.mp4", "tcp", None).expect("init");
        let r = s.next_frame(Duration::from_millis(50));
        assert!(
            matches!(r, Err(SourceError::Unavailable(Unavailable::Ffmpeg { .. }))),
            "{:?}",
            r.err()
        );
    }
}
