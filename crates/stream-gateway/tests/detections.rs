//! Detections through the real gateway, fed by a stand-in
//! producer and detector on the bus (`test_support::publisher`):
//! `/api/streams/{name}/detections`, `/events/{name}` to many listeners
//! (one of them stalled), the page's WebSocket, the metrics, bad messages
//! on the bus, and the page's "Boxes" toggle in headless Chromium (which
//! also makes the README's screenshot, docs/detection.png).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use test_support::gateway::Gateway;
use test_support::metrics::metric_value;
use test_support::process::Proc;
use test_support::publisher::{Publisher, detection, header};
use test_support::sse::EventReader;
use test_support::webdriver::{Browser, screenshot_path};
use test_support::{free_port, http, media, wait_for};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const SIZE: (u32, u32) = (320, 240);

/// What the stand-in publisher sends, changed by the test as it runs.
struct Script {
    /// Frames of these streams, every 100 ms.
    frames: Vec<&'static str>,
    /// The picture every frame shows, and its size.
    jpeg: Bytes,
    size: (u32, u32),
    /// Detections of cam0 (for the newest frame) while set.
    detecting: AtomicBool,
    /// Boxes in each detections message.
    boxes: std::sync::Mutex<Vec<frame_wire::Detection>>,
    /// Detections messages a second.
    rate: AtomicU64,
    /// Newest frame number sent, and the one the last detections named.
    seq: AtomicU64,
    detected_seq: AtomicU64,
    /// Capture times of recent frames, by number.
    stamps: std::sync::Mutex<VecDeque<(u64, u64)>>,
    /// Raw messages to send once, in order, then forget.
    raw: std::sync::Mutex<Vec<Vec<Bytes>>>,
}

impl Script {
    /// When frame `seq` was captured (sent), if it was recently.
    fn capture_ts(&self, seq: u64) -> Option<u64> {
        let stamps = self.stamps.lock().expect("stamps");
        stamps.iter().find(|(s, _)| *s == seq).map(|(_, t)| *t)
    }

    /// The next frame's number and capture time (now), remembered.
    fn next_frame(&self) -> (u64, u64) {
        let seq = self.seq.load(Ordering::Relaxed) + 1;
        let ts = stream_common::unix_now_ns();
        let mut stamps = self.stamps.lock().expect("stamps");
        stamps.push_back((seq, ts));
        if stamps.len() > 100 {
            stamps.pop_front();
        }
        self.seq.store(seq, Ordering::Relaxed);
        (seq, ts)
    }
}

/// Runs the publisher (a solid picture) until every holder of the returned
/// script has dropped it.
async fn publish(frames: Vec<&'static str>) -> (String, Arc<Script>) {
    let jpeg = media::solid_jpeg(SIZE.0, SIZE.1, [40, 90, 140]);
    publish_picture(frames, jpeg, SIZE).await
}

