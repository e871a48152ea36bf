//! What the producer, the gateway and the test tools share besides the wire
//! format: drawing text on frames, JPEG encoding, parsing MJPEG streams,
//! logging set-up and shutdown signals. One definition of each, used everywhere.

pub mod canvas;
pub mod jpeg;
pub mod logging;
pub mod metrics;
pub mod multipart;
pub mod ratelimit;
pub mod shutdown;

/// Nanoseconds since the Unix epoch, the unit of `FrameHeader::capture_ts_ns`.
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
