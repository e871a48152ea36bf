//! `--annotate`: the analysed picture with its boxes and scores drawn in,
//! JPEG-encoded once and published as the stream `<name>-detect`, for
//! clients that cannot draw (VLC, Home Assistant cards, recorders). It is
//! drawn on the reduced-size picture the detector decoded anyway (at least
//! 300 pixels each way), so it costs one encode per analysed frame.

use bytes::Bytes;
use frame_wire::Detection;
use stream_common::canvas::{Canvas, Rgb};
use stream_common::jpeg::{JpegEncoder, JpegError};

const BOX: Rgb = [0, 230, 64];
const TEXT: Rgb = [0, 0, 0];
const QUALITY: u8 = 80;

pub struct Annotator {
    canvas: Canvas,
    encoder: JpegEncoder,
}

impl Annotator {
    pub fn new() -> Result<Self, JpegError> {
        Ok(Annotator {
            canvas: Canvas::new(2, 2),
            encoder: JpegEncoder::new(QUALITY)?,
        })
    }

    /// Draws `boxes` on the packed RGB picture `rgb` (`width × height`) and
    /// encodes the result.
    pub fn annotate(
        &mut self,
        rgb: &[u8],
        width: usize,
        height: usize,
        boxes: &[Detection],
    ) -> Result<Bytes, JpegError> {
        if (self.canvas.width() as usize, self.canvas.height() as usize) != (width, height) {
            self.canvas = Canvas::new(width as u32, height as u32);
        }
        self.canvas.set_pixels(rgb);
        draw(&mut self.canvas, boxes);
        self.encoder.encode(&self.canvas)
    }
}

/// Draws each box's outline and a `label score` tag above its top-left corner.
pub fn draw(canvas: &mut Canvas, boxes: &[Detection]) {
    let (cw, ch) = (i64::from(canvas.width()), i64::from(canvas.height()));
    let line = (cw.min(ch) / 150).max(2);
    for b in boxes {
        let x = (f64::from(b.x) * cw as f64).round() as i64;
        let y = (f64::from(b.y) * ch as f64).round() as i64;
        let w = ((f64::from(b.w) * cw as f64).round() as i64).max(1);
        let h = ((f64::from(b.h) * ch as f64).round() as i64).max(1);
        canvas.fill_rect(x, y, w, line, BOX);
        canvas.fill_rect(x, y + h - line, w, line, BOX);
        canvas.fill_rect(x, y, line, h, BOX);
        canvas.fill_rect(x + w - line, y, line, h, BOX);
        let tag = format!("{} {:.2}", b.label, b.score);
        let tag_h = 8 + 4;
        // Above the box, or inside it when the box touches the top.
        let ty = if y >= tag_h { y - tag_h } else { y + line };
        canvas.fill_rect(x, ty, Canvas::text_width(&tag, 1) + 4, tag_h, BOX);
        canvas.draw_text(x + 2, ty + 2, 1, TEXT, &tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_outline_and_leaves_the_inside() {
        let (w, h) = (400usize, 300usize);
        let grey = vec![100u8; w * h * 3];
        let person = Detection {
            label: "person".into(),
            score: 0.91,
            x: 0.25,
            y: 0.2,
            w: 0.5,
            h: 0.6,
        };
        let mut a = Annotator::new().expect("annotator");
        let jpeg = a.annotate(&grey, w, h, &[person]).expect("encode");
        let (px, dw, dh) = stream_common::jpeg::decode_rgb(&jpeg).expect("decodable");
        assert_eq!((dw as usize, dh as usize), (w, h));
        let at = |x: usize, y: usize| &px[(y * w + x) * 3..][..3];
        // Left edge of the box: x = 100, from y = 60 to 240.
        let edge = at(100, 150);
        assert!(edge[1] > 180 && edge[0] < 60, "green outline: {edge:?}");
        let inside = at(200, 150);
        assert!(
            inside.iter().all(|&c| (85..=115).contains(&c)),
            "untouched: {inside:?}"
        );
        // No boxes: the picture comes back as it was.
        let plain = a.annotate(&grey, w, h, &[]).expect("encode");
        let (px, _, _) = stream_common::jpeg::decode_rgb(&plain).expect("decodable");
        assert!(px[(150 * w + 100) * 3 + 1] < 115);
    }
}
