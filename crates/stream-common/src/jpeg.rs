//! JPEG encoding with libjpeg-turbo: 4:2:0 chroma subsampling set explicitly
//! (the crate defaults to 4:4:4, 25-45 % slower), one compressor and one output
//! buffer reused for every frame. Blocking: call it off the async runtime.

use bytes::Bytes;
use turbojpeg::{Compressor, Image, OutputBuf, PixelFormat, Subsamp, YuvPlanesImage};

use crate::canvas::Canvas;

#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    #[error("jpeg encoder: {0}")]
    Turbo(#[from] turbojpeg::Error),
    #[error("YUV planes too small for {width}x{height}")]
    BadPlanes { width: u32, height: u32 },
}

/// A borrowed 4:2:0 picture in three planes (I420), as cameras and video
/// decoders deliver it. Chroma planes are `ceil(width / 2) x ceil(height / 2)`.
#[derive(Debug, Clone, Copy)]
pub struct Yuv420<'a> {
    pub width: u32,
    pub height: u32,
    /// Y, U (Cb), V (Cr).
    pub planes: [&'a [u8]; 3],
    /// Bytes per row of each plane (at least the plane's width).
    pub strides: [usize; 3],
}

impl<'a> Yuv420<'a> {
    pub fn chroma_size(width: u32, height: u32) -> (u32, u32) {
        (width.div_ceil(2), height.div_ceil(2))
    }

    /// Checks that every plane holds its rows at its stride.
    pub fn is_valid(&self) -> bool {
        let (cw, ch) = Self::chroma_size(self.width, self.height);
        let dims = [(self.width, self.height), (cw, ch), (cw, ch)];
        self.planes
            .iter()
            .zip(self.strides)
            .zip(dims)
            .all(|((p, stride), (w, h))| {
                let (w, h) = (w as usize, h as usize);
                stride >= w && h > 0 && p.len() >= stride * (h - 1) + w
            })
    }
}

/// A reusable encoder; `Send` but not `Sync`, so one per encoding thread.
pub struct JpegEncoder {
    compressor: Compressor,
    out: OutputBuf<'static>,
}

impl JpegEncoder {
    /// `quality` is 1..=100.
    pub fn new(quality: u8) -> Result<Self, JpegError> {
        let mut compressor = Compressor::new()?;
        compressor.set_quality(i32::from(quality.clamp(1, 100)))?;
        compressor.set_subsamp(Subsamp::Sub2x2)?;
        Ok(JpegEncoder {
            compressor,
            out: OutputBuf::new_owned(),
        })
    }

    /// Encodes a canvas; the returned bytes are an owned copy that can be
    /// shared, while the encoder keeps its scratch buffer for the next frame.
    pub fn encode(&mut self, canvas: &Canvas) -> Result<Bytes, JpegError> {
        self.encode_rgb(
            canvas.pixels(),
            canvas.width() as usize,
            canvas.height() as usize,
        )
    }

    /// Encodes packed RGB24 pixels.
    pub fn encode_rgb(
        &mut self,
        pixels: &[u8],
        width: usize,
        height: usize,
    ) -> Result<Bytes, JpegError> {
        let image = Image {
            pixels,
            width,
            pitch: width * 3,
            height,
            format: PixelFormat::RGB,
        };
        self.compressor.compress(image, &mut self.out)?;
        Ok(Bytes::copy_from_slice(&self.out))
    }
}

impl JpegEncoder {
    /// Encodes I420 planes straight from YUV: no RGB conversion on the way.
    pub fn encode_yuv420(&mut self, image: &Yuv420<'_>) -> Result<Bytes, JpegError> {
        if !image.is_valid() {
            return Err(JpegError::BadPlanes {
                width: image.width,
                height: image.height,
            });
        }
        let planes = YuvPlanesImage {
            y_plane: image.planes[0],
            u_plane: image.planes[1],
            v_plane: image.planes[2],
            width: image.width as usize,
            height: image.height as usize,
            y_stride: image.strides[0],
            u_stride: image.strides[1],
            v_stride: image.strides[2],
            subsamp: Subsamp::Sub2x2,
        };
        self.compressor
            .compress_yuv_planes(&planes, &mut self.out)?;
        Ok(Bytes::copy_from_slice(&self.out))
    }
}

/// Width and height from a JPEG's header, without decoding it.
pub fn dimensions(jpeg: &[u8]) -> Option<(u32, u32)> {
    let h = turbojpeg::read_header(jpeg).ok()?;
    Some((u32::try_from(h.width).ok()?, u32::try_from(h.height).ok()?))
}

