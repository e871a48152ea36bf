//! End-to-end for real-camera sources: the producer binary reading a video
//! file the test makes with ffmpeg, an RTSP camera served by GStreamer's
//! RTSP server (scripts/rtsp_camera.py), and a V4L2 device that is not there.
//! Built only with the `ffmpeg` / `v4l2` features, which CI turns on.

#![cfg(any(feature = "ffmpeg", feature = "v4l2"))]

use std::path::Path;
use std::time::{Duration, Instant};

use test_support::media;
use test_support::producer::Producer;
use test_support::zmq::Subscriber;
use test_support::{free_port, wait_for};

/// Frames received in `window` after the first one, with the rate.
async fn collect(sub: &mut Subscriber, window: Duration) -> (Vec<frame_wire::Frame>, f64) {
    let first = sub
        .next_frame(Duration::from_secs(15))
        .await
        .expect("first frame");
    let start = Instant::now();
    let mut frames = vec![first];
    while start.elapsed() < window {
        frames.push(sub.next_frame(Duration::from_secs(5)).await.expect("frame"));
    }
    let rate = (frames.len() - 1) as f64 / start.elapsed().as_secs_f64();
    (frames, rate)
}

#[cfg(feature = "ffmpeg")]
#[tokio::test]
async fn a_video_file_loops_in_real_time_scaled_to_size() {
    // 2 s of 1280x720 H.264 at 25 fps.
    let dir = media::temp_dir("video-file");
    let clip = media::test_video(
        &dir.join("clip.mp4"),
        "1280x720",
        25,
        2,
        &["-c:v", "libx264"],
    );
    let clip_s = clip.to_string_lossy().into_owned();
    let p = Producer::start(&["--source", &clip_s, "--size", "640x480", "--stream", "file"]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    // 4.5 s spans at least two passes through the 2 s file.
    let (frames, rate) = collect(&mut sub, Duration::from_millis(4500)).await;
    assert!(
        (21.0..=29.0).contains(&rate),
        "rate {rate:.1}, file is 25 fps"
    );
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1].header.seq,
            pair[0].header.seq + 1,
            "no gaps across the loop"
        );
    }
    for f in &frames {
        assert_eq!(
            (f.header.width, f.header.height),
            (640, 360),
            "fit into 640x480"
        );
    }
    let (px, w, h) = stream_common::jpeg::decode_rgb(&frames[10].jpeg).expect("decodable");
    assert_eq!((w, h), (640, 360));
    // testsrc2 is colourful; a broken conversion gives gray or green.
    let distinct: std::collections::HashSet<_> = px.chunks(3 * 97).map(|c| c[0] / 32).collect();
    assert!(distinct.len() > 4, "picture has content");
    assert_eq!(p.metric("producer_source_errors_total", &[]).await, 0.0);

    // --fps below the file's rate thins it, still in real time.
    let p = Producer::start(&["--source", &clip_s, "--fps", "10"]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    let (frames, rate) = collect(&mut sub, Duration::from_secs(3)).await;
    assert!((8.5..=11.5).contains(&rate), "rate {rate:.1}, capped at 10");
    assert_eq!(
        (frames[0].header.width, frames[0].header.height),
        (1280, 720),
        "native size"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "ffmpeg")]
#[tokio::test]
async fn mjpeg_video_is_passed_through_without_reencoding() {
    let dir = media::temp_dir("mjpeg-file");
    let clip = media::test_video(
        &dir.join("clip.avi"),
        "320x240",
        20,
        1,
        &["-c:v", "mjpeg", "-q:v", "5"],
    );
    let clip_s = clip.to_string_lossy().into_owned();
    let p = Producer::start(&["--source", &clip_s]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    let (frames, rate) = collect(&mut sub, Duration::from_secs(2)).await;
    assert!(
        (16.0..=24.0).contains(&rate),
        "rate {rate:.1}, file is 20 fps"
    );
    assert_eq!(
        (frames[0].header.width, frames[0].header.height),
        (320, 240)
    );
    stream_common::jpeg::decode_rgb(&frames[0].jpeg).expect("decodable");
    assert!(p.metric("producer_frames_published_total", &[]).await > 0.0);
    assert_eq!(
        p.metric("producer_encode_seconds_count", &[]).await,
        0.0,
        "nothing was encoded"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "ffmpeg")]
fn start_camera(port: u16) -> test_support::process::Proc {
    start_camera_sized(port, "640x360")
}

#[cfg(feature = "ffmpeg")]
fn start_camera_sized(port: u16, size: &str) -> test_support::process::Proc {
    let script = test_support::process::workspace_root().join("scripts/rtsp_camera.py");
    let port = port.to_string();
    test_support::process::Proc::start_program(
        "rtsp_camera",
        Path::new("/usr/bin/python3"),
        &[
            script.to_str().expect("utf-8 path"),
            "--port",
            &port,
            "--size",
            size,
            "--fps",
            "15",
        ],
        &[],
    )
}

#[cfg(feature = "ffmpeg")]
#[tokio::test]
async fn an_rtsp_camera_is_decoded_and_reconnected_after_it_restarts() {
    let port = free_port();
    let mut camera = start_camera(port);
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let p = Producer::start(&["--source", &url, "--stream", "ipcam"]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    let (frames, rate) = collect(&mut sub, Duration::from_secs(3)).await;
    assert!(
        (12.0..=18.0).contains(&rate),
        "rate {rate:.1}, camera sends 15 fps\n{}\n{}",
        p.proc.log(),
        camera.log()
    );
    let last = frames.last().expect("frames");
    assert_eq!((last.header.width, last.header.height), (640, 360));
    stream_common::jpeg::decode_rgb(&last.jpeg).expect("decodable");
    assert!(stream_common::unix_now_ns() - last.header.capture_ts_ns < 1_000_000_000);

    // The camera goes away: the producer notices, keeps running, retries.
    camera.kill();
    wait_for("source errors counted", Duration::from_secs(20), || async {
        (p.metric("producer_source_errors_total", &[]).await > 0.0).then_some(())
    })
    .await;
    // It comes back on the same address: frames resume by themselves.
    let _camera = start_camera(port);
    let resumed = sub
        .next_frame(Duration::from_secs(25))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no frames after the camera came back: {e}\n{}",
                p.proc.log()
            )
        });
    let mut newest = resumed;
    // Drain what was queued before the restart; the newest frame is fresh.
    while let Ok(f) = sub.next_frame(Duration::from_millis(300)).await {
        newest = f;
        if stream_common::unix_now_ns() - newest.header.capture_ts_ns < 1_000_000_000 {
            break;
        }
    }
    assert!(stream_common::unix_now_ns() - newest.header.capture_ts_ns < 1_000_000_000);
    assert!(p.proc.log().contains("video opened"), "{}", p.proc.log());
}

