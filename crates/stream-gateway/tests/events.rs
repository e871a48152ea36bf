//! Events through the real gateway. The whole chain first: a real producer
//! playing darknet's person.jpg then dog.jpg (looped), the real detector,
//! the real event stage, and a gateway with the stage's endpoint among its
//! producers: an events listener (`/events/cam0`) and a WebSocket page
//! watching cam0 get the event's start and then its end, and
//! `/api/streams/cam0/events` lists it. Then, with a stand-in event stage
//! (`test_support::publisher`): events of a stream the gateway does not
//! have are ignored and counted, and the page lists
//! the event and shows a toast when it starts, in Chromium, Firefox and
//! WebKit. With the real recorder (thumbnails, a click plays the event's
//! recording): crates/frame-recorder/tests/page_events.rs, whose Chromium
//! screenshot is docs/events.png.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use frame_wire::{Event, EventMessage, Phase};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use test_support::detector::{Detector, darknet_scene_dir};
use test_support::events::EventStage;
use test_support::gateway::Gateway;
use test_support::producer::Producer;
use test_support::publisher::{Publisher, header};
use test_support::sse::EventReader;
use test_support::webdriver::{Browser, BrowserKind, screenshot_path};
use test_support::{http, media, wait_for};
use tokio_tungstenite::tungstenite::Message;

/// Long enough for the first event: the model loads, the detector and the
/// stage connect, all on a shared, busy machine.
const FIRST_EVENT: Duration = Duration::from_secs(120);
/// The person is shown for 3 s, then the dog for 4 s: an event ends about
/// a second after the person goes.
const EVENT_END: Duration = Duration::from_secs(40);