/// Decodes a JPEG to RGB24 (used by tests and tools that check pixels).
pub fn decode_rgb(jpeg: &[u8]) -> Result<(Vec<u8>, u32, u32), JpegError> {
    let img = turbojpeg::decompress(jpeg, PixelFormat::RGB)?;
    Ok((img.pixels, img.width as u32, img.height as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_decodable_jpeg_of_the_right_size() {
        let mut c = Canvas::new(320, 240);
        c.fill([128, 128, 128]);
        c.fill_rect(10, 10, 50, 50, [255, 0, 0]);
        let mut enc = JpegEncoder::new(80).expect("encoder");
        let a = enc.encode(&c).expect("encode");
        assert!(a.starts_with(&[0xFF, 0xD8]) && a.ends_with(&[0xFF, 0xD9]));
        assert_eq!(dimensions(&a), Some((320, 240)));
        let (px, w, _) = decode_rgb(&a).expect("decode");
        let red = &px[(30 * w as usize + 30) * 3..][..3];
        assert!(red[0] > 200 && red[1] < 60, "{red:?}");
        // The buffer is reused: a second frame is independent of the first.
        c.fill([0, 0, 0]);
        let b = enc.encode(&c).expect("encode");
        assert_ne!(a, b);
    }

    #[test]
    fn encodes_i420_planes_with_padded_strides() {
        // 6x4 picture: Y ramps left to right, chroma says "red" (V high).
        let (w, h, ys, cs) = (6u32, 4u32, 8usize, 4usize);
        let mut y = vec![0u8; ys * 4];
        for row in 0..4 {
            for col in 0..6 {
                y[row * ys + col] = 80;
            }
        }
        let u = vec![90u8; cs * 2];
        let v = vec![240u8; cs * 2];
        let img = Yuv420 {
            width: w,
            height: h,
            planes: [&y, &u, &v],
            strides: [ys, cs, cs],
        };
        assert!(img.is_valid());
        let mut enc = JpegEncoder::new(95).expect("encoder");
        let j = enc.encode_yuv420(&img).expect("encode");
        assert_eq!(dimensions(&j), Some((6, 4)));
        let (px, _, _) = decode_rgb(&j).expect("decode");
        assert!(px[0] > 150 && px[1] < 80, "reddish: {:?}", &px[..3]);
        let short = Yuv420 {
            planes: [&y[..10], &u, &v],
            ..img
        };
        assert!(matches!(
            enc.encode_yuv420(&short),
            Err(JpegError::BadPlanes { .. })
        ));
    }
}

/// Splits concatenated JPEGs (a `.mjpeg` file) into byte ranges, one per image.
///
/// It walks the marker segments rather than searching for `FF D9`, because an
/// EXIF thumbnail inside a JPEG carries its own EOI. Garbage between images is
/// skipped; a truncated last image is left out.
pub fn split_concatenated(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(start) = find_soi(data, pos) {
        match jpeg_end(data, start) {
            Some(end) => {
                out.push(start..end);
                pos = end;
            }
            None => pos = start + 2,
        }
    }
    out
}

fn find_soi(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(2))
        .find(|&i| data[i] == 0xFF && data[i + 1] == 0xD8 && data[i + 2] == 0xFF)
}

/// Index just past the EOI of the JPEG starting at `start`, if it is complete.
fn jpeg_end(data: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 2;
    loop {
        // Next marker: FF followed by a non-FF byte (FF FF is fill).
        if *data.get(i)? != 0xFF {
            return None;
        }
        while *data.get(i + 1)? == 0xFF {
            i += 1;
        }
        let marker = *data.get(i + 1)?;
        i += 2;
        match marker {
            0xD9 => return Some(i),
            0x01 | 0xD0..=0xD7 => continue,
            _ => {
                let len = usize::from(u16::from_be_bytes([*data.get(i)?, *data.get(i + 1)?]));
                if len < 2 {
                    return None;
                }
                i += len;
                if marker == 0xDA {
                    // Entropy-coded data runs to the next marker that is not
                    // a stuffed zero or a restart marker.
                    loop {
                        let b = *data.get(i)?;
                        if b == 0xFF {
                            let n = *data.get(i + 1)?;
                            if n != 0x00 && !(0xD0..=0xD7).contains(&n) {
                                break;
                            }
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn splits_real_jpegs_and_skips_garbage_and_truncation() {
        let mut enc = JpegEncoder::new(75).expect("encoder");
        let mut c = Canvas::new(64, 48);
        let mut all = Vec::new();
        let mut singles = Vec::new();
        for shade in [10u8, 120, 250] {
            c.fill([shade, shade, shade]);
            let j = enc.encode(&c).expect("encode");
            all.extend_from_slice(b"junk");
            all.extend_from_slice(&j);
            singles.push(j);
        }
        let last = singles[0].clone();
        all.extend_from_slice(&last[..last.len() / 2]);
        let ranges = split_concatenated(&all);
        assert_eq!(ranges.len(), 3);
        for (r, j) in ranges.iter().zip(&singles) {
            assert_eq!(&all[r.clone()], &j[..]);
        }
    }
}
