//! What the stage tells MQTT and the webhooks about one event change,
//! prepared once: the event, its JSON (`{"type": "start", "event": {…}}`,
//! the same text for every consumer), the snapshot when it changed, and how
//! many events of its camera and label run now.

use std::sync::Arc;

use bytes::Bytes;
use frame_wire::{Event, Phase};
use serde_json::json;

#[derive(Debug)]
pub struct Notice {
    pub phase: Phase,
    pub event: Event,
    pub json: String,
    /// The best frame as a full-size JPEG, when it changed (always on start
    /// when there is one).
    pub snapshot: Option<Bytes>,
    /// Events of this camera and label running after this change.
    pub active: usize,
}

pub type Shared = Arc<Notice>;

/// The event as JSON (frame-wire's [`frame_wire::event::EventJson`], the
/// shape the gateway and the recorder show too).
pub fn event_json(event: &Event) -> serde_json::Value {
    serde_json::to_value(event.json()).unwrap_or(serde_json::Value::Null)
}

impl Notice {
    pub fn new(phase: Phase, event: Event, snapshot: Option<Bytes>, active: usize) -> Notice {
        let json = json!({"type": phase.name(), "event": event_json(&event)}).to_string();
        Notice {
            phase,
            event,
            json,
            snapshot,
            active,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_names_the_phase_and_every_field() {
        let n = Notice::new(
            Phase::End,
            Event {
                id: "cam0-1-1".into(),
                stream: "cam0".into(),
                label: "person".into(),
                zones: vec!["door".into()],
                start_ts_ns: 1_000_000_000,
                end_ts_ns: 3_500_000_000,
                best_score: 0.5,
                x: 0.0,
                y: 0.25,
                w: 0.5,
                h: 0.75,
                snapshot_ts_ns: 2_000_000_000,
            },
            None,
            0,
        );
        let v: serde_json::Value = serde_json::from_str(&n.json).expect("json");
        assert_eq!(v["type"], "end");
        assert_eq!(v["event"]["id"], "cam0-1-1");
        assert_eq!(v["event"]["zones"][0], "door");
        assert_eq!(v["event"]["duration"], 2.5);
        assert_eq!(v["event"]["box"]["h"], 0.75);
        assert_eq!(v["event"]["start_ts_ns"], 1_000_000_000u64);
    }
}
