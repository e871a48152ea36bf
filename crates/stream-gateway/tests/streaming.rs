//! End-to-end: real producer and gateway processes on loopback, read by
//! clients that parse every byte of the stream strictly.

use std::time::{Duration, Instant};

use test_support::http::{self, MjpegReader};
use test_support::stack::Stack;

const FPS: f64 = 20.0;

/// Frames per second one reader gets over `window`.
async fn measure_rate(reader: &mut MjpegReader, window: Duration) -> f64 {
    reader
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("first frame");
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < window {
        reader
            .next_frame_within(Duration::from_secs(3))
            .await
            .expect("frame");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test]
async fn streams_snapshots_page_and_api() {
    let stack = Stack::start(
        &["--fps", "20", "--size", "320x240", "--stream", "cam0"],
        &[],
    )
    .await;
    let addr = stack.http;

    for path in ["/video_feed", "/stream/cam0", "/?action=stream"] {
        let mut r = MjpegReader::open(addr, path).await.expect(path);
        let h = r.head().clone();
        assert_eq!(
            h.header("content-type"),
            Some("multipart/x-mixed-replace; boundary=frame"),
            "{path}"
        );
        assert_eq!(
            h.header("cache-control"),
            Some("no-store, no-cache, must-revalidate, max-age=0")
        );
        assert_eq!(h.header("pragma"), Some("no-cache"));
        assert_eq!(h.header("x-accel-buffering"), Some("no"));
        assert!(h.header("expires").is_some());
        let rate = measure_rate(&mut r, Duration::from_secs(2)).await;
        assert!(
            rate > FPS * 0.85 && rate < FPS * 1.2,
            "{path}: {rate:.1} fps"
        );
        let f = r.next_frame().await.expect("frame");
        let (_, w, hgt) = stream_common::jpeg::decode_rgb(&f.jpeg).expect("decodable");
        assert_eq!((w, hgt), (320, 240));
        let age = stream_common::unix_now_ns() as f64 / 1e9 - f.timestamp().expect("X-Timestamp");
        assert!((0.0..1.0).contains(&age), "frame age {age}");
        assert_eq!(f.header("x-source-online"), Some("true"));
    }

    let page = http::get(addr, "/").await.expect("page");
    assert_eq!(page.head.status, 200);
    assert!(page.text().contains("/api/streams") && page.text().contains("<img"));

    for path in ["/snapshot", "/snapshot/cam0", "/?action=snapshot"] {
        let t = Instant::now();
        let s = http::get(addr, path).await.expect(path);
        let took = t.elapsed();
        assert_eq!(s.head.status, 200, "{path}");
        assert_eq!(s.head.header("content-type"), Some("image/jpeg"));
        assert!(frame_wire::looks_like_jpeg(&s.body));
        assert!(s.head.header("x-timestamp").is_some());
        assert!(
            took < Duration::from_millis(500),
            "{path} took {took:?}: it must not wait for a frame"
        );
    }

    let api = http::get(addr, "/api/streams").await.expect("api");
    let v: serde_json::Value = serde_json::from_slice(&api.body).expect("json");
    let s = &v["streams"][0];
    assert_eq!(s["name"], "cam0");
    assert_eq!(
        (s["width"].as_u64(), s["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(s["online"], true);
    let fps = s["fps_in"].as_f64().expect("fps");
    assert!((FPS * 0.8..FPS * 1.2).contains(&fps), "fps_in {fps}");
    assert!(v["instance"].as_str().is_some_and(|i| !i.is_empty()));

    assert_eq!(http::status(addr, "/healthz").await, 200);
    assert_eq!(http::status(addr, "/stream/nope").await, 404);
    assert_eq!(http::status(addr, "/snapshot/nope").await, 404);
    assert_eq!(http::status(addr, "/stream/cam0?fps=zero").await, 400);
    assert_eq!(
        http::request(addr, "POST", "/video_feed", &[])
            .await
            .expect("405")
            .head
            .status,
        405
    );
    assert_eq!(http::status(addr, "/no/such/path").await, 404);

    // ?fps=N caps one client's rate.
    let mut capped = MjpegReader::open(addr, "/stream/cam0?fps=5")
        .await
        .expect("capped");
    let rate = measure_rate(&mut capped, Duration::from_secs(2)).await;
    assert!(rate < 7.0 && rate > 3.0, "capped rate {rate:.1}");

    let m = stack
        .metric("gateway_parts_out_total", &["stream=\"cam0\""])
        .await;
    assert!(m > 100.0, "parts out {m}");
    assert!(stack.metric("gateway_frames_in_total", &[]).await > 20.0);
}

#[tokio::test]
async fn two_hundred_clients_all_get_the_full_rate() {
    let stack = Stack::start(&["--fps", "20", "--size", "320x240"], &[]).await;
    let mut readers = Vec::new();
    for _ in 0..200 {
        readers.push(
            MjpegReader::open(stack.http, "/video_feed")
                .await
                .expect("open"),
        );
    }
    let viewers = stack.metric("gateway_viewers_total", &[]).await;
    assert_eq!(viewers, 200.0, "viewers gauge");
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move { measure_rate(&mut r, Duration::from_secs(3)).await })
        })
        .collect();
    let mut rates = Vec::new();
    for t in tasks {
        rates.push(t.await.expect("reader task"));
    }
    rates.sort_by(f64::total_cmp);
    let (min, median) = (rates[0], rates[rates.len() / 2]);
    assert!(
        min > FPS * 0.8,
        "slowest of 200 clients got {min:.1} fps (median {median:.1})"
    );
    // Every viewer is released when its client goes.
    test_support::stack::wait_viewers(stack.http, 0, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_stalled_client_costs_nothing_and_skips_to_the_newest_frame() {
    let stack = Stack::start(&["--fps", "30", "--size", "640x480"], &[]).await;
    let addr = stack.http;

    // The stalled client: a tiny receive buffer so the stall backs up at once.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
    let mut stalled = sock.connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stalled
        .write_all(b"GET /video_feed HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut first = vec![0u8; 4096];
    let _ = stalled.read(&mut first).await.expect("response starts");

    let mut others = Vec::new();
    for _ in 0..50 {
        others.push(MjpegReader::open(addr, "/video_feed").await.expect("open"));
    }
    let rss_before = stack.gateway.rss_kib().expect("rss");
    let tasks: Vec<_> = others
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move { measure_rate(&mut r, Duration::from_secs(20)).await })
        })
        .collect();
    let mut rss_max = rss_before;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max = rss_max.max(stack.gateway.rss_kib().expect("rss"));
    }
    for t in tasks {
        let rate = t.await.expect("task");
        assert!(
            rate > 30.0 * 0.85,
            "a normal viewer dropped to {rate:.1} fps while one client stalled"
        );
    }
    // Per-viewer memory is bounded by about one part, whatever the stall length.
    assert!(
        rss_max < rss_before + 20 * 1024,
        "gateway RSS grew from {rss_before} KiB to {rss_max} KiB"
    );

    // Resume: read the raw bytes that were queued in kernel buffers, then
    // parse; within a second the client is back to frames seconds-fresh.
    let std_stream = stalled.into_std().expect("std");
    std_stream.set_nonblocking(true).expect("nonblocking");
    let stalled = tokio::net::TcpStream::from_std(std_stream).expect("tokio");
    let (mut rd, _wr) = stalled.into_split();
    let mut buf = vec![0u8; 1 << 20];
    let resumed = Instant::now();
    let mut data = Vec::new();
    let mut fresh_after = None;
    while resumed.elapsed() < Duration::from_secs(5) {
        let n = tokio::time::timeout(Duration::from_secs(2), rd.read(&mut buf))
            .await
            .expect("data")
            .expect("read");
        assert!(n > 0, "stalled client was disconnected");
        data.extend_from_slice(&buf[..n]);
        // Look at the newest complete X-Timestamp in what arrived.
        let text = String::from_utf8_lossy(&data);
        if let Some(ts) = text
            .rmatch_indices("X-Timestamp: ")
            .next()
            .and_then(|(i, _)| {
                text[i + 13..]
                    .split("\r\n")
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
            })
        {
            let age = stream_common::unix_now_ns() as f64 / 1e9 - ts;
            if age < 0.5 {
                fresh_after = Some(resumed.elapsed());
                break;
            }
        }
    }
    let fresh_after = fresh_after.expect("the resumed client never got a fresh frame");
    assert!(
        fresh_after < Duration::from_secs(2),
        "took {fresh_after:?} to catch up"
    );
    // It skipped: 20 s at 30 fps is 600 frames, far more than it was sent.
    let parts = String::from_utf8_lossy(&data)
        .matches("Content-Type: image/jpeg")
        .count();
    assert!(
        parts < 200,
        "resumed client received a backlog of {parts} parts"
    );
    assert!(stack.metric("gateway_frames_skipped_total", &[]).await > 100.0);
}

