//! The MQTT broker going away, with the real stack (producer, real
//! detector, event stage, Debian's mosquitto): killed in the middle of an
//! event and started again on the same port, the stage reconnects by itself
//! and the subscriber still gets the event's `OFF` and its `end` JSON, which
//! the stage made while the broker was down; hung (SIGSTOP) for a minute,
//! detection and the gateway carry on, the stage's MQTT queue stays within
//! its bound with its drops counted, and once the broker is back the stage
//! says `online` again and every start that went out gets its end.
//!
//! The subscriber here keeps a persistent session (clean session off, QoS 1),
//! as a consumer that must not miss events does: the broker then queues what
//! is published while it is away. Home Assistant itself subscribes afresh
//! and relies on the retained state, which is checked too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use serde_json::Value;
use test_support::detector::{Detector, PictureDir, darknet_scene_dir};
use test_support::events::EventStage;
use test_support::gateway::Gateway;
use test_support::mosquitto::Mosquitto;
use test_support::producer::Producer;
use test_support::{http, wait_for};

/// Long enough for the first event: the model loads, everything connects,
/// on a shared, busy machine.
const FIRST_EVENT: Duration = Duration::from_secs(90);
const STATE: &str = "mjpeg-fanout/cam0/person";
const EVENTS: &str = "mjpeg-fanout/events";
const AVAILABLE: &str = "mjpeg-fanout/available";

struct Stack {
    producer: Producer,
    detector: Detector,
    stage: EventStage,
}

impl Stack {
    /// Producer at 10 fps playing `scene`, detector at 5 fps, stage with
    /// short times (an event after 0.5 s, ended 1 s after) and `extra`.
    fn start(scene: &PictureDir, extra: &[&str]) -> Stack {
        let producer = Producer::start(&["--source", scene.arg(), "--fps", "10"]);
        let detector = Detector::start(&[&producer.endpoint], &["--detect-fps", "5"]);
        let mut args = vec!["--event-min-seconds", "0.5", "--event-end-after", "1"];
        args.extend_from_slice(extra);
        let stage = EventStage::start(&[&detector.endpoint], &[&producer.endpoint], &args);
        Stack {
            producer,
            detector,
            stage,
        }
    }
}

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

    fn event(&self) -> Option<Value> {
        (self.topic == EVENTS)
            .then(|| serde_json::from_slice(&self.payload).ok())
            .flatten()
    }
}

