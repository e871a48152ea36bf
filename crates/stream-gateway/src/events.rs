//! The recent events of each stream, beside its detections: what the event
//! stage (`e/<name>/` messages, `frame_wire::EventMessage`) reported of the
//! objects it followed in it, as starts, updates and ends.
//!
//! Each message is turned, once, into everything anyone is sent: the
//! Server-Sent Events chunk of `/events/{name}` (`event: event`), the
//! WebSocket text message for pages (docs/websocket.md), and the JSON of
//! `/api/streams/{name}/events` (the recent list, newest first, at most
//! `--recent-events` a stream, one entry per event id, updated in place).
//! Every message carries the whole event in the one shape every consumer
//! uses (`frame_wire::Event::json`), wrapped as the event stage sends it to
//! MQTT and webhooks: `{"type":"start|update|end","event":{...}}`.
//! Snapshots are not kept here (the recorder keeps them).
//!
//! The latest change is a `watch` slot like the detections': the receive
//! task overwrites it, the fan-out writers (`serve/writer.rs`) send the
//! newest to whoever can take it, nothing queues per listener. A listener
//! still writing an older message may skip a phase (an update, even a
//! start); since each message is the whole event, it still knows it all.
//!
//! Events are kept only for streams this gateway already has; those for
//! any other stream are dropped and counted
//! (`gateway_event_messages_ignored_total`), so an event stage cannot make
//! streams appear.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use frame_wire::{EventMessage, Phase};
use prometheus::IntCounter;
use serde::Serialize;
use tokio::sync::watch;

use crate::detections::ws_text;

/// One event message as every listener gets it, built once.
#[derive(Debug)]
pub struct Prepared {
    /// `event: event\ndata: {"type":..,"event":{..}}\n\n`, for `/events/{name}`.
    pub sse: Bytes,
    /// A whole WebSocket text frame, `{"event":{"type":..,"event":{..}}}`.
    pub ws: Bytes,
    /// +1 per message of the stream; 0 before the first.
    pub version: u64,
}

impl Prepared {
    fn none() -> Prepared {
        Prepared {
            sse: Bytes::new(),
            ws: Bytes::new(),
            version: 0,
        }
    }
}

/// `{"type":..,"event":..}`, as the event stage sends it to MQTT and webhooks.
#[derive(Serialize)]
struct Change<'a> {
    #[serde(rename = "type")]
    phase: &'static str,
    event: frame_wire::event::EventJson<'a>,
}

/// The metrics of one stream's events: messages received by phase.
#[derive(Clone)]
pub struct EventMetrics {
    pub start: IntCounter,
    pub update: IntCounter,
    pub end: IntCounter,
}

impl EventMetrics {
    fn of(&self, phase: Phase) -> &IntCounter {
        match phase {
            Phase::Start => &self.start,
            Phase::Update => &self.update,
            Phase::End => &self.end,
        }
    }
}

/// One kept event: its id, when it started (the list's order) and its JSON.
struct Kept {
    id: String,
    start_ts_ns: u64,
    json: Vec<u8>,
}

struct List {
    events: VecDeque<Kept>,
    /// `{"stream":..,"events":[..]}`, rebuilt once per change.
    json: Bytes,
    version: u64,
}

/// One stream's recent events and latest change.
pub struct Recent {
    stream: String,
    keep: usize,
    list: Mutex<List>,
    slot: watch::Sender<Arc<Prepared>>,
    metrics: EventMetrics,
}

impl Recent {
    /// Keeps at most `keep` events of `stream`.
    pub fn new(stream: &str, keep: usize, metrics: EventMetrics) -> Recent {
        Recent {
            stream: stream.to_string(),
            keep,
            list: Mutex::new(List {
                events: VecDeque::new(),
                json: list_json(stream, &VecDeque::new()),
                version: 0,
            }),
            slot: watch::Sender::new(Arc::new(Prepared::none())),
            metrics,
        }
    }

