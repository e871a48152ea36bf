//! Subscribe on demand, against real gateways: two gateways on
//! one publisher of 8 cameras, with viewers on 2 of them, each take
//! full-rate frames only of the cameras their own viewers watch and a
//! preview of every camera; a new viewer of an unwatched camera sees a
//! picture at once and then live video; once its last viewer has gone and
//! the linger passed, the camera's frames stop coming in.
//!
//! Twice: with a real `frame-producer` carrying 8 test-pattern cameras
//! (which also encodes nothing at full rate for unwatched cameras), and
//! with a plain ZeroMQ PUB socket (zmq.rs, as pyzmq's), whose filtering at
//! the publisher is all a third-party publisher offers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frame_wire::{Kind, Limits};
use futures_util::{SinkExt, StreamExt};
use test_support::gateway::Gateway;
use test_support::http::{self, MjpegReader, ReceivedFrame};
use test_support::media::solid_jpeg;
use test_support::metrics::metric_value;
use test_support::process::Proc;
use test_support::producer::Producer;
use test_support::publisher::header;
use test_support::wait_for;
use tokio_tungstenite::tungstenite::Message;

const CAMERAS: usize = 8;

/// What publishes the cameras, and how its pictures look: full-rate frames
/// and previews differ in size, so a viewer can tell them apart.
struct Setup {
    endpoint: String,
    full: (u32, u32),
    preview: (u32, u32),
    /// A real producer, whose `producer_frames_encoded_total` is checked.
    producer: Option<Producer>,
}

/// The in-test publisher's pictures and rate.
const FULL: (u32, u32) = (160, 120);
const PREVIEW: (u32, u32) = (32, 24);
const FPS: u64 = 20;

/// A version 3 publisher in the test: every camera's frames at [`FPS`] on
/// `f/<cam>/` and a preview a second on `p/<cam>/`, over zmq.rs's PUB
/// socket, which sends each subscriber only what it subscribed to.
struct Publisher {
    endpoint: String,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    async fn start() -> Publisher {
        let mut publisher = test_support::publisher::Publisher::bind()
            .await
            .expect("bind PUB");
        let endpoint = publisher.endpoint.clone();
        let pictures: Vec<(Bytes, Bytes)> = (0..CAMERAS)
            .map(|i| {
                let rgb = [30 * i as u8, 100, 200];
                (
                    solid_jpeg(FULL.0, FULL.1, rgb),
                    solid_jpeg(PREVIEW.0, PREVIEW.1, rgb),
                )
            })
            .collect();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / FPS));
            for seq in 0u64.. {
                tick.tick().await;
                for (i, (full, preview)) in pictures.iter().enumerate() {
                    let mut messages = vec![(Kind::Frame, full, FULL)];
                    if seq % FPS == i as u64 % FPS {
                        messages.push((Kind::Preview, preview, PREVIEW));
                    }
                    for (kind, jpeg, size) in messages {
                        let now = stream_common::unix_now_ns();
                        let header = header(&format!("cam{i}"), seq, now, size);
                        let parts = frame_wire::encode_message(
                            kind,
                            &header,
                            jpeg.clone(),
                            &Limits::default(),
                            None,
                        )
                        .expect("encode");
                        publisher.send_raw(parts).await.expect("send");
                    }
                }
            }
        });
        Publisher { endpoint, task }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn gateway(producer: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut args = vec!["--threads", "1"];
    args.extend_from_slice(extra);
    let g = Gateway::start(&[producer], &args, &[]);
    (g.proc, g.addr)
}

async fn metrics(addr: SocketAddr) -> String {
    test_support::metrics::scrape(addr).await.expect("metrics")
}

/// Bytes of `kind` messages of `cam` the gateway at `addr` received.
fn bytes_in(text: &str, cam: &str, kind: &str) -> f64 {
    let (s, k) = (format!("stream=\"{cam}\""), format!("kind=\"{kind}\""));
    metric_value(text, "gateway_received_bytes_total", &[&s, &k])
}

fn subscribed(text: &str, cam: &str) -> f64 {
    let s = format!("stream=\"{cam}\"");
    metric_value(text, "gateway_stream_subscribed", &[&s])
}

/// Reads until `n` full-rate frames (of size `full`) in a row, each
/// captured after the one before (previews and the keeper's re-sends do
/// not count).
async fn live_frames(v: &mut MjpegReader, full: (u32, u32), n: usize) {
    let (mut run, mut last) = (0, 0.0);
    while run < n {
        let f: ReceivedFrame = v
            .next_frame_within(Duration::from_secs(3))
            .await
            .expect("frame");
        let ts = f.timestamp().expect("X-Timestamp");
        let is_full = stream_common::jpeg::dimensions(&f.jpeg) == Some(full);
        run = if is_full && ts > last { run + 1 } else { 0 };
        last = ts;
    }
}