/// The same, with `jpeg` (`size` pixels) as every frame.
async fn publish_picture(
    frames: Vec<&'static str>,
    jpeg: Bytes,
    size: (u32, u32),
) -> (String, Arc<Script>) {
    let mut p = Publisher::bind().await.expect("bind the test PUB socket");
    let endpoint = p.endpoint.clone();
    let script = Arc::new(Script {
        frames,
        jpeg,
        size,
        detecting: AtomicBool::new(true),
        boxes: std::sync::Mutex::new(vec![
            detection("person", 0.9, [0.1, 0.2, 0.3, 0.6]),
            detection("person", 0.6, [0.5, 0.25, 0.25, 0.5]),
            detection("dog", 0.7, [0.7, 0.7, 0.2, 0.25]),
        ]),
        rate: AtomicU64::new(5),
        seq: AtomicU64::new(0),
        detected_seq: AtomicU64::new(0),
        stamps: std::sync::Mutex::new(VecDeque::new()),
        raw: std::sync::Mutex::new(Vec::new()),
    });
    let s = script.clone();
    tokio::spawn(async move {
        let mut next_frame = Instant::now();
        let mut next_detection = Instant::now();
        while Arc::strong_count(&s) > 1 {
            let now = Instant::now();
            if now >= next_frame {
                let (seq, ts) = s.next_frame();
                for name in &s.frames {
                    let _ = p.frame(&header(name, seq, ts, s.size), &s.jpeg).await;
                }
                next_frame = now + Duration::from_millis(100);
            }
            if now >= next_detection {
                if s.detecting.load(Ordering::Relaxed) {
                    let seq = s.seq.load(Ordering::Relaxed);
                    let ts = s.capture_ts(seq).unwrap_or_default();
                    let boxes = s.boxes.lock().expect("boxes").clone();
                    let h = header("cam0", seq, ts, s.size);
                    p.detections(&h, "test-model", boxes).await.expect("encode");
                    s.detected_seq.store(seq, Ordering::Relaxed);
                }
                let rate = s.rate.load(Ordering::Relaxed).max(1);
                next_detection = now + Duration::from_millis(1000 / rate);
            }
            let raw: Vec<Vec<Bytes>> = std::mem::take(&mut *s.raw.lock().expect("raw"));
            for parts in raw {
                let _ = p.send_raw(parts).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (endpoint, script)
}

async fn gateway(producer: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["--stale-after", "60"];
    args.extend_from_slice(extra);
    let g = Gateway::start(&[producer], &args, &[]);
    g.wait_stream("cam0", Duration::from_secs(20)).await;
    (g.proc, g.addr)
}

async fn detections_json(addr: SocketAddr, name: &str) -> (u16, Value) {
    let r = http::get(addr, &format!("/api/streams/{name}/detections"))
        .await
        .expect("GET detections");
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.head.status, v)
}

async fn metrics(addr: SocketAddr) -> String {
    test_support::metrics::scrape(addr).await.expect("metrics")
}

fn boxes(v: &Value) -> usize {
    v["boxes"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn latest_detections_as_json_empty_without_and_after_going_stale() {
    let (endpoint, script) = publish(vec!["cam0", "cam1"]).await;
    let (gw, addr) = gateway(&endpoint, &["--detections-stale-after", "1"]).await;

    let v = wait_for("cam0's detections", Duration::from_secs(10), || async {
        let (status, v) = detections_json(addr, "cam0").await;
        (status == 200 && boxes(&v) == 3).then_some(v)
    })
    .await;
    assert_eq!(v["stream"], "cam0");
    assert_eq!(v["model"], "test-model");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    let seq = v["seq"].as_u64().expect("seq");
    assert_eq!(
        v["capture_ts_ms"].as_u64(),
        Some(script.capture_ts(seq).expect("a recent frame") / 1_000_000)
    );
    let first = &v["boxes"][0];
    assert_eq!(first["label"], "person");
    for (field, want) in [
        ("score", 0.9),
        ("x", 0.1),
        ("y", 0.2),
        ("w", 0.3),
        ("h", 0.6),
    ] {
        let got = first[field].as_f64().expect("number");
        assert!((got - want).abs() < 1e-6, "{field}: {got} != {want}");
    }
    assert_eq!(v["boxes"][2]["label"], "dog");

    // A stream without detections: an empty list; an unknown one: 404.
    let (status, v) = detections_json(addr, "cam1").await;
    assert_eq!((status, boxes(&v)), (200, 0), "{v}");
    assert!(v["seq"].is_null() && v["model"].is_null(), "{v}");
    assert_eq!(detections_json(addr, "nope").await.0, 404);

    // Counted: messages, and boxes by label.
    script.detecting.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = metrics(addr).await;
    let messages = metric_value(
        &text,
        "gateway_detection_messages_total",
        &["stream=\"cam0\""],
    );
    assert!(messages >= 1.0, "{text}");
    let count = |label: &str| {
        metric_value(
            &text,
            "gateway_detections_total",
            &["stream=\"cam0\"", &format!("label=\"{label}\"")],
        )
    };
    assert_eq!((count("person"), count("dog")), (2.0 * messages, messages));

    // The detector stops: within the stale time the boxes are gone.
    wait_for("stale detections to go", Duration::from_secs(5), || async {
        let (_, v) = detections_json(addr, "cam0").await;
        (boxes(&v) == 0 && v["seq"].is_null()).then_some(())
    })
    .await;
    // And come back with the next message.
    script.detecting.store(true, Ordering::Relaxed);
    wait_for("fresh detections", Duration::from_secs(5), || async {
        (boxes(&detections_json(addr, "cam0").await.1) == 3).then_some(())
    })
    .await;
    drop(gw);
}

#[tokio::test]
async fn detections_of_a_stream_without_frames_are_ignored_and_counted() {
    let (endpoint, script) = publish(vec!["cam0"]).await;
    let (_gw, addr) = gateway(&endpoint, &[]).await;
    let h = header("ghost", 1, stream_common::unix_now_ns(), SIZE);
    let d = frame_wire::Detections {
        model: "m".into(),
        boxes: vec![],
    };
    let parts = frame_wire::encode_detections(&h, &d, None).expect("encode");
    wait_for(
        "ignored detections counted",
        Duration::from_secs(10),
        || {
            script.raw.lock().expect("raw").push(parts.clone());
            async {
                let text = metrics(addr).await;
                (metric_value(&text, "gateway_detection_messages_ignored_total", &[]) > 0.0)
                    .then_some(())
            }
        },
    )
    .await;
    assert_eq!(detections_json(addr, "ghost").await.0, 404);
    assert_eq!(http::status(addr, "/stream/ghost").await, 404);
}

/// Many boxes with long labels: about 30 KB of JSON per message.
fn big_boxes() -> Vec<frame_wire::Detection> {
    (0..256)
        .map(|i| {
            let label = format!("person-{i:03}-{}", "x".repeat(48));
            let f = (i % 16) as f32 / 16.0;
            detection(&label, 0.5, [f, f, 1.0 / 16.0, 1.0 / 16.0])
        })
        .collect()
}

#[tokio::test]
async fn events_reach_fifty_listeners_and_a_stalled_one_holds_back_nobody() {
    let (endpoint, script) = publish(vec!["cam0"]).await;
    *script.boxes.lock().expect("boxes") = big_boxes();
    script.rate.store(20, Ordering::Relaxed);
    let (gw, addr) = gateway(&endpoint, &["--max-clients", "52"]).await;

    let r = http::request(addr, "HEAD", "/events/cam0", &[])
        .await
        .expect("HEAD");
    assert_eq!(r.head.header("content-type"), Some("text/event-stream"));
    assert_eq!(http::status(addr, "/events/nope").await, 404);

    // The stalled listener: a tiny receive buffer, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stalled = socket.connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET /events/cam0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");

    let mut listeners = Vec::new();
    for _ in 0..50 {
        let mut l = EventReader::open(addr, "/events/cam0").await.expect("open");
        assert_eq!(l.head().header("cache-control"), Some("no-cache"));
        let e = l.next_within(Duration::from_secs(5)).await.expect("event");
        assert_eq!(e.event, "detections");
        listeners.push(l);
    }
    // Every listener holds a seat: the 52nd is one too many.
    test_support::stack::wait_viewers(addr, 51, Duration::from_secs(5)).await;
    let _last = EventReader::open(addr, "/events/cam0").await.expect("52nd");
    assert_eq!(http::status(addr, "/events/cam0").await, 503);

    // Let the stalled listener's buffers fill, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = gw.rss_kib().expect("rss");
    let published_before = script.detected_seq.load(Ordering::Relaxed);
    let phase = Instant::now();
    let mut tasks = Vec::new();
    for mut l in listeners {
        let script = script.clone();
        tasks.push(tokio::spawn(async move {
            // Read until 8 s have passed; every event is whole and in order.
            let mut last = 0u64;
            let mut events = 0;
            let mut newest_gap = u64::MAX;
            while phase.elapsed() < Duration::from_secs(8) {
                let e = l.next_within(Duration::from_secs(5)).await.expect("event");
                let v: Value = serde_json::from_str(&e.data).expect("JSON data");
                let seq = v["seq"].as_u64().expect("seq");
                assert!(seq >= last, "events out of order: {seq} after {last}");
                assert_eq!(boxes(&v), 256);
                last = seq;
                events += 1;
                let published = script.detected_seq.load(Ordering::Relaxed);
                newest_gap = newest_gap.min(published.saturating_sub(seq));
            }
            (events, newest_gap)
        }));
    }
    for t in tasks {
        let (events, gap) = t.await.expect("listener");
        // The detector sends 20 a second; a listener held back by the
        // stalled one would get none.
        assert!(events >= 10, "only {events} events in 8 s");
        assert!(gap <= 1, "a listener was {gap} frames behind at best");
    }
    let published = script.detected_seq.load(Ordering::Relaxed) - published_before;
    let rss_after = gw.rss_kib().expect("rss");
    let grown_kib = rss_after.saturating_sub(rss_before);
    // A queue for the stalled listener would hold everything since it
    // stopped: about 30 KB per message.
    let queued_kib = published * 30;
    eprintln!("{published} messages in the phase, RSS {rss_before} -> {rss_after} KiB");
    assert!(
        grown_kib * 4 < queued_kib && grown_kib < 8 * 1024,
        "RSS grew {grown_kib} KiB while {published} messages (~{queued_kib} KiB) were published"
    );

    // The stalled listener, reading at last: what its socket buffers held,
    // then straight to the newest.
    let mut sse_bytes = 0usize;
    let mut reader = tokio::io::BufReader::new(stalled);
    let newest = script.detected_seq.load(Ordering::Relaxed);
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line),
        )
        .await
        .expect("the stalled listener's socket still delivers")
        .expect("read");
        assert!(n > 0, "stream ended");
        sse_bytes += n;
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).expect("whole JSON");
            if v["seq"].as_u64().is_some_and(|s| s >= newest) {
                break;
            }
        }
    }
    assert!(
        sse_bytes < 2 * 1024 * 1024,
        "{sse_bytes} bytes of old events before the newest: a queue"
    );
}

