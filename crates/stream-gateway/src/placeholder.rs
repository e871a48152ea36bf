//! The "NO SIGNAL" frame viewers see while a stream's producer is silent, so
//! a dead camera is obvious and the connection stays open for its return.

use std::time::SystemTime;

use bytes::Bytes;
use stream_common::canvas::Canvas;
use stream_common::jpeg::{JpegEncoder, JpegError};

const BACKGROUND: [u8; 3] = [40, 40, 48];
const TITLE: [u8; 3] = [255, 80, 80];
const TEXT: [u8; 3] = [230, 230, 230];

/// The largest placeholder: a stream's header may claim any size (up to
/// 65535 a side), and the picture is only a notice.
pub const MAX_WIDTH: u32 = 1920;
pub const MAX_HEIGHT: u32 = 1080;

/// The placeholder's size for a stream of `width`×`height`: the same, or
/// scaled down to fit [`MAX_WIDTH`]×[`MAX_HEIGHT`] keeping its shape (each
/// side at least 16); 640×480 for a size too small to draw on.
pub fn size(width: u32, height: u32) -> (u32, u32) {
    if width < 16 || height < 16 {
        return (640, 480);
    }
    let scale = (f64::from(MAX_WIDTH) / f64::from(width))
        .min(f64::from(MAX_HEIGHT) / f64::from(height))
        .min(1.0);
    let fit = |side: u32, max: u32| ((f64::from(side) * scale).round() as u32).clamp(16, max);
    (fit(width, MAX_WIDTH), fit(height, MAX_HEIGHT))
}

/// Renders the placeholder at the stream's last known size, bounded
/// ([`size`]).
pub fn render(
    stream: &str,
    width: u32,
    height: u32,
    since: SystemTime,
) -> Result<Bytes, JpegError> {
    let (w, h) = size(width, height);
    let mut c = Canvas::new(w, h);
    c.fill(BACKGROUND);
    let big = (w / 160).max(1);
    let small = (big / 2).max(1);
    let title = "NO SIGNAL";
    let center = |text: &str, scale: u32| (i64::from(w) - Canvas::text_width(text, scale)) / 2;
    let mut y = i64::from(h) / 3;
    c.draw_text(center(title, big), y, big, TITLE, title);
    y += i64::from(big) * 8 + 16;
    c.draw_text(center(stream, small), y, small, TEXT, stream);
    y += i64::from(small) * 8 + 10;
    let since_ns = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let line = format!("since {}", stream_common::clock_text(since_ns));
    c.draw_text(center(&line, small), y, small, TEXT, &line);
    JpegEncoder::new(70)?.encode(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_jpeg_at_the_stream_size() {
        let j = render("cam0", 320, 240, SystemTime::now()).expect("render");
        assert_eq!(stream_common::jpeg::dimensions(&j), Some((320, 240)));
        let j = render("cam0", 0, 0, SystemTime::now()).expect("render");
        assert_eq!(stream_common::jpeg::dimensions(&j), Some((640, 480)));
        let j = render("cam0", 16384, 16384, SystemTime::now()).expect("render");
        assert_eq!(stream_common::jpeg::dimensions(&j), Some((1080, 1080)));
    }

    #[test]
    fn sizes_are_bounded_keeping_the_shape() {
        assert_eq!(size(1920, 1080), (1920, 1080));
        assert_eq!(size(3840, 2160), (1920, 1080));
        assert_eq!(size(16384, 16384), (1080, 1080));
        assert_eq!(size(65535, 16), (1920, 16));
        assert_eq!(size(16, 65535), (16, 1080));
        assert_eq!(size(10, 10), (640, 480));
    }
}