/// Frames the producer encoded at full rate, per camera (none without one).
async fn encoded(setup: &Setup, cams: &[String]) -> Vec<f64> {
    let Some(p) = &setup.producer else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for cam in cams {
        let s = format!("stream=\"{cam}\"");
        out.push(p.metric("producer_frames_encoded_total", &[&s]).await);
    }
    out
}

/// Waits until `n` more previews of `cam` came into the gateway at `addr`.
async fn previews(addr: SocketAddr, cam: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = bytes_in(&metrics(addr).await, cam, "preview");
    let mut seen = 0;
    while seen < n {
        assert!(Instant::now() < deadline, "{n} previews of {cam} on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = bytes_in(&metrics(addr).await, cam, "preview");
        if now > last {
            seen += 1;
            last = now;
        }
    }
}

#[tokio::test]
async fn a_producer_of_8_cameras_sends_each_gateway_only_what_its_viewers_watch() {
    let mut args = vec!["--preview-width".to_string(), "64".into()];
    for i in 0..CAMERAS {
        args.push("--camera".into());
        args.push(format!(
            "name=cam{i},source=test-pattern,size=320x240,fps=10"
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let producer = Producer::start(&args);
    let setup = Setup {
        endpoint: producer.endpoint.clone(),
        full: (320, 240),
        preview: (64, 48),
        producer: Some(producer),
    };
    subscribe_on_demand(&setup).await;
}

#[tokio::test]
async fn a_plain_zeromq_publisher_sends_each_gateway_only_what_its_viewers_watch() {
    let publisher = Publisher::start().await;
    let setup = Setup {
        endpoint: publisher.endpoint.clone(),
        full: FULL,
        preview: PREVIEW,
        producer: None,
    };
    subscribe_on_demand(&setup).await;
}

async fn subscribe_on_demand(setup: &Setup) {
    // Snapshots that do not wait (and so do not subscribe) for a full frame.
    let linger = ["--subscribe-linger", "0.5", "--snapshot-wait", "0"];
    let (_a, a) = gateway(&setup.endpoint, &linger);
    let (_b, b) = gateway(&setup.endpoint, &linger);
    let cams: Vec<String> = (0..CAMERAS).map(|i| format!("cam{i}")).collect();
    let (full, preview) = (setup.full, setup.preview);

    // Previews alone make every camera known and online, with a snapshot.
    for addr in [a, b] {
        wait_for("every camera online", Duration::from_secs(15), || async {
            let api: serde_json::Value =
                serde_json::from_str(&http::get(addr, "/api/streams").await.ok()?.text()).ok()?;
            let online = api["streams"]
                .as_array()?
                .iter()
                .filter(|s| s["online"] == true)
                .count();
            (online == CAMERAS).then_some(())
        })
        .await;
        let snap = http::get(addr, "/snapshot/cam3").await.expect("snapshot");
        assert_eq!(snap.head.status, 200);
        let size = stream_common::jpeg::dimensions(&snap.body);
        assert_eq!(size, Some(preview), "the preview");
        assert_eq!(snap.head.header("x-snapshot"), Some("preview"));
    }
    let text = metrics(a).await;
    assert_eq!(
        metric_value(&text, "gateway_received_bytes_total", &["kind=\"frame\""]),
        0.0,
        "no full-rate frame while nobody watches"
    );

    // One MJPEG viewer of cam1 on A; one page watching cam2 on B.
    let mut on_a = MjpegReader::open(a, "/stream/cam1").await.expect("cam1");
    let (mut on_b, _) = tokio_tungstenite::connect_async(format!("ws://{b}/ws"))
        .await
        .expect("WebSocket");
    on_b.send(Message::text(r#"{"watch":["cam2"]}"#))
        .await
        .expect("watch");
    live_frames(&mut on_a, full, 10).await;
    let mut page_frames = 0;
    while page_frames < 10 {
        let msg = tokio::time::timeout(Duration::from_secs(3), on_b.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("valid");
        if let Message::Binary(m) = msg {
            let jpeg = &m[3 + usize::from(m[2]) + 16..];
            if stream_common::jpeg::dimensions(jpeg) == Some(full) {
                page_frames += 1;
            }
        }
    }
    // While they watch, every camera's previews keep coming to both, and
    // the producer encodes full-rate frames of the watched cameras only.
    let encoded_before = encoded(setup, &cams).await;
    for cam in ["cam0", "cam7"] {
        previews(a, cam, 2).await;
        previews(b, cam, 2).await;
    }
    let encoded_after = encoded(setup, &cams).await;
    for (i, (before, after)) in encoded_before.iter().zip(&encoded_after).enumerate() {
        if i == 1 || i == 2 {
            assert!(
                after > before,
                "cam{i} is watched: encoded {before} then {after}"
            );
        } else {
            assert_eq!(after, before, "cam{i} is watched by nobody");
        }
    }
    for (addr, watched) in [(a, "cam1"), (b, "cam2")] {
        let text = metrics(addr).await;
        for cam in &cams {
            let frames = bytes_in(&text, cam, "frame");
            assert!(
                bytes_in(&text, cam, "preview") > 0.0,
                "{addr} {cam}: previews"
            );
            if cam == watched {
                assert!(frames > 0.0, "{addr} {cam}: full rate");
                assert_eq!(subscribed(&text, cam), 1.0, "{addr} {cam}");
            } else {
                assert_eq!(frames, 0.0, "{addr} {cam}: watched by nobody here");
                assert_eq!(subscribed(&text, cam), 0.0, "{addr} {cam}");
            }
        }
    }

    // A new viewer of an unwatched camera: a picture at once (its preview),
    // then live video.
    let opened = Instant::now();
    let mut cam5 = MjpegReader::open(a, "/stream/cam5").await.expect("cam5");
    let first = cam5
        .next_frame_within(Duration::from_secs(1))
        .await
        .expect("a picture within 1 s");
    assert_eq!(first.header("x-source-online"), Some("true"));
    eprintln!("first picture of cam5 after {:?}", opened.elapsed());
    live_frames(&mut cam5, full, 10).await;
    let text = metrics(a).await;
    assert!(bytes_in(&text, "cam5", "frame") > 0.0);
    assert_eq!(subscribed(&text, "cam5"), 1.0);

    // Its viewer leaves: after the linger, A unsubscribes and cam5's
    // full-rate bytes stop growing while its previews go on.
    drop(cam5);
    wait_for("cam5 unsubscribed", Duration::from_secs(10), || async {
        (subscribed(&metrics(a).await, "cam5") == 0.0).then_some(())
    })
    .await;
    previews(a, "cam5", 1).await;
    let stopped = bytes_in(&metrics(a).await, "cam5", "frame");
    previews(a, "cam5", 2).await;
    let text = metrics(a).await;
    assert_eq!(
        bytes_in(&text, "cam5", "frame"),
        stopped,
        "no frame after the linger"
    );
    // cam1's viewer is still there, at full rate.
    assert_eq!(subscribed(&text, "cam1"), 1.0);
    live_frames(&mut on_a, full, 5).await;
}

/// A camera nobody watches sends a preview a second: with `--stale-after`
/// and `--resubscribe-after` well under that, the gateway neither calls it
/// offline nor recreates its socket.
#[tokio::test]
async fn a_camera_seen_only_by_its_previews_stays_online_and_its_socket_is_kept() {
    let producer = Producer::start(&[
        "--camera",
        "name=solo,source=test-pattern,size=320x240,fps=10",
    ]);
    let quick = ["--stale-after", "0.5", "--resubscribe-after", "0.5"];
    let (gateway, addr) = gateway(&producer.endpoint, &quick);
    wait_for("solo online", Duration::from_secs(15), || async {
        let api = http::get(addr, "/api/streams").await.ok()?.text();
        api.contains("\"online\":true").then_some(())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = bytes_in(&metrics(addr).await, "solo", "preview");
    let mut seen = 0;
    while seen < 4 {
        assert!(Instant::now() < deadline, "previews stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let api = http::get(addr, "/api/streams").await.expect("api").text();
        assert!(api.contains("\"online\":true"), "went offline: {api}");
        let text = metrics(addr).await;
        assert_eq!(bytes_in(&text, "solo", "frame"), 0.0, "nobody watches");
        let now = bytes_in(&text, "solo", "preview");
        if now > last {
            seen += 1;
            last = now;
        }
    }
    let text = metrics(addr).await;
    assert_eq!(
        metric_value(&text, "gateway_resubscribes_total", &[]),
        0.0,
        "socket recreated while previews came"
    );
    assert!(!gateway.log().contains("stream offline"));
}
