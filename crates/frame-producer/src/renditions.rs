//! Renditions: smaller copies of a camera's full-rate frames (640 and 320
//! pixels wide by default, `--renditions` or a camera's `renditions`), each
//! published on its own topic (`r/<name>/<width>/`) and made only for the
//! frames captured while someone subscribes to that topic, as full-rate
//! frames are. So a page's 320 px tile costs the producer one small encode
//! per frame, shared by every gateway and viewer, and nothing when no one
//! looks at it.
//!
//! Each frame is scaled from what the source captured, once: a camera's
//! JPEG is decoded once with libjpeg-turbo's DCT scaling to the smallest
//! size that still covers the largest rendition wanted, and every wanted
//! rendition is resized from those pixels; raw pictures (test pattern,
//! decoders, webcams) are resized by the same scaler as `--size` uses.
//! A rendition is never as large as the full picture: widths at or above
//! it are left out (the full picture serves them).

use bytes::Bytes;
use prometheus::IntCounter;
use stream_common::jpeg::JpegEncoder;

use crate::encode::{EncodeError, Encoded};
use crate::scale::{Scaler, fit};
use crate::source::Picture;
use crate::units::Size;

/// One rendition of the current picture size.
pub struct Target {
    pub width: u32,
    pub height: u32,
    /// `r/<name>/<width>/`, asked about before every frame.
    pub topic: Bytes,
    /// Frames encoded for it (`producer_rendition_frames_total`).
    pub encoded: IntCounter,
    /// Its subscribers as last seen (`producer_rendition_subscribers`).
    pub subscribers: prometheus::IntGauge,
}

/// One camera's renditions and what makes them.
pub struct Renditions {
    /// The configured widths, largest first.
    widths: Vec<u32>,
    /// The full picture's size the targets were computed for.
    full: Option<(u32, u32)>,
    targets: Vec<Target>,
    scaler: Scaler,
    jpeg: JpegEncoder,
    stream: String,
    counter: prometheus::IntCounterVec,
    gauge: prometheus::IntGaugeVec,
}

impl Renditions {
    pub fn new(
        stream: &str,
        widths: Vec<u32>,
        quality: u8,
        (counter, gauge): (prometheus::IntCounterVec, prometheus::IntGaugeVec),
    ) -> Result<Self, EncodeError> {
        Ok(Renditions {
            widths,
            full: None,
            targets: Vec::new(),
            scaler: Scaler::new(),
            jpeg: JpegEncoder::new(quality)?,
            stream: stream.to_string(),
            counter,
            gauge,
        })
    }

    /// The renditions of the current picture size, ascending by width (none
    /// before the first picture).
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The full picture is now `width x height`: the renditions follow it.
    pub fn set_full_size(&mut self, width: u32, height: u32) {
        if self.full == Some((width, height)) {
            return;
        }
        self.full = Some((width, height));
        for old in &self.targets {
            let label = old.width.to_string();
            let _ = self.gauge.remove_label_values(&[&self.stream, &label]);
        }
        let mut sizes: Vec<(u32, u32)> = self
            .widths
            .iter()
            .filter(|&&w| w < width)
            .filter_map(|&w| {
                fit(
                    width,
                    height,
                    Size {
                        width: w,
                        height: u32::MAX,
                    },
                )
            })
            .collect();
        sizes.sort_unstable();
        sizes.dedup_by_key(|s| s.0);
        self.targets = sizes
            .into_iter()
            .map(|(w, h)| {
                let label = w.to_string();
                Target {
                    width: w,
                    height: h,
                    topic: frame_wire::rendition_topic(&self.stream, w),
                    encoded: self.counter.with_label_values(&[&self.stream, &label]),
                    subscribers: self.gauge.with_label_values(&[&self.stream, &label]),
                }
            })
            .collect();
        tracing::debug!(stream = %self.stream, width, height, renditions = ?self.sizes(), "renditions set");
    }

    /// `(width, height)` of each rendition, ascending.
    pub fn sizes(&self) -> Vec<(u32, u32)> {
        self.targets.iter().map(|t| (t.width, t.height)).collect()
    }

