//! Version 3: messages of several kinds on one bus, each on its own topic.
//!
//! A topic is `<tag>/<stream>/`: `f/cam1/` carries cam1's full-rate frames,
//! `p/cam1/` its preview (a small JPEG about once a second), `d/cam1/` what a
//! detector found in it, `r/cam1/320/` its 320-wide rendition (a smaller copy
//! of each full-rate frame, sent only while someone subscribes to it) and
//! `i/cam1/` which renditions it has (about once a second, with the preview). ZeroMQ filters subscriptions by prefix at the
//! publisher, so the closing `/` makes a subscription to `f/cam1/` exact
//! (it no longer matches `cam10`), and `p/` subscribes to every preview.
//! Stream names cannot contain `/`, and version 1/2 topics (the bare name)
//! cannot start with one, so the two schemes never match each other.
//!
//! Every kind uses the same [`FrameHeader`] layout with version byte
//! [`KIND_VERSION`]; the kind decides what the third part is (a JPEG, or a
//! [`Detections`] payload). Signing is as in version 2: a 4th part with the
//! MAC over topic, header and payload, required when a key is configured.
//! Gateways that predate version 3 refuse these messages by their version
//! byte (one counter, no misreading); a receiver that meets a tag it does not
//! know counts it as `unknown_kind` and carries on.

use bytes::Bytes;

use crate::auth::{ANNOTATED_SUFFIX, Key, KeyRing, MacError, Scope};
use crate::detections::Detections;
use crate::event::EventMessage;
use crate::renditions::Renditions;
use crate::{
    Frame, FrameHeader, Limits, MAX_DIMENSION, WireError, decode_header, decode_with,
    encode_header, validate, validate_frame_fields, validate_stream_name,
};

/// The header version of every kind-tagged (`<tag>/<stream>/`) message,
/// signed (4 parts) or not (3 parts).
pub const KIND_VERSION: u8 = 3;

/// What a message carries; its tag is the topic's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A full-rate frame: `f/<stream>/`, payload a JPEG.
    Frame,
    /// A small, low-rate picture every gateway keeps for every stream:
    /// `p/<stream>/`, payload a JPEG.
    Preview,
    /// What a detector found in a frame: `d/<stream>/`, payload [`Detections`].
    Detections,
    /// An event's start, update or end: `e/<stream>/`, payload [`EventMessage`].
    Event,
    /// A smaller copy of a full-rate frame: `r/<stream>/<width>/`, payload a
    /// JPEG `width` pixels wide; its `seq` is the full frame's.
    Rendition,
    /// Which renditions a stream has: `i/<stream>/`, payload
    /// [`Renditions`] (ASCII `640x360 320x180`, possibly empty); the header's
    /// size is the full picture's.
    Info,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Frame,
        Kind::Preview,
        Kind::Detections,
        Kind::Event,
        Kind::Rendition,
        Kind::Info,
    ];

    pub fn tag(self) -> u8 {
        match self {
            Kind::Frame => b'f',
            Kind::Preview => b'p',
            Kind::Detections => b'd',
            Kind::Event => b'e',
            Kind::Rendition => b'r',
            Kind::Info => b'i',
        }
    }

    pub fn from_tag(tag: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.tag() == tag)
    }

    /// A short stable name for metric labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Frame => "frame",
            Kind::Preview => "preview",
            Kind::Detections => "detections",
            Kind::Event => "event",
            Kind::Rendition => "rendition",
            Kind::Info => "info",
        }
    }
}

/// The topic of `kind` messages of `stream`: `f/cam1/`.
pub fn topic(kind: Kind, stream: &str) -> Bytes {
    let mut t = Vec::with_capacity(stream.len() + 3);
    t.extend_from_slice(&[kind.tag(), b'/']);
    t.extend_from_slice(stream.as_bytes());
    t.push(b'/');
    Bytes::from(t)
}

/// The topic of `stream`'s rendition `width` pixels wide: `r/cam1/320/`.
/// Exact as a subscription too (the closing `/`).
pub fn rendition_topic(stream: &str, width: u32) -> Bytes {
    Bytes::from(format!("r/{stream}/{width}/").into_bytes())
}

/// What to subscribe to for `kind` messages of one stream (`Some`: exactly
/// that stream) or of every stream (`None`: the prefix `f/`).
pub fn subscription(kind: Kind, stream: Option<&str>) -> Vec<u8> {
    match stream {
        Some(s) => topic(kind, s).to_vec(),
        None => vec![kind.tag(), b'/'],
    }
}

