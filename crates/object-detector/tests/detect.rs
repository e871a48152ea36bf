//! End to end on loopback with the real binaries and the real model: the
//! producer's file source publishes a picture, the detector analyses it and
//! publishes detections, and a ZeroMQ subscriber here reads them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use frame_wire::{Detections, FrameHeader, Message};
use test_support::detector::{Detector, darknet_picture_dir as picture_dir};
use test_support::producer::Producer;
use test_support::publisher::Publisher;
use test_support::zmq::Subscriber;
use test_support::{free_port, wait_for};

/// The person in darknet's person.jpg (640x424), in pixels: a woman
/// standing left of centre beside a horse and a dog. Measured with the
/// model (0.995 at threshold 0.3) and checked by eye; the horse and the
/// dog are not people.
const PERSON_BOX: (f32, f32, f32, f32) = (183.0, 104.0, 273.0, 382.0);
const PERSON_SIZE: (f32, f32) = (640.0, 424.0);

fn iou(a: (f32, f32, f32, f32), b: (f32, f32, f32, f32)) -> f32 {
    let ix = a.2.min(b.2) - a.0.max(b.0);
    let iy = a.3.min(b.3) - a.1.max(b.1);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    inter / ((a.2 - a.0) * (a.3 - a.1) + (b.2 - b.0) * (b.3 - b.1) - inter)
}

/// A subscriber to every detections message `detector` publishes.
async fn detections(detector: &Detector) -> Subscriber {
    Subscriber::connect(&detector.endpoint, "d/")
        .await
        .expect("subscribe to the detector")
}

