//! Camera pixel layouts to I420 planes for the JPEG encoder, without going
//! through RGB: YUYV (packed 4:2:2, chroma averaged over row pairs) and NV12
//! (interleaved chroma, de-interleaved). I420 itself needs no conversion.

use stream_common::jpeg::Yuv420;

use super::negotiate::PixelKind;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("{got} bytes is too short for a {width}x{height} {kind:?} frame ({need} needed)")]
    Short {
        kind: PixelKind,
        width: u32,
        height: u32,
        got: usize,
        need: usize,
    },
    #[error("{kind:?} cannot be converted to I420 here")]
    Unsupported { kind: PixelKind },
}

/// Owned I420 planes, reused frame after frame.
#[derive(Debug, Default)]
pub struct I420 {
    width: u32,
    height: u32,
    planes: [Vec<u8>; 3],
}

impl I420 {
    pub fn view(&self) -> Yuv420<'_> {
        let (cw, _) = Yuv420::chroma_size(self.width, self.height);
        let [y, u, v] = &self.planes;
        Yuv420 {
            width: self.width,
            height: self.height,
            planes: [y, u, v],
            strides: [self.width as usize, cw as usize, cw as usize],
        }
    }

    fn reset(&mut self, width: u32, height: u32) {
        let (cw, ch) = Yuv420::chroma_size(width, height);
        self.width = width;
        self.height = height;
        self.planes[0].resize(width as usize * height as usize, 0);
        self.planes[1].resize(cw as usize * ch as usize, 0);
        self.planes[2].resize(cw as usize * ch as usize, 0);
    }

    /// Converts one camera buffer. `stride` is the bytes per row of the first
    /// plane as the driver reports it (`bytesperline`; 0 means tightly packed).
    pub fn convert(
        &mut self,
        kind: PixelKind,
        data: &[u8],
        width: u32,
        height: u32,
        stride: usize,
    ) -> Result<(), ConvertError> {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = Yuv420::chroma_size(width, height);
        let (cw, ch) = (cw as usize, ch as usize);
        let short = |need: usize| ConvertError::Short {
            kind,
            width,
            height,
            got: data.len(),
            need,
        };
        if w == 0 || h == 0 {
            return Err(short(1));
        }
        self.reset(width, height);
        let [yp, up, vp] = &mut self.planes;
        match kind {
            PixelKind::Yuyv => {
                let stride = if stride == 0 { w * 2 } else { stride };
                let n = stride * (h - 1) + w * 2;
                if data.len() < n || stride < w * 2 || w < 2 {
                    return Err(short(n));
                }
                for (row, line) in data.chunks(stride).take(h).enumerate() {
                    let line = &line[..w * 2];
                    for (x, y) in yp[row * w..][..w].iter_mut().enumerate() {
                        *y = line[x * 2];
                    }
                }
                for cy in 0..ch {
                    let a = &data[cy * 2 * stride..][..w * 2];
                    let b = if cy * 2 + 1 < h {
                        &data[(cy * 2 + 1) * stride..][..w * 2]
                    } else {
                        a
                    };
                    for cx in 0..cw {
                        // Macropixel: Y0 U Y1 V; an odd last column reuses it.
                        let m = (cx * 4).min(w * 2 - 4);
                        up[cy * cw + cx] = avg(a[m + 1], b[m + 1]);
                        vp[cy * cw + cx] = avg(a[m + 3], b[m + 3]);
                    }
                }
            }
            PixelKind::Nv12 => {
                let stride = if stride == 0 { w } else { stride };
                let uv_stride = stride.max(cw * 2);
                let n = stride * h + uv_stride * (ch - 1) + cw * 2;
                if data.len() < n || stride < w {
                    return Err(short(n));
                }
                for (row, line) in data.chunks(stride).take(h).enumerate() {
                    yp[row * w..][..w].copy_from_slice(&line[..w]);
                }
                let uv = &data[stride * h..];
                for cy in 0..ch {
                    let line = &uv[cy * uv_stride..][..cw * 2];
                    for cx in 0..cw {
                        up[cy * cw + cx] = line[cx * 2];
                        vp[cy * cw + cx] = line[cx * 2 + 1];
                    }
                }
            }
            PixelKind::I420 => {
                let stride = if stride == 0 { w } else { stride };
                let c_stride = if stride == w { cw } else { stride / 2 };
                let n = stride * h + 2 * c_stride * ch;
                if data.len() < n || stride < w {
                    return Err(short(n));
                }
                let (y, rest) = data.split_at(stride * h);
                let (u, v) = rest.split_at(c_stride * ch);
                for (dst, src, s, pw, rows) in [
                    (yp, y, stride, w, h),
                    (up, u, c_stride, cw, ch),
                    (vp, v, c_stride, cw, ch),
                ] {
                    for (row, line) in src.chunks(s).take(rows).enumerate() {
                        dst[row * pw..][..pw].copy_from_slice(&line[..pw]);
                    }
                }
            }
            PixelKind::Mjpeg => return Err(ConvertError::Unsupported { kind }),
        }
        Ok(())
    }
}

