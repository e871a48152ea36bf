//! Scaling pictures down to `--size`, for any source: a 4K camera can feed
//! browsers at 720p. Raw camera and decoder pictures are scaled as I420 planes
//! (no RGB detour); JPEGs that must shrink are decoded with libjpeg-turbo's
//! DCT scaling to the nearest size at or above the target (cheap: a 4K JPEG
//! decoded at 1/2 costs about a quarter), then resized exactly.
//! All buffers are kept between frames.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use stream_common::jpeg::Yuv420;

use crate::units::Size;

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("resizing: {0}")]
    Resize(String),
    #[error("decoding the JPEG to scale it: {0}")]
    Jpeg(#[from] turbojpeg::Error),
}

/// The size a `width x height` picture is published at under `max`: the
/// largest even size that fits inside `max` with the same aspect ratio.
/// `None` when the picture already fits (pictures are never enlarged).
pub fn fit(width: u32, height: u32, max: Size) -> Option<(u32, u32)> {
    if width <= max.width && height <= max.height {
        return None;
    }
    let scale = f64::min(
        f64::from(max.width) / f64::from(width),
        f64::from(max.height) / f64::from(height),
    );
    let even = |v: f64, cap: u32| ((v / 2.0).round() as u32 * 2).clamp(2, cap);
    Some((
        even(f64::from(width) * scale, max.width),
        even(f64::from(height) * scale, max.height),
    ))
}

pub struct Scaler {
    resizer: Resizer,
    options: ResizeOptions,
    decompressor: Option<turbojpeg::Decompressor>,
    /// Source pixels when they need repacking (strided planes, decoded JPEG).
    src: Vec<u8>,
    /// Scaled output: Y, U, V planes, or RGB in `planes[0]`.
    planes: [Vec<u8>; 3],
    /// The size of the RGB pixels [`Scaler::decode_jpeg`] left in `src`.
    decoded: (u32, u32),
}

impl Default for Scaler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scaler {
    pub fn new() -> Self {
        Scaler {
            resizer: Resizer::new(),
            // Bilinear convolution adapts its support to the scale factor, so
            // large reductions average every source pixel instead of aliasing.
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
            decompressor: None,
            src: Vec::new(),
            planes: [Vec::new(), Vec::new(), Vec::new()],
            decoded: (0, 0),
        }
    }

    /// Scales I420 planes to `width x height`; the result borrows the scaler.
    pub fn scale_yuv420(
        &mut self,
        image: &Yuv420<'_>,
        width: u32,
        height: u32,
    ) -> Result<Yuv420<'_>, ScaleError> {
        let (scw, sch) = Yuv420::chroma_size(image.width, image.height);
        let (dcw, dch) = Yuv420::chroma_size(width, height);
        let dims = [
            ((image.width, image.height), (width, height)),
            ((scw, sch), (dcw, dch)),
            ((scw, sch), (dcw, dch)),
        ];
        for (i, ((sw, sh), (dw, dh))) in dims.into_iter().enumerate() {
            let src = packed(image.planes[i], image.strides[i], sw, sh, &mut self.src);
            let out = &mut self.planes[i];
            out.resize(dw as usize * dh as usize, 0);
            resize_u8(
                &mut self.resizer,
                &self.options,
                src,
                (sw, sh),
                out,
                (dw, dh),
                PixelType::U8,
            )?;
        }
        let [y, u, v] = &self.planes;
        Ok(Yuv420 {
            width,
            height,
            planes: [y, u, v],
            strides: [width as usize, dcw as usize, dcw as usize],
        })
    }

    /// Scales packed RGB (`sw x sh`, no padding) to `width x height`.
    pub fn scale_rgb(
        &mut self,
        rgb: &[u8],
        (sw, sh): (u32, u32),
        width: u32,
        height: u32,
    ) -> Result<&[u8], ScaleError> {
        let out = &mut self.planes[0];
        out.resize(width as usize * height as usize * 3, 0);
        resize_u8(
            &mut self.resizer,
            &self.options,
            rgb,
            (sw, sh),
            out,
            (width, height),
            PixelType::U8x3,
        )?;
        Ok(&self.planes[0])
    }

    /// Decodes a JPEG and scales it to `width x height` packed RGB.
    pub fn scale_jpeg(
        &mut self,
        jpeg: &[u8],
        width: u32,
        height: u32,
    ) -> Result<&[u8], ScaleError> {
        self.decode_jpeg(jpeg, width, height)?;
        self.scale_decoded(width, height)
    }

    /// Decodes a JPEG once, with the smallest DCT scaling that still yields
    /// at least `width x height`, and keeps the pixels for
    /// [`Scaler::scale_decoded`] (renditions: one decode, several sizes).
    /// Returns the decoded size.
    pub fn decode_jpeg(
        &mut self,
        jpeg: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(u32, u32), ScaleError> {
        let dec = match &mut self.decompressor {
            Some(d) => d,
            slot => slot.insert(turbojpeg::Decompressor::new()?),
        };
        let header = dec.read_header(jpeg)?;
        let factor = turbojpeg::Decompressor::supported_scaling_factors()
            .into_iter()
            .filter(|f| {
                let s = header.scaled(*f);
                s.width >= width as usize && s.height >= height as usize
            })
            .min_by_key(|f| header.scaled(*f).width)
            .unwrap_or(turbojpeg::ScalingFactor::ONE);
        dec.set_scaling_factor(factor)?;
        let scaled = header.scaled(factor);
        let (sw, sh) = (scaled.width, scaled.height);
        self.src.resize(sw * sh * 3, 0);
        dec.decompress(
            jpeg,
            turbojpeg::Image {
                pixels: &mut self.src[..],
                width: sw,
                pitch: sw * 3,
                height: sh,
                format: turbojpeg::PixelFormat::RGB,
            },
        )?;
        self.decoded = (sw as u32, sh as u32);
        Ok(self.decoded)
    }

    /// Scales what [`Scaler::decode_jpeg`] decoded last to `width x height`
    /// packed RGB.
    pub fn scale_decoded(&mut self, width: u32, height: u32) -> Result<&[u8], ScaleError> {
        let out = &mut self.planes[0];
        out.resize(width as usize * height as usize * 3, 0);
        resize_u8(
            &mut self.resizer,
            &self.options,
            &self.src,
            self.decoded,
            out,
            (width, height),
            PixelType::U8x3,
        )?;
        Ok(&self.planes[0])
    }
}