#[cfg(feature = "ffmpeg")]
#[tokio::test]
async fn an_rtsp_camera_reaches_viewers_through_the_gateway() {
    use test_support::http::MjpegReader;
    let port = free_port();
    let _camera = start_camera(port);
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let stack = test_support::stack::Stack::start(
        &["--source", &url, "--stream", "door", "--size", "320x240"],
        &[],
    )
    .await;
    let mut r = MjpegReader::open(stack.http, "/stream/door")
        .await
        .expect("stream");
    let mut frames = Vec::new();
    for _ in 0..20 {
        frames.push(
            r.next_frame_within(Duration::from_secs(5))
                .await
                .expect("frame"),
        );
    }
    let last = frames.last().expect("frames");
    let (_, w, h) = stream_common::jpeg::decode_rgb(&last.jpeg).expect("decodable");
    assert_eq!((w, h), (320, 180), "640x360 fitted into 320x240");
    let age = stream_common::unix_now_ns() as f64 / 1e9 - last.timestamp().expect("X-Timestamp");
    assert!((0.0..1.0).contains(&age), "frame age {age:.3} s");
    let api = test_support::http::get(stack.http, "/api/streams")
        .await
        .expect("api")
        .text();
    assert!(api.contains("\"door\"") && api.contains("320"), "{api}");
}

/// `/snapshot` of an RTSP camera nobody watches: the gateway holds only its
/// preview, subscribes, and answers with the next full-size decoded frame.
#[cfg(feature = "ffmpeg")]
#[tokio::test]
async fn a_snapshot_of_an_unwatched_rtsp_camera_is_full_size() {
    let port = free_port();
    let _camera = start_camera_sized(port, "1280x720");
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let stack =
        test_support::stack::Stack::start(&["--source", &url, "--stream", "door"], &[]).await;
    assert_eq!(
        stack
            .metric("gateway_stream_subscribed", &["stream=\"door\""])
            .await,
        0.0,
        "nobody watches"
    );
    let r = test_support::http::get(stack.http, "/snapshot/door")
        .await
        .expect("snapshot");
    assert_eq!(r.head.status, 200);
    assert_eq!(
        r.head.header("x-snapshot"),
        Some("frame"),
        "{}",
        stack.gateway.log()
    );
    let (_, w, h) = stream_common::jpeg::decode_rgb(&r.body).expect("decodable");
    assert_eq!((w, h), (1280, 720));
}

#[cfg(feature = "v4l2")]
#[tokio::test]
async fn a_missing_v4l2_device_is_a_clear_retried_error() {
    let p = Producer::start(&["--source", "v4l2:/dev/video-not-here"]);
    wait_for("three retries", Duration::from_secs(20), || async {
        (p.metric("producer_source_errors_total", &[]).await >= 3.0).then_some(())
    })
    .await;
    let log = p.proc.log();
    assert!(log.contains("no such device"), "{log}");
    assert!(log.contains("/dev/video-not-here"), "{log}");
    // Healthy during the start-up grace period, then unhealthy without frames.
    wait_for("/healthz 503", Duration::from_secs(30), || async {
        let status = test_support::http::get(p.metrics, "/healthz")
            .await
            .ok()?
            .head
            .status;
        (status == 503).then_some(())
    })
    .await;
    let mut p = p;
    assert!(p.proc.try_wait().is_none(), "still running, still retrying");
}