    /// What a listener watches: the newest prepared change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Prepared>> {
        self.slot.subscribe()
    }

    /// `{"stream":..,"events":[..]}`, newest first.
    pub fn json(&self) -> Bytes {
        self.lock().json.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, List> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An event message of this stream (its `event.stream` is this one's,
    /// checked by the caller): kept, prepared once and exposed.
    pub fn publish(&self, m: &EventMessage) {
        self.metrics.of(m.phase).inc();
        // Serializing plain strings and finite numbers cannot fail.
        let json = serde_json::to_vec(&m.event.json()).unwrap_or_default();
        let change = serde_json::to_vec(&Change {
            phase: m.phase.name(),
            event: m.event.json(),
        })
        .unwrap_or_default();
        let mut sse = BytesMut::with_capacity(change.len() + 21);
        sse.put_slice(b"event: event\ndata: ");
        sse.put_slice(&change);
        sse.put_slice(b"\n\n");
        let mut text = Vec::with_capacity(change.len() + 10);
        text.extend_from_slice(b"{\"event\":");
        text.extend_from_slice(&change);
        text.push(b'}');
        let mut list = self.lock();
        let kept = Kept {
            id: m.event.id.clone(),
            start_ts_ns: m.event.start_ts_ns,
            json,
        };
        match list.events.iter().position(|k| k.id == kept.id) {
            Some(i) => list.events[i] = kept,
            None => {
                // Newest (latest start) first.
                let at = list
                    .events
                    .iter()
                    .position(|k| k.start_ts_ns <= kept.start_ts_ns)
                    .unwrap_or(list.events.len());
                list.events.insert(at, kept);
                list.events.truncate(self.keep);
            }
        }
        list.json = list_json(&self.stream, &list.events);
        list.version += 1;
        let prepared = Prepared {
            sse: sse.freeze(),
            ws: ws_text(&text),
            version: list.version,
        };
        // Under the list's lock, so the slot's order is the list's.
        self.slot.send_replace(Arc::new(prepared));
    }
}

fn list_json(stream: &str, events: &VecDeque<Kept>) -> Bytes {
    let name = serde_json::to_string(stream).unwrap_or_default();
    let mut b = Vec::with_capacity(32 + events.iter().map(|k| k.json.len() + 1).sum::<usize>());
    b.extend_from_slice(b"{\"stream\":");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b",\"events\":[");
    for (i, k) in events.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.extend_from_slice(&k.json);
    }
    b.extend_from_slice(b"]}");
    Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame_wire::Event;
    use serde_json::Value;

    fn recent(keep: usize) -> (Recent, EventMetrics) {
        let c = |n: &str| IntCounter::new(n, n).expect("counter");
        let metrics = EventMetrics {
            start: c("s"),
            update: c("u"),
            end: c("e"),
        };
        (Recent::new("cam0", keep, metrics.clone()), metrics)
    }

    fn message(id: &str, start_s: u64, phase: Phase) -> EventMessage {
        EventMessage {
            phase,
            event: Event {
                id: id.into(),
                stream: "cam0".into(),
                label: "person".into(),
                zones: vec!["door".into()],
                start_ts_ns: start_s * 1_000_000_000,
                end_ts_ns: start_s * 1_000_000_000 + 1_500_000_000,
                best_score: 0.75,
                x: 0.25,
                y: 0.25,
                w: 0.5,
                h: 0.5,
                snapshot_ts_ns: start_s * 1_000_000_000,
            },
            snapshot: vec![0xFF, 0xD8, 0xFF, 0xD9],
        }
    }

    fn ids(r: &Recent) -> Vec<String> {
        let v: Value = serde_json::from_slice(&r.json()).expect("JSON");
        assert_eq!(v["stream"], "cam0");
        v["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_string())
            .collect()
    }

    #[test]
    fn one_message_is_prepared_for_every_kind_of_listener() {
        let (r, metrics) = recent(50);
        assert_eq!(&r.json()[..], br#"{"stream":"cam0","events":[]}"#);
        assert_eq!(r.subscribe().borrow().version, 0);
        let m = message("cam0-1", 1_700_000_000, Phase::Start);
        r.publish(&m);
        let p = r.subscribe().borrow().clone();
        assert_eq!(p.version, 1);
        let change = std::str::from_utf8(&p.sse)
            .expect("utf-8")
            .strip_prefix("event: event\ndata: ")
            .and_then(|s| s.strip_suffix("\n\n"))
            .expect("an SSE event")
            .to_string();
        let v: Value = serde_json::from_str(&change).expect("JSON");
        assert_eq!(v["type"], "start");
        // Exactly the shape the event stage sends everyone else.
        let want = serde_json::to_value(m.event.json()).expect("EventJson");
        assert_eq!(v["event"], want);
        assert_eq!(v["event"]["box"]["w"], 0.5);
        assert_eq!(v["event"]["duration"], 1.5);
        let text = format!("{{\"event\":{change}}}");
        assert_eq!(&p.ws[..2], &[0x81, 126]);
        assert_eq!(&p.ws[4..], text.as_bytes());
        let list: Value = serde_json::from_slice(&r.json()).expect("JSON");
        assert_eq!(list["events"][0], want);
        assert!(
            !String::from_utf8_lossy(&r.json()).contains("snapshot_url"),
            "snapshots are not kept"
        );
        assert_eq!(metrics.start.get(), 1);
    }

    #[test]
    fn the_list_is_newest_first_one_entry_per_event_and_bounded() {
        let (r, metrics) = recent(3);
        r.publish(&message("a", 10, Phase::Start));
        r.publish(&message("b", 20, Phase::Start));
        r.publish(&message("a", 10, Phase::Update));
        assert_eq!(ids(&r), ["b", "a"]);
        let mut end = message("a", 10, Phase::End);
        end.event.end_ts_ns += 5_000_000_000;
        r.publish(&end);
        assert_eq!(ids(&r), ["b", "a"]);
        let v: Value = serde_json::from_slice(&r.json()).expect("JSON");
        assert_eq!(v["events"][1]["duration"], 6.5, "updated in place");
        // Out of order (a late start): still by start time.
        r.publish(&message("c", 15, Phase::Start));
        assert_eq!(ids(&r), ["b", "c", "a"]);
        r.publish(&message("d", 30, Phase::Start));
        assert_eq!(ids(&r), ["d", "b", "c"], "the oldest went");
        assert_eq!(r.subscribe().borrow().version, 6);
        assert_eq!(
            (metrics.start.get(), metrics.update.get(), metrics.end.get()),
            (4, 1, 1)
        );
    }
}
