//! End-to-end: the real `frame-producer` binary on a free loopback port, read
//! by a ZeroMQ subscriber exactly as a gateway would.

use std::time::{Duration, Instant};

use test_support::media;
use test_support::producer::Producer;
use test_support::zmq::Subscriber;
use test_support::{free_port, wait_for};

fn start_producer(extra: &[&str]) -> Producer {
    Producer::start(extra)
}

#[tokio::test]
async fn publishes_decodable_frames_at_the_requested_rate() {
    let p = start_producer(&["--fps", "20", "--size", "320x240", "--stream", "lab"]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    // Skip the first frames: the subscription takes a moment to reach the PUB.
    let first = sub
        .next_frame(Duration::from_secs(10))
        .await
        .expect("first frame");
    let start = Instant::now();
    let mut frames = vec![first];
    while start.elapsed() < Duration::from_secs(3) {
        frames.push(sub.next_frame(Duration::from_secs(2)).await.expect("frame"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = (frames.len() - 1) as f64 / elapsed;
    assert!(
        (17.0..=23.0).contains(&rate),
        "rate {rate:.1} fps, expected about 20"
    );

    let producer_id = frames[0].header.producer_id;
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1].header.seq,
            pair[0].header.seq + 1,
            "sequence must increase by one"
        );
        assert!(pair[1].header.capture_ts_ns > pair[0].header.capture_ts_ns);
    }
    let now = stream_common::unix_now_ns();
    for f in &frames {
        assert_eq!(f.header.stream, "lab");
        assert_eq!(f.header.producer_id, producer_id);
        assert_eq!((f.header.width, f.header.height), (320, 240));
        let age = now.saturating_sub(f.header.capture_ts_ns);
        assert!(age < 10_000_000_000, "capture time {age} ns ago");
    }
    let last = frames.last().expect("frames");
    let (_, w, h) = stream_common::jpeg::decode_rgb(&last.jpeg).expect("decodable JPEG");
    assert_eq!((w, h), (320, 240));
    // Capture times are close to now: the newest is well under a second old.
    assert!(now - last.header.capture_ts_ns < 1_000_000_000);

    let metrics = test_support::http::get(p.metrics, "/metrics")
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("producer_frames_published_total"),
        "{metrics}"
    );
    let health = test_support::http::get(p.metrics, "/healthz")
        .await
        .expect("healthz");
    assert_eq!(health.head.status, 200);
}

#[tokio::test]
async fn sigterm_stops_it_within_a_second() {
    let mut p = start_producer(&[]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    sub.next_frame(Duration::from_secs(10))
        .await
        .expect("running");
    p.proc.signal(15);
    let t = Instant::now();
    let status = wait_for("exit after SIGTERM", Duration::from_secs(5), || {
        let s = p.proc.try_wait();
        async move { s }
    })
    .await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn bad_flags_exit_with_code_2() {
    let out = std::process::Command::new(test_support::process::bin_path("frame-producer"))
        .args(["--size", "banana"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WIDTHxHEIGHT"));
}

#[tokio::test]
async fn image_directory_passes_jpegs_through_and_skips_corrupt_files() {
    let dir = media::temp_dir("producer-dir");
    let jpeg = media::solid_jpeg(96, 64, [10, 200, 30]);
    std::fs::write(dir.join("1.jpg"), &jpeg).expect("write");
    std::fs::write(dir.join("2.jpg"), b"\xFF\xD8 truncated").expect("write");

    let dir_s = dir.to_string_lossy().into_owned();
    let p = start_producer(&["--source", dir_s.as_str(), "--fps", "20"]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    for _ in 0..5 {
        let f = sub
            .next_frame(Duration::from_secs(10))
            .await
            .expect("frame");
        assert_eq!(f.jpeg, jpeg, "JPEG input is passed through byte for byte");
        assert_eq!((f.header.width, f.header.height), (96, 64));
    }
    let metrics = wait_for("bad frame counted", Duration::from_secs(5), || async {
        let m = test_support::http::get(p.metrics, "/metrics")
            .await
            .ok()?
            .text();
        m.lines()
            .any(|l| l.starts_with("producer_bad_frames_total") && !l.ends_with(" 0"))
            .then_some(m)
    })
    .await;
    assert!(metrics.contains("producer_frames_published_total"));
    // One warning for the corrupt file, however many times it is looped over.
    let warnings = p.proc.log().matches("skipping unreadable frame").count();
    assert_eq!(warnings, 1, "{}", p.proc.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn frames_from_the_python_publisher_decode() {
    let port = free_port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let script = test_support::process::workspace_root().join("scripts/publish_frames.py");
    let dir = std::env::temp_dir().join(format!("pyframes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut canvas = stream_common::canvas::Canvas::new(64, 32);
    canvas.fill([200, 0, 0]);
    let jpeg = stream_common::jpeg::JpegEncoder::new(80)
        .expect("enc")
        .encode(&canvas)
        .expect("jpeg");
    std::fs::write(dir.join("red.jpg"), &jpeg).expect("write");
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .args([
            "--bind",
            endpoint.as_str(),
            "--stream",
            "py0",
            "--fps",
            "20",
            "--count",
            "400",
        ])
        .arg(&dir)
        .spawn()
        .expect("python3 scripts/publish_frames.py (run scripts/setup.sh for pyzmq)");
    let mut sub = Subscriber::frames_of(&endpoint, "py0")
        .await
        .expect("subscribe");
    let mut previews = Subscriber::connect(&endpoint, "p/")
        .await
        .expect("subscribe");
    let a = sub
        .next_frame(Duration::from_secs(15))
        .await
        .expect("frame from python");
    let b = sub
        .next_frame(Duration::from_secs(5))
        .await
        .expect("second frame");
    // Its preview (the same picture, about once a second), version 3 too.
    let preview = previews
        .next_preview(Duration::from_secs(5))
        .await
        .expect("preview from python");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(a.header.stream, "py0");
    assert_eq!((a.header.width, a.header.height), (64, 32));
    assert_eq!(a.jpeg, jpeg);
    assert_eq!(b.header.seq, a.header.seq + 1);
    assert_eq!(a.header.producer_id, b.header.producer_id);
    assert_eq!(a.header.version, frame_wire::KIND_VERSION);
    assert_eq!(preview.header.stream, "py0");
    assert_eq!(preview.header.producer_id, a.header.producer_id);
    assert_eq!(preview.jpeg, jpeg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn size_scales_down_any_source_keeping_its_aspect() {
    let dir = media::temp_dir("producer-big");
    let jpeg = media::solid_jpeg(1280, 720, [10, 200, 30]);
    std::fs::write(dir.join("big.jpg"), &jpeg).expect("write");
    let dir_s = dir.to_string_lossy().into_owned();
    let p = start_producer(&["--source", dir_s.as_str(), "--size", "640x480"]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    let f = sub
        .next_frame(Duration::from_secs(10))
        .await
        .expect("frame");
    assert_eq!((f.header.width, f.header.height), (640, 360));
    let (px, w, h) = stream_common::jpeg::decode_rgb(&f.jpeg).expect("decodable");
    assert_eq!((w, h), (640, 360));
    let mid = &px[(180 * 640 + 320) * 3..][..3];
    assert!(mid[1] > 160 && mid[0] < 60, "still green: {mid:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
