//! Previews: one small JPEG per camera about once a second (`p/<name>/`),
//! made once by the producer, that every gateway keeps for every stream
//! whether or not anyone watches it (tiles, `/snapshot`, `/api/streams`, and
//! a new viewer's first picture). They flow even when no subscriber wants the
//! camera's full rate, so they are made from what the source captured by the
//! cheapest path, never from a full-size JPEG encoded only to be shrunk:
//! raw pixels (test pattern, decoders, webcams) are scaled then encoded
//! small; a camera's JPEG is decoded with libjpeg-turbo's DCT scaling (a
//! 1080p JPEG decoded at 1/4 or 1/8) and encoded small; a picture already
//! no wider than the preview is used as it is.

use std::time::{Duration, Instant};

use stream_common::jpeg::JpegEncoder;

use crate::encode::{EncodeError, Encoded};
use crate::scale::{Scaler, fit};
use crate::source::Picture;
use crate::units::Size;

/// How often, and how wide.
#[derive(Debug, Clone, Copy)]
pub struct PreviewSettings {
    pub interval: Duration,
    /// Largest width; the height follows the picture's aspect ratio.
    pub width: u32,
}

/// One camera's preview maker and its schedule.
pub struct Previews {
    settings: PreviewSettings,
    /// When the next one is due; `None`: at the first frame.
    next: Option<Instant>,
    scaler: Scaler,
    jpeg: JpegEncoder,
}

impl Previews {
    pub fn new(settings: PreviewSettings, quality: u8) -> Result<Self, EncodeError> {
        Ok(Previews {
            settings,
            next: None,
            scaler: Scaler::new(),
            jpeg: JpegEncoder::new(quality)?,
        })
    }

