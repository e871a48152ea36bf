//! Scenes played through the real stack (producer, detector with the real
//! model, event stage), checking what the events say against what was
//! shown: darknet's person.jpg for 10 s then dog.jpg for 10 s, three times,
//! is exactly three person events of about 10 s whose snapshots are the
//! person; and the cameras file's rules, in the stage and in the detector:
//! a required zone without her feet gives no event, one with them gives
//! events naming it, and a mask over her means the detector publishes no box
//! and the stage makes no event.
//!
//! The stage runs at its defaults (an event after 1 s, ended after 5 s
//! unseen). Events are read from webhook receivers and from the bus.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use frame_wire::Phase;
use serde_json::Value;
use test_support::detector::{Detector, darknet_picture_dir};
use test_support::events::EventStage;
use test_support::media::mean_abs_difference;
use test_support::metrics::wait_metric;
use test_support::producer::Producer;
use test_support::wait_for;
use test_support::watch::BusWatch;
use test_support::webhook::WebhookReceiver;

/// The producer's rate; the scenes' lengths are in its frames.
const FPS: &str = "10";
/// How long the model may take to load and the services to connect, on a
/// shared, busy machine.
const START: Duration = Duration::from_secs(120);
const PERSON_JPG: &str = "/usr/share/darknet/data/person.jpg";
const DOG_JPG: &str = "/usr/share/darknet/data/dog.jpg";

/// Her box's bottom centre, as the model finds it in person.jpg (its box
/// (183, 104) to (273, 382) of 640x424, crates/object-detector/tests/detect.rs)
/// is at (0.356, 0.901); the test checks that against live detections.
/// Everything above y = 0.85 is her body, below it the floor she stands on.
const ZONES: &str = r#"
[[camera]]
name = "cam0"
required_zones = ["REQUIRED"]

[[camera.zone]]
name = "body"
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.85], [0.0, 0.85]]

[[camera.zone]]
name = "floor"
polygon = [[0.0, 0.85], [1.0, 0.85], [1.0, 1.0], [0.0, 1.0]]
"#;

/// A mask over all of her (and so over where she stands).
const MASK: &str = r#"
[[camera]]
name = "cam0"

[[camera.mask]]
polygon = [[0.2, 0.1], [0.5, 0.1], [0.5, 1.0], [0.2, 1.0]]
"#;

/// A cameras file, removed on drop.
struct CamerasFile(PathBuf);

