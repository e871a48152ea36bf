//! USB webcams and capture cards through Video4Linux2 (`v4l2:/dev/videoN`).
//!
//! `negotiate` picks the format, size and rate from what the camera offers
//! (its own MJPEG first, passed through without re-encoding); `convert` turns
//! raw YUYV / NV12 / I420 buffers into I420 planes for the encoder; `device`
//! (the `v4l2` build feature) talks to the driver: memory-mapped streaming, a
//! clear retried error when the device is missing, and a reopen after it is
//! unplugged and plugged back in.

// Negotiation and conversion are pure and always built (and tested); only the
// device code needs the feature.
#[cfg_attr(not(feature = "v4l2"), allow(dead_code))]
pub mod convert;
#[cfg(feature = "v4l2")]
mod device;
#[cfg_attr(not(feature = "v4l2"), allow(dead_code))]
pub mod negotiate;

#[cfg(feature = "v4l2")]
pub use device::V4l2Source;
