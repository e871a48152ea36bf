//! The payload of a detections message: what a detector found in one frame.
//!
//! It rides the bus as the third part of a `d/<name>/` message (see
//! [`crate::message`]), after a [`crate::FrameHeader`] that names the frame it
//! was found in (same stream, `seq`, `capture_ts_ns`, size and producer id), so
//! a viewer can match boxes to pictures. Encoded with bincode 2's legacy layout
//! like the header; decoding is bounded and validates every field, because a
//! gateway turns it into JSON for browsers.

use serde::{Deserialize, Serialize};

use crate::WireError;

/// Most boxes in one message.
pub const MAX_BOXES: usize = 256;
/// Longest label or model name, in bytes.
pub const MAX_LABEL: usize = 64;
/// Largest encoded payload accepted (256 boxes of 64-byte labels fit).
pub const MAX_DETECTIONS_BYTES: usize = 32 * 1024;

/// Everything found in one analysed frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detections {
    /// Which model found them, e.g. `ssdlite-mobilenet-v2-person`.
    pub model: String,
    /// Boxes, best first. Empty when nothing was found: that is news too.
    pub boxes: Vec<Detection>,
}

/// One box. Coordinates are fractions of the frame's width and height, from
/// its top-left corner, so they fit the picture at any size it is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub label: String,
    /// Confidence in 0..=1.
    pub score: f32,
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

fn config() -> impl bincode::config::Config {
    bincode::config::legacy().with_limit::<MAX_DETECTIONS_BYTES>()
}

/// A label or model name: 1 to 64 printable ASCII characters, safe in JSON,
/// metric labels and a canvas.
fn valid_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_LABEL && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl Detection {
    fn validate(&self) -> Result<(), String> {
        if !valid_label(&self.label) {
            return Err(format!(
                "label {:?} is not 1-{MAX_LABEL} printable ASCII characters",
                self.label.chars().take(80).collect::<String>()
            ));
        }
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        // A little slack on the far edges: x + w computed in f32 may round up.
        let edge = |a: f32, b: f32| a + b <= 1.0 + 1e-4;
        if !unit(self.score) {
            return Err(format!("score {} is not in 0..=1", self.score));
        }
        if ![self.x, self.y, self.w, self.h].into_iter().all(unit)
            || !edge(self.x, self.w)
            || !edge(self.y, self.h)
        {
            return Err(format!(
                "box ({}, {}, {}, {}) is not inside the frame",
                self.x, self.y, self.w, self.h
            ));
        }
        Ok(())
    }
}

impl Detections {
    /// Checks every field; what passes is safe to show anyone.
    pub fn validate(&self) -> Result<(), WireError> {
        let bad = WireError::MalformedDetections;
        if !valid_label(&self.model) {
            return Err(bad(format!(
                "model name {:?} is not 1-{MAX_LABEL} printable ASCII characters",
                self.model.chars().take(80).collect::<String>()
            )));
        }
        if self.boxes.len() > MAX_BOXES {
            return Err(bad(format!(
                "{} boxes, more than {MAX_BOXES}",
                self.boxes.len()
            )));
        }
        self.boxes
            .iter()
            .try_for_each(|b| b.validate().map_err(bad))
    }

    /// Encodes a valid payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.validate()?;
        bincode::serde::encode_to_vec(self, config())
            .map_err(|e| WireError::MalformedDetections(e.to_string()))
    }

    /// Decodes and validates a payload from the wire.
    pub fn decode(bytes: &[u8]) -> Result<Detections, WireError> {
        if bytes.len() > MAX_DETECTIONS_BYTES {
            return Err(WireError::MalformedDetections(format!(
                "{} bytes, more than {MAX_DETECTIONS_BYTES}",
                bytes.len()
            )));
        }
        let (d, used): (Detections, usize) = bincode::serde::decode_from_slice(bytes, config())
            .map_err(|e| WireError::MalformedDetections(e.to_string()))?;
        if used != bytes.len() {
            return Err(WireError::MalformedDetections(format!(
                "{} trailing bytes",
                bytes.len() - used
            )));
        }
        d.validate()?;
        Ok(d)
    }
}