impl CamerasFile {
    fn new(name: &str, text: &str) -> CamerasFile {
        let path = std::env::temp_dir().join(format!(
            "cameras-{name}-{}-{}.toml",
            std::process::id(),
            stream_common::unix_now_ns()
        ));
        std::fs::write(&path, text).expect("cameras file");
        CamerasFile(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }

    fn rules(&self) -> stream_common::rules::CameraRules {
        stream_common::rules::load(Some(&self.0))
            .expect("the test's cameras file is valid")
            .of("cam0")
            .clone()
    }
}

impl Drop for CamerasFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn ns(v: &Value, field: &str) -> u64 {
    v["event"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

fn id_of(v: &Value) -> String {
    v["event"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event id in {v}"))
        .to_string()
}

/// The webhook messages of `kind` (start, end) for person events.
fn of_kind(hook: &WebhookReceiver, kind: &str) -> Vec<Value> {
    hook.received()
        .into_iter()
        .map(|h| h.json)
        .filter(|v| v["type"] == kind && v["event"]["label"] == "person")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_then_dog_three_times_is_three_person_events_with_her_snapshot() {
    let hook = WebhookReceiver::start(200).await;
    let url = hook.url("/hook");
    // The dog first, until everything is connected: the scene then starts
    // from its beginning, so the first appearance is not cut short.
    let dir = darknet_picture_dir("dog.jpg");
    let producer = Producer::start(&["--source", dir.arg(), "--fps", FPS]);
    let detector = Detector::start(&[&producer.endpoint], &["--detect-fps", "5"]);
    let stage = EventStage::start(
        &[&detector.endpoint],
        &[&producer.endpoint],
        &["--webhook", &url],
    );
    let bus = BusWatch::start(&stage.endpoint, "e/").await;
    let warm = wait_metric(
        stage.metrics,
        "events_detections_messages_total",
        &["stream=\"cam0\""],
        10.0,
        START,
    )
    .await;
    assert_eq!(
        stage.metric("events_published_total", &[]).await,
        0.0,
        "an event while only the dog was shown"
    );

    // Person 10 s, dog 10 s, three times, then 30 s more of the dog (the
    // test is over before it is).
    let mut scene = Vec::new();
    for _ in 0..3 {
        scene.extend([("person.jpg", 100), ("dog.jpg", 100)]);
    }
    scene.push(("dog.jpg", 300));
    let shown = stream_common::unix_now_ns();
    dir.play(&scene);

    let ends = wait_for(
        "three person events' ends",
        Duration::from_secs(150),
        || async {
            let ends = of_kind(&hook, "end");
            (ends.len() >= 3).then_some(ends)
        },
    )
    .await;
    // Five more seconds of the dog alone reach the stage (its detections
    // messages, five a second): time for a wrong event to start.
    let now = stage
        .metric("events_detections_messages_total", &["stream=\"cam0\""])
        .await;
    wait_metric(
        stage.metrics,
        "events_detections_messages_total",
        &["stream=\"cam0\""],
        now + 25.0,
        Duration::from_secs(60),
    )
    .await;
    assert!(now > warm);

    let starts = of_kind(&hook, "start");
    let ends_now = of_kind(&hook, "end");
    assert_eq!(starts.len(), 3, "starts: {starts:?}");
    assert_eq!(ends_now.len(), 3, "ends: {ends_now:?}");
    assert_eq!(ends_now, ends, "no end since the third");
    let mut events = Vec::new();
    for start in &starts {
        let id = id_of(start);
        let end = ends
            .iter()
            .find(|e| id_of(e) == id)
            .unwrap_or_else(|| panic!("no end for event {id}: {ends:?}"));
        let (s, e) = (ns(end, "start_ts_ns"), ns(end, "end_ts_ns"));
        assert_eq!(
            s,
            ns(start, "start_ts_ns"),
            "the end reports the same start"
        );
        assert!(s >= shown, "event {id} started before the scene did");
        let seconds = e.saturating_sub(s) as f64 / 1e9;
        assert!(
            (9.0..=12.0).contains(&seconds),
            "event {id} lasted {seconds} s for a 10 s appearance"
        );
        events.push((s, e, id));
    }
    events.sort();
    for pair in events.windows(2) {
        let gap = pair[1].0.saturating_sub(pair[0].1) as f64 / 1e9;
        // The dog's 10 s between appearances: nothing was an event then.
        assert!(
            (8.0..=12.0).contains(&gap),
            "{gap} s between two events, for 10 s of the dog"
        );
    }

    // On the bus: the same three events, each with its snapshot, the full
    // picture of the person (not of the dog).
    let person = std::fs::read(PERSON_JPG).expect("person.jpg");
    let dog = std::fs::read(DOG_JPG).expect("dog.jpg");
    let on_bus = bus
        .wait(
            "the three events' ends on the bus",
            Duration::from_secs(10),
            |_| {
                let mut by_id: BTreeMap<String, Vec<frame_wire::EventMessage>> = BTreeMap::new();
                for (_, m) in bus.events() {
                    by_id.entry(m.event.id.clone()).or_default().push(m);
                }
                let ended = by_id
                    .values()
                    .filter(|ms| ms.iter().any(|m| m.phase == Phase::End))
                    .count();
                (ended >= 3).then_some(by_id)
            },
        )
        .await;
    assert_eq!(
        on_bus.keys().collect::<Vec<_>>(),
        {
            let mut ids: Vec<&String> = events.iter().map(|(_, _, id)| id).collect();
            ids.sort();
            ids
        },
        "the bus has the webhook's events, no others"
    );
    for (id, messages) in &on_bus {
        assert_eq!(
            messages.first().map(|m| m.phase),
            Some(Phase::Start),
            "{id}"
        );
        let snapshot = messages
            .iter()
            .map(|m| &m.snapshot)
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| panic!("no message of event {id} carries a snapshot"));
        assert_eq!(
            stream_common::jpeg::dimensions(snapshot),
            Some((640, 424)),
            "event {id}: the snapshot is the full-size frame"
        );
        let (to_person, to_dog) = (
            mean_abs_difference(snapshot, &person),
            mean_abs_difference(snapshot, &dog),
        );
        assert!(
            to_person < 2.0 && to_dog > 20.0,
            "event {id}: the snapshot differs from person.jpg by {to_person}, from dog.jpg by {to_dog}"
        );
    }
    assert_eq!(
        stage
            .metric("events_published_total", &["phase=\"start\""])
            .await,
        3.0
    );
    assert_eq!(
        stage
            .metric("events_published_total", &["phase=\"end\""])
            .await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_decide_events_and_a_mask_hides_her_from_the_detector() {
    let excluded = CamerasFile::new("excluded", &ZONES.replace("REQUIRED", "body"));
    let required = CamerasFile::new("required", &ZONES.replace("REQUIRED", "floor"));
    let masked = CamerasFile::new("masked", MASK);
    let dir = darknet_picture_dir("person.jpg");
    let producer = Producer::start(&["--source", dir.arg(), "--fps", FPS]);
    let p = producer.endpoint.as_str();
    // One detector as it comes, one given the mask (the very file the third
    // stage reads: the same file works for both).
    let plain = Detector::start(&[p], &["--detect-fps", "5"]);
    let masking = Detector::start(&[p], &["--detect-fps", "5", "--cameras", masked.arg()]);
    let plain_bus = BusWatch::start(&plain.endpoint, "d/").await;
    let masked_bus = BusWatch::start(&masking.endpoint, "d/").await;
    let hooks = [
        WebhookReceiver::start(200).await,
        WebhookReceiver::start(200).await,
        WebhookReceiver::start(200).await,
    ];
    let stage = |detector: &Detector, cameras: &CamerasFile, hook: &WebhookReceiver| {
        EventStage::start(
            &[&detector.endpoint],
            &[p],
            &["--cameras", cameras.arg(), "--webhook", &hook.url("/hook")],
        )
    };
    let stages = [
        stage(&plain, &excluded, &hooks[0]),
        stage(&plain, &required, &hooks[1]),
        stage(&masking, &masked, &hooks[2]),
    ];

    // Where she stands, from the detector's own boxes: on the floor, not in
    // the body zone, and in the mask.
    let (_, found) = plain_bus
        .wait("her box from the detector", START, |_| {
            plain_bus
                .detections()
                .into_iter()
                .find(|(_, d)| d.boxes.iter().any(|b| b.label == "person"))
        })
        .await;
    let her = found
        .boxes
        .iter()
        .find(|b| b.label == "person")
        .map(stream_common::rules::Rect::from)
        .expect("a person box");
    assert_eq!(
        required.rules().zones_of(&her).collect::<Vec<_>>(),
        ["floor"],
        "her box {her:?} (feet at {:?}) should stand on the floor only",
        her.bottom_centre()
    );
    assert!(masked.rules().masked(&her), "the mask covers {her:?}");

    // The required zone she stands in: an event naming it.
    let start = hooks[1]
        .wait_for("an event in the required zone", START, |h| {
            h.json["type"] == "start"
        })
        .await;
    assert_eq!(start.json["event"]["label"], "person");
    assert_eq!(start.json["event"]["zones"], serde_json::json!(["floor"]));

    // The other two take as many analysed frames (3 s of her, three times
    // what an event needs) and make nothing.
    for s in [&stages[0], &stages[2]] {
        wait_metric(
            s.metrics,
            "events_detections_messages_total",
            &["stream=\"cam0\""],
            15.0,
            START,
        )
        .await;
    }
    for (i, s) in [(0, &stages[0]), (2, &stages[2])] {
        assert_eq!(
            s.metric("events_published_total", &[]).await,
            0.0,
            "stage {i}"
        );
        assert!(
            hooks[i].received().is_empty(),
            "stage {i}: {:?}",
            hooks[i].received()
        );
    }
    // The masking detector analysed her every time and published no box.
    let analysed = masking
        .metric("detector_frames_analysed_total", &["stream=\"cam0\""])
        .await;
    assert!(analysed >= 15.0, "{analysed} frames analysed");
    assert!(
        masking
            .metric("detector_masked_total", &["label=\"person\""])
            .await
            >= 15.0
    );
    assert_eq!(masking.metric("detector_detections_total", &[]).await, 0.0);
    let seen = masked_bus.detections();
    assert!(seen.len() >= 10, "{} detections messages", seen.len());
    assert!(
        seen.iter().all(|(_, d)| d.boxes.is_empty()),
        "boxes published inside the mask: {:?}",
        seen.iter().find(|(_, d)| !d.boxes.is_empty())
    );
    assert!(
        stages[1]
            .metric("events_published_total", &["phase=\"start\""])
            .await
            >= 1.0
    );
}
