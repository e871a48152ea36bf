//! End-to-end for previews and encode on demand: the real binary with
//! several cameras, read by ZeroMQ subscribers as gateways read it. Every
//! camera's preview (`p/<name>/`, small, about once a second) flows whether
//! or not anyone watches; a camera's full rate (`f/<name>/`) is encoded only
//! while a subscriber wants it, starts within a frame or so of the first
//! subscription, and stops again when the last one leaves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use frame_wire::Message;
use test_support::media;
use test_support::producer::Producer;
use test_support::wait_for;
use test_support::zmq::Subscriber;

const CAMERAS: [&str; 3] = ["cam1", "cam10", "still"];

/// Three cameras: two test patterns whose names share a prefix, and a
/// directory of JPEGs (passed through; its preview is made by a scaled
/// decode).
fn start(dir: &std::path::Path) -> Producer {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("images dir");
    std::fs::write(
        images.join("a.jpg"),
        media::solid_jpeg(640, 480, [30, 200, 60]),
    )
    .expect("write jpeg");
    let still = format!("name=still,source={},fps=10", images.display());
    Producer::start(&[
        "--camera",
        "name=cam1,source=test-pattern,size=640x480,fps=15",
        "--camera",
        "name=cam10,source=test-pattern,size=640x480,fps=15",
        "--camera",
        &still,
    ])
}

fn label(name: &str) -> String {
    format!("stream=\"{name}\"")
}

