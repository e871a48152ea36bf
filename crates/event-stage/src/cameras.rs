//! The cameras file's rules (zones, masks, required zones, per-label
//! filters) live in `stream_common::rules`, shared with the object detector
//! so that one file means the same to both; this module only names them for
//! the stage's tracker and loop.

pub use stream_common::rules::{CameraRules, Rules, load};

#[cfg(test)]
pub use stream_common::rules::parse;
