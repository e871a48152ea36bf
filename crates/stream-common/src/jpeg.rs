//! JPEG encoding with libjpeg-turbo: 4:2:0 chroma subsampling set explicitly
//! (the crate defaults to 4:4:4, 25-45 % slower), one compressor and one output
//! buffer reused for every frame. Blocking: call it off the async runtime.

use bytes::Bytes;
use turbojpeg::{Compressor, Image, OutputBuf, PixelFormat, Subsamp};

use crate::canvas::Canvas;

#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    #[error("jpeg encoder: {0}")]
    Turbo(#[from] turbojpeg::Error),
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
        Ok(JpegEncoder { compressor, out: OutputBuf::new_owned() })
    }

    /// Encodes a canvas; the returned bytes are an owned copy that can be
    /// shared, while the encoder keeps its scratch buffer for the next frame.
    pub fn encode(&mut self, canvas: &Canvas) -> Result<Bytes, JpegError> {
        self.encode_rgb(canvas.pixels(), canvas.width() as usize, canvas.height() as usize)
    }

    /// Encodes packed RGB24 pixels.
    pub fn encode_rgb(&mut self, pixels: &[u8], width: usize, height: usize) -> Result<Bytes, JpegError> {
        let image = Image { pixels, width, pitch: width * 3, height, format: PixelFormat::RGB };
        self.compressor.compress(image, &mut self.out)?;
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
}