    /// Whether a frame captured at `now` should become a preview.
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|next| now >= next)
    }

    /// A preview went out at `now` (made here, or a full-rate JPEG already
    /// small enough): the next is due one interval after this one was (so a
    /// 15 fps camera gives one a second on average, not one every 1.067 s),
    /// or one interval from `now` when the camera fell behind.
    pub fn made(&mut self, now: Instant) {
        let interval = self.settings.interval;
        self.next = Some(match self.next {
            Some(due) if due + interval > now => due + interval,
            _ => now + interval,
        });
    }

    /// Makes the preview of `picture` and schedules the next one.
    pub fn make(&mut self, picture: &Picture<'_>, now: Instant) -> Result<Encoded, EncodeError> {
        self.made(now);
        let target = |w, h| {
            fit(
                w,
                h,
                Size {
                    width: self.settings.width,
                    height: u32::MAX,
                },
            )
        };
        match picture {
            Picture::Jpeg {
                data,
                width,
                height,
            } => match target(*width, *height) {
                None => Ok(Encoded {
                    jpeg: stream_common::huffman::with_huffman_tables(data.clone()),
                    width: *width,
                    height: *height,
                    encoded: false,
                }),
                Some((w, h)) => {
                    let rgb = self.scaler.scale_jpeg(data, w, h)?;
                    let jpeg = self.jpeg.encode_rgb(rgb, w as usize, h as usize)?;
                    Ok(Encoded::new(jpeg, w, h))
                }
            },
            Picture::Rgb(canvas) => {
                let (cw, ch) = (canvas.width(), canvas.height());
                match target(cw, ch) {
                    None => Ok(Encoded::new(self.jpeg.encode(canvas)?, cw, ch)),
                    Some((w, h)) => {
                        let rgb = self.scaler.scale_rgb(canvas.pixels(), (cw, ch), w, h)?;
                        let jpeg = self.jpeg.encode_rgb(rgb, w as usize, h as usize)?;
                        Ok(Encoded::new(jpeg, w, h))
                    }
                }
            }
            Picture::Yuv420(image) => match target(image.width, image.height) {
                None => Ok(Encoded::new(
                    self.jpeg.encode_yuv420(image)?,
                    image.width,
                    image.height,
                )),
                Some((w, h)) => {
                    let scaled = self.scaler.scale_yuv420(image, w, h)?;
                    Ok(Encoded::new(self.jpeg.encode_yuv420(&scaled)?, w, h))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use stream_common::canvas::Canvas;
    use stream_common::jpeg::{Yuv420, decode_rgb, dimensions};

    fn previews(width: u32) -> Previews {
        Previews::new(
            PreviewSettings {
                interval: Duration::from_secs(1),
                width,
            },
            80,
        )
        .expect("previews")
    }

    #[test]
    fn every_kind_of_picture_shrinks_to_the_preview_width() {
        let mut canvas = Canvas::new(640, 480);
        canvas.fill([20, 180, 40]);
        let big = JpegEncoder::new(85)
            .and_then(|mut e| e.encode(&canvas))
            .expect("jpeg");
        let mut p = previews(320);
        let now = Instant::now();

        let from_rgb = p.make(&Picture::Rgb(&canvas), now).expect("rgb");
        let from_jpeg = p
            .make(
                &Picture::Jpeg {
                    data: big.clone(),
                    width: 640,
                    height: 480,
                },
                now,
            )
            .expect("jpeg");
        let (y, u, v) = (
            vec![120u8; 640 * 480],
            vec![128u8; 320 * 240],
            vec![128u8; 320 * 240],
        );
        let yuv = Yuv420 {
            width: 640,
            height: 480,
            planes: [&y, &u, &v],
            strides: [640, 320, 320],
        };
        let from_yuv = p.make(&Picture::Yuv420(yuv), now).expect("yuv");
        for out in [&from_rgb, &from_jpeg, &from_yuv] {
            assert!(out.encoded);
            assert_eq!((out.width, out.height), (320, 240));
            assert_eq!(dimensions(&out.jpeg), Some((320, 240)));
            assert!(out.jpeg.len() < big.len(), "a preview is small");
        }
        let (px, _, _) = decode_rgb(&from_jpeg.jpeg).expect("decodes");
        let mid = &px[(120 * 320 + 160) * 3..][..3];
        assert!(mid[1] > 140 && mid[0] < 70, "color kept: {mid:?}");

        // A JPEG already small enough goes out as it is.
        let mut small = Canvas::new(160, 120);
        small.fill([200, 0, 0]);
        let small = JpegEncoder::new(80)
            .and_then(|mut e| e.encode(&small))
            .expect("jpeg");
        let out = p
            .make(
                &Picture::Jpeg {
                    data: small.clone(),
                    width: 160,
                    height: 120,
                },
                now,
            )
            .expect("small");
        assert!(!out.encoded);
        assert_eq!(out.jpeg, small);
        // Garbage is an error, not a panic.
        assert!(
            p.make(
                &Picture::Jpeg {
                    data: Bytes::from_static(b"\xFF\xD8 not really"),
                    width: 1280,
                    height: 720,
                },
                now,
            )
            .is_err()
        );
    }

    #[test]
    fn one_preview_per_interval_on_average() {
        let mut p = previews(320);
        let canvas = Canvas::new(64, 48);
        let start = Instant::now();
        // A 15 fps camera for 10 s.
        let mut made = 0;
        for i in 0..150u32 {
            let now = start + Duration::from_millis(u64::from(i) * 1000 / 15);
            if p.due(now) {
                p.make(&Picture::Rgb(&canvas), now).expect("preview");
                made += 1;
            }
        }
        assert_eq!(made, 10, "the first frame, then one a second");
        // A camera that stalls for 5 s gives one on its return, not a burst.
        let back = start + Duration::from_secs(15);
        assert!(p.due(back));
        p.make(&Picture::Rgb(&canvas), back).expect("preview");
        assert!(!p.due(back + Duration::from_millis(100)));
        assert!(p.due(back + Duration::from_secs(1)));
    }
}
