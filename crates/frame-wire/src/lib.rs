//! The wire format both services speak: one ZeroMQ multipart message per frame,
//! `[topic][header][jpeg]`.
//!
//! It lives in its own small crate so that the producer, the gateway, the load
//! generator and the tests all agree on one definition, and so a producer in
//! another language has one place to read (see `docs/wire-format.md`).
//!
//! - The topic is the stream name, so a subscriber can filter by prefix.
//! - The header is a serde struct encoded with bincode 2's *legacy* layout
//!   (fixed-width little-endian integers, `u64` length before strings). Its first
//!   byte is the format version, read before anything else, so the codec can
//!   change later without breaking old peers silently.
//! - The JPEG travels as its own part and is never copied into the header.
//!
//! - A signed message (version 2, when producer and gateway share a key) has a
//!   4th part, a MAC over the other three (see [`auth`]).
//! - Version 3 ([`message`]) puts the kind of message in the topic
//!   (`f/cam1/` frames, `p/cam1/` previews, `d/cam1/` detections), so that a
//!   subscription names exactly one stream and one kind; renditions
//!   (`r/cam1/320/`, [`renditions`]) name a width too.
//!
//! Decoding validates everything and returns a [`WireError`]; it never panics on
//! any input and never allocates more than the configured limits allow.

pub mod auth;
pub mod detections;
pub mod event;
pub mod message;
pub mod renditions;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::{Key, KeyRing, MacError};
pub use crate::detections::{Detection, Detections};
pub use crate::event::{Event, EventMessage, Phase, encode_event};
pub use crate::message::{
    KIND_VERSION, Kind, Message, decode_message, encode_detections, encode_message,
    rendition_topic, rendition_width, subscription, topic,
};
pub use crate::renditions::{MAX_RENDITIONS, Renditions};

/// The header version of an unsigned message `[topic][header][jpeg]`.
pub const VERSION: u8 = 1;
/// The header version of a signed message `[topic][header][jpeg][mac]`: the
/// same layout, a different number, so a gateway that predates signing
/// refuses it (`version` or `part_count`) instead of misreading it.
pub const SIGNED_VERSION: u8 = 2;
/// Longest stream name accepted; names appear in URLs and metric labels.
pub const MAX_STREAM_NAME: usize = 64;
/// Largest header accepted on the wire (a v1 header is 41 bytes plus the name).
pub const MAX_HEADER_BYTES: usize = 256;
/// Largest width or height accepted.
pub const MAX_DIMENSION: u32 = 16_384;
/// Default cap on one JPEG; the gateway makes it configurable.
pub const DEFAULT_MAX_JPEG_BYTES: usize = 8 * 1024 * 1024;

/// Everything known about a frame besides its pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameHeader {
    /// Format version: [`VERSION`], or [`SIGNED_VERSION`] in a signed message.
    pub version: u8,
    /// Frame number within one producer run, starting at 0.
    pub seq: u64,
    /// When the frame was captured, in nanoseconds since the Unix epoch.
    pub capture_ts_ns: u64,
    pub width: u32,
    pub height: u32,
    /// Random per producer process: a change tells a subscriber the producer restarted.
    pub producer_id: u64,
    /// The stream name; equal to the message topic.
    pub stream: String,
}

/// One decoded frame: the header and the JPEG bytes, shared, not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    pub jpeg: Bytes,
}

/// Limits applied when decoding untrusted messages.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_jpeg_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_jpeg_bytes: DEFAULT_MAX_JPEG_BYTES,
        }
    }
}

