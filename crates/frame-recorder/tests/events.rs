//! The recorder's event history end to end, with the real binaries and the
//! real model: a producer plays darknet's person.jpg, then dog.jpg, looped;
//! the detector finds the person; the event stage makes an event of each
//! appearance (after 0.5 s, ended 1 s after it is gone); the recorder
//! follows the producer and the stage (and the detector, in continuous
//! mode) and is read as a client would: `/api/events`, snapshots, clips,
//! after a restart, and in events mode ("Look back": recording starts at
//! an event's start, pre-roll included). Last, a live viewer of a gateway
//! is measured with and without a recorder on its bus, side by side.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use frame_bus::topics::topic_strings;
use frame_bus::{BusKeys, Client};
use frame_wire::{Kind, Limits, Message};
use serde_json::Value;
use test_support::detector::{Detector, PictureDir, darknet_scene_dir};
use test_support::events::EventStage;
use test_support::gateway::Gateway;
use test_support::http::{self, MjpegReader};
use test_support::media::{decodes_cleanly, probe};
use test_support::producer::Producer;
use test_support::recorder::Recorder;
use test_support::wait_for;
use tokio_util::sync::CancellationToken;

/// darknet's person.jpg: a snapshot is the full-size frame.
const PERSON_SIZE: (u32, u32) = (640, 424);
/// The model loads, the detector and the stage connect, on a busy machine.
const FIRST_EVENT: Duration = Duration::from_secs(120);
/// The recorder's rolls (seconds), short so that each appearance is its own recording.
const PRE: f64 = 1.0;
const POST: f64 = 1.0;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "recorder-events-{tag}-{}-{}",
        std::process::id(),
        stream_common::unix_now_ns()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Producer (10 fps), detector and event stage, wired together.
struct Stack {
    producer: Producer,
    detector: Detector,
    stage: EventStage,
}

impl Stack {
    fn start(scene: &PictureDir) -> Stack {
        let producer = Producer::start(&["--source", scene.arg(), "--fps", "10"]);
        let detector = Detector::start(&[&producer.endpoint], &["--detect-fps", "5"]);
        let stage = EventStage::start(
            &[&detector.endpoint],
            &[&producer.endpoint],
            &["--event-min-seconds", "0.5", "--event-end-after", "1"],
        );
        Stack {
            producer,
            detector,
            stage,
        }
    }
}

