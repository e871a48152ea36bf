//! The payload of an event message: an object followed across frames, from
//! the moment it is sure to be there until it has been gone for a while.
//!
//! It rides the bus as the third part of an `e/<name>/` message, after a
//! [`crate::FrameHeader`] with the stream and the size of the frame its
//! snapshot was taken from, but the event stage's own `producer_id`, `seq`
//! and sending time, so signed events pass the subscribers' replay checks
//! (the snapshot's capture time is the event's `snapshot_ts_ns`). An
//! event is sent three ways: `start` once, `update` while it lasts (a better
//! snapshot, a new zone), `end` once; every message carries the whole event,
//! so a receiver that missed the start still knows everything. Encoded with
//! bincode 2's legacy layout like the header; decoding is bounded and
//! validates every field, because gateways turn it into JSON for browsers.

use serde::{Deserialize, Serialize};

use crate::WireError;

/// Longest event id, in bytes.
pub const MAX_EVENT_ID: usize = 128;
/// Most zones one event names.
pub const MAX_ZONES: usize = 32;
/// Longest zone name or label, in bytes.
pub const MAX_NAME: usize = 64;
/// Largest snapshot carried (a full-size JPEG).
pub const MAX_SNAPSHOT_BYTES: usize = crate::DEFAULT_MAX_JPEG_BYTES;
/// Largest encoded payload accepted: the snapshot and a few KiB of fields.
pub const MAX_EVENT_BYTES: usize = MAX_SNAPSHOT_BYTES + 16 * 1024;

/// Which moment of an event a message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    Start,
    Update,
    End,
}

impl Phase {
    /// `start`, `update` or `end`: the name in JSON and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Update => "update",
            Phase::End => "end",
        }
    }
}

/// Everything known about one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event stage run and stream: `<stream>-<start ms>-<n>`.
    pub id: String,
    pub stream: String,
    /// What was followed, e.g. `person`.
    pub label: String,
    /// Every zone the object's box's bottom centre was in, in order of entry.
    pub zones: Vec<String>,
    /// Capture time (ns since the Unix epoch) of the first frame it was seen in.
    pub start_ts_ns: u64,
    /// Capture time of the last frame it was seen in (so far, while it lasts).
    pub end_ts_ns: u64,
    /// Its highest score, 0..=1.
    pub best_score: f32,
    /// Its box in the frame of the highest score, in fractions of the frame.
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    /// Capture time of the frame the snapshot is; 0 while there is none.
    pub snapshot_ts_ns: u64,
}

/// One event message's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    pub phase: Phase,
    pub event: Event,
    /// The snapshot, a full-size JPEG; empty when there is none yet (or it
    /// is unchanged since the last message that carried it).
    pub snapshot: Vec<u8>,
}

/// The event as browsers, MQTT, webhooks and the recorder's API show it:
/// times as nanoseconds since the Unix epoch (as on the bus) and as
/// seconds, the box as fractions of the frame. One shape for every
/// consumer, so a page, an automation and a history query agree.
#[derive(Debug, Serialize)]
pub struct EventJson<'a> {
    pub id: &'a str,
    pub stream: &'a str,
    pub label: &'a str,
    pub zones: &'a [String],
    pub start: f64,
    pub end: f64,
    pub start_ts_ns: u64,
    pub end_ts_ns: u64,
    pub duration: f64,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: BoxJson,
    pub snapshot_ts_ns: u64,
}

