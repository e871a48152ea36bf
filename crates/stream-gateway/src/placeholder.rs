//! The "NO SIGNAL" frame viewers see while a stream's producer is silent, so
//! a dead camera is obvious and the connection stays open for its return.

use std::time::SystemTime;

use bytes::Bytes;
use stream_common::canvas::Canvas;
use stream_common::jpeg::{JpegEncoder, JpegError};

const BACKGROUND: [u8; 3] = [40, 40, 48];
const TITLE: [u8; 3] = [255, 80, 80];
const TEXT: [u8; 3] = [230, 230, 230];

/// Renders the placeholder at the stream's last known size.
pub fn render(
    stream: &str,
    width: u32,
    height: u32,
    since: SystemTime,
) -> Result<Bytes, JpegError> {
    let (w, h) = if width >= 16 && height >= 16 {
        (width, height)
    } else {
        (640, 480)
    };
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
    }
}