/// The plane's rows without stride padding, copied into `scratch` only when
/// the plane has padding.
fn packed<'a>(
    plane: &'a [u8],
    stride: usize,
    width: u32,
    height: u32,
    scratch: &'a mut Vec<u8>,
) -> &'a [u8] {
    let (w, h) = (width as usize, height as usize);
    if stride == w {
        return &plane[..w * h];
    }
    scratch.clear();
    for row in plane.chunks(stride).take(h) {
        scratch.extend_from_slice(&row[..w]);
    }
    scratch
}

fn resize_u8(
    resizer: &mut Resizer,
    options: &ResizeOptions,
    src: &[u8],
    (sw, sh): (u32, u32),
    dst: &mut [u8],
    (dw, dh): (u32, u32),
    pixel: PixelType,
) -> Result<(), ScaleError> {
    let src = ImageRef::new(sw, sh, src, pixel).map_err(|e| ScaleError::Resize(e.to_string()))?;
    let mut dst =
        Image::from_slice_u8(dw, dh, dst, pixel).map_err(|e| ScaleError::Resize(e.to_string()))?;
    resizer
        .resize(&src, &mut dst, options)
        .map_err(|e| ScaleError::Resize(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stream_common::jpeg::{JpegEncoder, decode_rgb, dimensions};

    fn size(width: u32, height: u32) -> Size {
        Size { width, height }
    }

    #[test]
    fn fit_keeps_aspect_and_never_enlarges() {
        assert_eq!(fit(3840, 2160, size(1280, 720)), Some((1280, 720)));
        // 4:3 into a 16:9 box: limited by height.
        assert_eq!(fit(1920, 1440, size(1280, 720)), Some((960, 720)));
        // Odd results are rounded to even sizes.
        assert_eq!(fit(1000, 750, size(333 + 1, 1000)), Some((334, 250)));
        assert_eq!(fit(640, 480, size(1280, 720)), None);
        assert_eq!(fit(1280, 720, size(1280, 720)), None);
    }

    #[test]
    fn scales_strided_i420_planes() {
        // 64x48 picture, Y left half dark and right half bright, padded rows.
        let (w, h, ys) = (64u32, 48u32, 80usize);
        let mut y = vec![0u8; ys * h as usize];
        for row in y.chunks_mut(ys) {
            for (x, px) in row.iter_mut().enumerate().take(w as usize) {
                *px = if x < 32 { 30 } else { 220 };
            }
        }
        let (u, v) = (vec![128u8; 40 * 24], vec![128u8; 40 * 24]);
        let img = Yuv420 {
            width: w,
            height: h,
            planes: [&y, &u, &v],
            strides: [ys, 40, 40],
        };
        let mut s = Scaler::new();
        let out = s.scale_yuv420(&img, 32, 24).expect("scale");
        assert!(out.is_valid());
        assert_eq!((out.width, out.height, out.strides), (32, 24, [32, 16, 16]));
        let row = &out.planes[0][5 * 32..6 * 32];
        assert!(row[2] < 50 && row[29] > 200, "edges kept: {row:?}");
        assert!(out.planes[1].iter().all(|&c| c == 128));
        // The scaled planes encode to a JPEG of the new size.
        let mut enc = JpegEncoder::new(80).expect("encoder");
        let jpeg = enc.encode_yuv420(&out).expect("encode");
        assert_eq!(dimensions(&jpeg), Some((32, 24)));
    }

    #[test]
    fn scales_a_large_jpeg_down_exactly() {
        let mut c = stream_common::canvas::Canvas::new(1920, 1080);
        c.fill([200, 30, 30]);
        let mut enc = JpegEncoder::new(85).expect("encoder");
        let big = enc.encode(&c).expect("encode");
        let mut s = Scaler::new();
        let (w, h) = fit(1920, 1080, size(640, 480)).expect("must shrink");
        assert_eq!((w, h), (640, 360));
        let rgb = s.scale_jpeg(&big, w, h).expect("scale").to_vec();
        assert_eq!(rgb.len(), 640 * 360 * 3);
        let small = enc.encode_rgb(&rgb, 640, 360).expect("encode");
        let (px, dw, dh) = decode_rgb(&small).expect("decode");
        assert_eq!((dw, dh), (640, 360));
        let mid = &px[(180 * 640 + 320) * 3..][..3];
        assert!(mid[0] > 170 && mid[1] < 70, "color kept: {mid:?}");
        // Garbage is an error, not a panic.
        assert!(s.scale_jpeg(b"not a jpeg", 10, 10).is_err());
    }
}
