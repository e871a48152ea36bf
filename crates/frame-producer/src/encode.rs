//! Turns whatever a source captured into the one JPEG every viewer will get:
//! JPEGs that already fit pass through (given standard Huffman tables if they
//! lack them, as many webcams' MJPEG does; see `stream_common::huffman`),
//! pixels are encoded once
//! (from YUV when the source gives YUV), and anything larger than `--size`
//! is scaled down first.

use bytes::Bytes;
use stream_common::jpeg::{JpegEncoder, JpegError};

use crate::scale::{ScaleError, Scaler, fit};
use crate::source::Picture;
use crate::units::Size;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Jpeg(#[from] JpegError),
    #[error(transparent)]
    Scale(#[from] ScaleError),
}

/// A JPEG ready to publish.
pub struct Encoded {
    pub jpeg: Bytes,
    pub width: u32,
    pub height: u32,
    /// False when the source's JPEG went out as it came.
    pub encoded: bool,
}

pub struct FrameEncoder {
    jpeg: JpegEncoder,
    scaler: Scaler,
    max: Option<Size>,
}

impl FrameEncoder {
    /// `max` is `--size` for sources other than the test pattern.
    pub fn new(quality: u8, max: Option<Size>) -> Result<Self, JpegError> {
        Ok(FrameEncoder {
            jpeg: JpegEncoder::new(quality)?,
            scaler: Scaler::new(),
            max,
        })
    }

    pub fn encode(&mut self, picture: Picture<'_>) -> Result<Encoded, EncodeError> {
        let target = |w, h| self.max.and_then(|m| fit(w, h, m));
        match picture {
            Picture::Jpeg {
                data,
                width,
                height,
            } => match target(width, height) {
                None => Ok(Encoded {
                    jpeg: stream_common::huffman::with_huffman_tables(data),
                    width,
                    height,
                    encoded: false,
                }),
                Some((w, h)) => {
                    let rgb = self.scaler.scale_jpeg(&data, w, h)?;
                    let jpeg = self.jpeg.encode_rgb(rgb, w as usize, h as usize)?;
                    Ok(Encoded::new(jpeg, w, h))
                }
            },
            Picture::Rgb(canvas) => {
                let jpeg = self.jpeg.encode(canvas)?;
                Ok(Encoded::new(jpeg, canvas.width(), canvas.height()))
            }
            Picture::Yuv420(image) => {
                let (jpeg, w, h) = match target(image.width, image.height) {
                    None => (self.jpeg.encode_yuv420(&image)?, image.width, image.height),
                    Some((w, h)) => {
                        let scaled = self.scaler.scale_yuv420(&image, w, h)?;
                        (self.jpeg.encode_yuv420(&scaled)?, w, h)
                    }
                };
                Ok(Encoded::new(jpeg, w, h))
            }
        }
    }
}

impl Encoded {
    pub fn new(jpeg: Bytes, width: u32, height: u32) -> Self {
        Encoded {
            jpeg,
            width,
            height,
            encoded: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stream_common::canvas::Canvas;
    use stream_common::jpeg::{Yuv420, dimensions};

    #[test]
    fn small_jpegs_pass_through_and_large_ones_shrink() {
        let mut c = Canvas::new(800, 600);
        c.fill([10, 200, 10]);
        let original = JpegEncoder::new(80)
            .and_then(|mut e| e.encode(&c))
            .expect("jpeg");
        let jpeg = |data: &Bytes| Picture::Jpeg {
            data: data.clone(),
            width: 800,
            height: 600,
        };

        let mut unlimited = FrameEncoder::new(80, None).expect("encoder");
        let out = unlimited.encode(jpeg(&original)).expect("pass");
        assert!(!out.encoded);
        assert_eq!(out.jpeg, original, "passed through byte for byte");
        // A webcam-style JPEG without Huffman tables gets the standard ones.
        let bare =
            Bytes::from(stream_common::huffman::without_huffman_tables(&original).expect("valid"));
        let out = unlimited.encode(jpeg(&bare)).expect("pass");
        assert!(!out.encoded);
        assert!(stream_common::huffman::has_huffman_tables(&out.jpeg));
        assert_eq!(
            stream_common::jpeg::decode_rgb(&out.jpeg)
                .expect("decodes")
                .0,
            stream_common::jpeg::decode_rgb(&original)
                .expect("decodes")
                .0
        );

        let max = Size {
            width: 400,
            height: 400,
        };
        let mut limited = FrameEncoder::new(80, Some(max)).expect("encoder");
        let out = limited.encode(jpeg(&original)).expect("shrink");
        assert!(out.encoded);
        assert_eq!((out.width, out.height), (400, 300));
        assert_eq!(dimensions(&out.jpeg), Some((400, 300)));
    }

    #[test]
    fn yuv_pictures_are_encoded_at_the_fitted_size() {
        let (y, u, v) = (
            vec![100u8; 320 * 240],
            vec![128u8; 160 * 120],
            vec![128u8; 160 * 120],
        );
        let image = Yuv420 {
            width: 320,
            height: 240,
            planes: [&y, &u, &v],
            strides: [320, 160, 160],
        };
        let max = Size {
            width: 160,
            height: 160,
        };
        let mut enc = FrameEncoder::new(80, Some(max)).expect("encoder");
        let out = enc.encode(Picture::Yuv420(image)).expect("encode");
        assert_eq!((out.width, out.height), (160, 120));
        assert_eq!(dimensions(&out.jpeg), Some((160, 120)));
        let mut native = FrameEncoder::new(80, None).expect("encoder");
        let out = native.encode(Picture::Yuv420(image)).expect("encode");
        assert_eq!(dimensions(&out.jpeg), Some((320, 240)));
    }
}
