//! HTTPS under load, with real producer and gateway processes and every
//! MJPEG part parsed strictly (test_support::tls): 500 TLS viewers of one
//! stream at full rate, a stalled TLS viewer that skips frames without
//! delaying the others, closed viewers released at once, and thousands of
//! abandoned handshakes refused and counted with memory back near baseline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use test_support::http::{Connection, MjpegReader};
use test_support::tls::{HttpsGateway, handshake};
use test_support::wait_for;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// The start of a ClientHello: a handshake record of 240 bytes announced,
/// then only the message type and one byte of its length.
const PARTIAL_HELLO: [u8; 6] = [0x16, 0x03, 0x01, 0x00, 0xF0, 0x01];

fn producer(fps: f64, size: &str) -> [String; 6] {
    [
        "--fps".into(),
        fps.to_string(),
        "--size".into(),
        size.into(),
        "--stream".into(),
        "cam0".into(),
    ]
}

async fn start(producer_args: &[String], extra: &[&str], env: &[(&str, &str)]) -> HttpsGateway {
    let args: Vec<&str> = producer_args.iter().map(String::as_str).collect();
    HttpsGateway::start_with_env(&args, extra, env).await
}

/// Reads `r` until `end`, each part within 5 s and checked strictly; the
/// number of parts that arrived from `from` on.
async fn parts_between(r: &mut MjpegReader, from: Instant, end: Instant) -> usize {
    let mut n = 0;
    loop {
        r.next_frame_within(Duration::from_secs(5))
            .await
            .expect("a whole part within 5 s");
        let now = Instant::now();
        if now >= end {
            return n;
        }
        n += usize::from(now >= from);
    }
}

/// Parts each reader got over one common window of `secs` (after 2 s in
/// which backlogs drain), sorted.
async fn rates(readers: Vec<MjpegReader>, secs: u64) -> (Vec<usize>, Vec<MjpegReader>) {
    let from = Instant::now() + Duration::from_secs(2);
    let end = from + Duration::from_secs(secs);
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            tokio::spawn(async move {
                let n = parts_between(&mut r, from, end).await;
                (n, r)
            })
        })
        .collect();
    let (mut counts, mut readers) = (Vec::new(), Vec::new());
    for t in tasks {
        let (n, r) = t.await.expect("viewer task");
        counts.push(n);
        readers.push(r);
    }
    counts.sort_unstable();
    (counts, readers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_tls_viewers_of_one_stream_all_get_the_full_rate() {
    const FPS: f64 = 10.0;
    const WINDOW: u64 = 6;
    let h = start(&producer(FPS, "320x240"), &["--threads", "2"], &[]).await;
    let mut viewers = Vec::new();
    for _ in 0..500 {
        viewers.push(h.viewer("/stream/cam0").await);
    }
    h.wait_viewers(500, Duration::from_secs(30)).await;

    let (counts, viewers) = rates(viewers, WINDOW).await;
    let want = FPS * WINDOW as f64;
    let (min, median, max) = (
        counts[0],
        counts[counts.len() / 2],
        counts[counts.len() - 1],
    );
    eprintln!("parts in {WINDOW} s: min {min} median {median} max {max} ({want} made)");
    assert!(
        min as f64 >= want * 0.8,
        "slowest of 500 TLS viewers got {min} parts in {WINDOW} s (median {median}, {want} made)"
    );
    // Counted parts are fresh ones, not a backlog or repeats.
    assert!(
        max as f64 <= want * 1.1 + 2.0,
        "a viewer got {max} parts in {WINDOW} s, more than the {want} made"
    );
    drop(viewers);
    h.wait_viewers(0, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_viewer_skips_frames_and_delays_no_one_and_a_closed_one_is_released() {
    const FPS: f64 = 15.0;
    const STALL: u64 = 8;
    let h = start(&producer(FPS, "640x480"), &["--threads", "2"], &[]).await;
    let addr = h.addr();

    // The stalled viewer: a small receive buffer, so its stall backs up at once.
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
    let tcp = sock.connect(addr).await.expect("connect");
    let s = handshake(&h.tls, tcp, "127.0.0.1")
        .await
        .expect("handshake");
    let conn = Connection::request_on(s, addr, "GET", "/stream/cam0", &[], b"")
        .await
        .expect("response head");
    let mut stalled = MjpegReader::from_connection(conn, "/stream/cam0").expect("MJPEG");

    let mut others = Vec::new();
    for _ in 0..20 {
        others.push(h.viewer("/stream/cam0").await);
    }
    h.wait_viewers(21, Duration::from_secs(20)).await;
    let skipped_before = h.metric("gateway_frames_skipped_total", &[]).await;

    // The others read at full rate while the stalled one reads nothing.
    let (counts, mut others) = rates(others, STALL).await;
    let want = FPS * STALL as f64;
    assert!(
        counts[0] as f64 >= want * 0.8,
        "a TLS viewer got {} parts in {STALL} s beside a stalled one ({want} made)",
        counts[0]
    );
    // Resumed, it parses on: the part it was in finishes whole, and a fresh
    // one comes after a backlog of a few parts, not everything it missed.
    let mut backlog = 0;
    loop {
        let f = stalled
            .next_frame_within(Duration::from_secs(5))
            .await
            .expect("the stalled viewer's stream goes on, strictly parsed");
        let ts = f.timestamp().expect("X-Timestamp");
        let age = stream_common::unix_now_ns() as f64 / 1e9 - ts;
        if age < 1.0 {
            break;
        }
        backlog += 1;
        assert!(backlog < 30, "{backlog} stale parts and counting");
    }
    eprintln!("resumed after {STALL} s: {backlog} stale parts, then a fresh one");
    // Skips are counted when the part after them is written.
    let skipped = h.metric("gateway_frames_skipped_total", &[]).await - skipped_before;
    assert!(
        skipped >= want / 2.0,
        "the stalled viewer skipped {skipped} frames of the {want} made while it stalled"
    );

    // A viewer that closes is released at once (a second, plus the
    // scrape's own time on a loaded machine).
    assert_eq!(h.metric("gateway_viewers_total", &[]).await, 21.0);
    drop(others.pop());
    let closed = Instant::now();
    h.wait_viewers(20, Duration::from_secs(10)).await;
    let took = closed.elapsed();
    eprintln!("a closed viewer released after {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "a closed TLS viewer was released after {took:?}"
    );
}

/// Abandons `each` handshakes after the start of a ClientHello, then stalls
/// `each` more after three bytes of it until the handshake deadline; returns
/// once all are counted by reason, with the gateway's RSS while the stalled
/// ones were held (KiB).
async fn abandon(h: &HttpsGateway, each: usize) -> u64 {
    let addr = h.addr();
    let failures = |reason: &'static str| async move {
        let label = format!("reason=\"{reason}\"");
        h.metric("gateway_tls_handshake_failures_total", &[label.as_str()])
            .await
    };
    let (closed0, timeout0) = (failures("closed").await, failures("timeout").await);
    for _ in 0..each {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&PARTIAL_HELLO).await.expect("write");
    }
    let mut stalled = Vec::with_capacity(each);
    for _ in 0..each {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&PARTIAL_HELLO[..3]).await.expect("write");
        stalled.push(s);
    }
    let held = rss(h);
    for (reason, before) in [("closed", closed0), ("timeout", timeout0)] {
        wait_for(
            &format!("{each} handshakes counted as {reason}"),
            Duration::from_secs(60),
            || async move { (failures(reason).await - before >= each as f64).then_some(()) },
        )
        .await;
    }
    held
}

