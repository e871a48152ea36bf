//! End-to-end checks with real third-party clients and hostile input:
//! Chromium renders the page, ffmpeg decodes the stream, the producer's HTTP
//! relay source reads it, and garbage on the ZeroMQ side changes nothing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use test_support::http::{self, MjpegReader};
use test_support::stack::Stack;
use test_support::webdriver::{Browser, screenshot_path};
use test_support::zmq::Subscriber;
use test_support::{free_port, wait_for};
use zeromq::{Socket, SocketSend, ZmqMessage};

#[tokio::test]
async fn chromium_renders_the_live_stream_and_it_moves() {
    let mut stack = Stack::start(&["--fps", "15"], &[]).await;
    let browser = Browser::launch().await.expect("browser");
    browser
        .goto(&format!("http://{}/#stream=cam0", stack.http))
        .await
        .expect("open page");

    // The enlarged camera has drawn a frame of the stream's size.
    let size_script = "const c = document.getElementById('stream'); const v = window.viewer;
        return v && v.cams.has('cam0') && v.cams.get('cam0').drawn > 0 ? c.width : 0;";
    wait_for("stream drawn", Duration::from_secs(15), || async {
        let w = browser.eval(size_script).await.ok()?.as_u64()?;
        (w == 640).then_some(())
    })
    .await;

    // Its pixels change over time.
    let hash_script = "const c = document.getElementById('stream'); const x = c.getContext('2d');
        const d = x.getImageData(0, 0, c.width, c.height).data; let h = 0;
        for (let k = 0; k < d.length; k += 7) { h = (h * 31 + d[k]) >>> 0; } return h;";
    let first = browser.eval(hash_script).await.expect("hash");
    wait_for("pixels change", Duration::from_secs(10), || async {
        let now = browser.eval(hash_script).await.ok()?;
        (now != first).then_some(())
    })
    .await;

    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    let path = screenshot_path("viewer-page.png");
    std::fs::write(&path, &png).expect("save screenshot");
    eprintln!("screenshot saved to {}", path.display());

    // The gateway restarts (as behind a load balancer): the page notices the
    // closed socket and reconnects, and the picture moves again.
    stack.restart_gateway().await;
    let moving_again = async {
        let mut last = browser.eval(hash_script).await.ok();
        let mut changes = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let now = browser.eval(hash_script).await.ok();
            if now.is_some() && now != last {
                changes += 1;
                if changes >= 3 {
                    return;
                }
            }
            last = now;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), moving_again)
        .await
        .expect("the page recovered its live stream after the gateway restarted");
}

#[tokio::test]
async fn ffmpeg_decodes_the_stream_without_errors() {
    let stack = Stack::start(&["--fps", "20", "--size", "320x240"], &[]).await;
    let url = format!("http://{}/stream/cam0", stack.http);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                &url,
                "-frames:v",
                "40",
                "-f",
                "null",
                "-",
            ])
            .output(),
    )
    .await
    .expect("ffmpeg finished in time")
    .expect("ffmpeg runs (scripts/setup.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg reported errors: {stderr}");
}

#[tokio::test]
async fn producer_relays_the_gateway_stream_without_reencoding() {
    let mut stack = Stack::start(&["--fps", "20", "--size", "320x240"], &[]).await;
    let relay_zmq = format!("tcp://127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let source = format!("http://{}/stream/cam0", stack.http);
    let _relay = test_support::process::Proc::start(
        "frame-producer",
        &[
            "--source",
            &source,
            "--stream",
            "relayed",
            "--bind",
            &relay_zmq,
            "--metrics-listen",
            &metrics,
            "--fps",
            "30",
        ],
        &[],
    );
    let mut sub = Subscriber::frames_of(&relay_zmq, "relayed")
        .await
        .expect("subscribe");
    let f = sub
        .next_frame(Duration::from_secs(15))
        .await
        .expect("relayed frame");
    assert_eq!((f.header.width, f.header.height), (320, 240));
    // Byte-identical to a frame the gateway serves: it was not re-encoded.
    let mut direct = MjpegReader::open(stack.http, "/stream/cam0")
        .await
        .expect("direct");
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(
            direct
                .next_frame_within(Duration::from_secs(3))
                .await
                .expect("frame")
                .jpeg,
        );
    }
    let mut relayed = Vec::new();
    for _ in 0..10 {
        relayed.push(
            sub.next_frame(Duration::from_secs(3))
                .await
                .expect("relayed")
                .jpeg,
        );
    }
    assert!(
        relayed.iter().any(|r| seen.contains(r)),
        "relayed frames must equal served frames byte for byte"
    );

    // The upstream drops (its server restarts): the relay reconnects on its own.
    drop(direct);
    let killed_at = stream_common::unix_now_ns();
    stack.restart_gateway().await;
    let t = Instant::now();
    let mut resumed = false;
    while t.elapsed() < Duration::from_secs(15) {
        // Frames relayed before the upstream died may still be queued; only
        // ones received from the new upstream count.
        if let Ok(f) = sub.next_frame(Duration::from_secs(1)).await
            && f.header.capture_ts_ns > killed_at
        {
            resumed = true;
            break;
        }
    }
    assert!(
        resumed,
        "the relay did not reconnect after its upstream restarted"
    );
    eprintln!(
        "relay resumed {:?} after the upstream restarted",
        t.elapsed()
    );
}