/// A subscriber to everything, reconnecting by itself; with `persistent`
/// its session (and so its subscription and what is queued for it) lives
/// on the broker while it is away, otherwise it subscribes again on every
/// connection.
struct Watch {
    seen: Arc<Mutex<Vec<Mqtt>>>,
    _client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    async fn start(port: u16, id: &str, persistent: bool) -> Watch {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(!persistent)
            .set_max_packet_size(4 << 20, 64 << 10);
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(AtomicBool::new(false));
        let (kept, ready, sub) = (seen.clone(), subscribed.clone(), client.clone());
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
                    Ok(rumqttc::Event::Incoming(Packet::ConnAck(c))) if !c.session_present => {
                        // A new session: subscribe (again). try_: this task
                        // is the one that empties the request channel.
                        let _ = sub.try_subscribe("#", QoS::AtLeastOnce);
                    }
                    Ok(rumqttc::Event::Incoming(Packet::SubAck(_))) => {
                        ready.store(true, Ordering::SeqCst)
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        wait_for("the MQTT subscription", Duration::from_secs(10), || {
            let ready = subscribed.clone();
            async move { ready.load(Ordering::SeqCst).then_some(()) }
        })
        .await;
        Watch {
            seen,
            _client: client,
            task,
        }
    }

    fn seen(&self) -> Vec<Mqtt> {
        self.seen.lock().expect("lock").clone()
    }

    async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Mqtt]) -> Option<T>,
    ) -> T {
        let check = &check;
        wait_for(what, timeout, || async move { check(&self.seen()) }).await
    }

    /// The events JSON seen so far.
    fn events(&self) -> Vec<Value> {
        self.seen().iter().filter_map(Mqtt::event).collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn event_id(v: &Value) -> String {
    v["event"]["id"].as_str().unwrap_or_default().to_string()
}

fn is_end_of(v: &Value, id: &str) -> bool {
    v["type"] == "end" && event_id(v) == id
}

/// Waits until the stage's gauge `name` is exactly `want`.
async fn wait_gauge(stage: &EventStage, name: &str, want: f64, timeout: Duration) {
    wait_for(&format!("{name} == {want}"), timeout, || async move {
        (stage.metric(name, &[]).await == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_event_gets_the_end_after_it_restarts() {
    let mut broker = Mosquitto::persistent().await;
    let watch = Watch::start(broker.port, "test-watch", true).await;
    // The broker has saved the watcher's session to disk since it subscribed.
    let subscribed = std::time::SystemTime::now();
    let db = broker.database().expect("persistent");
    wait_for(
        "mosquitto to save the session",
        Duration::from_secs(10),
        || {
            let db = db.clone();
            async move {
                let saved = std::fs::metadata(&db).ok()?.modified().ok()?;
                (saved > subscribed).then_some(())
            }
        },
    )
    .await;
    // The person for 8 s: time to kill the broker before the event ends.
    let scene = darknet_scene_dir(&[("person.jpg", 80), ("dog.jpg", 50)]);
    let stack = Stack::start(&scene, &["--mqtt", &broker.url()]);

    let on_at = watch
        .wait("ON for the person", FIRST_EVENT, |m| {
            m.iter().position(|m| m.topic == STATE && m.text() == "ON")
        })
        .await;
    // The start JSON goes out before the state.
    let start = watch
        .events()
        .into_iter()
        .find(|v| v["type"] == "start" && v["event"]["label"] == "person")
        .expect("the start JSON before ON");
    let id = event_id(&start);
    broker.kill().await;
    let acked = stack
        .stage
        .metric("events_mqtt_published_total", &["what=\"event\""])
        .await;
    assert!(
        !watch.events().iter().any(|v| is_end_of(v, &id)),
        "the event ended before the broker was killed: the test proves nothing"
    );
    // The stage makes the end while the broker is down.
    wait_gauge(
        &stack.stage,
        "events_mqtt_connected",
        0.0,
        Duration::from_secs(30),
    )
    .await;
    test_support::metrics::wait_metric(
        stack.stage.metrics,
        "events_published_total",
        &["phase=\"end\""],
        1.0,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        stack.stage.metric("events_mqtt_connected", &[]).await,
        0.0,
        "the end was made while the broker was down"
    );
    // Waiting (queued, or held by the publisher), not acknowledged.
    assert_eq!(
        stack
            .stage
            .metric("events_mqtt_published_total", &["what=\"event\""])
            .await,
        acked
    );

    broker.restart().await;
    // The stage reconnects by itself and delivers what it queued.
    watch
        .wait(
            "the event's end JSON after the restart",
            Duration::from_secs(60),
            |m| {
                m.iter()
                    .filter_map(Mqtt::event)
                    .any(|v| is_end_of(&v, &id))
                    .then_some(())
            },
        )
        .await;
    watch
        .wait("OFF after the ON", Duration::from_secs(30), |m| {
            m[on_at..]
                .iter()
                .any(|m| m.topic == STATE && m.text() == "OFF")
                .then_some(())
        })
        .await;
    let ends = watch.events().iter().filter(|v| is_end_of(v, &id)).count();
    assert!(ends >= 1);
    assert!(
        stack
            .stage
            .metric("events_mqtt_connections_total", &["result=\"ok\""])
            .await
            >= 2.0
    );
    // Home Assistant subscribing afresh finds the state as it is now: OFF
    // and online (the stage publishes its retained state again after every
    // connection, whatever the broker remembered).
    let fresh = Watch::start(broker.port, "test-fresh", false).await;
    fresh
        .wait(
            "the retained OFF and online",
            Duration::from_secs(30),
            |m| {
                let last = |topic: &str| m.iter().rev().find(|m| m.topic == topic && m.retain);
                let off = last(STATE).is_some_and(|m| m.text() == "OFF");
                let online = last(AVAILABLE).is_some_and(|m| m.text() == "online");
                (off && online).then_some(())
            },
        )
        .await;
    drop(stack);
}

/// Counters sampled through a window of the broker's outage.
#[derive(Debug, Clone, Copy)]
struct Sample {
    analysed: f64,
    detections_in: f64,
    snapshot_ts: f64,
    queued: f64,
}

async fn sample(stack: &Stack, gateway: &Gateway) -> Sample {
    let snapshot_ts = match http::get(gateway.addr, "/snapshot/cam0").await {
        Ok(r) => r
            .head
            .header("x-timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0),
        Err(_) => 0.0,
    };
    Sample {
        analysed: stack
            .detector
            .metric("detector_frames_analysed_total", &[])
            .await,
        detections_in: stack
            .stage
            .metric("events_detections_messages_total", &[])
            .await,
        snapshot_ts,
        queued: stack.stage.metric("events_mqtt_queued", &[]).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_hung_for_a_minute_slows_nothing_and_loses_no_end() {
    const QUEUE: f64 = 4.0;
    const OUTAGE: Duration = Duration::from_secs(60);
    let broker = Mosquitto::start().await;
    let watch = Watch::start(broker.port, "test-watch", true).await;
    // The person 3 s, the dog 4 s: an event every 7 s, each a start, an
    // update or two and an end: far more than the queue holds in a minute.
    let scene = darknet_scene_dir(&[("person.jpg", 30), ("dog.jpg", 40)]);
    let stack = Stack::start(&scene, &["--mqtt", &broker.url(), "--mqtt-queue", "4"]);
    let gateway = Gateway::start(&[&stack.producer.endpoint], &[], &[]);
    gateway.wait_stream("cam0", Duration::from_secs(30)).await;
    watch
        .wait("ON for the person", FIRST_EVENT, |m| {
            m.iter()
                .any(|m| m.topic == STATE && m.text() == "ON")
                .then_some(())
        })
        .await;

    // SIGSTOP: the broker holds every connection open and answers nothing,
    // the worst a slow broker can do.
    broker.proc.signal(19);
    let stopped = Instant::now();
    // The queue's length, read five times a second all along.
    let queue_watch = {
        let metrics = stack.stage.metrics;
        tokio::spawn(async move {
            let mut most: f64 = 0.0;
            let mut reads = 0u32;
            while stopped.elapsed() < OUTAGE {
                most = most
                    .max(test_support::metrics::metric(metrics, "events_mqtt_queued", &[]).await);
                reads += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (most, reads)
        })
    };
    let mut samples = vec![sample(&stack, &gateway).await];
    let mut disconnected = false;
    let mut every = tokio::time::interval(Duration::from_secs(10));
    every.tick().await;
    while stopped.elapsed() < OUTAGE {
        every.tick().await;
        samples.push(sample(&stack, &gateway).await);
        disconnected |= stack.stage.metric("events_mqtt_connected", &[]).await == 0.0;
    }
    let events_during = stack
        .stage
        .metric("events_published_total", &["phase=\"start\""])
        .await;
    let dropped = stack.stage.metric("events_mqtt_dropped_total", &[]).await;
    let resumed_at = watch.seen().len();
    broker.proc.signal(18);
    let (queued_most, queue_reads) = queue_watch.await.expect("queue watch");
    eprintln!(
        "outage: {samples:?}; at most {queued_most} queued ({queue_reads} reads), \
         {dropped} dropped, {events_during} starts made"
    );

    // Through every 10 s of the outage the detector analysed frames, the
    // stage took them in and the gateway served fresh frames.
    for w in samples.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert!(b.analysed > a.analysed, "detection stalled: {a:?} -> {b:?}");
        assert!(
            b.detections_in > a.detections_in,
            "the stage stalled: {a:?} -> {b:?}"
        );
        assert!(
            b.snapshot_ts > a.snapshot_ts,
            "the gateway's frames went stale: {a:?} -> {b:?}"
        );
    }
    let first = samples[0];
    let last = samples[samples.len() - 1];
    // 5 fps asked for; a loaded 2-core machine gives less, never nothing.
    assert!(
        last.analysed - first.analysed >= 60.0,
        "{} frames analysed in {OUTAGE:?}",
        last.analysed - first.analysed
    );
    let most_queued = samples.iter().map(|s| s.queued).fold(queued_most, f64::max);
    assert!(queue_reads >= 100, "{queue_reads} reads of the queue");
    assert!(
        most_queued <= QUEUE,
        "{most_queued} queued for MQTT, bound {QUEUE}"
    );
    assert!(
        most_queued >= 1.0,
        "nothing ever queued: the test proves nothing"
    );
    assert!(disconnected, "the stage never noticed the broker hung");
    assert!(
        dropped >= 1.0,
        "{dropped} dropped for MQTT, {events_during} events made"
    );

    // Back: the stage reconnects by itself and says so.
    wait_gauge(
        &stack.stage,
        "events_mqtt_connected",
        1.0,
        Duration::from_secs(60),
    )
    .await;
    watch
        .wait(
            "online again after the outage",
            Duration::from_secs(60),
            |m| {
                m[resumed_at..]
                    .iter()
                    .rev()
                    .find(|m| m.topic == AVAILABLE)
                    .is_some_and(|m| m.text() == "online")
                    .then_some(())
            },
        )
        .await;
    assert!(
        stack
            .stage
            .metric("events_mqtt_connections_total", &["result=\"ok\""])
            .await
            >= 2.0
    );
    // No end lost: every start that went out gets its end (what was dropped
    // is whole events that never went out, and updates).
    let starts: Vec<String> = watch
        .events()
        .iter()
        .filter(|v| v["type"] == "start")
        .map(event_id)
        .collect();
    assert!(starts.len() >= 2, "{starts:?}");
    watch
        .wait(
            "an end for every start that went out",
            Duration::from_secs(60),
            |m| {
                let events: Vec<Value> = m.iter().filter_map(Mqtt::event).collect();
                starts
                    .iter()
                    .all(|id| events.iter().any(|v| is_end_of(v, id)))
                    .then_some(())
            },
        )
        .await;
    // Nothing of a dropped event went out: no end without its start.
    let events = watch.events();
    for v in events.iter().filter(|v| v["type"] == "end") {
        let id = event_id(v);
        assert!(
            events
                .iter()
                .any(|s| s["type"] == "start" && event_id(s) == id),
            "an end without its start: {v}"
        );
    }
    let fresh = Watch::start(broker.port, "test-fresh", false).await;
    fresh
        .wait("the retained online", Duration::from_secs(30), |m| {
            m.iter()
                .rev()
                .find(|m| m.topic == AVAILABLE && m.retain)
                .is_some_and(|m| m.text() == "online")
                .then_some(())
        })
        .await;
}
