//! From a JPEG to the model's input: decode at reduced size with
//! libjpeg-turbo's DCT scaling (the smallest of 1/8 … 1 that still leaves at
//! least 300 pixels each way, so a 1080p frame costs about a quarter of a
//! full decode), resize to 300×300 (the model wants a plain resize, aspect
//! not kept) and scale each channel to `x * 2 / 255 - 1`. Every buffer is
//! kept from frame to frame; the reduced-size picture stays available for
//! drawing the boxes on (`--annotate`).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::model::INPUT_SIZE;

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("corrupt JPEG: {0}")]
    Jpeg(#[from] turbojpeg::Error),
    #[error("resizing: {0}")]
    Resize(String),
    #[error("picture is {0}x{1}")]
    Empty(usize, usize),
}

impl PreprocessError {
    /// A short stable name for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            PreprocessError::Jpeg(_) | PreprocessError::Empty(..) => "jpeg",
            PreprocessError::Resize(_) => "resize",
        }
    }
}

pub struct Preprocessor {
    decompressor: turbojpeg::Decompressor,
    resizer: Resizer,
    options: ResizeOptions,
    /// The decoded, DCT-scaled picture (RGB).
    decoded: Vec<u8>,
    decoded_size: (usize, usize),
    small: Vec<u8>,
    input: Vec<f32>,
}

impl Preprocessor {
    pub fn new() -> Result<Self, PreprocessError> {
        Ok(Preprocessor {
            decompressor: turbojpeg::Decompressor::new()?,
            resizer: Resizer::new(),
            // Bilinear convolution adapts its support to the scale factor,
            // so large reductions average instead of aliasing.
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
            decoded: Vec::new(),
            decoded_size: (0, 0),
            small: vec![0; INPUT_SIZE * INPUT_SIZE * 3],
            input: vec![0.0; INPUT_SIZE * INPUT_SIZE * 3],
        })
    }

    /// Decodes and prepares `jpeg`; returns the model input.
    pub fn prepare(&mut self, jpeg: &[u8]) -> Result<&[f32], PreprocessError> {
        if let Err(e) = self.decode(jpeg) {
            // libjpeg-turbo can be left mid-stream by a corrupt picture
            // (seen: the next good JPEG then fails too); start afresh.
            self.decompressor = turbojpeg::Decompressor::new()?;
            return Err(e);
        }
        let (w, h) = self.decoded_size;
        let resize_err = |e: &dyn std::fmt::Display| PreprocessError::Resize(e.to_string());
        let src = ImageRef::new(w as u32, h as u32, &self.decoded, PixelType::U8x3)
            .map_err(|e| resize_err(&e))?;
        let mut dst = Image::from_slice_u8(
            INPUT_SIZE as u32,
            INPUT_SIZE as u32,
            &mut self.small,
            PixelType::U8x3,
        )
        .map_err(|e| resize_err(&e))?;
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .map_err(|e| resize_err(&e))?;
        normalise(&self.small, &mut self.input);
        Ok(&self.input)
    }

    /// Decodes `jpeg` at reduced size into `decoded`.
    fn decode(&mut self, jpeg: &[u8]) -> Result<(), PreprocessError> {
        let header = self.decompressor.read_header(jpeg)?;
        if header.width == 0 || header.height == 0 {
            return Err(PreprocessError::Empty(header.width, header.height));
        }
        let factor = scaling_for(&header, INPUT_SIZE);
        self.decompressor.set_scaling_factor(factor)?;
        let scaled = header.scaled(factor);
        let (w, h) = (scaled.width, scaled.height);
        self.decoded.resize(w * h * 3, 0);
        self.decompressor.decompress(
            jpeg,
            turbojpeg::Image {
                pixels: &mut self.decoded[..],
                width: w,
                pitch: w * 3,
                height: h,
                format: turbojpeg::PixelFormat::RGB,
            },
        )?;
        self.decoded_size = (w, h);
        Ok(())
    }

    /// The last picture decoded, at its reduced size: `(rgb, width, height)`.
    pub fn decoded(&self) -> (&[u8], usize, usize) {
        (&self.decoded, self.decoded_size.0, self.decoded_size.1)
    }
}