/// An event's best box, in fractions of the frame.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BoxJson {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Event {
    /// The event's JSON view ([`EventJson`]).
    pub fn json(&self) -> EventJson<'_> {
        let secs = |ns: u64| ns as f64 / 1e9;
        EventJson {
            id: &self.id,
            stream: &self.stream,
            label: &self.label,
            zones: &self.zones,
            start: secs(self.start_ts_ns),
            end: secs(self.end_ts_ns),
            start_ts_ns: self.start_ts_ns,
            end_ts_ns: self.end_ts_ns,
            duration: secs(self.end_ts_ns.saturating_sub(self.start_ts_ns)),
            score: self.best_score,
            bbox: BoxJson {
                x: self.x,
                y: self.y,
                w: self.w,
                h: self.h,
            },
            snapshot_ts_ns: self.snapshot_ts_ns,
        }
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::legacy().with_limit::<MAX_EVENT_BYTES>()
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl EventMessage {
    /// Checks every field; what passes is safe to show anyone.
    pub fn validate(&self) -> Result<(), WireError> {
        let bad = |s: String| Err(WireError::MalformedEvent(s));
        let e = &self.event;
        let shown = |s: &str| s.chars().take(80).collect::<String>();
        if !printable(&e.id, MAX_EVENT_ID) {
            return bad(format!(
                "id {:?} is not 1-{MAX_EVENT_ID} printable ASCII characters",
                shown(&e.id)
            ));
        }
        crate::validate_stream_name(&e.stream)?;
        if !printable(&e.label, MAX_NAME) {
            return bad(format!(
                "label {:?} is not 1-{MAX_NAME} printable ASCII characters",
                shown(&e.label)
            ));
        }
        if e.zones.len() > MAX_ZONES {
            return bad(format!("{} zones, more than {MAX_ZONES}", e.zones.len()));
        }
        if let Some(z) = e.zones.iter().find(|z| !printable(z, MAX_NAME)) {
            return bad(format!(
                "zone {:?} is not 1-{MAX_NAME} printable ASCII characters",
                shown(z)
            ));
        }
        if e.end_ts_ns < e.start_ts_ns {
            return bad(format!(
                "ends ({}) before it starts ({})",
                e.end_ts_ns, e.start_ts_ns
            ));
        }
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        if !unit(e.best_score) {
            return bad(format!("score {} is not in 0..=1", e.best_score));
        }
        if ![e.x, e.y, e.w, e.h].into_iter().all(unit)
            || e.x + e.w > 1.0 + 1e-4
            || e.y + e.h > 1.0 + 1e-4
        {
            return bad(format!(
                "box ({}, {}, {}, {}) is not inside the frame",
                e.x, e.y, e.w, e.h
            ));
        }
        if self.snapshot.len() > MAX_SNAPSHOT_BYTES {
            return bad(format!(
                "snapshot is {} bytes, more than {MAX_SNAPSHOT_BYTES}",
                self.snapshot.len()
            ));
        }
        if !self.snapshot.is_empty() && !crate::looks_like_jpeg(&self.snapshot) {
            return bad("snapshot is not a JPEG".into());
        }
        Ok(())
    }

    /// Encodes a valid payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.validate()?;
        bincode::serde::encode_to_vec(self, config())
            .map_err(|e| WireError::MalformedEvent(e.to_string()))
    }

    /// Decodes and validates a payload from the wire.
    pub fn decode(bytes: &[u8]) -> Result<EventMessage, WireError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(WireError::MalformedEvent(format!(
                "{} bytes, more than {MAX_EVENT_BYTES}",
                bytes.len()
            )));
        }
        let (m, used): (EventMessage, usize) =
            bincode::serde::decode_from_slice(bytes, config())
                .map_err(|e| WireError::MalformedEvent(e.to_string()))?;
        if used != bytes.len() {
            return Err(WireError::MalformedEvent(format!(
                "{} trailing bytes",
                bytes.len() - used
            )));
        }
        m.validate()?;
        Ok(m)
    }
}

/// Builds an event message (3 parts, or 4 signed with `key`) for `header`,
/// the frame the snapshot was taken from.
pub fn encode_event(
    header: &crate::FrameHeader,
    message: &EventMessage,
    key: Option<&crate::auth::Key>,
) -> Result<Vec<bytes::Bytes>, WireError> {
    let payload = bytes::Bytes::from(message.encode()?);
    crate::encode_message(
        crate::Kind::Event,
        header,
        payload,
        &crate::Limits::default(),
        key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameHeader, KIND_VERSION, Kind, Limits, Message, decode_message};

    fn sample() -> EventMessage {
        EventMessage {
            phase: Phase::Start,
            event: Event {
                id: "cam1-1700000000000-1".into(),
                stream: "cam1".into(),
                label: "person".into(),
                zones: vec!["door".into()],
                start_ts_ns: 1_700_000_000_000_000_000,
                end_ts_ns: 1_700_000_001_000_000_000,
                best_score: 0.9,
                x: 0.25,
                y: 0.25,
                w: 0.5,
                h: 0.75,
                snapshot_ts_ns: 1_700_000_000_500_000_000,
            },
            snapshot: vec![0xFF, 0xD8, 1, 2, 0xFF, 0xD9],
        }
    }

    fn header() -> FrameHeader {
        FrameHeader {
            version: KIND_VERSION,
            seq: 7,
            capture_ts_ns: 1_700_000_000_500_000_000,
            width: 640,
            height: 480,
            producer_id: 1,
            stream: "cam1".into(),
        }
    }

    #[test]
    fn round_trips_on_its_own_topic() {
        let parts = encode_event(&header(), &sample(), None).expect("encodes");
        assert_eq!(&parts[0][..], b"e/cam1/");
        match decode_message(&parts, &Limits::default(), None).expect("decodes") {
            Message::Event { header: h, event } => {
                assert_eq!(h.seq, 7);
                assert_eq!(*event, sample());
            }
            other => panic!("decoded as {:?}", other.kind()),
        }
        assert_eq!(Kind::from_tag(b'e'), Some(Kind::Event));
    }

    #[test]
    fn refuses_what_a_page_should_not_show() {
        let mut m = sample();
        m.event.label = "bad\nlabel".into();
        assert!(m.encode().is_err());
        let mut m = sample();
        m.event.end_ts_ns = 1;
        assert!(m.encode().is_err());
        let mut m = sample();
        m.event.w = 0.9;
        assert!(m.encode().is_err());
        let mut m = sample();
        m.snapshot = vec![1, 2, 3];
        assert!(m.encode().is_err());
        let mut m = sample();
        m.event.zones = vec!["z".into(); MAX_ZONES + 1];
        assert!(m.encode().is_err());
    }

    #[test]
    fn decoding_garbage_fails_cleanly() {
        let good = sample().encode().expect("encodes");
        for cut in 0..good.len() {
            assert!(EventMessage::decode(&good[..cut]).is_err());
        }
        let mut long = good.clone();
        long.push(0);
        assert!(EventMessage::decode(&long).is_err());
        // A length prefix claiming more than the limit allocates nothing.
        let mut huge = good.clone();
        huge[4..12].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(EventMessage::decode(&huge).is_err());
    }
}