async fn recent(addr: std::net::SocketAddr, name: &str) -> (u16, Value) {
    let r = http::get(addr, &format!("/api/streams/{name}/events"))
        .await
        .expect("GET events");
    (
        r.head.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// `{"type":..,"event":{..}}`: its type and the event's id.
fn phase_and_id(v: &Value) -> (String, String) {
    (
        v["type"].as_str().unwrap_or_default().to_string(),
        v["event"]["id"].as_str().unwrap_or_default().to_string(),
    )
}

/// Reads the listener until a start and then the end of the same event
/// arrived; returns that start and end.
async fn start_then_end(sse: &mut EventReader) -> (Value, Value) {
    let mut started: Option<Value> = None;
    let deadline = tokio::time::Instant::now() + FIRST_EVENT + EVENT_END;
    while tokio::time::Instant::now() < deadline {
        let Ok(e) = sse.next_within(Duration::from_secs(30)).await else {
            continue;
        };
        if e.event == "detections" {
            continue;
        }
        assert_eq!(e.event, "event", "{e:?}");
        let v: Value = serde_json::from_str(&e.data).expect("JSON data");
        let (phase, id) = phase_and_id(&v);
        assert!(["start", "update", "end"].contains(&phase.as_str()), "{v}");
        assert!(!id.is_empty(), "{v}");
        match (&started, phase.as_str()) {
            (None, "start") => started = Some(v),
            (Some(s), "end") if phase_and_id(s).1 == id => {
                return (started.take().expect("started"), v);
            }
            _ => {}
        }
    }
    panic!("/events/cam0: no start and end of one event in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_event_reaches_listeners_pages_and_the_recent_list() {
    let scene = darknet_scene_dir(&[("person.jpg", 30), ("dog.jpg", 40)]);
    let producer = Producer::start(&["--source", scene.arg(), "--fps", "10"]);
    let detector = Detector::start(&[&producer.endpoint], &["--detect-fps", "5"]);
    let stage = EventStage::start(
        &[&detector.endpoint],
        &[&producer.endpoint],
        &["--event-min-seconds", "0.5", "--event-end-after", "1"],
    );
    let gw = Gateway::start(
        &[&producer.endpoint, &detector.endpoint, &stage.endpoint],
        &["--stale-after", "60"],
        &[],
    );
    gw.wait_stream("cam0", Duration::from_secs(30)).await;
    let addr = gw.addr;
    let (status, v) = recent(addr, "cam0").await;
    assert_eq!(status, 200);
    assert_eq!(v["stream"], "cam0");
    assert!(v["events"].is_array(), "{v}");
    assert_eq!(recent(addr, "nope").await.0, 404);

    // A page watching cam0 (frames and events), then an events listener.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("ws");
    ws.send(Message::text(r#"{"watch":["cam0"],"fps":2}"#))
        .await
        .expect("send");
    let (ws_tx, mut ws_rx) = tokio::sync::mpsc::unbounded_channel();
    let (frame_tx, frame_rx) = tokio::sync::oneshot::channel();
    let ws_task = tokio::spawn(async move {
        let mut frames = 0u64;
        let mut first = Some(frame_tx);
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                    let _ = ws_tx.send((v, frames));
                }
                Message::Binary(_) => {
                    frames += 1;
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
        }
    });
    // Its first frame: it is watching, before the listener joins.
    tokio::time::timeout(Duration::from_secs(20), frame_rx)
        .await
        .expect("a frame on the WebSocket in time")
        .expect("the socket's task");
    let mut sse = EventReader::open(addr, "/events/cam0").await.expect("open");

    let (start, end) = start_then_end(&mut sse).await;
    let id = phase_and_id(&start).1;
    let e = &start["event"];
    assert_eq!(e["stream"], "cam0");
    assert_eq!(e["label"], "person");
    assert!(e["score"].as_f64().is_some_and(|s| s >= 0.5), "{e}");
    for field in ["start", "end", "duration", "start_ts_ns", "end_ts_ns"] {
        assert!(e[field].is_number(), "{field} in {e}");
    }
    assert!(e["box"]["w"].as_f64().is_some_and(|w| w > 0.0), "{e}");
    assert_eq!(end["event"]["start_ts_ns"], e["start_ts_ns"]);
    let duration = end["event"]["duration"].as_f64().expect("duration");
    assert!(
        (0.5..=3.5).contains(&duration),
        "{duration} s for a 3 s appearance"
    );

    // The page (watching since before the listener joined) got them too,
    // as {"event": {...}}, between its frames.
    let mut page = Vec::new();
    let ws_end = loop {
        let (v, frames) = tokio::time::timeout(Duration::from_secs(30), ws_rx.recv())
            .await
            .expect("the event's end on the WebSocket in time")
            .expect("the socket's task");
        assert!(v.get("detections").is_none(), "never asked for: {v}");
        assert!(frames > 0, "an event before any frame: {v}");
        let change = v["event"].clone();
        let (phase, got) = phase_and_id(&change);
        assert!(!got.is_empty(), "{v}");
        if got == id {
            page.push(phase.clone());
            if phase == "end" {
                break change;
            }
        }
    };
    assert_eq!(page.first().map(String::as_str), Some("start"), "{page:?}");
    assert_eq!(ws_end["event"], end["event"]);
    ws_task.abort();

    // The recent list has it, ended (its duration as the end said).
    let (_, list) = recent(addr, "cam0").await;
    let kept = list["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {list}"))
        .clone();
    assert!(
        kept["end_ts_ns"].as_u64() >= end["event"]["end_ts_ns"].as_u64(),
        "{kept}"
    );
    assert!(kept.get("snapshot").is_none(), "no snapshots kept: {kept}");
    let starts: Vec<f64> = list["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|k| k["start"].as_f64())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
    assert!(
        gw.metric(
            "gateway_event_messages_total",
            &["stream=\"cam0\"", "phase=\"start\""]
        )
        .await
            >= 1.0
    );
    assert!(
        gw.metric("gateway_event_messages_total", &["phase=\"end\""])
            .await
            >= 1.0
    );
    // (An event can come before the gateway's first picture of cam0, and
    // be ignored then: no assertion on gateway_event_messages_ignored_total.)
}

/// Debian's darknet test picture, the camera of the stand-in stack.
const PERSON_JPG: &str = "/usr/share/darknet/data/person.jpg";
const PHOTO: (u32, u32) = (640, 424);

/// A stand-in producer and event stage on one PUB socket: frames of cam0
/// every 100 ms, and whatever event messages the test queues.
async fn stand_in() -> (
    String,
    tokio::sync::mpsc::UnboundedSender<(String, EventMessage)>,
) {
    let jpeg = std::fs::read(PERSON_JPG).map_or_else(
        |e| {
            eprintln!("{PERSON_JPG}: {e} (apt-get install darknet); a plain picture instead");
            media::solid_jpeg(PHOTO.0, PHOTO.1, [40, 90, 140])
        },
        Bytes::from,
    );
    let mut p = Publisher::bind().await.expect("bind the test PUB socket");
    let endpoint = p.endpoint.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, EventMessage)>();
    tokio::spawn(async move {
        let mut seq = 0;
        let mut beat = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = beat.tick() => {
                    seq += 1;
                    let h = header("cam0", seq, stream_common::unix_now_ns(), PHOTO);
                    if p.frame(&h, &jpeg).await.is_err() { break }
                }
                m = rx.recv() => {
                    let Some((stream, m)) = m else { break };
                    seq += 1;
                    let h = header(&stream, seq, stream_common::unix_now_ns(), PHOTO);
                    p.event(&h, &m).await.expect("a valid event");
                }
            }
        }
    });
    (endpoint, tx)
}

/// A person event of `stream` that started at `start` (ns) and has lasted
/// `seconds` so far.
fn person_event(stream: &str, id: &str, phase: Phase, start: u64, seconds: f64) -> EventMessage {
    let end = start + (seconds * 1e9) as u64;
    EventMessage {
        phase,
        event: Event {
            id: id.into(),
            stream: stream.into(),
            label: "person".into(),
            zones: vec![],
            start_ts_ns: start,
            end_ts_ns: end,
            best_score: 0.93,
            x: 0.29,
            y: 0.25,
            w: 0.14,
            h: 0.65,
            snapshot_ts_ns: start,
        },
        snapshot: Vec::new(),
    }
}

/// `seconds` ago, in ns since the Unix epoch.
fn ago(seconds: f64) -> u64 {
    stream_common::unix_now_ns() - (seconds * 1e9) as u64
}

#[tokio::test]
async fn events_of_a_stream_the_gateway_lacks_are_ignored_and_counted() {
    let (endpoint, events) = stand_in().await;
    let gw = Gateway::start(&[&endpoint], &[], &[]);
    gw.wait_stream("cam0", Duration::from_secs(20)).await;
    let mut sse = EventReader::open(gw.addr, "/events/cam0")
        .await
        .expect("open");
    wait_for(
        "the ghost's event ignored and counted",
        Duration::from_secs(20),
        || {
            let _ = events.send((
                "ghost".into(),
                person_event("ghost", "ghost-1", Phase::Start, ago(2.0), 1.0),
            ));
            async {
                (gw.metric("gateway_event_messages_ignored_total", &[]).await >= 1.0).then_some(())
            }
        },
    )
    .await;
    assert_eq!(recent(gw.addr, "ghost").await.0, 404);
    assert_eq!(http::status(gw.addr, "/stream/ghost").await, 404);
    // cam0's listener heard nothing of it; cam0's own event it does hear.
    events
        .send((
            "cam0".into(),
            person_event("cam0", "cam0-1", Phase::Start, ago(2.0), 1.0),
        ))
        .expect("queue");
    let e = loop {
        let e = sse
            .next_within(Duration::from_secs(20))
            .await
            .expect("an event");
        if e.event == "event" {
            break e;
        }
    };
    let v: Value = serde_json::from_str(&e.data).expect("JSON");
    assert_eq!(phase_and_id(&v), ("start".into(), "cam0-1".into()));
    let (_, list) = recent(gw.addr, "cam0").await;
    assert_eq!(list["events"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(
        gw.metric(
            "gateway_event_messages_total",
            &["stream=\"cam0\"", "phase=\"start\""]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn chromium_lists_events_and_toasts_a_start() {
    page_in(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_lists_events_and_toasts_a_start() {
    page_in(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn webkit_lists_events_and_toasts_a_start() {
    page_in(BrowserKind::WebKit).await;
}

/// The page in `kind`: the history, a start (listed, live, toasted), its
/// end, and a click on it; each browser's screenshot goes to the test artifacts.
async fn page_in(kind: BrowserKind) {
    let (endpoint, events) = stand_in().await;
    let gw = Gateway::start(&[&endpoint], &[], &[]);
    gw.wait_stream("cam0", Duration::from_secs(20)).await;
    // One event over before the page opens: the history.
    let old = person_event("cam0", "cam0-old", Phase::End, ago(60.0), 4.2);
    events.send(("cam0".into(), old)).expect("queue");
    wait_for("the old event kept", Duration::from_secs(10), || async {
        let (_, v) = recent(gw.addr, "cam0").await;
        (v["events"].as_array()?.len() == 1).then_some(())
    })
    .await;

    let b = Browser::launch_kind(kind).await.expect("browser");
    b.set_window_size(1280, 800).await.expect("window size");
    b.goto(&format!("http://{}/", gw.addr))
        .await
        .expect("open page");
    let look = "const items = [...document.querySelectorAll('#events .ev')].map((li) => ({ id: li.dataset.id, stream: li.dataset.stream, text: li.textContent, live: li.classList.contains('running') }));
        const t = document.getElementById('toast');
        return { items, panel: !document.getElementById('events-panel').hidden, toast: t.hidden ? null : t.textContent, toasts: window.viewer.toasts, drawn: window.viewer.cams.has('cam0') ? window.viewer.cams.get('cam0').drawn : 0, selected: window.viewer.selected };";
    let items = |v: &Value| -> HashMap<String, Value> {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| (i["id"].as_str().unwrap_or_default().to_string(), i.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let v = wait_for("the history listed", Duration::from_secs(20), || async {
        let v = b.eval(look).await.ok()?;
        (v["panel"] == true && items(&v).contains_key("cam0-old") && v["drawn"].as_u64()? > 2)
            .then_some(v)
    })
    .await;
    let old = &items(&v)["cam0-old"];
    assert!(
        old["text"]
            .as_str()
            .is_some_and(|t| t.contains("cam0") && t.contains("person") && t.contains("4.2 s")),
        "{old}"
    );
    assert_eq!(old["live"], false);
    assert!(v["toast"].is_null(), "no toast for the history: {v}");

    // The page settled (frame rate known, status line up to date), for the
    // screenshot while the toast shows.
    wait_for("the page settled", Duration::from_secs(15), || async {
        let v = b
            .eval("return window.viewer.fps('cam0') !== null && !document.getElementById('status').textContent.includes('connecting');")
            .await
            .ok()?;
        (v == true).then_some(())
    })
    .await;

    // A start: listed first, live, and a toast.
    let started = ago(1.5);
    events
        .send((
            "cam0".into(),
            person_event("cam0", "cam0-new", Phase::Start, started, 1.5),
        ))
        .expect("queue");
    let v = wait_for(
        "the start listed and toasted",
        Duration::from_secs(20),
        || async {
            let v = b.eval(look).await.ok()?;
            (v["items"][0]["id"] == "cam0-new" && !v["toast"].is_null()).then_some(v)
        },
    )
    .await;
    assert_eq!(v["items"][0]["live"], true, "{v}");
    let toast = v["toast"].as_str().expect("toast");
    assert!(
        toast.contains("person") && toast.contains("cam0"),
        "{toast}"
    );
    assert_eq!(v["items"][1]["id"], "cam0-old", "newest first: {v}");
    let png = b.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(
        screenshot_path(&format!("events-{}.png", kind.name())),
        &png,
    )
    .expect("save screenshot");

    // Its end: no longer live; the toast goes by itself.
    events
        .send((
            "cam0".into(),
            person_event("cam0", "cam0-new", Phase::End, started, 3.5),
        ))
        .expect("queue");
    wait_for(
        "the end shown and the toast gone",
        Duration::from_secs(20),
        || async {
            let v = b.eval(look).await.ok()?;
            let new = items(&v).remove("cam0-new")?;
            (new["live"] == false
                && new["text"].as_str()?.contains("3.5 s")
                && v["toast"].is_null())
            .then_some(())
        },
    )
    .await;
    assert_eq!(items(&b.eval(look).await.expect("look")).len(), 2);

    // A click on it enlarges its camera (no recorder: nothing to play).
    b.eval("document.querySelector('#events .ev[data-id=\"cam0-new\"]').click(); return null;")
        .await
        .expect("click");
    wait_for("cam0 enlarged", Duration::from_secs(10), || async {
        let v = b.eval(look).await.ok()?;
        (v["selected"] == "cam0").then_some(())
    })
    .await;
}

#[tokio::test]
async fn pages_get_events_unless_they_say_no() {
    let (endpoint, events) = stand_in().await;
    let gw = Gateway::start(&[&endpoint], &[], &[]);
    gw.wait_stream("cam0", Duration::from_secs(20)).await;
    let open = |watch: &'static str| async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr))
            .await
            .expect("ws");
        ws.send(Message::text(watch)).await.expect("send");
        // Watching once its first frame came.
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .expect("valid");
            if msg.is_binary() {
                break ws;
            }
        }
    };
    let mut yes = open(r#"{"watch":["cam0"]}"#).await;
    let mut no = open(r#"{"watch":["cam0"],"events":false}"#).await;
    let mut sse = EventReader::open(gw.addr, "/events/cam0")
        .await
        .expect("open");
    events
        .send((
            "cam0".into(),
            person_event("cam0", "cam0-7", Phase::Update, ago(3.0), 2.0),
        ))
        .expect("queue");
    let text = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), yes.next())
            .await
            .expect("the event in time")
            .expect("open")
            .expect("valid");
        if let Message::Text(t) = msg {
            break t.to_string();
        }
    };
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        phase_and_id(&v["event"]),
        ("update".into(), "cam0-7".into())
    );
    let e = loop {
        let e = sse.next_within(Duration::from_secs(10)).await.expect("SSE");
        if e.event == "event" {
            break e;
        }
    };
    // The same prepared change, one shape everywhere.
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).expect("JSON"),
        v["event"]
    );
    // The page that said no: frames only, well after the event went out.
    for _ in 0..15 {
        let msg = tokio::time::timeout(Duration::from_secs(5), no.next())
            .await
            .expect("message in time")
            .expect("open")
            .expect("valid");
        assert!(msg.is_binary(), "a page without events got {msg:?}");
    }
}

/// An event stage is quiet between events: once the gateway has heard
/// events (and nothing else) from an endpoint, it does not recreate that
/// socket every few seconds of silence, when a start or an end could be
/// lost in the reconnection.
#[tokio::test]
async fn a_quiet_event_stage_keeps_its_socket() {
    let (endpoint, _frames) = stand_in().await;
    let mut stage = Publisher::bind()
        .await
        .expect("bind the stage's PUB socket");
    let gw = Gateway::start(&[&endpoint, &stage.endpoint], &[], &[]);
    gw.wait_stream("cam0", Duration::from_secs(20)).await;
    let started = ago(1.0);
    // Sent until heard: the gateway's SUB socket may not have joined yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = person_event("cam0", "cam0-q", Phase::Start, started, 1.0);
        let h = header("cam0", 1, stream_common::unix_now_ns(), PHOTO);
        stage.event(&h, &m).await.expect("a valid event");
        if gw
            .metric("gateway_event_messages_total", &["phase=\"start\""])
            .await
            >= 1.0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stage's event never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let label = format!("producer=\"{}\"", stage.endpoint);
    let before = gw.metric("gateway_resubscribes_total", &[&label]).await;
    // Three times the watchdog's usual floor for a quiet producer (3 s).
    tokio::time::sleep(Duration::from_secs(9)).await;
    let after = gw.metric("gateway_resubscribes_total", &[&label]).await;
    assert_eq!(after, before, "the quiet stage's socket was recreated");
    // And the socket still delivers.
    let end = person_event("cam0", "cam0-q", Phase::End, started, 2.0);
    let h = header("cam0", 2, stream_common::unix_now_ns(), PHOTO);
    stage.event(&h, &end).await.expect("a valid event");
    wait_for(
        "the end over the kept socket",
        Duration::from_secs(10),
        || async {
            (gw.metric("gateway_event_messages_total", &["phase=\"end\""])
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
}