/// Why a message or frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("expected 3 message parts [topic][header][jpeg] (or 4 with a MAC), got {0}")]
    PartCount(usize),
    #[error("unsigned frame, but a bus key is configured")]
    Unsigned,
    #[error("signed frame, but no bus key is configured here")]
    SignedWithoutKey,
    #[error("frame signed with a key this side does not hold")]
    UnknownKey,
    #[error("frame MAC does not verify (forged, altered or wrong key)")]
    BadMac,
    #[error("header is empty")]
    EmptyHeader,
    #[error("header is {0} bytes, more than the {MAX_HEADER_BYTES} allowed")]
    HeaderTooLarge(usize),
    #[error("unsupported header version {0} (this build reads versions 1 to {KIND_VERSION})")]
    UnsupportedVersion(u8),
    #[error("malformed header: {0}")]
    MalformedHeader(String),
    #[error("header has {0} trailing bytes")]
    TrailingHeaderBytes(usize),
    #[error("invalid stream name: {0}")]
    InvalidStreamName(String),
    #[error("topic {topic:?} does not match header stream {stream:?}")]
    TopicMismatch { topic: String, stream: String },
    #[error("invalid frame size {width}x{height}")]
    InvalidSize { width: u32, height: u32 },
    #[error("jpeg is {size} bytes, more than the {max} allowed")]
    JpegTooLarge { size: usize, max: usize },
    #[error("payload is not a JPEG (missing SOI/EOI markers)")]
    NotJpeg,
    #[error("topic {0:?} is not <kind>/<stream>/")]
    BadTopic(String),
    #[error("unknown message kind {:?} (a newer publisher?)", char::from(*.0))]
    UnknownKind(u8),
    #[error("malformed detections: {0}")]
    MalformedDetections(String),
    #[error("malformed event: {0}")]
    MalformedEvent(String),
    #[error("malformed renditions list: {0}")]
    MalformedRenditions(String),
    #[error("{0:?}: signed with a key limited to detections (scope=d), not for this message")]
    Scope(String),
}

impl WireError {
    /// A short stable name for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::PartCount(_) => "part_count",
            WireError::Unsigned => "unsigned",
            WireError::SignedWithoutKey => "no_key",
            WireError::UnknownKey => "unknown_key",
            WireError::BadMac => "bad_mac",
            WireError::EmptyHeader
            | WireError::MalformedHeader(_)
            | WireError::TrailingHeaderBytes(_) => "bad_header",
            WireError::HeaderTooLarge(_) => "header_too_large",
            WireError::UnsupportedVersion(_) => "version",
            WireError::InvalidStreamName(_) => "stream_name",
            WireError::TopicMismatch { .. } => "topic_mismatch",
            WireError::InvalidSize { .. } => "frame_size",
            WireError::JpegTooLarge { .. } => "too_large",
            WireError::NotJpeg => "not_jpeg",
            WireError::BadTopic(_) => "bad_topic",
            WireError::UnknownKind(_) => "unknown_kind",
            WireError::MalformedDetections(_) => "bad_detections",
            WireError::MalformedEvent(_) => "bad_event",
            WireError::MalformedRenditions(_) => "bad_renditions",
            WireError::Scope(_) => "scope",
        }
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::legacy().with_limit::<MAX_HEADER_BYTES>()
}

/// Checks a stream name: 1 to 64 characters of `A-Z a-z 0-9 _ - .`, so it is
/// safe in URLs, file names and metric labels.
pub fn validate_stream_name(name: &str) -> Result<(), WireError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_STREAM_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(WireError::InvalidStreamName(
            name.chars().take(80).collect(),
        ))
    }
}

/// True when `data` starts with a JPEG SOI marker and ends with an EOI marker.
pub fn looks_like_jpeg(data: &[u8]) -> bool {
    data.len() >= 4 && data.starts_with(&[0xFF, 0xD8]) && data.ends_with(&[0xFF, 0xD9])
}

/// Checks the header's name and size, whatever the payload.
fn validate_frame_fields(header: &FrameHeader) -> Result<(), WireError> {
    validate_stream_name(&header.stream)?;
    let dims_ok = |d: u32| (1..=MAX_DIMENSION).contains(&d);
    if !dims_ok(header.width) || !dims_ok(header.height) {
        return Err(WireError::InvalidSize {
            width: header.width,
            height: header.height,
        });
    }
    Ok(())
}

/// Checks a header and the JPEG it describes.
fn validate(header: &FrameHeader, jpeg: &[u8], limits: &Limits) -> Result<(), WireError> {
    validate_frame_fields(header)?;
    if jpeg.len() > limits.max_jpeg_bytes {
        return Err(WireError::JpegTooLarge {
            size: jpeg.len(),
            max: limits.max_jpeg_bytes,
        });
    }
    if !looks_like_jpeg(jpeg) {
        return Err(WireError::NotJpeg);
    }
    Ok(())
}

fn known_version(v: u8) -> bool {
    matches!(v, VERSION | SIGNED_VERSION | KIND_VERSION)
}

