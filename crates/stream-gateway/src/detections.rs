//! The latest detections of each stream, beside its latest-frame slot: what
//! a detector (`d/<name>/` messages, docs/wire-format.md) last found in it.
//!
//! Each message is turned, once, into everything anyone is sent: the JSON
//! of `/api/streams/{name}/detections`, the Server-Sent Events chunk of
//! `/events/{name}`, and the WebSocket text message for pages
//! (docs/websocket.md). The slot is a `watch` channel like the frame slot:
//! the receive task overwrites it, the fan-out writers (`serve/writer.rs`)
//! send the newest to whoever can take it, nothing queues per listener.
//!
//! Detections are kept only for streams this gateway already has (a frame
//! or a preview arrived); those for any other stream are dropped and counted
//! (`gateway_detection_messages_ignored_total`), so a detector cannot make
//! streams appear. Detections older than `--detections-stale-after` (3 s)
//! are replaced by an empty set, sent to listeners too, so boxes do not
//! stay on screen when the detector stops.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use frame_wire::{Detection, Detections, FrameHeader};
use prometheus::{IntCounter, IntCounterVec};
use serde::Serialize;
use tokio::sync::watch;

/// Distinct `label` values counted per stream; further labels are counted
/// as `other`, so a detector's vocabulary cannot grow the metrics unbounded.
const MAX_LABELS: usize = 32;

/// One detections message as every listener gets it, built once.
#[derive(Debug)]
pub struct Prepared {
    /// The JSON object (`/api/streams/{name}/detections`).
    pub json: Bytes,
    /// `event: detections\ndata: <json>\n\n`, for `/events/{name}`.
    pub sse: Bytes,
    /// A whole WebSocket text frame, `{"detections":<json>}`.
    pub ws: Bytes,
    /// +1 per message (and per expiry) of the stream; 0 before the first.
    pub version: u64,
    /// When it arrived; `None` for the empty set (none yet, or expired).
    pub received: Option<Instant>,
}

/// The JSON body, with `null`s when there are no detections.
#[derive(Serialize)]
struct Body<'a> {
    stream: &'a str,
    seq: Option<u64>,
    capture_ts_ms: Option<u64>,
    width: Option<u32>,
    height: Option<u32>,
    model: Option<&'a str>,
    boxes: &'a [Detection],
}

impl Prepared {
    fn build(body: &Body<'_>, version: u64, received: Option<Instant>) -> Prepared {
        // Serializing plain strings and finite numbers cannot fail.
        let json = serde_json::to_vec(body).unwrap_or_default();
        let mut sse = BytesMut::with_capacity(json.len() + 26);
        sse.put_slice(b"event: detections\ndata: ");
        sse.put_slice(&json);
        sse.put_slice(b"\n\n");
        let mut text = Vec::with_capacity(json.len() + 15);
        text.extend_from_slice(b"{\"detections\":");
        text.extend_from_slice(&json);
        text.push(b'}');
        Prepared {
            ws: ws_text(&text),
            sse: sse.freeze(),
            json: Bytes::from(json),
            version,
            received,
        }
    }

    fn empty(stream: &str, version: u64) -> Prepared {
        let body = Body {
            stream,
            seq: None,
            capture_ts_ms: None,
            width: None,
            height: None,
            model: None,
            boxes: &[],
        };
        Prepared::build(&body, version, None)
    }

    /// True when it holds detections younger than `max_age`.
    pub fn fresh(&self, max_age: Duration) -> bool {
        self.received.is_some_and(|t| t.elapsed() < max_age)
    }
}

/// An unmasked WebSocket text frame (FIN, opcode 1) carrying `payload`.
pub(crate) fn ws_text(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 10);
    b.put_u8(0x81);
    match payload.len() {
        n @ 0..=125 => b.put_u8(n as u8),
        n @ 126..=0xFFFF => {
            b.put_u8(126);
            b.put_u16(n as u16);
        }
        n => {
            b.put_u8(127);
            b.put_u64(n as u64);
        }
    }
    b.put_slice(payload);
    b.freeze()
}

/// The metrics of one stream's detections.
#[derive(Clone)]
pub struct DetectionMetrics {
    /// `gateway_detection_messages_total{stream}`.
    pub messages: IntCounter,
    /// `gateway_detections_total{stream,label}`.
    pub boxes: IntCounterVec,
}

/// One stream's latest detections.
pub struct Latest {
    stream: String,
    slot: watch::Sender<std::sync::Arc<Prepared>>,
    version: AtomicU64,
    metrics: DetectionMetrics,
    labels: Mutex<HashMap<String, IntCounter>>,
    /// The empty answer, made once.
    none: Bytes,
}

impl Latest {
    pub fn new(stream: &str, metrics: DetectionMetrics) -> Latest {
        let empty = Prepared::empty(stream, 0);
        Latest {
            stream: stream.to_string(),
            none: empty.json.clone(),
            slot: watch::Sender::new(std::sync::Arc::new(empty)),
            version: AtomicU64::new(0),
            metrics,
            labels: Mutex::new(HashMap::new()),
        }
    }

    /// The labels counted for this stream (`gateway_detections_total`).
    pub fn labels(&self) -> Vec<String> {
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        labels.keys().cloned().collect()
    }

    /// What a listener watches: the newest prepared message.
    pub fn subscribe(&self) -> watch::Receiver<std::sync::Arc<Prepared>> {
        self.slot.subscribe()
    }

