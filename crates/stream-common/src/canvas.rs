//! An RGB frame buffer with just enough drawing to make test patterns and
//! "NO SIGNAL" placeholders: rectangles and scaled 8x8 bitmap text.

use font8x8::UnicodeFonts;

pub type Rgb = [u8; 3];

/// A packed RGB24 image, reused from frame to frame.
#[derive(Debug, Clone)]
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: u32, height: u32) -> Self {
        let (width, height) = (width as usize, height as usize);
        Canvas {
            width,
            height,
            pixels: vec![0; width * height * 3],
        }
    }

    pub fn width(&self) -> u32 {
        self.width as u32
    }

    pub fn height(&self) -> u32 {
        self.height as u32
    }

    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Replaces all pixels; `rgb` must hold exactly width × height × 3 bytes.
    pub fn set_pixels(&mut self, rgb: &[u8]) {
        let n = self.pixels.len().min(rgb.len());
        self.pixels[..n].copy_from_slice(&rgb[..n]);
    }

    pub fn pixel(&self, x: u32, y: u32) -> Option<Rgb> {
        let (x, y) = (x as usize, y as usize);
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) * 3;
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    pub fn fill(&mut self, color: Rgb) {
        for px in self.pixels.chunks_exact_mut(3) {
            px.copy_from_slice(&color);
        }
    }

    /// Fills a rectangle, clipped to the canvas.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb) {
        let x0 = x.clamp(0, self.width as i64) as usize;
        let x1 = (x + w).clamp(0, self.width as i64) as usize;
        let y0 = y.clamp(0, self.height as i64) as usize;
        let y1 = (y + h).clamp(0, self.height as i64) as usize;
        for row in y0..y1 {
            let start = (row * self.width + x0) * 3;
            let end = (row * self.width + x1) * 3;
            for px in self.pixels[start..end].chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel a
    /// `scale`×`scale` square. Characters the font lacks are drawn as '?'.
    /// Returns the width drawn, in pixels.
    pub fn draw_text(&mut self, x: i64, y: i64, scale: u32, color: Rgb, text: &str) -> i64 {
        let s = i64::from(scale.max(1));
        let mut cx = x;
        for ch in text.chars() {
            let glyph = font8x8::BASIC_FONTS
                .get(ch)
                .or_else(|| font8x8::BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.fill_rect(cx + col * s, y + row as i64 * s, s, s, color);
                    }
                }
            }
            cx += 8 * s;
        }
        cx - x
    }

    /// Width in pixels that `draw_text` would use.
    pub fn text_width(text: &str, scale: u32) -> i64 {
        text.chars().count() as i64 * 8 * i64::from(scale.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_rect_clips_and_paints() {
        let mut c = Canvas::new(10, 10);
        c.fill([1, 2, 3]);
        c.fill_rect(-5, 8, 100, 100, [9, 9, 9]);
        assert_eq!(c.pixel(0, 7), Some([1, 2, 3]));
        assert_eq!(c.pixel(9, 9), Some([9, 9, 9]));
        assert_eq!(c.pixel(10, 0), None);
    }

    #[test]
    fn text_changes_pixels_only_where_drawn() {
        let mut c = Canvas::new(64, 16);
        c.fill([0, 0, 0]);
        let w = c.draw_text(0, 0, 2, [255, 255, 255], "1");
        assert_eq!(w, 16);
        let lit = c.pixels().chunks_exact(3).filter(|p| p[0] == 255).count();
        assert!(lit > 0 && lit < 16 * 16, "lit {lit}");
        // Nothing drawn right of the glyph.
        assert!((16..64).all(|x| (0..16).all(|y| c.pixel(x, y) == Some([0, 0, 0]))));
    }
}