/// True for a kind-tagged topic (`x/…`), known kind or not; false for a
/// version 1/2 topic (a bare stream name).
pub fn is_kind_topic(topic: &[u8]) -> bool {
    topic.len() >= 2 && topic[1] == b'/'
}

/// Splits a kind-tagged topic into its tag and stream name.
pub fn parse_topic(topic: &[u8]) -> Result<(u8, &str), WireError> {
    let bad =
        || WireError::BadTopic(String::from_utf8_lossy(&topic[..topic.len().min(80)]).into_owned());
    if topic.len() < 4 || topic[1] != b'/' || topic[topic.len() - 1] != b'/' {
        return Err(bad());
    }
    let name = std::str::from_utf8(&topic[2..topic.len() - 1]).map_err(|_| bad())?;
    if topic[0] == Kind::Rendition.tag() {
        // `r/<stream>/<width>/`: the name is what comes before the width.
        let (name, _) = split_rendition(name).ok_or_else(bad)?;
        return Ok((topic[0], name));
    }
    validate_stream_name(name)?;
    Ok((topic[0], name))
}

/// `cam1/320` into `("cam1", 320)`: a valid name and a width of 1 to
/// [`MAX_DIMENSION`] in plain decimal (no sign, no leading zero).
fn split_rendition(inner: &str) -> Option<(&str, u32)> {
    let (name, width) = inner.rsplit_once('/')?;
    validate_stream_name(name).ok()?;
    if width.is_empty() || width.len() > 5 || width.starts_with('0') {
        return None;
    }
    if !width.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: u32 = width.parse().ok()?;
    (1..=MAX_DIMENSION).contains(&w).then_some((name, w))
}

/// The width a rendition topic `r/<stream>/<width>/` names.
pub fn rendition_width(topic: &[u8]) -> Option<u32> {
    let inner = topic.strip_prefix(b"r/")?.strip_suffix(b"/")?;
    split_rendition(std::str::from_utf8(inner).ok()?).map(|(_, w)| w)
}

/// One decoded message of any version.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A full-rate frame (`f/<stream>/`, or a version 1/2 message).
    Frame(Frame),
    /// A preview picture (`p/<stream>/`).
    Preview(Frame),
    /// Detections in the frame the header names (`d/<stream>/`).
    Detections {
        header: FrameHeader,
        detections: Detections,
    },
    /// An event (`e/<stream>/`); the header names its snapshot's frame.
    /// Boxed: it is rare and large, and every other message moves by value.
    Event {
        header: FrameHeader,
        event: Box<EventMessage>,
    },
    /// A rendition of a full-rate frame (`r/<stream>/<width>/`); the
    /// header's width is the topic's.
    Rendition(Frame),
    /// The renditions a stream has (`i/<stream>/`); the header's size is
    /// the full picture's.
    Info {
        header: FrameHeader,
        renditions: Renditions,
    },
}

impl Message {
    pub fn kind(&self) -> Kind {
        match self {
            Message::Frame(_) => Kind::Frame,
            Message::Preview(_) => Kind::Preview,
            Message::Detections { .. } => Kind::Detections,
            Message::Event { .. } => Kind::Event,
            Message::Rendition(_) => Kind::Rendition,
            Message::Info { .. } => Kind::Info,
        }
    }

    pub fn header(&self) -> &FrameHeader {
        match self {
            Message::Frame(f) | Message::Preview(f) | Message::Rendition(f) => &f.header,
            Message::Detections { header, .. }
            | Message::Event { header, .. }
            | Message::Info { header, .. } => header,
        }
    }
}

/// Builds a version 3 message of `kind` (3 parts, or 4 signed with `key`),
/// checking it first so a publisher cannot send what a receiver refuses.
/// `payload` is a JPEG for frames and previews, an encoded [`Detections`]
/// for detections (see [`encode_detections`]).
pub fn encode_message(
    kind: Kind,
    header: &FrameHeader,
    payload: Bytes,
    limits: &Limits,
    key: Option<&Key>,
) -> Result<Vec<Bytes>, WireError> {
    match kind {
        Kind::Frame | Kind::Preview | Kind::Rendition => validate(header, &payload, limits)?,
        Kind::Info => {
            validate_frame_fields(header)?;
            Renditions::decode(&payload)?;
        }
        Kind::Detections => {
            validate_frame_fields(header)?;
            Detections::decode(&payload)?;
        }
        Kind::Event => {
            validate_frame_fields(header)?;
            EventMessage::decode(&payload)?;
        }
    }
    let mut header = header.clone();
    header.version = KIND_VERSION;
    let head = Bytes::from(encode_header(&header)?);
    let topic = match kind {
        Kind::Rendition => rendition_topic(&header.stream, header.width),
        _ => topic(kind, &header.stream),
    };
    let mut parts = Vec::with_capacity(4);
    let mac = key.map(|k| k.sign_frame(&topic, &head, &payload));
    parts.extend([topic, head, payload]);
    parts.extend(mac);
    Ok(parts)
}