fn avg(a: u8, b: u8) -> u8 {
    ((u16::from(a) + u16::from(b)).div_ceil(2)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x2 YUYV frame with row padding: Y counts up, rows differ in chroma.
    #[test]
    fn yuyv_to_i420_takes_luma_and_averages_chroma_over_row_pairs() {
        let stride = 12; // 8 bytes of pixels + 4 of padding
        let mut data = vec![0xEEu8; stride * 2];
        // Row 0: Y0 U Y1 V | Y2 U Y3 V
        data[..8].copy_from_slice(&[1, 100, 2, 200, 3, 110, 4, 210]);
        data[stride..stride + 8].copy_from_slice(&[5, 102, 6, 202, 7, 112, 8, 212]);
        let mut out = I420::default();
        out.convert(PixelKind::Yuyv, &data, 4, 2, stride)
            .expect("convert");
        let v = out.view();
        assert!(v.is_valid());
        assert_eq!(v.planes[0], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(v.planes[1], &[101, 111]);
        assert_eq!(v.planes[2], &[201, 211]);
    }

    #[test]
    fn nv12_to_i420_deinterleaves_chroma() {
        // 4x2 luma, then one row of interleaved UV for the 2x1 chroma.
        let data = [10, 11, 12, 13, 20, 21, 22, 23, 90, 190, 91, 191];
        let mut out = I420::default();
        out.convert(PixelKind::Nv12, &data, 4, 2, 0)
            .expect("convert");
        let v = out.view();
        assert_eq!(v.planes[0], &[10, 11, 12, 13, 20, 21, 22, 23]);
        assert_eq!((v.planes[1], v.planes[2]), (&[90, 91][..], &[190, 191][..]));
    }

    #[test]
    fn i420_is_copied_plane_by_plane() {
        let mut data: Vec<u8> = (0..8).collect();
        data.extend([50, 51, 60, 61]);
        let mut out = I420::default();
        out.convert(PixelKind::I420, &data, 4, 2, 0)
            .expect("convert");
        let v = out.view();
        assert_eq!((v.planes[1], v.planes[2]), (&[50, 51][..], &[60, 61][..]));
    }

    #[test]
    fn short_buffers_are_errors_not_panics() {
        let mut out = I420::default();
        for kind in [PixelKind::Yuyv, PixelKind::Nv12, PixelKind::I420] {
            for len in [0, 1, 7, 11] {
                let r = out.convert(kind, &vec![0; len], 4, 2, 0);
                assert!(
                    matches!(r, Err(ConvertError::Short { .. })),
                    "{kind:?} {len}: {r:?}"
                );
            }
        }
        assert!(out.convert(PixelKind::Yuyv, &[0; 64], 0, 2, 0).is_err());
        assert!(matches!(
            out.convert(PixelKind::Mjpeg, &[0; 64], 4, 2, 0),
            Err(ConvertError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_converted_yuyv_frame_encodes_to_the_expected_picture() {
        // 16x16 YUYV of mid-gray luma with strong red chroma.
        let mut data = Vec::new();
        for _ in 0..16 * 8 {
            data.extend([120, 90, 120, 240]);
        }
        let mut out = I420::default();
        out.convert(PixelKind::Yuyv, &data, 16, 16, 0)
            .expect("convert");
        let mut enc = stream_common::jpeg::JpegEncoder::new(90).expect("encoder");
        let jpeg = enc.encode_yuv420(&out.view()).expect("encode");
        let (px, w, h) = stream_common::jpeg::decode_rgb(&jpeg).expect("decode");
        assert_eq!((w, h), (16, 16));
        let p = &px[(8 * 16 + 8) * 3..][..3];
        assert!(p[0] > 180 && p[1] < 110 && p[2] < 110, "red: {p:?}");
    }
}