/// Encodes just the header part.
pub fn encode_header(header: &FrameHeader) -> Result<Vec<u8>, WireError> {
    if !known_version(header.version) {
        return Err(WireError::UnsupportedVersion(header.version));
    }
    bincode::serde::encode_to_vec(header, config())
        .map_err(|e| WireError::MalformedHeader(e.to_string()))
}

/// Decodes and checks just the header part.
pub fn decode_header(bytes: &[u8]) -> Result<FrameHeader, WireError> {
    let version = *bytes.first().ok_or(WireError::EmptyHeader)?;
    if !known_version(version) {
        return Err(WireError::UnsupportedVersion(version));
    }
    if bytes.len() > MAX_HEADER_BYTES {
        return Err(WireError::HeaderTooLarge(bytes.len()));
    }
    let (header, used): (FrameHeader, usize) =
        bincode::serde::decode_from_slice(bytes, config())
            .map_err(|e| WireError::MalformedHeader(e.to_string()))?;
    if used != bytes.len() {
        return Err(WireError::TrailingHeaderBytes(bytes.len() - used));
    }
    Ok(header)
}

/// Builds the three message parts for one frame, checking it first so a
/// producer cannot publish what a gateway would refuse.
pub fn encode(header: &FrameHeader, jpeg: Bytes, limits: &Limits) -> Result<[Bytes; 3], WireError> {
    if header.version != VERSION {
        return Err(WireError::UnsupportedVersion(header.version));
    }
    validate(header, &jpeg, limits)?;
    let head = encode_header(header)?;
    Ok([
        Bytes::copy_from_slice(header.stream.as_bytes()),
        Bytes::from(head),
        jpeg,
    ])
}

/// Builds the four parts of a signed message: the header's version is set
/// to [`SIGNED_VERSION`] and the 4th part is `key`'s MAC over the other three.
pub fn encode_signed(
    header: &FrameHeader,
    jpeg: Bytes,
    limits: &Limits,
    key: &Key,
) -> Result<[Bytes; 4], WireError> {
    validate(header, &jpeg, limits)?;
    let mut header = header.clone();
    header.version = SIGNED_VERSION;
    let head = encode_header(&header)?;
    let mac = key.sign_frame(header.stream.as_bytes(), &head, &jpeg);
    Ok([
        Bytes::copy_from_slice(header.stream.as_bytes()),
        Bytes::from(head),
        jpeg,
        mac,
    ])
}

/// Decodes one unsigned message (no key configured), validating every field.
pub fn decode(parts: &[Bytes], limits: &Limits) -> Result<Frame, WireError> {
    decode_with(parts, limits, None)
}

/// Decodes one message. With `keys`, only signed messages whose MAC verifies
/// with a key of the ring are accepted, the MAC checked (in constant time)
/// before anything else is parsed; without, only unsigned ones.
pub fn decode_with(
    parts: &[Bytes],
    limits: &Limits,
    keys: Option<&KeyRing>,
) -> Result<Frame, WireError> {
    let (topic, head, jpeg, want_version) = match (parts, keys) {
        ([topic, head, jpeg], None) => (topic, head, jpeg, VERSION),
        ([_, _, _], Some(_)) => return Err(WireError::Unsigned),
        ([_, _, _, _], None) => return Err(WireError::SignedWithoutKey),
        ([topic, head, jpeg, mac], Some(ring)) => {
            let scope = ring
                .verify_frame_scope(topic, head, jpeg, mac)
                .map_err(|e| match e {
                    MacError::UnknownKey => WireError::UnknownKey,
                    MacError::Malformed | MacError::Mismatch => WireError::BadMac,
                })?;
            // Version 2 carries frames only, never detections.
            if scope != auth::Scope::All {
                return Err(WireError::Scope(
                    String::from_utf8_lossy(&topic[..topic.len().min(80)]).into_owned(),
                ));
            }
            (topic, head, jpeg, SIGNED_VERSION)
        }
        _ => return Err(WireError::PartCount(parts.len())),
    };
    let header = decode_header(head)?;
    if header.version != want_version {
        return Err(WireError::UnsupportedVersion(header.version));
    }
    validate(&header, jpeg, limits)?;
    if topic.as_ref() != header.stream.as_bytes() {
        return Err(WireError::TopicMismatch {
            topic: String::from_utf8_lossy(&topic[..topic.len().min(80)]).into_owned(),
            stream: header.stream,
        });
    }
    Ok(Frame {
        header,
        jpeg: jpeg.clone(),
    })
}

#[cfg(test)]
mod tests;