/// Detections messages of `stream` for `within`, skipping other kinds.
async fn detections_of(
    sub: &mut Subscriber,
    stream: &str,
    within: Duration,
) -> Vec<(FrameHeader, Detections)> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match sub.next_message(left).await {
            Ok(Message::Detections { header, detections }) if header.stream == stream => {
                out.push((header, detections))
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_person_in_person_jpg_within_10_s() {
    let dir = picture_dir("person.jpg");
    let producer = Producer::start(&["--source", dir.arg(), "--fps", "15"]);
    let detector = Detector::start(&[&producer.endpoint], &["--detect-fps", "5"]);
    let mut sub = detections(&detector).await;
    let started = Instant::now();
    let (header, found) = loop {
        let left = Duration::from_secs(10).saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "no detections message with the person within 10 s"
        );
        let Ok(Message::Detections { header, detections }) = sub.next_message(left).await else {
            continue;
        };
        assert_eq!(header.stream, "cam0");
        let (w, h) = PERSON_SIZE;
        let person = detections.boxes.iter().find(|b| {
            b.label == "person"
                && b.score >= 0.5
                && iou(
                    (b.x * w, b.y * h, (b.x + b.w) * w, (b.y + b.h) * h),
                    PERSON_BOX,
                ) >= 0.5
        });
        if let Some(p) = person {
            break (header.clone(), p.clone());
        }
    };
    // The message names the frame it was found in.
    assert_eq!((header.width, header.height), (640, 424));
    let age_ns = stream_common::unix_now_ns().saturating_sub(header.capture_ts_ns);
    assert!(
        age_ns < 5_000_000_000,
        "capture time carried over: {age_ns} ns ago"
    );
    assert!(found.score <= 1.0);

    // The rate is held to --detect-fps: the producer's other frames are
    // skipped and counted, never queued.
    let window = Duration::from_secs(2);
    let burst = detections_of(&mut sub, "cam0", window).await;
    assert!(
        (5..=13).contains(&burst.len()),
        "{} detections messages in {window:?} at --detect-fps 5",
        burst.len()
    );
    assert!(
        burst.windows(2).all(|w| w[1].0.seq > w[0].0.seq),
        "newest frames, in order"
    );
    assert!(
        detector
            .metric("detector_frames_skipped_total", &["stream=\"cam0\""])
            .await
            > 0.0
    );
    assert!(
        detector
            .metric("detector_frames_analysed_total", &["stream=\"cam0\""])
            .await
            >= 5.0
    );
    assert!(
        detector
            .metric(
                "detector_detections_total",
                &["stream=\"cam0\"", "label=\"person\""]
            )
            .await
            >= 1.0
    );
    assert!(
        detector
            .metric("detector_inference_seconds_count", &[])
            .await
            >= 5.0
    );
    drop(producer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_no_person_in_dog_jpg() {
    let dir = picture_dir("dog.jpg");
    let producer = Producer::start(&["--source", dir.arg(), "--fps", "15"]);
    let detector = Detector::start(&[&producer.endpoint], &[]);
    let mut sub = detections(&detector).await;
    // Wait for the first analysed frame, then look at several.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 5 {
        assert!(
            Instant::now() < deadline,
            "only {} detections messages in 10 s",
            seen.len()
        );
        seen.extend(detections_of(&mut sub, "cam0", Duration::from_millis(500)).await);
    }
    for (header, d) in &seen {
        assert_eq!(d.model, "ssdlite-mobilenet-v2-person");
        assert!(
            d.boxes.iter().all(|b| b.label != "person"),
            "frame {} of a dog, a bicycle and a truck: {:?}",
            header.seq,
            d.boxes
        );
    }
}

/// A frame of stream `junk` that passes the wire format's checks (SOI ...
/// EOI) but is no picture.
fn corrupt_frame(seq: u64) -> (FrameHeader, Bytes) {
    let header =
        test_support::publisher::header("junk", seq, stream_common::unix_now_ns(), (640, 480));
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpeg.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    jpeg.extend([0xFF, 0xD9]);
    (header, Bytes::from(jpeg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_corrupt_frames_are_counted_and_change_nothing_else() {
    let dir = picture_dir("person.jpg");
    let producer = Producer::start(&["--source", dir.arg(), "--fps", "15"]);
    let mut junk = Publisher::bind().await.expect("junk publisher");
    let mut detector = Detector::start(&[&producer.endpoint, &junk.endpoint], &[]);
    let mut sub = detections(&detector).await;

    // Send until the detector has counted both kinds of junk (its
    // subscription may not have reached the junk publisher yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    for seq in 0.. {
        assert!(
            Instant::now() < deadline,
            "garbage and a corrupt JPEG not both counted within 10 s"
        );
        let garbage = vec![
            Bytes::from_static(b"f/junk/"),
            Bytes::from_static(b"\x03not a header"),
            Bytes::from_static(b"not a jpeg"),
        ];
        let _ = junk.send_raw(garbage).await;
        let (header, jpeg) = corrupt_frame(seq);
        let _ = junk.frame(&header, &jpeg).await;
        let bad = detector
            .metric(
                "detector_bad_frames_total",
                &["stream=\"junk\"", "reason=\"jpeg\""],
            )
            .await;
        let invalid = detector
            .metric("detector_invalid_messages_total", &[])
            .await;
        if bad >= 1.0 && invalid >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Everything else goes on: the real camera's person is still found,
    // and nothing is ever published for the junk stream.
    let after = detections_of(&mut sub, "cam0", Duration::from_secs(2)).await;
    assert!(
        after
            .iter()
            .any(|(_, d)| d.boxes.iter().any(|b| b.label == "person")),
        "cam0 still analysed after the junk: {after:?}"
    );
    let junk_out = detections_of(&mut sub, "junk", Duration::from_millis(500)).await;
    assert!(
        junk_out.is_empty(),
        "nothing published for junk: {junk_out:?}"
    );
    assert!(detector.proc.try_wait().is_none(), "detector still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_stream_has_the_box_drawn() {
    let dir = picture_dir("person.jpg");
    let producer = Producer::start(&["--source", dir.arg(), "--fps", "15"]);
    let detector = Detector::start(&[&producer.endpoint], &["--annotate"]);
    let mut sub = Subscriber::connect(&detector.endpoint, "f/")
        .await
        .expect("subscribe to the detector");
    sub.subscribe("p/").await.expect("subscribe to previews");
    // Gateways that subscribe on demand learn of a stream from its previews:
    // the annotated stream has them too.
    let (mut frame, mut preview) = (None, None);
    while frame.is_none() || preview.is_none() {
        match sub.next_message(Duration::from_secs(10)).await {
            Ok(Message::Frame(f)) if f.header.stream == "cam0-detect" => frame = Some(f),
            Ok(Message::Preview(p)) if p.header.stream == "cam0-detect" => preview = Some(p),
            Ok(_) => {}
            Err(e) => panic!("no cam0-detect frame and preview within 10 s: {e}"),
        }
    }
    let (Some(frame), Some(preview)) = (frame, preview) else {
        unreachable!("the loop ends with both")
    };
    assert!(frame_wire::looks_like_jpeg(&preview.jpeg));
    let (px, w, h) = stream_common::jpeg::decode_rgb(&frame.jpeg).expect("a JPEG");
    // Drawn on the picture as decoded for the model: DCT-scaled to 3/4
    // (480x318, the smallest scale at least 300 pixels each way).
    assert_eq!((w, h), (480, 318));
    // The box's left edge runs down x = 183 * 3/4 between y = 104 * 3/4
    // and 382 * 3/4: look for the outline's green within a few pixels of
    // it at mid-height.
    let (edge_x, mid_y) = (137u32, 182u32);
    let green = (edge_x - 5..edge_x + 5).any(|x| {
        let p = &px[((mid_y * w + x) * 3) as usize..][..3];
        p[1] > 180 && p[0] < 90 && p[2] < 120
    });
    assert!(
        green,
        "the box's outline is drawn at the person's left edge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_bus_key_frames_are_verified_and_detections_signed() {
    let key_hex = "6d6a7065672d66616e6f75742d6465746563746f722d746573742d6b6579";
    let key_file = std::env::temp_dir().join(format!("detector-key-{}", std::process::id()));
    std::fs::write(&key_file, format!("{key_hex}\n")).expect("key file");
    let key_path = key_file.to_str().expect("utf-8");
    let ring = frame_wire::auth::KeyRing::parse(key_hex).expect("a valid key");
    let dir = picture_dir("person.jpg");
    let producer = Producer::start(&[
        "--source",
        dir.arg(),
        "--fps",
        "15",
        "--bus-key-file",
        key_path,
    ]);
    let detector = Detector::start(&[&producer.endpoint], &["--bus-key-file", key_path]);
    // Only a subscriber that proves the key gets anything from the detector.
    let mut sub = Subscriber::connect_keyed(&detector.endpoint, "d/", &ring)
        .await
        .expect("subscribe to the detector");
    let mut keyless_reader = detections(&detector).await;
    // Signed with the key: it verifies with the ring.
    let mut verified = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !verified {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("a signed detections message within 10 s");
        match sub.next_message_with(left, Some(&ring)).await {
            Ok(Message::Detections { header, detections }) => {
                assert_eq!(header.stream, "cam0");
                assert!(detections.boxes.iter().any(|b| b.label == "person"));
                verified = true;
            }
            Ok(_) => {}
            Err(e) => panic!("not signed with the bus key: {e}"),
        }
    }
    // The subscriber without the key got nothing while detections flowed,
    // and is let go and counted once its time to prove the key is up.
    assert!(
        keyless_reader
            .next_message(Duration::from_secs(2))
            .await
            .is_err(),
        "a subscriber without the key got detections"
    );
    test_support::metrics::wait_metric(
        detector.metrics,
        "detector_subscribers_refused_total",
        &["no_valid_token"],
        1.0,
        Duration::from_secs(10),
    )
    .await;
    sub.next_message_with(Duration::from_secs(5), Some(&ring))
        .await
        .expect("the keyed subscriber keeps receiving");
    // A detector without the key gets nothing from the producer.
    let keyless = Detector::start(&[&producer.endpoint], &[]);
    let mut keyless_sub = detections(&keyless).await;
    assert!(
        keyless_sub
            .next_message(Duration::from_secs(3))
            .await
            .is_err(),
        "a detector without the key analysed frames"
    );
    let _ = std::fs::remove_file(&key_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_model_is_a_clear_start_up_error() {
    let mut proc = test_support::process::Proc::start(
        "object-detector",
        &[
            "--model",
            "/nonexistent/ssdlite.onnx",
            "--metrics-listen",
            &format!("127.0.0.1:{}", free_port()),
        ],
        &[],
    );
    let status = wait_for("the detector to exit", Duration::from_secs(10), || {
        let status = proc.try_wait();
        async move { status }
    })
    .await;
    assert!(!status.success(), "exit code {status:?}");
    let log = proc.log();
    assert!(
        log.contains("/nonexistent/ssdlite.onnx") && log.contains("scripts/model.sh"),
        "names the file and the script: {log}"
    );
}