    /// The JSON of the latest detections, or of none when they are older
    /// than `max_age`.
    pub fn json(&self, max_age: Duration) -> Bytes {
        let latest = self.slot.borrow();
        if latest.fresh(max_age) {
            latest.json.clone()
        } else {
            self.none.clone()
        }
    }

    /// A detections message for this stream: prepare it once and expose it.
    pub fn publish(&self, header: &FrameHeader, detections: &Detections) {
        let body = Body {
            stream: &self.stream,
            seq: Some(header.seq),
            capture_ts_ms: Some(header.capture_ts_ns / 1_000_000),
            width: Some(header.width),
            height: Some(header.height),
            model: Some(&detections.model),
            boxes: &detections.boxes,
        };
        let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        let prepared = Prepared::build(&body, version, Some(Instant::now()));
        self.slot.send_replace(std::sync::Arc::new(prepared));
        self.count(detections);
    }

    /// Replaces detections older than `max_age` with the empty set (sent to
    /// listeners like any message); does nothing otherwise.
    pub fn expire(&self, max_age: Duration) {
        let stale = {
            let latest = self.slot.borrow();
            latest.received.is_some() && !latest.fresh(max_age)
        };
        if stale {
            let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
            self.slot
                .send_replace(std::sync::Arc::new(Prepared::empty(&self.stream, version)));
        }
    }

    fn count(&self, detections: &Detections) {
        self.metrics.messages.inc();
        let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        for b in &detections.boxes {
            let label = if labels.contains_key(&b.label) || labels.len() < MAX_LABELS {
                b.label.as_str()
            } else {
                "other"
            };
            if let Some(c) = labels.get(label) {
                c.inc();
                continue;
            }
            let c = self
                .metrics
                .boxes
                .with_label_values(&[self.stream.as_str(), label]);
            c.inc();
            labels.insert(label.to_string(), c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest() -> (Latest, IntCounterVec) {
        let boxes =
            IntCounterVec::new(prometheus::Opts::new("d", "d"), &["stream", "label"]).expect("vec");
        let metrics = DetectionMetrics {
            messages: IntCounter::new("m", "m").expect("counter"),
            boxes: boxes.clone(),
        };
        (Latest::new("cam0", metrics), boxes)
    }

    fn header() -> FrameHeader {
        FrameHeader {
            version: frame_wire::KIND_VERSION,
            seq: 42,
            capture_ts_ns: 1_700_000_000_123_456_789,
            width: 640,
            height: 480,
            producer_id: 7,
            stream: "cam0".into(),
        }
    }

    fn person(score: f32) -> Detection {
        Detection {
            label: "person".into(),
            score,
            x: 0.25,
            y: 0.5,
            w: 0.5,
            h: 0.25,
        }
    }

    #[test]
    fn one_message_is_prepared_for_every_kind_of_listener() {
        let (l, boxes) = latest();
        let none = r#"{"stream":"cam0","seq":null,"capture_ts_ms":null,"width":null,"height":null,"model":null,"boxes":[]}"#;
        assert_eq!(&l.json(Duration::from_secs(3))[..], none.as_bytes());
        let d = Detections {
            model: "ssd".into(),
            boxes: vec![person(0.75), person(0.5)],
        };
        l.publish(&header(), &d);
        let json = r#"{"stream":"cam0","seq":42,"capture_ts_ms":1700000000123,"width":640,"height":480,"model":"ssd","boxes":[{"label":"person","score":0.75,"x":0.25,"y":0.5,"w":0.5,"h":0.25},{"label":"person","score":0.5,"x":0.25,"y":0.5,"w":0.5,"h":0.25}]}"#;
        assert_eq!(&l.json(Duration::from_secs(3))[..], json.as_bytes());
        let p = l.subscribe().borrow().clone();
        assert_eq!(p.version, 1);
        assert_eq!(p.sse, format!("event: detections\ndata: {json}\n\n"));
        let text = format!("{{\"detections\":{json}}}");
        assert_eq!(&p.ws[..2], &[0x81, 126]);
        assert_eq!(
            usize::from(u16::from_be_bytes([p.ws[2], p.ws[3]])),
            text.len()
        );
        assert_eq!(&p.ws[4..], text.as_bytes());
        assert_eq!(boxes.with_label_values(&["cam0", "person"]).get(), 2);
        // Too old: the empty answer, and listeners are sent it once.
        assert_eq!(&l.json(Duration::ZERO)[..], none.as_bytes());
        l.expire(Duration::ZERO);
        let p = l.subscribe().borrow().clone();
        assert_eq!((p.version, &p.json[..]), (2, none.as_bytes()));
        l.expire(Duration::ZERO);
        assert_eq!(l.subscribe().borrow().version, 2, "expired once");
    }

    #[test]
    fn labels_beyond_the_cap_are_counted_as_other() {
        let (l, boxes) = latest();
        let many = (0..MAX_LABELS + 5)
            .map(|i| Detection {
                label: format!("thing{i}"),
                ..person(0.9)
            })
            .collect();
        l.publish(
            &header(),
            &Detections {
                model: "m".into(),
                boxes: many,
            },
        );
        assert_eq!(boxes.with_label_values(&["cam0", "other"]).get(), 5);
        assert_eq!(boxes.with_label_values(&["cam0", "thing0"]).get(), 1);
    }
}
