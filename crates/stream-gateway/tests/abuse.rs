//! Bad HTTP and unwelcome clients against the real gateway: every one gets a
//! clear answer, and nobody else notices.

use std::time::{Duration, Instant};

use test_support::http::{self, MjpegReader};
use test_support::stack::Stack;
use test_support::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_streaming_continues() {
    let stack = Stack::start(
        &["--fps", "20", "--size", "320x240"],
        &["--max-clients", "5", "--header-timeout", "1"],
    )
    .await;
    let addr = stack.http;
    let mut viewer = MjpegReader::open(addr, "/video_feed")
        .await
        .expect("viewer");
    viewer
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("frame");

    // Oversized headers: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = raw_exchange(addr, big.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "oversized headers: {answer:?}"
    );

    // Garbage instead of HTTP: 400.
    let answer = raw_exchange(addr, b"\x16\x03\x01 definitely not http\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "garbage: {answer:?}");

    // Methods other than GET/HEAD: 405 with Allow.
    let r = http::request(addr, "DELETE", "/stream/cam0", &[])
        .await
        .expect("delete");
    assert_eq!(r.head.status, 405);
    assert_eq!(r.head.header("allow"), Some("GET, HEAD"));
    // HEAD works and sends no body.
    let r = http::request(addr, "HEAD", "/snapshot", &[])
        .await
        .expect("head");
    assert_eq!((r.head.status, r.body.len()), (200, 0));

    // Slowloris: a client that never finishes its headers is cut off.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial headers");
    let t = Instant::now();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("cut off in time");
    let answer = String::from_utf8_lossy(&buf[..n.unwrap_or(0)]).into_owned();
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "slow header sender kept for {:?}",
        t.elapsed()
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );

    // --max-clients: the sixth viewer gets 503 and Retry-After.
    let mut more = Vec::new();
    for _ in 0..4 {
        more.push(
            MjpegReader::open(addr, "/video_feed")
                .await
                .expect("within the limit"),
        );
    }
    let r = http::get(addr, "/video_feed")
        .await
        .expect("over the limit");
    assert_eq!(r.head.status, 503);
    assert!(r.head.header("retry-after").is_some());
    assert!(stack.metric("gateway_rejected_clients_total", &[]).await >= 1.0);
    drop(more);

    // The first viewer never noticed any of it.
    let start = Instant::now();
    for _ in 0..20 {
        viewer
            .next_frame_within(Duration::from_secs(2))
            .await
            .expect("still streaming");
    }
    assert!(
        start.elapsed() < Duration::from_millis(1600),
        "viewer slowed: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn authentication_and_cors() {
    let stack = Stack::start(
        &["--fps", "20", "--size", "320x240"],
        &[
            "--auth-user",
            "ann",
            "--auth-password",
            "pw",
            "--auth-token",
            "t0ken",
            "--allow-origin",
            "http://ok.example",
        ],
    )
    .await;
    let addr = stack.http;
    let basic = ("Authorization", "Basic YW5uOnB3"); // ann:pw

    let r = http::get(addr, "/video_feed").await.expect("anonymous");
    assert_eq!(r.head.status, 401);
    assert!(
        r.head
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic"))
    );
    for path in ["/", "/snapshot", "/api/streams", "/metrics", "/stream/cam0"] {
        assert_eq!(http::status(addr, path).await, 401, "{path}");
    }
    assert_eq!(
        http::request(
            addr,
            "GET",
            "/snapshot",
            &[("Authorization", "Basic YW5uOnd4")]
        )
        .await
        .expect("wrong")
        .head
        .status,
        401
    );
    // Health checks stay open for load balancers.
    assert_eq!(http::status(addr, "/healthz").await, 200);
    assert_eq!(http::status(addr, "/readyz").await, 200);

    assert_eq!(
        http::request(addr, "GET", "/snapshot", &[basic])
            .await
            .expect("basic")
            .head
            .status,
        200
    );
    assert_eq!(
        http::request(
            addr,
            "GET",
            "/snapshot",
            &[("Authorization", "Bearer t0ken")]
        )
        .await
        .expect("bearer")
        .head
        .status,
        200
    );
    let mut r = MjpegReader::open(addr, "/stream/cam0?token=t0ken")
        .await
        .expect("token in the URL, as an <img> sends it");
    r.next_frame_within(Duration::from_secs(5))
        .await
        .expect("frame");

    let metrics = http::request(addr, "GET", "/metrics", &[basic])
        .await
        .expect("metrics with credentials")
        .text();
    let failures =
        test_support::metrics::metric_value(&metrics, "gateway_auth_failures_total", &[]);
    assert!(failures >= 7.0, "auth failures counted: {failures}");
    assert!(stack.gateway.log().contains("missing or wrong credentials"));

    // CORS: only the listed origin is echoed.
    let ok = http::request(
        addr,
        "GET",
        "/api/streams",
        &[basic, ("Origin", "http://ok.example")],
    )
    .await
    .expect("cors");
    assert_eq!(
        ok.head.header("access-control-allow-origin"),
        Some("http://ok.example")
    );
    let preflight = http::request(
        addr,
        "OPTIONS",
        "/snapshot",
        &[("Origin", "http://ok.example")],
    )
    .await
    .expect("preflight");
    assert_eq!(preflight.head.status, 204);
    assert_eq!(
        preflight.head.header("access-control-allow-origin"),
        Some("http://ok.example")
    );
    let other = http::request(
        addr,
        "GET",
        "/api/streams",
        &[basic, ("Origin", "http://evil.example")],
    )
    .await
    .expect("cors");
    assert_eq!(other.head.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn no_cors_and_a_warning_by_default_on_a_public_address() {
    let stack = Stack::start(&["--fps", "10", "--size", "320x240"], &[]).await;
    let r = http::request(
        stack.http,
        "GET",
        "/api/streams",
        &[("Origin", "http://any.example")],
    )
    .await
    .expect("get");
    assert_eq!(r.head.status, 200);
    assert_eq!(r.head.header("access-control-allow-origin"), None);
    // Loopback without auth: no warning.
    assert!(!stack.gateway.log().contains("no authentication"));

    let port = test_support::free_port();
    let listen = format!("0.0.0.0:{port}");
    let public = test_support::process::Proc::start(
        "stream-gateway",
        &["--listen", &listen, "--producer", &stack.zmq],
        &[],
    );
    wait_for("warning", Duration::from_secs(10), || {
        let log = public.log();
        async move { log.contains("no authentication").then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn connection_churn_leaves_nothing_behind() {
    let stack = Stack::start(&["--fps", "30", "--size", "320x240"], &[]).await;
    let addr = stack.http;
    // Warm up, then take the baseline.
    for _ in 0..50 {
        let mut r = MjpegReader::open(addr, "/video_feed").await.expect("open");
        r.next_frame_within(Duration::from_secs(5))
            .await
            .expect("frame");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds0, rss0) = (
        stack.gateway.open_fds().expect("fds"),
        stack.gateway.rss_kib().expect("rss"),
    );
    let cycles = 10_000;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..20 {
        tasks.push(tokio::spawn(async move {
            for i in 0..cycles / 20 {
                if (i + w) % 2 == 0 {
                    // Read a little of a stream, then vanish mid-part.
                    let mut s = TcpStream::connect(addr).await.expect("connect");
                    s.write_all(b"GET /video_feed HTTP/1.1\r\nHost: x\r\n\r\n")
                        .await
                        .expect("write");
                    let mut buf = [0u8; 700];
                    let _ = s.read(&mut buf).await;
                } else {
                    let mut r = MjpegReader::open(addr, "/video_feed").await.expect("open");
                    r.next_frame_within(Duration::from_secs(5))
                        .await
                        .expect("frame");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("churn task");
    }
    eprintln!(
        "{cycles} connect/read/disconnect cycles in {:?}",
        t.elapsed()
    );
    let gw = &stack.gateway;
    wait_for(
        "viewers, fds and memory back to baseline",
        Duration::from_secs(10),
        || {
            let (fds, rss) = (
                gw.open_fds().unwrap_or(usize::MAX),
                gw.rss_kib().unwrap_or(u64::MAX),
            );
            async move {
                let viewers = test_support::metrics::metric_value(
                    &http::get(addr, "/metrics").await.ok()?.text(),
                    "gateway_viewers_total",
                    &[],
                );
                (viewers == 0.0 && fds <= fds0 + 2 && rss < rss0 + 8 * 1024).then_some(())
            }
        },
    )
    .await;
}