async fn get(addr: SocketAddr, path: &str) -> http::Response {
    http::get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn json(addr: SocketAddr, path: &str) -> Value {
    let r = get(addr, path).await;
    assert_eq!(r.head.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"))
}

fn events(v: &Value) -> Vec<Value> {
    v["events"].as_array().cloned().unwrap_or_default()
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Waits until `/api/events` lists `n` ended person events that started
/// at or after `after_ms`; them, oldest first.
async fn ended_person_events(
    addr: SocketAddr,
    n: usize,
    after_ms: u64,
    timeout: Duration,
) -> Vec<Value> {
    wait_for(
        &format!("{n} ended person events in /api/events"),
        timeout,
        || async move {
            let r = http::get(addr, "/api/events?label=person").await.ok()?;
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            let mut ended: Vec<Value> = events(&v)
                .into_iter()
                .filter(|e| {
                    e["phase"] == "end"
                        && e["start_ts_ns"].as_u64().unwrap_or(0) / 1_000_000 >= after_ms
                })
                .collect();
            ended.reverse();
            (ended.len() >= n).then_some(ended)
        },
    )
    .await
}

/// Waits until the recorder has recorded `stream` up to `until_ms`.
async fn recorded_until(addr: SocketAddr, stream: &str, until_ms: u64, timeout: Duration) {
    wait_for(
        &format!("{stream} recorded up to {until_ms}"),
        timeout,
        || async move {
            let r = http::get(addr, "/api/recordings").await.ok()?;
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            let s = v["streams"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == stream)?;
            (s["to_ms"].as_u64()? >= until_ms).then_some(())
        },
    )
    .await;
}

/// The latest snapshot of each event seen on the stage's bus, byte for byte.
fn watch_snapshots(
    endpoint: &str,
    stop: CancellationToken,
) -> Arc<Mutex<HashMap<String, Vec<u8>>>> {
    let settings = frame_bus::Settings {
        endpoint: endpoint.to_string(),
        keys: BusKeys::load(None, None).expect("no key"),
        limits: Limits::default(),
        resubscribe_after: Duration::from_secs(3600),
    };
    let topics = topic_strings([frame_wire::subscription(Kind::Event, None)]);
    let mut client = Client::fixed(settings, topics, stop);
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Some(event) = client.next().await {
            if let frame_bus::Event::Message(r) = event
                && let Message::Event { event, .. } = r.message
                && !event.snapshot.is_empty()
            {
                kept.lock()
                    .expect("lock")
                    .insert(event.event.id.clone(), event.snapshot.clone());
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_with_snapshots_and_clips_and_survive_a_restart() {
    // The person for 3 s, then the dog for 4 s, looped.
    let scene = darknet_scene_dir(&[("person.jpg", 30), ("dog.jpg", 40)]);
    let stack = Stack::start(&scene);
    let stop = CancellationToken::new();
    let snapshots = watch_snapshots(&stack.stage.endpoint, stop.clone());
    let dir = temp_dir("continuous");
    let endpoints = [
        stack.producer.endpoint.as_str(),
        stack.detector.endpoint.as_str(),
        stack.stage.endpoint.as_str(),
    ];
    let rolls = [
        "--pre-roll",
        "1",
        "--post-roll",
        "1",
        "--segment-seconds",
        "5",
    ];
    let mut rec = Recorder::start_on(&endpoints, &dir, &rolls);
    let t0_ms = stream_common::unix_now_ns() / 1_000_000;

    // Events whose clip range is all after the recorder's first frame.
    let first_ms = wait_for(
        "the first recorded frame",
        Duration::from_secs(30),
        || async {
            let r = http::get(rec.addr, "/api/recordings").await.ok()?;
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            v["streams"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "cam0")?["from_ms"]
                .as_u64()
        },
    )
    .await;
    let after_ms = first_ms + (PRE * 1000.0) as u64 + 200;
    let ended =
        ended_person_events(rec.addr, 2, after_ms, FIRST_EVENT + Duration::from_secs(30)).await;
    let (e1, e2) = (ended[0].clone(), ended[1].clone());
    for e in [&e1, &e2] {
        assert_eq!(e["stream"], "cam0", "{e}");
        assert_eq!(e["label"], "person", "{e}");
        let (s, t) = (u(e, "start_ts_ns"), u(e, "end_ts_ns"));
        assert!(s / 1_000_000 >= t0_ms.saturating_sub(60_000), "{e}");
        let d = (t - s) as f64 / 1e9;
        assert!(
            (0.5..=3.5).contains(&d),
            "lasted {d} s for a 3 s appearance: {e}"
        );
        assert!(
            (e["duration"].as_f64().unwrap_or(-1.0) - d).abs() < 1e-3,
            "{e}"
        );
        for field in ["start", "end", "score", "zones", "box", "snapshot_ts_ns"] {
            assert!(!e[field].is_null(), "no {field}: {e}");
        }
        let id = e["id"].as_str().expect("id");
        assert_eq!(e["snapshot_url"], format!("/api/events/{id}/snapshot.jpg"));
        assert_eq!(e["clip_url"], format!("/api/events/{id}/clip"));
        assert_eq!(e["recorded"], true, "{e}");
    }
    assert!(
        u(&e2, "start_ts_ns") > u(&e1, "end_ts_ns"),
        "one event per appearance"
    );

    // The snapshot: the stage's JPEG byte for byte (its last one), full size.
    let id1 = e1["id"].as_str().expect("id").to_string();
    let r = get(rec.addr, &format!("/api/events/{id1}/snapshot.jpg")).await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.head.header("content-type"), Some("image/jpeg"));
    assert_eq!(stream_common::jpeg::dimensions(&r.body), Some(PERSON_SIZE));
    let sent = snapshots.lock().expect("lock").get(&id1).cloned();
    assert_eq!(
        sent.as_deref(),
        Some(&r.body[..]),
        "the snapshot served is the one the stage sent last"
    );
    let snapshot1 = r.body.clone();

    // The clip: from start − pre-roll to end + post-roll, in ffmpeg.
    let (s1, t1) = (u(&e1, "start_ts_ns"), u(&e1, "end_ts_ns"));
    recorded_until(
        rec.addr,
        "cam0",
        t1 / 1_000_000 + 2500,
        Duration::from_secs(30),
    )
    .await;
    let r = get(rec.addr, &format!("/api/events/{id1}/clip")).await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.head.header("content-type"), Some("video/x-matroska"));
    assert!(
        r.head
            .header("content-disposition")
            .is_some_and(|v| v.starts_with("attachment") && v.contains(&id1)),
        "{:?}",
        r.head.header("content-disposition")
    );
    let clip = dir.join("event-clip.mkv.download");
    std::fs::write(&clip, &r.body).expect("write clip");
    let (duration, frames) = probe(&clip);
    let want = (t1 - s1) as f64 / 1e9 + PRE + POST;
    assert!(
        (duration - want).abs() <= 0.5,
        "clip of {duration} s for an event of {want} s with its rolls"
    );
    assert!(
        frames as f64 >= (want - 0.5) * 10.0,
        "{frames} frames in {duration} s"
    );
    decodes_cleanly(&clip).expect("the clip decodes");
    let _ = std::fs::remove_file(&clip);

    // Filters.
    let all = events(&json(rec.addr, "/api/events").await);
    let starts: Vec<u64> = all.iter().map(|e| u(e, "start_ts_ns")).collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
    let id2 = e2["id"].as_str().expect("id").to_string();
    assert!(ids(&all).contains(&id1) && ids(&all).contains(&id2));
    let n = all.len();
    assert_eq!(
        events(&json(rec.addr, "/api/events?stream=cam0").await).len(),
        n
    );
    assert!(events(&json(rec.addr, "/api/events?stream=cam1").await).is_empty());
    assert!(events(&json(rec.addr, "/api/events?label=dog").await).is_empty());
    let newest = events(&json(rec.addr, "/api/events?limit=1").await);
    assert_eq!(ids(&newest), ids(&all[..1]));
    let before_e2 = events(
        &json(
            rec.addr,
            &format!("/api/events?to={}", u(&e2, "start_ts_ns") / 1_000_000 - 1),
        )
        .await,
    );
    assert!(ids(&before_e2).contains(&id1) && !ids(&before_e2).contains(&id2));
    let from_e2 = events(
        &json(
            rec.addr,
            &format!("/api/events?from={}", u(&e2, "start_ts_ns") / 1_000_000),
        )
        .await,
    );
    assert!(ids(&from_e2).contains(&id2) && !ids(&from_e2).contains(&id1));
    let only_e1 = events(
        &json(
            rec.addr,
            &format!(
                "/api/events?from={}&to={}&stream=cam0&label=person",
                s1 / 1_000_000,
                t1 / 1_000_000
            ),
        )
        .await,
    );
    assert_eq!(ids(&only_e1), std::slice::from_ref(&id1));

    // The timeline's events: detections and the stage's events, each with `at_ms`.
    let now_ms = stream_common::unix_now_ns() / 1_000_000;
    let window = json(
        rec.addr,
        &format!("/api/recordings/cam0?from={t0_ms}&to={now_ms}"),
    )
    .await;
    let marks = events(&window);
    assert!(
        marks.iter().all(|m| m["at_ms"].as_u64().is_some()),
        "{window}"
    );
    let mark = marks
        .iter()
        .find(|m| m["id"] == id1.as_str())
        .unwrap_or_else(|| panic!("event {id1} not on the timeline: {window}"));
    assert_eq!(u(mark, "at_ms"), s1 / 1_000_000);
    assert_eq!(u(mark, "end_ms"), t1 / 1_000_000);
    assert_eq!(mark["labels"][0], "person");

    // Bad input: one-line reasons.
    for (path, want) in [
        ("/api/events?limit=0", 400),
        ("/api/events?limit=1001", 400),
        ("/api/events?limit=ten", 400),
        ("/api/events?from=yesterday", 400),
        ("/api/events?from=5&to=4", 400),
        ("/api/events?stream=..", 400),
        ("/api/events?stream=%2e%2e", 400),
        ("/api/events?stream=a%2fb", 400),
        ("/api/events?label=a%0ab", 400),
        ("/api/events/..%2f..%2fetc/snapshot.jpg", 400),
        ("/api/events/%2e%2e/clip", 400),
        ("/api/events/.hidden/clip", 400),
        ("/api/events/a%00b/snapshot.jpg", 400),
        ("/api/events/cam0-1-0/snapshot.jpg", 404),
        ("/api/events/nope/clip", 404),
        ("/api/events/nope/other", 404),
    ] {
        let r = get(rec.addr, path).await;
        assert_eq!(r.head.status, want, "{path}: {}", r.text());
        assert_eq!(r.text().trim().lines().count(), 1, "{path}: {}", r.text());
    }

    // A restart: the events are still listed, their snapshots still served.
    rec.proc.signal(15);
    wait_for("the recorder to stop", Duration::from_secs(10), || {
        let exited = rec.proc.try_wait().is_some();
        async move { exited.then_some(()) }
    })
    .await;
    drop(rec);
    // Restarted with a token and an allowed origin: the event routes follow
    // the same rules as the rest.
    let mut secured = rolls.to_vec();
    secured.extend([
        "--auth-token",
        "s3cret",
        "--allow-origin",
        "http://page.test",
    ]);
    let rec2 = Recorder::start_on(&endpoints, &dir, &secured);
    let again = wait_for(
        "the restarted recorder",
        Duration::from_secs(20),
        || async {
            let r = http::get(rec2.addr, "/api/events?limit=1000&token=s3cret")
                .await
                .ok()?;
            if r.head.status != 200 {
                return None;
            }
            serde_json::from_slice::<Value>(&r.body)
                .ok()
                .map(|v| events(&v))
        },
    )
    .await;
    for e in [&e1, &e2] {
        let after = again
            .iter()
            .find(|a| a["id"] == e["id"])
            .unwrap_or_else(|| panic!("{} gone after the restart: {again:?}", e["id"]));
        assert_eq!(after["start_ts_ns"], e["start_ts_ns"]);
        assert_eq!(after["end_ts_ns"], e["end_ts_ns"]);
        assert_eq!(after["phase"], "end");
    }
    for path in [
        "/api/events".to_string(),
        format!("/api/events/{id1}/snapshot.jpg"),
        format!("/api/events/{id1}/clip"),
    ] {
        assert_eq!(get(rec2.addr, &path).await.head.status, 401, "{path}");
    }
    let bearer = [
        ("Authorization", "Bearer s3cret"),
        ("Origin", "http://page.test"),
    ];
    let r = http::request(
        rec2.addr,
        "GET",
        &format!("/api/events/{id1}/snapshot.jpg"),
        &bearer,
    )
    .await
    .expect("snapshot");
    assert_eq!(r.head.status, 200);
    assert_eq!(r.body, snapshot1);
    assert_eq!(
        r.head.header("access-control-allow-origin"),
        Some("http://page.test")
    );
    let r = http::request(
        rec2.addr,
        "GET",
        &format!("/api/events/{id1}/clip"),
        &bearer,
    )
    .await
    .expect("clip");
    assert_eq!(r.head.status, 200);
    stop.cancel();
    drop(rec2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Recorded spans (ms) of `stream` in `[from, to]`.
async fn spans(addr: SocketAddr, stream: &str, from: u64, to: u64) -> Vec<(u64, u64)> {
    let v = json(
        addr,
        &format!("/api/recordings/{stream}?from={from}&to={to}"),
    )
    .await;
    v["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| (u(s, "from_ms"), u(s, "to_ms")))
        .collect()
}

fn first_frame_ms(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir.join("cam0"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            n.strip_suffix("-events.mkv")?.parse::<u64>().ok()
        })
        .min()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_back_events_mode_records_each_event_with_its_rolls_and_not_the_dog() {
    // The dog for 8 s, then the person for 3 s, looped: an event's
    // recording (1 s either side) is followed by 5 s of the dog alone.
    let scene = darknet_scene_dir(&[("dog.jpg", 80), ("person.jpg", 30)]);
    let stack = Stack::start(&scene);
    let dir = temp_dir("events-mode");
    // Only the producer's frames and the stage's events: no detections, so
    // what is recorded is recorded because of the events.
    let rec = Recorder::start_on(
        &[&stack.producer.endpoint, &stack.stage.endpoint],
        &dir,
        &["--mode", "events", "--pre-roll", "1", "--post-roll", "1"],
    );
    let t0_ms = stream_common::unix_now_ns() / 1_000_000;

    let ended = ended_person_events(rec.addr, 2, 0, FIRST_EVENT + Duration::from_secs(40)).await;
    let windows: Vec<(u64, u64)> = ended
        .iter()
        .map(|e| {
            (
                u(e, "start_ts_ns") / 1_000_000 - (PRE * 1000.0) as u64,
                u(e, "end_ts_ns") / 1_000_000 + (POST * 1000.0) as u64,
            )
        })
        .collect();
    let last_end = windows.last().expect("two").1;
    // The recording of the last event is finished a while after its end.
    wait_for(
        "the last event's recording to be on disk",
        Duration::from_secs(30),
        || async {
            let s = spans(
                rec.addr,
                "cam0",
                t0_ms,
                stream_common::unix_now_ns() / 1_000_000,
            )
            .await;
            s.iter().any(|&(_, b)| b + 150 >= last_end).then_some(())
        },
    )
    .await;
    let now_ms = stream_common::unix_now_ns() / 1_000_000;
    let recorded = spans(rec.addr, "cam0", t0_ms, now_ms).await;
    let listed = events(&json(rec.addr, "/api/events?limit=1000").await);

    // Each event is covered from its start − pre-roll to its end + post-roll
    // (within a frame, at 10 fps) ...
    for (i, &(a, b)) in windows.iter().enumerate() {
        assert!(
            recorded.iter().any(|&(x, y)| x <= a + 150 && y + 150 >= b),
            "event {i} ({a}..{b}) is not covered by {recorded:?}"
        );
        let r = get(
            rec.addr,
            &format!("/api/events/{}/clip", ended[i]["id"].as_str().expect("id")),
        )
        .await;
        assert_eq!(r.head.status, 200, "{}", r.text());
        let id = &ended[i]["id"];
        let now = listed
            .iter()
            .find(|e| e["id"] == *id)
            .expect("still listed");
        assert_eq!(now["recorded"], true, "{now}");
    }
    // ... and nothing else is: every span lies within an event's window
    // (its end may run on until the end message, a second after the
    // person is gone, reaches the recorder) ...
    for &(x, y) in &recorded {
        assert!(
            windows.iter().any(|&(a, b)| x + 300 >= a && y <= b + 3000),
            "span {x}..{y} is outside every event {windows:?}"
        );
    }
    // ... so while only the dog is shown, between two events, no frame is
    // recorded (the nearest recorded frame is more than a second away).
    let (_, end_first) = windows[0];
    let (start_second, _) = windows[1];
    assert!(start_second > end_first + 3000, "{windows:?}");
    let middle = (end_first + start_second) / 2;
    let r = get(rec.addr, &format!("/recordings/cam0/frame?at={middle}")).await;
    assert_eq!(
        r.head.status, 404,
        "a frame recorded at {middle} (the dog alone)"
    );
    // Before the first event, nothing: the dog came first.
    let first = first_frame_ms(&dir).expect("an event segment");
    assert!(
        first + 300 >= windows[0].0,
        "recording began at {first}, before {windows:?}"
    );
    let list = json(rec.addr, "/api/recordings").await;
    assert_eq!(list["streams"][0]["mode"], "events", "{list}");
    drop(rec);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A live viewer's frames per second and median latency (arrival minus
/// `X-Timestamp`, ms), over `n` frames.
async fn measure(addr: SocketAddr, n: usize) -> (f64, f64) {
    let mut r = MjpegReader::open(addr, "/stream/cam0")
        .await
        .expect("viewer");
    r.next_frame_within(Duration::from_secs(10))
        .await
        .expect("first frame");
    let start = Instant::now();
    let mut latency = Vec::with_capacity(n);
    for _ in 0..n {
        let f = r
            .next_frame_within(Duration::from_secs(5))
            .await
            .expect("frame");
        let now = stream_common::unix_now_ns() as f64 / 1e9;
        latency.push((now - f.timestamp().expect("X-Timestamp")) * 1000.0);
    }
    let fps = n as f64 / start.elapsed().as_secs_f64();
    latency.sort_by(f64::total_cmp);
    (fps, latency[n / 2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_on_the_bus_changes_nothing_for_live_viewers() {
    // Two identical producers and gateways, side by side; a recorder
    // follows only the first.
    let camera = [
        "--camera",
        "name=cam0,source=test-pattern,size=640x480,fps=15",
    ];
    let with = Producer::start(&camera);
    let without = Producer::start(&camera);
    let gw_with = Gateway::start(&[with.endpoint.as_str()], &[], &[]);
    let gw_without = Gateway::start(&[without.endpoint.as_str()], &[], &[]);
    let dir = temp_dir("side-by-side");
    let rec = Recorder::start(&with.endpoint, &dir, &[]);
    gw_with.wait_stream("cam0", Duration::from_secs(20)).await;
    gw_without
        .wait_stream("cam0", Duration::from_secs(20))
        .await;
    let written = test_support::metrics::wait_metric(
        rec.addr,
        "recorder_frames_written_total",
        &["stream=\"cam0\""],
        30.0,
        Duration::from_secs(30),
    )
    .await;

    let n = 150;
    let ((fps_with, p50_with), (fps_without, p50_without)) =
        tokio::join!(measure(gw_with.addr, n), measure(gw_without.addr, n));
    let written_after = test_support::metrics::metric(
        rec.addr,
        "recorder_frames_written_total",
        &["stream=\"cam0\""],
    )
    .await;
    assert!(
        written_after >= written + 100.0,
        "the recorder recorded meanwhile ({written} → {written_after} frames)"
    );
    assert!(
        (fps_with - fps_without).abs() <= 0.1 * fps_without,
        "{fps_with:.2} fps with a recorder, {fps_without:.2} without"
    );
    assert!(
        fps_without >= 12.0,
        "{fps_without:.2} fps from a 15 fps camera"
    );
    assert!(
        (p50_with - p50_without).abs() <= 50.0,
        "latency p50 {p50_with:.1} ms with a recorder, {p50_without:.1} ms without"
    );
    drop(rec);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_of_an_event_outlive_keep_and_the_rest_does_not() {
    // The person for 3 s, then the dog for 10 s, looped.
    let scene = darknet_scene_dir(&[("person.jpg", 30), ("dog.jpg", 100)]);
    let stack = Stack::start(&scene);
    let dir = temp_dir("retention");
    let rec = Recorder::start_on(
        &[&stack.producer.endpoint, &stack.stage.endpoint],
        &dir,
        &[
            "--pre-roll",
            "1",
            "--post-roll",
            "1",
            "--segment-seconds",
            "2",
            "--keep",
            "3s",
            "--keep-events",
            "1h",
        ],
    );
    let first_ms = wait_for(
        "the first recorded frame",
        Duration::from_secs(30),
        || async {
            let r = http::get(rec.addr, "/api/recordings").await.ok()?;
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            v["streams"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "cam0")?["from_ms"]
                .as_u64()
        },
    )
    .await;
    let e = ended_person_events(rec.addr, 1, first_ms + 1200, FIRST_EVENT).await[0].clone();
    let (start, end) = (
        u(&e, "start_ts_ns") / 1_000_000,
        u(&e, "end_ts_ns") / 1_000_000,
    );
    // The dog alone, well away from the event's window and its segments.
    let dog = end + 1000 + 4000;
    // Past --keep for everything around the event, a segment and a
    // retention pass included.
    wait_for(
        "retention to pass the event's recording by",
        Duration::from_secs(60),
        || async move {
            (stream_common::unix_now_ns() / 1_000_000 > dog + 3000 + 2000 + 4000).then_some(())
        },
    )
    .await;
    test_support::metrics::wait_metric(
        rec.addr,
        "recorder_retention_deleted_segments_total",
        &["reason=\"age\""],
        3.0,
        Duration::from_secs(30),
    )
    .await;
    for at in [start - 900, (start + end) / 2, end + 900] {
        let r = get(rec.addr, &format!("/recordings/cam0/frame?at={at}")).await;
        assert_eq!(r.head.status, 200, "the event's recording at {at} is gone");
    }
    let r = get(rec.addr, &format!("/recordings/cam0/frame?at={dog}")).await;
    assert_eq!(r.head.status, 404, "the dog alone at {dog} outlived --keep");
    let id = e["id"].as_str().expect("id");
    let r = get(rec.addr, &format!("/api/events/{id}/clip")).await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    drop(rec);
    let _ = std::fs::remove_dir_all(&dir);
}