#[tokio::test]
async fn garbage_from_a_producer_is_counted_and_serving_continues() {
    let bad_port = free_port();
    let bad = format!("tcp://127.0.0.1:{bad_port}");
    let mut publisher = zeromq::PubSocket::new();
    publisher.bind(&bad).await.expect("bind test PUB");
    // Subscribed to everything: the garbage has version 1/2 topics (bare
    // names), which no on-demand subscription matches.
    let stack = Stack::start(
        &["--fps", "20", "--size", "320x240"],
        &[
            "--producer",
            &bad,
            "--max-frame-bytes",
            "100000",
            "--subscribe",
            "all",
        ],
    )
    .await;

    let mut reader = MjpegReader::open(stack.http, "/video_feed")
        .await
        .expect("open");
    reader
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("frame");

    let good_header = |stream: &str, version: u8| -> Vec<u8> {
        let mut h = frame_wire::encode_header(&frame_wire::FrameHeader {
            version: frame_wire::VERSION,
            seq: 1,
            capture_ts_ns: stream_common::unix_now_ns(),
            width: 8,
            height: 8,
            producer_id: 7,
            stream: stream.into(),
        })
        .expect("header");
        h[0] = version;
        h
    };
    let jpeg = Bytes::from_static(b"\xFF\xD8\xFF\xE0junk\xFF\xD9");
    let mut big = vec![0xFF, 0xD8];
    big.resize(200_000, 0x55);
    big.extend_from_slice(&[0xFF, 0xD9]);
    let messages: Vec<Vec<Bytes>> = vec![
        vec![Bytes::from_static(b"random garbage \x00\x01\x02")],
        vec![
            Bytes::from_static(b"bad"),
            Bytes::from(good_header("bad", 1)[..10].to_vec()),
            jpeg.clone(),
        ],
        vec![
            Bytes::from_static(b"bad"),
            Bytes::from(good_header("bad", 9)),
            jpeg.clone(),
        ],
        vec![
            Bytes::from_static(b"bad"),
            Bytes::from(good_header("bad", 1)),
            Bytes::from_static(b"GIF89a not a jpeg"),
        ],
        vec![
            Bytes::from_static(b"bad"),
            Bytes::from(good_header("bad", 1)),
            Bytes::from(big),
        ],
    ];
    // Publish until the gateway has seen each kind (the subscription takes a
    // moment to reach this PUB socket).
    let kinds = [
        "part_count",
        "bad_header",
        "version",
        "not_jpeg",
        "too_large",
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for m in &messages {
            publisher
                .send(ZmqMessage::try_from(m.clone()).expect("message"))
                .await
                .expect("send");
        }
        let mut all = true;
        for k in kinds {
            all &= stack
                .metric(
                    "gateway_invalid_messages_total",
                    &[&format!("reason=\"{k}\"")],
                )
                .await
                > 0.0;
        }
        if all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "invalid messages were not all counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing was created for the bad stream, and the good one keeps flowing.
    assert_eq!(http::status(stack.http, "/stream/bad").await, 404);
    let start = Instant::now();
    for _ in 0..20 {
        reader
            .next_frame_within(Duration::from_secs(2))
            .await
            .expect("still streaming");
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "stream slowed down"
    );
    let log = stack.gateway.log();
    let warnings = log.matches("dropping invalid message").count();
    assert!(
        (1..40).contains(&warnings),
        "{warnings} warning lines: the log must be rate-limited"
    );
}

#[tokio::test]
async fn viewers_that_vanish_are_released_while_the_source_is_idle() {
    let mut stack = Stack::start(
        &["--fps", "20", "--size", "320x240"],
        &["--stale-after", "60"],
    )
    .await;
    let fds_before = stack.gateway.open_fds().expect("fds");
    let mut readers = Vec::new();
    for _ in 0..50 {
        let mut r = MjpegReader::open(stack.http, "/video_feed")
            .await
            .expect("open");
        r.next_frame_within(Duration::from_secs(5))
            .await
            .expect("frame");
        readers.push(r);
    }
    // No frames flow now: only the once-a-second re-send goes out.
    stack.kill_producer();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.metric("gateway_viewers_total", &[]).await, 50.0);
    drop(readers);
    let t = Instant::now();
    test_support::stack::wait_viewers(stack.http, 0, Duration::from_secs(5)).await;
    eprintln!("released 50 vanished viewers in {:?}", t.elapsed());
    let fds = stack.gateway.open_fds().expect("fds");
    assert!(
        fds <= fds_before + 2,
        "file descriptors {fds_before} -> {fds}"
    );
}