/// The smallest DCT scaling that leaves at least `min` pixels each way (or
/// none at all, for pictures already smaller: never an enlargement).
pub fn scaling_for(header: &turbojpeg::DecompressHeader, min: usize) -> turbojpeg::ScalingFactor {
    turbojpeg::Decompressor::supported_scaling_factors()
        .into_iter()
        .filter(|f| {
            let s = header.scaled(*f);
            f.num() <= f.denom() && s.width >= min && s.height >= min
        })
        .min_by_key(|f| header.scaled(*f).width)
        .unwrap_or(turbojpeg::ScalingFactor::ONE)
}

/// RGB bytes to the model's range: `x * 2 / 255 - 1`.
pub fn normalise(rgb: &[u8], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(rgb) {
        *o = f32::from(v) * (2.0 / 255.0) - 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stream_common::canvas::Canvas;
    use stream_common::jpeg::JpegEncoder;

    fn jpeg(width: u32, height: u32, paint: impl Fn(&mut Canvas)) -> bytes::Bytes {
        let mut c = Canvas::new(width, height);
        paint(&mut c);
        JpegEncoder::new(95)
            .expect("encoder")
            .encode(&c)
            .expect("encode")
    }

    #[test]
    fn normalises_to_minus_one_to_one() {
        let mut out = [9.0f32; 3];
        normalise(&[0, 255, 51], &mut out);
        assert_eq!(out[0], -1.0);
        assert!((out[1] - 1.0).abs() < 1e-6);
        assert!((out[2] - (-0.6)).abs() < 1e-6, "{}", out[2]);
    }

    #[test]
    fn large_frames_decode_at_reduced_size_and_resize_to_the_input() {
        // 1280x720 at 1/2 is 640x360, the smallest DCT scale >= 300 each way.
        let j = jpeg(1280, 720, |c| {
            c.fill([0, 0, 255]);
            // The left half red: after a plain resize it covers input columns 0..150.
            c.fill_rect(0, 0, 640, 720, [255, 0, 0]);
        });
        let mut p = Preprocessor::new().expect("preprocessor");
        let input = p.prepare(&j).expect("prepare").to_vec();
        assert_eq!(input.len(), INPUT_SIZE * INPUT_SIZE * 3);
        let (_, w, h) = p.decoded();
        assert_eq!((w, h), (640, 360));
        let at = |x: usize, y: usize| &input[(y * INPUT_SIZE + x) * 3..][..3];
        let left = at(20, 150);
        assert!(left[0] > 0.8 && left[2] < -0.8, "red on the left: {left:?}");
        let right = at(280, 150);
        assert!(
            right[2] > 0.8 && right[0] < -0.8,
            "blue on the right: {right:?}"
        );
    }

    #[test]
    fn small_frames_are_not_scaled_down() {
        let j = jpeg(320, 240, |c| c.fill([128, 128, 128]));
        let mut p = Preprocessor::new().expect("preprocessor");
        let input = p.prepare(&j).expect("prepare");
        assert!(input.iter().all(|v| v.abs() < 0.05), "mid grey is about 0");
        assert_eq!((p.decoded().1, p.decoded().2), (320, 240));
    }

    #[test]
    fn corrupt_jpegs_are_errors_not_panics() {
        let mut p = Preprocessor::new().expect("preprocessor");
        let mut garbage = vec![0xFF, 0xD8];
        garbage.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        garbage.extend([0xFF, 0xD9]);
        let err = p.prepare(&garbage).expect_err("must fail");
        assert_eq!(err.kind(), "jpeg");
        // A truncated JPEG (libjpeg-turbo may fill the rest grey or refuse
        // it): no panic either way, and the preprocessor works afterwards.
        let j = jpeg(640, 480, |c| c.fill([10, 200, 10]));
        let _ = p.prepare(&j[..j.len() / 3]);
        if let Err(e) = p.prepare(&j) {
            panic!("a good JPEG after bad ones: {e}");
        }
    }
}
