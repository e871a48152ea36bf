//! Boxes and polygons in fractions of the frame live in
//! `stream_common::rules::geometry`, shared with the object detector; this
//! module only names them for the stage.

pub use stream_common::rules::Rect;