/// Builds a detections message for the frame `header` describes.
pub fn encode_detections(
    header: &FrameHeader,
    detections: &Detections,
    key: Option<&Key>,
) -> Result<Vec<Bytes>, WireError> {
    let payload = Bytes::from(detections.encode()?);
    encode_message(Kind::Detections, header, payload, &Limits::default(), key)
}

/// Whether a key of `scope` may sign a message of `kind` for stream `name`:
/// a detections-only key signs detections and the detector's annotated
/// streams (`<name>-detect` frames and previews), nothing else.
pub fn scope_allows(scope: Scope, kind: Kind, name: &str) -> bool {
    match scope {
        Scope::All => true,
        Scope::Detections => match kind {
            Kind::Detections => true,
            Kind::Frame | Kind::Preview | Kind::Rendition | Kind::Info => {
                name.ends_with(ANNOTATED_SUFFIX)
            }
            Kind::Event => false,
        },
    }
}

/// Decodes one message of any version: kind-tagged topics as version 3,
/// bare-name topics as version 1/2 frames. With `keys`, only signed messages
/// whose MAC verifies are accepted (checked first, in constant time); without,
/// only unsigned ones.
pub fn decode_message(
    parts: &[Bytes],
    limits: &Limits,
    keys: Option<&KeyRing>,
) -> Result<Message, WireError> {
    match parts.first() {
        Some(topic) if is_kind_topic(topic) => {}
        _ => return decode_with(parts, limits, keys).map(Message::Frame),
    }
    let mut scope = Scope::All;
    let (topic, head, payload) = match (parts, keys) {
        ([topic, head, payload], None) => (topic, head, payload),
        ([_, _, _], Some(_)) => return Err(WireError::Unsigned),
        ([_, _, _, _], None) => return Err(WireError::SignedWithoutKey),
        ([topic, head, payload, mac], Some(ring)) => {
            scope = ring
                .verify_frame_scope(topic, head, payload, mac)
                .map_err(|e| match e {
                    MacError::UnknownKey => WireError::UnknownKey,
                    MacError::Malformed | MacError::Mismatch => WireError::BadMac,
                })?;
            (topic, head, payload)
        }
        _ => return Err(WireError::PartCount(parts.len())),
    };
    let (tag, name) = parse_topic(topic)?;
    let kind = Kind::from_tag(tag).ok_or(WireError::UnknownKind(tag))?;
    if !scope_allows(scope, kind, name) {
        return Err(WireError::Scope(name.to_owned()));
    }
    let header = decode_header(head)?;
    if header.version != KIND_VERSION {
        return Err(WireError::UnsupportedVersion(header.version));
    }
    if header.stream != name {
        return Err(WireError::TopicMismatch {
            topic: name.to_owned(),
            stream: header.stream,
        });
    }
    if kind == Kind::Rendition && rendition_width(topic) != Some(header.width) {
        return Err(WireError::TopicMismatch {
            topic: String::from_utf8_lossy(&topic[..topic.len().min(80)]).into_owned(),
            stream: format!("{}/{}", header.stream, header.width),
        });
    }
    Ok(match kind {
        Kind::Frame | Kind::Preview | Kind::Rendition => {
            validate(&header, payload, limits)?;
            let frame = Frame {
                header,
                jpeg: payload.clone(),
            };
            match kind {
                Kind::Frame => Message::Frame(frame),
                Kind::Preview => Message::Preview(frame),
                _ => Message::Rendition(frame),
            }
        }
        Kind::Info => {
            validate_frame_fields(&header)?;
            Message::Info {
                renditions: Renditions::decode(payload)?,
                header,
            }
        }
        Kind::Detections => {
            validate_frame_fields(&header)?;
            Message::Detections {
                detections: Detections::decode(payload)?,
                header,
            }
        }
        Kind::Event => {
            validate_frame_fields(&header)?;
            Message::Event {
                event: Box::new(EventMessage::decode(payload)?),
                header,
            }
        }
    })
}
