//! The one delivery path, end to end: a stream request is served by the
//! same fan-out writer whichever request of a connection it is, on every
//! serving thread; admission's rules hold on fresh and kept-alive
//! connections alike; viewers leave as soon as they close; the stream order
//! and the default stream survive restarts.

use std::time::{Duration, Instant};

use test_support::http::{self, Connection, MjpegReader};
use test_support::producer::Producer;
use test_support::stack::{self, Stack};
use test_support::{free_port, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything a raw request gets back before the server closes or 3 s pass.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_kept_alive_connection_streams_through_the_same_writer() {
    let stack = Stack::start(&["--fps", "20", "--size", "320x240"], &["--threads", "2"]).await;
    let addr = stack.http;
    let parts_before = stack.metric("gateway_parts_out_total", &[]).await;

    // A snapshot first, then a stream, on one connection.
    let first = Connection::request(addr, "GET", "/snapshot", &[])
        .await
        .expect("snapshot");
    let (snapshot, conn) = first
        .then(addr, "GET", "/stream/cam0", &[])
        .await
        .expect("second request on the same connection");
    assert_eq!(snapshot.head.status, 200);
    assert_eq!(snapshot.head.header("content-type"), Some("image/jpeg"));
    assert!(frame_wire::looks_like_jpeg(&snapshot.body));
    let mut reader = MjpegReader::from_connection(conn, "/stream/cam0").expect("a stream");
    for _ in 0..10 {
        reader
            .next_frame_within(Duration::from_secs(3))
            .await
            .expect("whole parts");
    }
    // It is counted by the fan-out like any viewer.
    assert_eq!(
        stack.metric("gateway_viewers", &["stream=\"cam0\""]).await,
        1.0
    );
    assert_eq!(stack.metric("gateway_thread_viewers", &[]).await, 1.0);
    // Counted once the writer's per-frame tally is flushed, right after the write.
    let stack_ref = &stack;
    wait_for("10 parts counted", Duration::from_secs(2), || async move {
        let parts = stack_ref.metric("gateway_parts_out_total", &[]).await - parts_before;
        (parts >= 10.0).then_some(())
    })
    .await;

    // HEAD of a stream: the stream's headers, no body.
    let head = http::request(addr, "HEAD", "/stream/cam0", &[])
        .await
        .expect("HEAD");
    assert_eq!(head.head.status, 200);
    assert_eq!(
        head.head.header("content-type"),
        Some("multipart/x-mixed-replace; boundary=frame")
    );
    assert!(
        head.head
            .header("cache-control")
            .is_some_and(|v| v.contains("no-store"))
    );
    assert!(head.body.is_empty());
    let raw = raw_exchange(addr, b"HEAD /video_feed HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(raw.ends_with("\r\n\r\n"), "HEAD sends no body: {raw:?}");

    // A head with bare LF line ends is answered, not left hanging.
    let t = Instant::now();
    let raw = raw_exchange(
        addr,
        b"GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "bare LF: {raw:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    drop(reader);
}

#[tokio::test]
async fn admission_is_the_same_on_fresh_and_kept_alive_connections() {
    let stack = Stack::start(
        &["--fps", "10", "--size", "160x120"],
        &[
            "--auth-token",
            "right",
            "--allow-origin",
            "*,http://ok.example",
        ],
    )
    .await;
    let addr = stack.http;
    let twice = [
        ("Authorization", "Bearer wrong"),
        ("Authorization", "Bearer right"),
    ];
    // Duplicate credentials: refused on a fresh connection, for a stream...
    let r = http::request(addr, "GET", "/stream/cam0", &twice)
        .await
        .expect("stream");
    assert_eq!(r.head.status, 400, "{}", r.text());
    // ... for a snapshot, and as the second request of a connection.
    let r = http::request(addr, "GET", "/snapshot", &twice)
        .await
        .expect("snapshot");
    assert_eq!(r.head.status, 400);
    let first = Connection::request(addr, "GET", "/healthz", &[])
        .await
        .expect("healthz");
    let (_, second) = first
        .then(addr, "GET", "/stream/cam0", &twice)
        .await
        .expect("kept alive");
    assert_eq!(second.head.status, 400);
    assert_eq!(stack.metric("gateway_viewers_total", &[]).await, 0.0);

    // CORS '*': any origin may read, never with credentials.
    let bearer = ("Authorization", "Bearer right");
    for path in ["/api/streams", "/snapshot/cam0"] {
        let r = http::request(
            addr,
            "GET",
            path,
            &[bearer, ("Origin", "https://evil.example")],
        )
        .await
        .expect("cross-origin");
        assert_eq!(r.head.status, 200);
        assert_eq!(r.head.header("access-control-allow-origin"), Some("*"));
        assert_eq!(r.head.header("access-control-allow-credentials"), None);
    }
    let preflight = http::request(addr, "OPTIONS", "/snapshot", &[("Origin", "null")])
        .await
        .expect("preflight");
    assert_eq!(
        preflight.head.header("access-control-allow-credentials"),
        None
    );
    assert_ne!(
        preflight.head.header("access-control-allow-origin"),
        Some("null")
    );
    // The stream response too.
    let conn = Connection::request(
        addr,
        "GET",
        "/stream/cam0",
        &[bearer, ("Origin", "https://evil.example")],
    )
    .await
    .expect("stream");
    assert_eq!(conn.head.header("access-control-allow-origin"), Some("*"));
    assert_eq!(conn.head.header("access-control-allow-credentials"), None);
    drop(conn);
    // An origin listed by name gets credentials.
    let conn = Connection::request(
        addr,
        "GET",
        "/stream/cam0",
        &[bearer, ("Origin", "http://ok.example")],
    )
    .await
    .expect("stream");
    assert_eq!(
        conn.head.header("access-control-allow-origin"),
        Some("http://ok.example")
    );
    assert_eq!(
        conn.head.header("access-control-allow-credentials"),
        Some("true")
    );
    let mut reader = MjpegReader::from_connection(conn, "/stream/cam0").expect("stream");
    reader
        .next_frame_within(Duration::from_secs(3))
        .await
        .expect("frame");
    // A refusal names no host.
    let r = http::get(addr, "/api/streams").await.expect("anonymous");
    assert_eq!(r.head.status, 401);
    assert_eq!(r.head.header("x-gateway-instance"), None);
}

#[tokio::test]
async fn five_hundred_viewers_on_two_threads_all_get_the_full_rate() {
    const FPS: f64 = 15.0;
    let stack = Stack::start(&["--fps", "15", "--size", "320x240"], &["--threads", "2"]).await;
    let mut readers = Vec::new();
    for _ in 0..500 {
        readers.push(
            MjpegReader::open(stack.http, "/stream/cam0")
                .await
                .expect("open"),
        );
    }
    stack::wait_viewers(stack.http, 500, Duration::from_secs(10)).await;
    // Both threads carry their share.
    let text = http::get(stack.http, "/metrics")
        .await
        .expect("metrics")
        .text();
    for thread in ["0", "1"] {
        let n = test_support::metrics::metric_value(
            &text,
            "gateway_thread_viewers",
            &[&format!("thread=\"{thread}\"")],
        );
        assert!(
            (150.0..=350.0).contains(&n),
            "thread {thread} serves {n} of 500"
        );
    }
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move {
                r.next_frame_within(Duration::from_secs(5))
                    .await
                    .expect("first frame");
                let start = Instant::now();
                let mut n = 0u32;
                while start.elapsed() < Duration::from_secs(3) {
                    // Every part is parsed strictly: a torn part fails here.
                    r.next_frame_within(Duration::from_secs(3))
                        .await
                        .expect("whole part");
                    n += 1;
                }
                f64::from(n) / start.elapsed().as_secs_f64()
            })
        })
        .collect();
    let mut rates = Vec::new();
    for t in tasks {
        rates.push(t.await.expect("reader"));
    }
    rates.sort_by(f64::total_cmp);
    let (min, median) = (rates[0], rates[rates.len() / 2]);
    assert!(
        min > FPS * 0.8,
        "slowest of 500 viewers got {min:.1} fps (median {median:.1})"
    );
    stack::wait_viewers(stack.http, 0, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_viewer_that_closes_is_released_at_once_while_the_source_is_idle() {
    // No re-sends and no placeholder for a minute: nothing is written.
    let mut stack = Stack::start(
        &["--fps", "20", "--size", "160x120"],
        &["--idle-resend", "60", "--stale-after", "60"],
    )
    .await;
    let mut reader = MjpegReader::open(stack.http, "/video_feed")
        .await
        .expect("open");
    reader
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("frame");
    stack.kill_producer();
    stack::wait_viewers(stack.http, 1, Duration::from_secs(2)).await;
    let frames_in = stack.metric("gateway_frames_in_total", &[]).await;
    drop(reader);
    let t = Instant::now();
    stack::wait_viewers(stack.http, 0, Duration::from_secs(1)).await;
    eprintln!("released in {:?}", t.elapsed());
    assert_eq!(
        stack.metric("gateway_frames_in_total", &[]).await,
        frames_in,
        "the source was idle"
    );
}

/// The stream `/video_feed` serves, told by its frame size.
async fn video_feed_size(addr: std::net::SocketAddr) -> (u32, u32) {
    let mut r = MjpegReader::open(addr, "/video_feed")
        .await
        .expect("video_feed");
    let f = r
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("frame");
    stream_common::jpeg::dimensions(&f.jpeg).expect("JPEG size")
}

/// The stream names `/api/streams` lists, once the gateway answers.
async fn stream_names(addr: std::net::SocketAddr) -> Option<Vec<String>> {
    let reply = http::get(addr, "/api/streams").await.ok()?;
    let api: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
    Some(
        api["streams"]
            .as_array()
            .expect("streams")
            .iter()
            .filter_map(|s| s["name"].as_str().map(String::from))
            .collect(),
    )
}

#[tokio::test]
async fn stream_order_and_default_survive_restarts() {
    // Producer order on the command line: zulu, alpha, mike; each its own size.
    let producers = [
        ("zulu", "320x240"),
        ("alpha", "160x120"),
        ("mike", "240x180"),
    ]
    .map(|(name, size)| Producer::start(&["--stream", name, "--size", size, "--fps", "10"]));
    let listen = format!("127.0.0.1:{}", free_port());
    let addr: std::net::SocketAddr = listen.parse().expect("addr");
    let start = |extra: &[&str]| {
        let mut args = vec!["--listen", listen.as_str()];
        for p in &producers {
            args.extend(["--producer", p.endpoint.as_str()]);
        }
        args.extend_from_slice(extra);
        test_support::process::Proc::start("stream-gateway", &args, &[])
    };
    let all_three = || async {
        wait_for("three streams", Duration::from_secs(15), || async {
            let names = stream_names(addr).await?;
            (names.len() == 3).then_some(names)
        })
        .await
    };
    for round in 0..5 {
        let mut gateway = start(&[]);
        let names = all_three().await;
        assert_eq!(names, ["zulu", "alpha", "mike"], "round {round}");
        assert_eq!(video_feed_size(addr).await, (320, 240), "round {round}");
        gateway.kill();
    }
    let mut gateway = start(&["--default-stream", "mike"]);
    all_three().await;
    assert_eq!(video_feed_size(addr).await, (240, 180));
    let snapshot = http::get(addr, "/snapshot").await.expect("snapshot");
    assert_eq!(
        stream_common::jpeg::dimensions(&snapshot.body),
        Some((240, 180))
    );
    gateway.kill();
}