/// With nothing to send, an events listener still gets a comment line
/// every 15 s, so proxies that cut idle connections keep it open.
#[tokio::test]
async fn an_idle_events_listener_gets_a_heartbeat() {
    let (endpoint, script) = publish(vec!["cam0"]).await;
    script.detecting.store(false, Ordering::Relaxed);
    let (_gw, addr) = gateway(&endpoint, &[]).await;
    let mut l = EventReader::open(addr, "/events/cam0").await.expect("open");
    let block = l
        .next_block_within(Duration::from_secs(20))
        .await
        .expect("a heartbeat within 20 s");
    assert_eq!(block, None, "an event, not a heartbeat: {block:?}");
    assert_eq!(l.comments, 1);
}

#[tokio::test]
async fn pages_get_detections_over_their_websocket_only_when_they_ask() {
    let (endpoint, _script) = publish(vec!["cam0"]).await;
    let (_gw, addr) = gateway(&endpoint, &[]).await;
    let open = || async {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("ws");
        ws
    };
    let mut old = open().await;
    let mut new = open().await;
    old.send(Message::text(r#"{"watch":["cam0"]}"#))
        .await
        .expect("send");
    new.send(Message::text(r#"{"watch":["cam0"],"detections":true}"#))
        .await
        .expect("send");
    // The new page: frames and detections, each detections message right
    // before a frame captured at or after the one they were found in.
    let (mut frames, mut detections) = (0, 0);
    let mut found_in: Option<u64> = None;
    while frames < 10 || detections < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(5), new.next())
            .await
            .expect("message in time")
            .expect("open")
            .expect("valid");
        match msg {
            Message::Binary(b) => {
                assert_eq!(b[0], 1);
                let n = usize::from(b[2]);
                let ts = u64::from_le_bytes(b[3 + n..11 + n].try_into().expect("8 bytes"));
                if let Some(ms) = found_in.take() {
                    assert!(
                        ts / 1_000_000 >= ms,
                        "boxes of {ms} ms before a frame of {ts} ns"
                    );
                }
                frames += 1;
            }
            Message::Text(t) => {
                assert!(
                    found_in.is_none(),
                    "two detections messages without a frame"
                );
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                assert_eq!(v["detections"]["stream"], "cam0");
                assert_eq!(boxes(&v["detections"]), 3);
                found_in = v["detections"]["capture_ts_ms"].as_u64();
                detections += 1;
            }
            _ => {}
        }
    }
    // The old page: frames only, as before.
    for _ in 0..15 {
        let msg = tokio::time::timeout(Duration::from_secs(5), old.next())
            .await
            .expect("message in time")
            .expect("open")
            .expect("valid");
        assert!(msg.is_binary(), "an old page got {msg:?}");
    }
}

#[tokio::test]
async fn garbage_and_unknown_kinds_are_counted_and_change_nothing() {
    let (endpoint, script) = publish(vec!["cam0"]).await;
    let (gw, addr) = gateway(&endpoint, &["--subscribe", "all"]).await;
    wait_for("detections", Duration::from_secs(10), || async {
        (boxes(&detections_json(addr, "cam0").await.1) == 3).then_some(())
    })
    .await;
    let valid = header("cam0", 1, stream_common::unix_now_ns(), SIZE);
    let head = Bytes::from(frame_wire::encode_header(&valid).expect("header"));
    let jpeg = media::solid_jpeg(8, 8, [255, 0, 0]);
    let bad: Vec<Vec<Bytes>> = vec![
        // A kind this gateway does not know, otherwise well formed.
        vec![Bytes::from_static(b"x/cam0/"), head.clone(), jpeg.clone()],
        // Detections whose payload is not one.
        vec![
            Bytes::from_static(b"d/cam0/"),
            head.clone(),
            Bytes::from_static(b"\xff\xff\xff\xff not detections"),
        ],
        // Garbage.
        vec![Bytes::from_static(b"d/cam0/ \x00\x01 garbage")],
        vec![Bytes::from_static(b"d//"), head.clone(), jpeg.clone()],
    ];
    let reasons = ["unknown_kind", "bad_detections", "part_count", "bad_topic"];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        script.raw.lock().expect("raw").extend(bad.iter().cloned());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let text = metrics(addr).await;
        let counted = reasons.iter().all(|r| {
            metric_value(
                &text,
                "gateway_invalid_messages_total",
                &[&format!("reason=\"{r}\"")],
            ) > 0.0
        });
        if counted {
            break;
        }
        assert!(Instant::now() < deadline, "not all counted: {text}");
    }
    // Nothing else changed: one stream, its detections as the detector sent them.
    let api: Value =
        serde_json::from_slice(&http::get(addr, "/api/streams").await.expect("api").body)
            .expect("json");
    let names: Vec<&str> = api["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["cam0"]);
    let (_, v) = detections_json(addr, "cam0").await;
    assert_eq!((boxes(&v), v["model"].as_str()), (3, Some("test-model")));
    let warnings = gw.log().matches("dropping invalid message").count();
    assert!(
        (1..40).contains(&warnings),
        "{warnings} warning lines: the log must be rate-limited"
    );
}

/// Debian's darknet package's test picture, and where its people and
/// animals are (pixels of its 640x424): the person as the detector's own
/// test states it.
const PERSON_JPG: &str = "/usr/share/darknet/data/person.jpg";
const PHOTO: (u32, u32) = (640, 424);
const PERSON: [f32; 4] = [183.0, 104.0, 273.0, 382.0];
const DOG: [f32; 4] = [62.0, 262.0, 205.0, 350.0];
const HORSE: [f32; 4] = [398.0, 130.0, 605.0, 348.0];

fn fraction([x0, y0, x1, y1]: [f32; 4]) -> [f32; 4] {
    let (w, h) = (PHOTO.0 as f32, PHOTO.1 as f32);
    [x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h]
}

/// The share of pixels on the person box's left, right and bottom edges
/// (the top has the label) that have the box's colour, in cam0's tile.
fn outline_script() -> String {
    let [x, y, w, h] = fraction(PERSON);
    format!(
        "const el = document.querySelector('.tile[data-name=cam0] canvas'); if (!el) return null;
        const W = el.width, H = el.height, d = el.getContext('2d').getImageData(0, 0, W, H).data;
        const x = Math.round({x} * W), y = Math.round({y} * H), w = Math.round({w} * W), h = Math.round({h} * H);
        const box = (X, Y) => {{ const i = (Y * W + X) * 4; return d[i] > 200 && d[i + 1] > 170 && d[i + 2] < 110; }};
        let hit = 0, n = 0;
        for (let Y = y + 4; Y < y + h - 4; Y++) for (const X of [x, x + w]) {{ n++; if (box(X, Y)) hit++; }}
        for (let X = x + 4; X < x + w - 4; X++) {{ n++; if (box(X, y + h)) hit++; }}
        const badge = document.querySelector('.tile[data-name=cam0] .badge');
        return {{ share: hit / n, width: W, badge: badge.hidden ? null : badge.textContent,
          pressed: document.getElementById('boxes').getAttribute('aria-pressed'), drawn: window.viewer.cams.get('cam0').drawn }};"
    )
}

#[tokio::test]
async fn the_page_draws_boxes_over_the_live_picture_when_the_toggle_is_on() {
    let (jpeg, size) = match std::fs::read(PERSON_JPG) {
        Ok(b) => (Bytes::from(b), PHOTO),
        Err(e) => {
            eprintln!("{PERSON_JPG}: {e} (apt-get install darknet); a plain picture instead");
            (media::solid_jpeg(PHOTO.0, PHOTO.1, [40, 90, 140]), PHOTO)
        }
    };
    let (endpoint, script) = publish_picture(vec!["cam0"], jpeg, size).await;
    *script.boxes.lock().expect("boxes") = vec![
        detection("person", 0.93, fraction(PERSON)),
        detection("dog", 0.81, fraction(DOG)),
        detection("horse", 0.77, fraction(HORSE)),
    ];
    let (_gw, addr) = gateway(&endpoint, &[]).await;
    let b = Browser::launch().await.expect("browser");
    b.goto(&format!("http://{addr}/")).await.expect("open page");
    let script_js = outline_script();
    let look = || async { b.eval(&script_js).await.ok().filter(|v| !v.is_null()) };

    // Off (the default): the picture alone, no badge.
    let off = wait_for("cam0 drawn", Duration::from_secs(20), || async {
        let v = look().await?;
        (v["drawn"].as_u64() > Some(3)).then_some(v)
    })
    .await;
    assert_eq!(off["pressed"], "false");
    assert_eq!(off["width"], 640);
    assert!(off["badge"].is_null(), "{off}");
    let share_off = off["share"].as_f64().expect("share");
    assert!(share_off < 0.2, "the box's colour without boxes: {off}");

    // On: the box's outline over the live picture, and the badge counts
    // people (not the dog or the horse).
    b.eval("document.getElementById('boxes').click(); return null;")
        .await
        .expect("click");
    let on = wait_for("boxes drawn", Duration::from_secs(10), || async {
        let v = look().await?;
        (v["share"].as_f64()? > 0.8 && v["badge"] == "people now: 1").then_some(v)
    })
    .await;
    eprintln!(
        "outline pixels of the box colour: off {share_off:.2}, on {}",
        on["share"]
    );
    // Drawn over the frames that keep coming, not once.
    let drawn = on["drawn"].as_u64().expect("drawn");
    wait_for("more frames with boxes", Duration::from_secs(5), || async {
        let v = look().await?;
        (v["drawn"].as_u64()? >= drawn + 5 && v["share"].as_f64()? > 0.8).then_some(())
    })
    .await;
    // The screenshot once the page has settled (frame rate known, status line up to date).
    wait_for("the page settled", Duration::from_secs(10), || async {
        let v = b
            .eval("return window.viewer.fps('cam0') !== null && !document.getElementById('status').textContent.includes('connecting');")
            .await
            .ok()?;
        (v == true).then_some(())
    })
    .await;
    let png = b.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(screenshot_path("detection-chromium.png"), &png).expect("save screenshot");
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let docs = test_support::process::workspace_root().join("docs/detection.png");
        std::fs::write(&docs, &png).expect("save docs/detection.png");
    }

    // Remembered: a reload comes back with boxes on.
    b.goto(&format!("http://{addr}/")).await.expect("reload");
    wait_for("boxes after a reload", Duration::from_secs(20), || async {
        let v = look().await?;
        (v["pressed"] == "true" && v["share"].as_f64()? > 0.8).then_some(())
    })
    .await;

    // The detector stops: the boxes go within about a second of the
    // stream's time, the badge with the gateway's stale limit.
    script.detecting.store(false, Ordering::Relaxed);
    wait_for(
        "boxes gone with the detector",
        Duration::from_secs(10),
        || async {
            let v = look().await?;
            (v["share"].as_f64()? < 0.2 && v["badge"].is_null()).then_some(())
        },
    )
    .await;
    script.detecting.store(true, Ordering::Relaxed);
    wait_for("boxes back", Duration::from_secs(10), || async {
        (look().await?["share"].as_f64()? > 0.8).then_some(())
    })
    .await;

    // Off again: the picture alone.
    b.eval("document.getElementById('boxes').click(); return null;")
        .await
        .expect("click");
    wait_for("boxes off", Duration::from_secs(5), || async {
        let v = look().await?;
        (v["pressed"] == "false" && v["share"].as_f64()? < 0.2 && v["badge"].is_null())
            .then_some(())
    })
    .await;
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    w * h / (area(a) + area(b) - w * h)
}

/// The whole chain: a producer showing darknet's person.jpg, the real
/// object-detector (its model from scripts/model.sh), and a gateway
/// subscribed to both: the person is in `/api/streams/cam0/detections`.
#[tokio::test]
async fn end_to_end_the_detector_finds_the_person_and_the_gateway_serves_it() {
    let dir = media::temp_dir("detections-e2e");
    std::fs::copy(PERSON_JPG, dir.join("person.jpg"))
        .unwrap_or_else(|e| panic!("{PERSON_JPG}: {e}: install Debian's darknet package"));
    let producer = test_support::producer::Producer::start(&[
        "--source",
        dir.to_str().expect("utf-8 path"),
        "--fps",
        "10",
    ]);
    let detector_bus = format!("tcp://127.0.0.1:{}", free_port());
    let detector_metrics = format!("127.0.0.1:{}", free_port());
    // The model is its default, where scripts/model.sh leaves it; without
    // it the detector stops at once and says what to run.
    let mut detector = Proc::start(
        "object-detector",
        &[
            "--producer",
            &producer.endpoint,
            "--bind",
            &detector_bus,
            "--metrics-listen",
            &detector_metrics,
        ],
        &[],
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let listen = addr.to_string();
    let _gw = Proc::start(
        "stream-gateway",
        &[
            "--producer",
            &producer.endpoint,
            "--producer",
            &detector_bus,
            "--listen",
            &listen,
        ],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let person = loop {
        if let Some(status) = detector.try_wait() {
            panic!("object-detector exited ({status}):\n{}", detector.log());
        }
        let (status, v) = match http::get(addr, "/api/streams/cam0/detections").await {
            Ok(r) => (
                r.head.status,
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            ),
            Err(_) => (0, Value::Null),
        };
        let found = (status == 200)
            .then(|| v["boxes"].as_array().cloned())
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .find(|b| b["label"] == "person");
        if let Some(b) = found {
            break (v, b);
        }
        assert!(
            Instant::now() < deadline,
            "no person in /api/streams/cam0/detections within 30 s: {status} {v}\ndetector log:\n{}",
            detector.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (v, b) = person;
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(424))
    );
    let f = |k: &str| b[k].as_f64().expect("number") as f32;
    let (w, h) = (PHOTO.0 as f32, PHOTO.1 as f32);
    let found = [
        f("x") * w,
        f("y") * h,
        (f("x") + f("w")) * w,
        (f("y") + f("h")) * h,
    ];
    let overlap = iou(found, PERSON);
    eprintln!(
        "person {found:?}, score {}, IoU {overlap:.2} with {PERSON:?}",
        f("score")
    );
    assert!(f("score") >= 0.5, "{b}");
    assert!(
        overlap >= 0.5,
        "box {found:?} against {PERSON:?}: IoU {overlap}"
    );
    let text = metrics(addr).await;
    assert!(
        metric_value(
            &text,
            "gateway_detections_total",
            &["stream=\"cam0\"", "label=\"person\""]
        ) >= 1.0
    );
}