/// Current VmRSS of the gateway, KiB.
fn rss(h: &HttpsGateway) -> u64 {
    h.gateway.proc.rss_kib().expect("gateway RSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_abandoned_handshakes_are_counted_and_cost_nothing_after() {
    const FPS: f64 = 10.0;
    const EACH: usize = 1000;
    let h = start(
        &producer(FPS, "320x240"),
        &["--threads", "2", "--header-timeout", "1"],
        // One malloc arena: what the stalled handshakes free is reused by
        // the next ones whichever thread they land on, so growth from one
        // round to the next is what the gateway keeps, not glibc's spread.
        &[("MALLOC_ARENA_MAX", "1")],
    )
    .await;
    let addr = h.addr();
    let failures = |reason: &'static str| {
        let h = &h;
        async move {
            let label = format!("reason=\"{reason}\"");
            h.metric("gateway_tls_handshake_failures_total", &[label.as_str()])
                .await
        }
    };

    // A streaming viewer, read all along.
    let mut viewer = h.viewer("/stream/cam0").await;
    for _ in 0..10 {
        viewer.next_frame().await.expect("a whole part");
    }
    let done = Arc::new(AtomicBool::new(false));
    let reading = {
        let done = done.clone();
        tokio::spawn(async move {
            let (start, mut n) = (Instant::now(), 0u32);
            while !done.load(Ordering::Relaxed) {
                viewer
                    .next_frame_within(Duration::from_secs(5))
                    .await
                    .expect("the viewer streams on, strictly parsed");
                n += 1;
            }
            f64::from(n) / start.elapsed().as_secs_f64()
        })
    };
    let baseline = rss(&h);
    let first = abandon(&h, EACH).await;
    let after_first = rss(&h);
    let second = abandon(&h, EACH).await;
    let after_second = rss(&h);
    eprintln!(
        "gateway RSS: {baseline} KiB before; {first} KiB with {EACH} handshakes stalled, \
         {after_first} KiB after; again: {second} KiB, {after_second} KiB after"
    );

    // A TLS 1.1-only client is refused, and counted as a protocol version
    // (rustls names what its ClientHello lacks: signature_algorithms).
    let refused = || async { failures("protocol_version").await };
    let version0 = refused().await;
    let old = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-connect",
        ])
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl");
    assert!(!String::from_utf8_lossy(&old.stdout).contains("BEGIN CERTIFICATE"));
    wait_for(
        "the TLS 1.1 client counted",
        Duration::from_secs(10),
        || async { (refused().await > version0).then_some(()) },
    )
    .await;

    // Memory back near where it was: the allocator keeps some of what the
    // stalled handshakes used, but a second round reuses it, so nothing is
    // kept per handshake.
    assert!(
        after_first <= baseline + 24 * 1024,
        "gateway RSS {after_first} KiB after {} abandoned handshakes (baseline {baseline} KiB)",
        2 * EACH
    );
    assert!(
        after_second <= after_first + 2 * 1024,
        "gateway RSS grew from {after_first} KiB to {after_second} KiB in a second round"
    );

    done.store(true, Ordering::Relaxed);
    let rate = reading.await.expect("viewer task");
    assert!(
        rate >= FPS * 0.8,
        "the streaming viewer dropped to {rate:.1} fps"
    );
}