    /// Makes the renditions `wanted` (indexes into [`Renditions::targets`])
    /// of `picture`, scaling it once per rendition from one decode. Each
    /// made one is handed to `made` with its index; the first error stops.
    pub fn make(
        &mut self,
        picture: &Picture<'_>,
        wanted: &[usize],
        mut made: impl FnMut(usize, Encoded),
    ) -> Result<(), EncodeError> {
        let Some(&largest) = wanted.iter().max_by_key(|&&i| self.targets[i].width) else {
            return Ok(());
        };
        if let Picture::Jpeg { data, .. } = picture {
            let t = &self.targets[largest];
            self.scaler.decode_jpeg(data, t.width, t.height)?;
        }
        for &i in wanted {
            let (w, h) = (self.targets[i].width, self.targets[i].height);
            let jpeg = match picture {
                Picture::Jpeg { .. } => {
                    let rgb = self.scaler.scale_decoded(w, h)?;
                    self.jpeg.encode_rgb(rgb, w as usize, h as usize)?
                }
                Picture::Rgb(canvas) => {
                    let from = (canvas.width(), canvas.height());
                    let rgb = self.scaler.scale_rgb(canvas.pixels(), from, w, h)?;
                    self.jpeg.encode_rgb(rgb, w as usize, h as usize)?
                }
                Picture::Yuv420(image) => {
                    let scaled = self.scaler.scale_yuv420(image, w, h)?;
                    self.jpeg.encode_yuv420(&scaled)?
                }
            };
            self.targets[i].encoded.inc();
            made(i, Encoded::new(jpeg, w, h));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stream_common::canvas::Canvas;
    use stream_common::jpeg::{Yuv420, decode_rgb, dimensions};

    fn renditions(widths: &[u32]) -> Renditions {
        let labels = &["stream", "rendition"];
        let counter = prometheus::IntCounterVec::new(prometheus::Opts::new("r", "r"), labels)
            .expect("counter");
        let gauge =
            prometheus::IntGaugeVec::new(prometheus::Opts::new("g", "g"), labels).expect("gauge");
        Renditions::new("cam0", widths.to_vec(), 80, (counter, gauge)).expect("renditions")
    }

    #[test]
    fn targets_follow_the_picture_and_are_never_as_large() {
        let mut r = renditions(&[1280, 640, 320]);
        assert!(r.targets().is_empty(), "none before a picture");
        r.set_full_size(1280, 720);
        assert_eq!(r.sizes(), [(320, 180), (640, 360)]);
        assert_eq!(&r.targets()[0].topic[..], b"r/cam0/320/");
        r.set_full_size(640, 480);
        assert_eq!(r.sizes(), [(320, 240)]);
        r.set_full_size(320, 240);
        assert!(r.sizes().is_empty());
        let mut none = renditions(&[]);
        none.set_full_size(1920, 1080);
        assert!(none.sizes().is_empty());
    }

    #[test]
    fn every_kind_of_picture_makes_every_wanted_rendition() {
        let mut canvas = Canvas::new(1280, 720);
        canvas.fill([20, 180, 40]);
        let big = JpegEncoder::new(85)
            .and_then(|mut e| e.encode(&canvas))
            .expect("jpeg");
        let (y, u, v) = (
            vec![120u8; 1280 * 720],
            vec![128u8; 640 * 360],
            vec![128u8; 640 * 360],
        );
        let yuv = Yuv420 {
            width: 1280,
            height: 720,
            planes: [&y, &u, &v],
            strides: [1280, 640, 640],
        };
        let pictures = [
            Picture::Rgb(&canvas),
            Picture::Jpeg {
                data: big.clone(),
                width: 1280,
                height: 720,
            },
            Picture::Yuv420(yuv),
        ];
        let mut r = renditions(&[640, 320]);
        r.set_full_size(1280, 720);
        for picture in &pictures {
            let mut out = Vec::new();
            r.make(picture, &[0, 1], |i, e| out.push((i, e)))
                .expect("made");
            assert_eq!(out.len(), 2);
            for (i, e) in &out {
                let want = [(320, 180), (640, 360)][*i];
                assert_eq!((e.width, e.height), want);
                assert_eq!(dimensions(&e.jpeg), Some(want));
            }
            let (px, w, _) = decode_rgb(&out[0].1.jpeg).expect("decodes");
            if matches!(picture, Picture::Yuv420(_)) {
                continue;
            }
            let mid = &px[(90 * w as usize + 160) * 3..][..3];
            assert!(mid[1] > 140 && mid[0] < 70, "color kept: {mid:?}");
        }
        // Only what is wanted is made, and counted.
        let mut out = Vec::new();
        r.make(&pictures[0], &[1], |i, _| out.push(i))
            .expect("made");
        assert_eq!(out, [1]);
        assert_eq!(r.targets()[0].encoded.get(), 3);
        assert_eq!(r.targets()[1].encoded.get(), 4);
        r.make(&pictures[0], &[], |_, _| panic!("nothing wanted"))
            .expect("nothing");
        // Garbage is an error, not a panic.
        let garbage = Picture::Jpeg {
            data: Bytes::from_static(b"\xFF\xD8 not really"),
            width: 1280,
            height: 720,
        };
        assert!(r.make(&garbage, &[0], |_, _| {}).is_err());
    }
}
