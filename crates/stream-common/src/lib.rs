//! What the producer, the gateway and the test tools share besides the wire
//! format: drawing text on frames, JPEG encoding, parsing MJPEG streams,
//! logging set-up and shutdown signals, and the HTTP side's shared rules
//! (`access`: credentials and CORS; `query`; `route`: which URL is what),
//! and the cameras file's zones and masks (`rules`), read by the detector
//! and the event stage alike. One definition of each, used everywhere.

pub mod access;
pub mod canvas;
pub mod flags;
pub mod health;
pub mod huffman;
pub mod jpeg;
pub mod logging;
pub mod metrics;
pub mod multipart;
pub mod query;
pub mod ratelimit;
pub mod redact;
pub mod route;
pub mod rules;
pub mod service;
pub mod shutdown;
pub mod status;
pub mod tls;

/// Nanoseconds since the Unix epoch, the unit of `FrameHeader::capture_ts_ns`.
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `HH:MM:SS.mmm UTC` of a Unix time in nanoseconds, as drawn on frames.
pub fn clock_text(unix_ns: u64) -> String {
    let ms = unix_ns / 1_000_000;
    let (secs, millis) = (ms / 1000, ms % 1000);
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{millis:03} UTC",
        day / 3600,
        day / 60 % 60,
        day % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_text_formats_milliseconds() {
        // 1970-01-02 01:02:03.456
        let ns = ((86_400 + 3_723) * 1000 + 456) * 1_000_000;
        assert_eq!(super::clock_text(ns), "01:02:03.456 UTC");
    }
}