#[tokio::test]
async fn previews_flow_for_every_camera_and_full_rate_only_while_wanted() {
    let dir = media::temp_dir("on-demand");
    let p = start(&dir);
    let metric = |name: &'static str, stream: &'static str| {
        let p = &p;
        async move { p.metric(name, &[&label(stream)]).await }
    };

    // A subscriber to "p/" gets every camera's previews and nothing else.
    let mut previews = Subscriber::connect(&p.endpoint, "p/")
        .await
        .expect("subscribe");
    let mut got: BTreeMap<String, Vec<frame_wire::Frame>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !CAMERAS
        .iter()
        .all(|c| got.get(*c).is_some_and(|v| v.len() >= 4))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match previews.next_message(left).await {
            Ok(Message::Preview(f)) => got.entry(f.header.stream.clone()).or_default().push(f),
            Ok(other) => panic!("a p/ subscriber got a {:?}", other.kind()),
            Err(e) => panic!("previews so far {:?}: {e}", got.keys()),
        }
    }
    for (name, list) in &got {
        for f in list {
            assert_eq!((f.header.width, f.header.height), (320, 240), "{name}");
            let (_, w, h) = stream_common::jpeg::decode_rgb(&f.jpeg).expect("decodes");
            assert_eq!((w, h), (320, 240), "{name}");
            assert!(
                f.jpeg.len() < 40_000,
                "{name}: preview of {} bytes",
                f.jpeg.len()
            );
        }
        // About one a second, by the capture times they carry.
        for pair in list.windows(2) {
            let gap = (pair[1].header.capture_ts_ns - pair[0].header.capture_ts_ns) as f64 / 1e9;
            assert!(
                (0.5..=1.8).contains(&gap),
                "{name}: previews {gap:.2} s apart"
            );
            assert_eq!(pair[1].header.seq, pair[0].header.seq + 1, "{name}");
        }
    }

    // Nobody wants any full rate: frames are captured, none encoded.
    let captured = wait_for("cam1 captures frames", Duration::from_secs(10), || async {
        let n = metric("producer_frames_captured_total", "cam1").await;
        (n >= 30.0).then_some(n)
    })
    .await;
    assert!(captured >= 30.0);
    for name in CAMERAS {
        assert_eq!(
            metric("producer_frames_encoded_total", name).await,
            0.0,
            "{name}"
        );
        assert_eq!(
            metric("producer_frames_published_total", name).await,
            0.0,
            "{name}"
        );
        assert_eq!(
            metric("producer_topic_subscribers", name).await,
            0.0,
            "{name}"
        );
        assert!(
            metric("producer_previews_published_total", name).await >= 4.0,
            "{name}"
        );
    }
    let health = test_support::http::get(p.metrics, "/healthz")
        .await
        .expect("healthz");
    assert_eq!(health.head.status, 200, "healthy with nobody watching");

    // The first subscriber to cam1's full rate gets it at once, and only cam1's.
    let asked = Instant::now();
    let mut viewer = Subscriber::frames_of(&p.endpoint, "cam1")
        .await
        .expect("subscribe");
    let first = viewer
        .next_frame(Duration::from_secs(10))
        .await
        .expect("first full-rate frame");
    let waited = asked.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "first frame after {waited:?}"
    );
    let mut frames = vec![first];
    for _ in 0..20 {
        frames.push(
            viewer
                .next_frame(Duration::from_secs(3))
                .await
                .expect("frame"),
        );
    }
    for f in &frames {
        assert_eq!(f.header.stream, "cam1", "only cam1, never cam10");
        assert_eq!((f.header.width, f.header.height), (640, 480));
    }
    for pair in frames.windows(2) {
        assert_eq!(pair[1].header.seq, pair[0].header.seq + 1);
    }
    assert!(metric("producer_frames_encoded_total", "cam1").await >= 21.0);
    assert_eq!(metric("producer_topic_subscribers", "cam1").await, 1.0);
    assert_eq!(metric("producer_frames_encoded_total", "cam10").await, 0.0);
    assert_eq!(metric("producer_frames_encoded_total", "still").await, 0.0);
    // Previews keep flowing for the watched camera too.
    let before = metric("producer_previews_published_total", "cam1").await;
    wait_for(
        "cam1 previews while watched",
        Duration::from_secs(10),
        || async {
            (metric("producer_previews_published_total", "cam1").await > before).then_some(())
        },
    )
    .await;

    // The viewer leaves: encoding stops, capturing and previews go on.
    drop(viewer);
    wait_for("cam1 unsubscribed", Duration::from_secs(10), || async {
        (metric("producer_topic_subscribers", "cam1").await == 0.0).then_some(())
    })
    .await;
    let encoded = metric("producer_frames_encoded_total", "cam1").await;
    let captured = metric("producer_frames_captured_total", "cam1").await;
    let previewed = metric("producer_previews_published_total", "cam1").await;
    wait_for(
        "cam1 captures 30 more frames",
        Duration::from_secs(15),
        || async {
            (metric("producer_frames_captured_total", "cam1").await >= captured + 30.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        metric("producer_frames_encoded_total", "cam1").await,
        encoded,
        "encoded with nobody subscribed"
    );
    assert!(metric("producer_previews_published_total", "cam1").await > previewed);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A subscription to everything (`""`, as a gateway that watches every
/// stream) wants every camera's full rate.
#[tokio::test]
async fn subscribing_to_everything_wants_every_camera() {
    let dir = media::temp_dir("on-demand-all");
    let p = start(&dir);
    let mut all = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    let mut frames: BTreeMap<String, usize> = BTreeMap::new();
    let mut previews: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !CAMERAS.iter().all(|c| {
        frames.get(*c).is_some_and(|n| *n >= 5) && previews.get(*c).is_some_and(|n| *n >= 1)
    }) {
        let left = deadline.saturating_duration_since(Instant::now());
        match all.next_message(left).await.expect("message") {
            Message::Frame(f) => *frames.entry(f.header.stream).or_default() += 1,
            Message::Preview(f) => *previews.entry(f.header.stream).or_default() += 1,
            // Everything includes every camera's renditions and their list.
            Message::Rendition(_) | Message::Info { .. } => {}
            Message::Detections { .. } | Message::Event { .. } => {
                panic!("the producer sends no detections or events")
            }
        }
    }
    for name in CAMERAS {
        assert_eq!(
            p.metric("producer_topic_subscribers", &[&label(name)])
                .await,
            1.0,
            "{name}"
        );
        assert!(
            p.metric("producer_frames_encoded_total", &[&label(name)])
                .await
                >= 5.0
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The next preview, checked to be preview-sized.
#[cfg(feature = "ffmpeg")]
async fn small_preview(previews: &mut Subscriber) {
    let f = previews
        .next_preview(Duration::from_secs(15))
        .await
        .expect("preview");
    assert_eq!((f.header.width, f.header.height), (320, 240));
    let (_, w, h) = stream_common::jpeg::decode_rgb(&f.jpeg).expect("decodes");
    assert_eq!((w, h), (320, 240));
}

/// A decoded camera (a looped H.264 file, read like an RTSP camera, a
/// keyframe every 10 frames): while nobody watches, only its keyframes are
/// decoded, and its previews made from them; its full rate starts within a
/// keyframe interval of the first subscription.
#[cfg(feature = "ffmpeg")]
#[tokio::test]
async fn a_decoded_camera_decodes_keyframes_only_until_someone_watches() {
    let dir = media::temp_dir("on-demand-video");
    let clip = media::test_video(
        &dir.join("clip.mp4"),
        "640x480",
        25,
        4,
        &["-c:v", "libx264", "-g", "10", "-keyint_min", "10"],
    );
    let camera = format!("name=door,source={}", clip.display());
    let p = Producer::start(&["--camera", &camera]);
    let door = [label("door")];
    let door = [door[0].as_str()];
    let mut previews = Subscriber::connect(&p.endpoint, "p/door/")
        .await
        .expect("subscribe");
    small_preview(&mut previews).await;
    // Frames decoded between two previews a few seconds apart, unwatched...
    let c0 = p.metric("producer_frames_captured_total", &door).await;
    for _ in 0..3 {
        small_preview(&mut previews).await;
    }
    let unwatched = p.metric("producer_frames_captured_total", &door).await - c0;
    assert_eq!(p.metric("producer_frames_encoded_total", &door).await, 0.0);

    let asked = Instant::now();
    let mut viewer = Subscriber::frames_of(&p.endpoint, "door")
        .await
        .expect("subscribe");
    let first = viewer
        .next_frame(Duration::from_secs(10))
        .await
        .expect("full-rate frame");
    let waited = asked.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "first frame after {waited:?}"
    );
    assert_eq!((first.header.width, first.header.height), (640, 480));
    // ...and watched, over as many previews: every frame, 10 per keyframe.
    let c1 = p.metric("producer_frames_captured_total", &door).await;
    for _ in 0..3 {
        small_preview(&mut previews).await;
    }
    let watched = p.metric("producer_frames_captured_total", &door).await - c1;
    assert!(
        unwatched * 4.0 < watched,
        "decoded {unwatched} frames unwatched, {watched} watched"
    );
    assert!(p.metric("producer_frames_encoded_total", &door).await > 0.0);
    drop(viewer);
    let _ = std::fs::remove_dir_all(&dir);
}
