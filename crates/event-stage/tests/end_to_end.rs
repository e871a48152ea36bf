//! End to end on loopback with the real binaries and the real model: a
//! producer plays darknet's test pictures (the person for a while, then the
//! dog), the real detector finds the person, and the real event stage turns
//! its boxes into events, delivered to a webhook receiver here, to Debian's
//! mosquitto (read here as Home Assistant would), and on the bus.
//!
//! The stage runs with short times (an event after 0.5 s, ended after 1 s
//! gone) so that each appearance of the person is an event within seconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use frame_bus::topics::topic_strings;
use frame_bus::{BusKeys, Client};
use frame_wire::{EventMessage, FrameHeader, Kind, Limits, Message, Phase};
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde_json::Value;
use test_support::detector::{Detector, PictureDir, darknet_picture_dir, darknet_scene_dir};
use test_support::events::EventStage;
use test_support::metrics::wait_metric;
use test_support::mosquitto::Mosquitto;
use test_support::producer::Producer;
use test_support::wait_for;
use test_support::webhook::{Hooked, WebhookReceiver};
use tokio_util::sync::CancellationToken;

/// The producer's rate; the scene's lengths are in its frames.
const FPS: &str = "10";
/// darknet's person.jpg, the size a full-size snapshot must have.
const PERSON_SIZE: (u32, u32) = (640, 424);
/// Long enough to wait for the first event: the model loads, the detector
/// and the stage connect, all on a shared, busy machine.
const FIRST_EVENT: Duration = Duration::from_secs(90);

/// The person for 3 s, then the dog for 4 s, looped.
fn person_then_dog() -> PictureDir {
    darknet_scene_dir(&[("person.jpg", 30), ("dog.jpg", 40)])
}

/// Producer, detector and event stage, wired together.
struct Stack {
    _producer: Producer,
    detector: Detector,
    stage: EventStage,
}

impl Stack {
    /// `key`: a bus key file every binary uses. `extra`: the stage's flags.
    fn start(scene: &PictureDir, key: Option<&str>, extra: &[&str]) -> Stack {
        let keyed: Vec<&str> = key.map_or_else(Vec::new, |k| vec!["--bus-key-file", k]);
        let mut producer_args = vec!["--source", scene.arg(), "--fps", FPS];
        producer_args.extend(&keyed);
        let producer = Producer::start(&producer_args);
        let mut detector_args = vec!["--detect-fps", "5"];
        detector_args.extend(&keyed);
        let detector = Detector::start(&[&producer.endpoint], &detector_args);
        let mut stage_args = vec!["--event-min-seconds", "0.5", "--event-end-after", "1"];
        stage_args.extend(&keyed);
        stage_args.extend_from_slice(extra);
        let stage = EventStage::start(&[&detector.endpoint], &[&producer.endpoint], &stage_args);
        Stack {
            _producer: producer,
            detector,
            stage,
        }
    }
}

/// A bus key file, removed on drop.
struct KeyFile(std::path::PathBuf);