#[tokio::test]
async fn producer_death_shows_a_placeholder_and_recovery_resumes_on_the_same_connection() {
    let mut stack = Stack::start(
        &["--fps", "20", "--size", "320x240"],
        &["--stale-after", "2"],
    )
    .await;
    let mut r = MjpegReader::open(stack.http, "/video_feed")
        .await
        .expect("open");
    let f = r
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("live");
    assert_eq!(f.header("x-source-online"), Some("true"));

    stack.kill_producer();
    let placeholder_at = r
        .wait_online(false, Duration::from_secs(3), Duration::from_secs(4))
        .await
        .expect("placeholder within stale-after + 1 s on the same connection");
    // The placeholder repeats about once a second on the same connection.
    let f = r
        .next_frame_within(Duration::from_millis(2500))
        .await
        .expect("placeholder repeats");
    assert_eq!(f.header("x-source-online"), Some("false"));
    let api: serde_json::Value = serde_json::from_slice(
        &http::get(stack.http, "/api/streams")
            .await
            .expect("api")
            .body,
    )
    .expect("json");
    assert_eq!(api["streams"][0]["online"], false);
    let snap = http::get(stack.http, "/snapshot").await.expect("snapshot");
    assert_eq!(snap.head.header("x-source-online"), Some("false"));
    assert_eq!(http::status(stack.http, "/readyz").await, 503);

    // Let zmq.rs's own reconnect backoff grow, as in a real outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.restart_producer();
    // The limit counts from when the new producer publishes; its start-up is
    // included here, so allow for it.
    let resumed_in = r
        .wait_online(true, Duration::from_secs(4), Duration::from_secs(3))
        .await
        .expect("live frames resume on the same connection");
    assert!(
        resumed_in < Duration::from_secs(3),
        "resumed after {resumed_in:?}"
    );
    eprintln!("placeholder after {placeholder_at:?}, live again {resumed_in:?} after restart");
}

#[tokio::test]
async fn sigterm_ends_streams_and_exits_quickly() {
    let mut stack = Stack::start(&["--fps", "20", "--size", "320x240"], &[]).await;
    let mut readers = Vec::new();
    for _ in 0..1000 {
        readers.push(
            MjpegReader::open(stack.http, "/video_feed")
                .await
                .expect("open"),
        );
    }
    for r in readers.iter_mut().step_by(50) {
        r.next_frame_within(Duration::from_secs(5))
            .await
            .expect("frame");
    }
    assert_eq!(stack.metric("gateway_viewers_total", &[]).await, 1000.0);
    stack.gateway.signal(15);
    let t = Instant::now();
    let status = test_support::wait_for("gateway exit", Duration::from_secs(5), || {
        let s = stack.gateway.try_wait();
        async move { s }
    })
    .await;
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "exit took {:?}",
        t.elapsed()
    );
}