impl KeyFile {
    fn new(name: &str) -> KeyFile {
        let path = std::env::temp_dir().join(format!(
            "events-key-{name}-{}-{}",
            std::process::id(),
            stream_common::unix_now_ns()
        ));
        std::fs::write(
            &path,
            "6576656e742d73746167652d656e642d746f2d656e642d746573742d6b6579\n",
        )
        .expect("key file");
        KeyFile(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn is_person(h: &Hooked, kind: &str) -> bool {
    h.json["type"] == kind && h.json["event"]["label"] == "person"
}

fn event_id(v: &Value) -> String {
    v["event"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event id in {v}"))
        .to_string()
}

fn ns(v: &Value, field: &str) -> u64 {
    v["event"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Everything a bus subscriber (the shared client, verifying with the key
/// and refusing replays) takes from the stage's PUB socket.
#[derive(Default)]
struct BusSeen {
    events: Vec<(FrameHeader, EventMessage)>,
    refused: Vec<String>,
}

fn watch_bus(endpoint: &str, key: &KeyFile, stop: CancellationToken) -> Arc<Mutex<BusSeen>> {
    let settings = frame_bus::Settings {
        endpoint: endpoint.to_string(),
        keys: BusKeys::load(Some(&key.0), None).expect("the key"),
        limits: Limits::default(),
        // The stage is quiet between events: no reason to reconnect.
        resubscribe_after: Duration::from_secs(3600),
    };
    let topics = topic_strings([frame_wire::subscription(Kind::Event, None)]);
    let mut client = Client::fixed(settings, topics, stop);
    let seen = Arc::new(Mutex::new(BusSeen::default()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Some(event) = client.next().await {
            let mut seen = kept.lock().expect("lock");
            match event {
                frame_bus::Event::Message(r) => {
                    if let Message::Event { header, event } = r.message {
                        seen.events.push((header, *event));
                    }
                }
                frame_bus::Event::Refused(why) => seen.refused.push(why.to_string()),
                frame_bus::Event::Silent { .. } => {}
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_the_start_and_the_end_of_each_person_event() {
    let key = KeyFile::new("webhook");
    let hook = WebhookReceiver::start(200).await;
    let url = hook.url("/hook/secret-token");
    let scene = person_then_dog();
    let t0 = stream_common::unix_now_ns();
    let stack = Stack::start(&scene, Some(key.arg()), &["--webhook", &url]);
    let stop = CancellationToken::new();
    let bus = watch_bus(&stack.stage.endpoint, &key, stop.clone());

    let start = hook
        .wait_for("a person event's start", FIRST_EVENT, |h| {
            is_person(h, "start")
        })
        .await;
    assert_eq!(start.path, "/hook/secret-token");
    assert!(
        start.content_type.starts_with("application/json"),
        "{}",
        start.content_type
    );
    let id = event_id(&start.json);
    let e = &start.json["event"];
    assert_eq!(e["stream"], "cam0");
    assert!(e["zones"].as_array().is_some_and(|z| z.is_empty()), "{e}");
    let (started, seen_until) = (ns(&start.json, "start_ts_ns"), ns(&start.json, "end_ts_ns"));
    assert!(
        started >= t0 && started <= stream_common::unix_now_ns(),
        "start {started} is not a capture time of this run"
    );
    assert!(seen_until >= started);
    assert!(
        e["start"].as_f64().is_some() && e["end"].as_f64().is_some(),
        "{e}"
    );
    assert!(e["score"].as_f64().is_some_and(|s| s >= 0.5), "{e}");

    let end = hook
        .wait_for("the end of the same event", Duration::from_secs(30), |h| {
            is_person(h, "end") && event_id(&h.json) == id
        })
        .await;
    let (s, e_ns) = (ns(&end.json, "start_ts_ns"), ns(&end.json, "end_ts_ns"));
    assert_eq!(s, started, "the end reports the same start");
    // The person is on screen for 3 s, then gone for 4 s: one appearance is
    // one event, neither cut short nor merged with the next.
    let duration = e_ns.saturating_sub(s) as f64 / 1e9;
    assert!(
        (0.5..=3.5).contains(&duration),
        "event lasted {duration} s for a 3 s appearance"
    );
    let snap = ns(&end.json, "snapshot_ts_ns");
    assert!(
        (s..=e_ns).contains(&snap),
        "snapshot at {snap} is not within the event {s}..{e_ns}"
    );

    // The next appearance is a new event with its own start and end.
    let second = hook
        .wait_for(
            "the next appearance's start",
            Duration::from_secs(30),
            |h| is_person(h, "start") && event_id(&h.json) != id,
        )
        .await;
    let second_id = event_id(&second.json);
    assert!(ns(&second.json, "start_ts_ns") > e_ns);
    hook.wait_for("the next appearance's end", Duration::from_secs(30), |h| {
        is_person(h, "end") && event_id(&h.json) == second_id
    })
    .await;
    // Hooks get starts and ends only, each once per event.
    let all = hook.received();
    for h in &all {
        assert!(
            h.json["type"] == "start" || h.json["type"] == "end",
            "{}",
            h.json
        );
    }
    for want in [&id, &second_id] {
        for kind in ["start", "end"] {
            let n = all
                .iter()
                .filter(|h| h.json["type"] == kind && event_id(&h.json) == *want)
                .count();
            assert_eq!(n, 1, "{n} {kind}s of event {want}");
        }
    }

    // On the bus, signed with the key: every message verifies and none is
    // refused as a replay (updates and the end share a snapshot's frame);
    // the event's start and end are there, and a full-size snapshot.
    let seen = wait_for(
        "the first event's end on the bus",
        Duration::from_secs(10),
        || {
            let bus = bus.clone();
            let id = id.clone();
            async move {
                let b = bus.lock().expect("lock");
                let done = b
                    .events
                    .iter()
                    .any(|(_, m)| m.event.id == id && m.phase == Phase::End);
                done.then(|| {
                    (
                        b.events
                            .iter()
                            .filter(|(_, m)| m.event.id == id)
                            .map(|(h, m)| (h.clone(), m.clone()))
                            .collect::<Vec<_>>(),
                        b.refused.clone(),
                    )
                })
            }
        },
    )
    .await;
    let (mine, refused) = seen;
    assert!(refused.is_empty(), "refused on the bus: {refused:?}");
    assert_eq!(mine.first().map(|(_, m)| m.phase), Some(Phase::Start));
    assert_eq!(
        mine.iter().filter(|(_, m)| m.phase == Phase::End).count(),
        1
    );
    assert!(mine.iter().all(|(h, _)| h.stream == "cam0"));
    let snapshot = mine
        .iter()
        .map(|(_, m)| &m.snapshot)
        .find(|s| !s.is_empty())
        .expect("a message of the event carries its snapshot");
    assert_eq!(
        stream_common::jpeg::dimensions(snapshot),
        Some(PERSON_SIZE),
        "the snapshot is the full-size frame"
    );
    assert!(
        stack
            .stage
            .metric("events_webhook_delivered_total", &["hook=\"0\""])
            .await
            >= 4.0
    );
    stop.cancel();
}

/// One MQTT message as a subscriber saw it.
#[derive(Debug, Clone)]
struct Mqtt {
    topic: String,
    payload: bytes::Bytes,
    retain: bool,
}

impl Mqtt {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).unwrap_or_default()
    }
}

/// A subscriber to everything on the broker, ready once subscribed.
struct MqttWatch {
    seen: Arc<Mutex<Vec<Mqtt>>>,
    _client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl MqttWatch {
    async fn start(port: u16, id: &str) -> MqttWatch {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(4 << 20, 64 << 10);
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client
            .subscribe("#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kept, ready) = (seen.clone(), subscribed.clone());
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => {
                        kept.lock().expect("lock").push(Mqtt {
                            topic: p.topic.clone(),
                            payload: p.payload.clone(),
                            retain: p.retain,
                        })
                    }
                    Ok(rumqttc::Event::Incoming(Packet::SubAck(_))) => {
                        ready.store(true, std::sync::atomic::Ordering::SeqCst)
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        wait_for("the MQTT subscription", Duration::from_secs(10), || {
            let ready = subscribed.clone();
            async move {
                ready
                    .load(std::sync::atomic::Ordering::SeqCst)
                    .then_some(())
            }
        })
        .await;
        MqttWatch {
            seen,
            _client: client,
            task,
        }
    }

    fn seen(&self) -> Vec<Mqtt> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until the messages so far satisfy `check`; what it returns.
    async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Mqtt]) -> Option<T>,
    ) -> T {
        let check = &check;
        wait_for(what, timeout, || async move { check(&self.seen()) }).await
    }
}

impl Drop for MqttWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const STATE: &str = "mjpeg-fanout/cam0/person";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_sees_discovery_on_then_off_and_the_events_over_mqtt() {
    let broker = Mosquitto::start().await;
    let watch = MqttWatch::start(broker.port, "test-watch").await;
    let scene = person_then_dog();
    let stack = Stack::start(&scene, None, &["--mqtt", &broker.url()]);

    // ON, then OFF once the person has gone for a second.
    let on_at = watch
        .wait("ON for the person", FIRST_EVENT, |m| {
            m.iter().position(|m| m.topic == STATE && m.text() == "ON")
        })
        .await;
    watch
        .wait("OFF after the ON", Duration::from_secs(30), |m| {
            m[on_at..]
                .iter()
                .any(|m| m.topic == STATE && m.text() == "OFF")
                .then_some(())
        })
        .await;
    // The events JSON: a start and the end of the same event.
    let events: Vec<Value> = watch
        .seen()
        .iter()
        .filter(|m| m.topic == "mjpeg-fanout/events")
        .map(|m| serde_json::from_slice(&m.payload).expect("events JSON"))
        .collect();
    let start = events
        .iter()
        .find(|v| v["type"] == "start" && v["event"]["label"] == "person")
        .unwrap_or_else(|| panic!("no start on mjpeg-fanout/events: {events:?}"));
    let id = event_id(start);
    assert_eq!(start["event"]["stream"], "cam0");
    watch
        .wait("the event's end as JSON", Duration::from_secs(10), |m| {
            m.iter()
                .filter(|m| m.topic == "mjpeg-fanout/events")
                .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
                .any(|v| v["type"] == "end" && event_id(&v) == id)
                .then_some(())
        })
        .await;
    let seen = watch.seen();
    assert!(
        seen.iter()
            .any(|m| m.topic == "mjpeg-fanout/cam0/person/count" && m.text() == "1"),
        "count 1 while the person was there"
    );
    assert!(
        seen.iter()
            .any(|m| m.topic == "mjpeg-fanout/available" && m.text() == "online")
    );

    // Home Assistant started later still finds everything: the discovery
    // configs, availability and the snapshot are retained.
    let late = MqttWatch::start(broker.port, "test-late").await;
    let configs = late
        .wait(
            "the retained discovery configs",
            Duration::from_secs(10),
            |m| {
                let c: Vec<(String, Value)> = m
                    .iter()
                    .filter(|m| m.retain && m.topic.starts_with("homeassistant/"))
                    .filter(|m| m.topic.ends_with("/config") && m.topic.contains("cam0_person"))
                    .map(|m| {
                        let v = serde_json::from_slice(&m.payload)
                            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", m.topic));
                        (m.topic.clone(), v)
                    })
                    .collect();
                (c.len() >= 3).then_some(c)
            },
        )
        .await;
    let mut unique = std::collections::BTreeSet::new();
    for (topic, v) in &configs {
        let uid = v["unique_id"].as_str().unwrap_or_default();
        assert!(!uid.is_empty(), "{topic}: no unique_id: {v}");
        assert!(
            unique.insert(uid.to_string()),
            "{topic}: unique_id {uid} twice"
        );
        assert_eq!(v["device"]["name"], "cam0", "{topic}: {v}");
        assert!(
            v["device"]["identifiers"]
                .as_array()
                .is_some_and(|i| !i.is_empty()),
            "{topic}: device without identifiers: {v}"
        );
        assert_eq!(
            v["availability"][0]["topic"], "mjpeg-fanout/available",
            "{topic}: {v}"
        );
        let kind = topic.split('/').nth(1).unwrap_or_default();
        let state = match kind {
            "binary_sensor" => &v["state_topic"],
            "sensor" => &v["state_topic"],
            "camera" => &v["topic"],
            other => panic!("unexpected component {other} in {topic}"),
        };
        let want = match kind {
            "binary_sensor" => STATE.to_string(),
            "sensor" => format!("{STATE}/count"),
            _ => format!("{STATE}/snapshot"),
        };
        assert_eq!(state.as_str(), Some(want.as_str()), "{topic}: {v}");
    }
    let kinds: std::collections::BTreeSet<&str> = configs
        .iter()
        .filter_map(|(t, _)| t.split('/').nth(1))
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["binary_sensor", "camera", "sensor"]
    );
    let snapshot = late
        .wait("the retained snapshot", Duration::from_secs(10), |m| {
            m.iter()
                .find(|m| m.retain && m.topic == format!("{STATE}/snapshot"))
                .cloned()
        })
        .await;
    assert_eq!(
        stream_common::jpeg::dimensions(&snapshot.payload),
        Some(PERSON_SIZE),
        "the retained snapshot is the full-size frame"
    );
    assert!(
        late.seen()
            .iter()
            .any(|m| m.retain && m.topic == "mjpeg-fanout/available" && m.text() == "online")
    );
    assert!(stack.stage.metric("events_mqtt_connected", &[]).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_while_only_the_dog_is_shown() {
    let hook = WebhookReceiver::start(200).await;
    let url = hook.url("/hook");
    let dir = darknet_picture_dir("dog.jpg");
    let stack = Stack::start(&dir, None, &["--webhook", &url]);
    // Fifteen analysed frames of the dog (3 s at 5 a second, six times the
    // time an event needs) reach the stage ...
    wait_metric(
        stack.stage.metrics,
        "events_detections_messages_total",
        &["stream=\"cam0\""],
        15.0,
        FIRST_EVENT,
    )
    .await;
    // ... and make no event.
    assert_eq!(stack.stage.metric("events_published_total", &[]).await, 0.0);
    assert!(hook.received().is_empty(), "{:?}", hook.received());
    assert_eq!(
        stack
            .detector
            .metric("detector_detections_total", &["label=\"person\""])
            .await,
        0.0
    );

    // The same camera then showing the person does make one: the stage was
    // listening all along.
    let staged = dir.path().join("a-person.part");
    std::fs::copy("/usr/share/darknet/data/person.jpg", &staged).expect("copy");
    std::fs::rename(&staged, dir.path().join("a-person.jpg")).expect("rename");
    std::fs::remove_file(dir.path().join("dog.jpg")).expect("remove the dog");
    hook.wait_for(
        "a person event once the person shows",
        Duration::from_secs(30),
        |h| is_person(h, "start"),
    )
    .await;
}
