//! What a publisher can make the gateway hold is bounded, against the real
//! binaries: at most `--max-streams` streams (new names beyond it refused
//! and counted while a real camera keeps flowing), streams gone for
//! `--forget-after` forgotten unless watched, and a NO SIGNAL picture of a
//! bounded size, rendered once, whatever size a header claims.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use test_support::gateway::Gateway;
use test_support::http::{self, MjpegReader};
use test_support::media;
use test_support::metrics::wait_metric;
use test_support::producer::Producer;
use test_support::publisher::{Publisher, header};
use test_support::wait_for;

/// The names `/api/streams` lists now.
async fn listed(addr: SocketAddr) -> Option<Vec<String>> {
    let r = http::get(addr, "/api/streams").await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    Some(
        v["streams"]
            .as_array()?
            .iter()
            .filter_map(|s| s["name"].as_str().map(String::from))
            .collect(),
    )
}

/// Sends `name`'s one picture, `width`×`height` by its header.
async fn one_shot(p: &mut Publisher, name: &str, seq: u64, size: (u32, u32), jpeg: &Bytes) {
    let h = header(name, seq, stream_common::unix_now_ns(), size);
    p.frame(&h, jpeg).await.expect("publish");
}

/// Sends each of `names` (the first of them at least) until the gateway
/// lists them all: the publisher's subscriber is connected from then on.
async fn publish_until_listed(g: &Gateway, p: &mut Publisher, names: &[&str], size: (u32, u32)) {
    let jpeg = media::solid_jpeg(32, 32, [20, 120, 200]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seq = 0;
    loop {
        for name in names {
            one_shot(p, name, seq, size, &jpeg).await;
        }
        seq += 1;
        let now = listed(g.addr).await.unwrap_or_default();
        if names.iter().all(|n| now.iter().any(|l| l == n)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never listed {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn new_streams_beyond_the_cap_are_refused_while_a_camera_keeps_flowing() {
    let cam = Producer::start(&["--stream", "cam0", "--size", "160x120", "--fps", "10"]);
    let mut p = Publisher::bind().await.expect("bind");
    let g = Gateway::start(
        &[&cam.endpoint, &p.endpoint],
        &["--max-streams", "100"],
        &[],
    );
    g.wait_stream("cam0", Duration::from_secs(20)).await;

    // 300 one-shot names: the first until it is listed, then the others once.
    let names: Vec<String> = (0..300).map(|i| format!("shot{i:03}")).collect();
    publish_until_listed(&g, &mut p, &[&names[0]], (32, 32)).await;
    let jpeg = media::solid_jpeg(32, 32, [200, 20, 20]);
    for name in &names[1..] {
        one_shot(&mut p, name, 0, (32, 32), &jpeg).await;
    }
    // cam0 and 99 one-shots fill the 100; the other 201 are refused.
    let refused = wait_metric(
        g.addr,
        "gateway_streams_refused_total",
        &["reason=\"cap\""],
        201.0,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(refused, 201.0, "each refused name counted once");
    let now = listed(g.addr).await.expect("/api/streams");
    assert_eq!(now.len(), 100, "at most --max-streams listed");
    assert!(now.iter().any(|n| n == "cam0"));
    assert_eq!(g.metric("gateway_streams", &[]).await, 100.0);
    // No series for a refused name.
    let text = test_support::metrics::scrape(g.addr)
        .await
        .expect("metrics");
    assert!(
        !text.contains("\"shot299\""),
        "a refused name made a series"
    );

    // The camera held before the flood still delivers live frames.
    let mut viewer = MjpegReader::open(g.addr, "/stream/cam0")
        .await
        .expect("viewer");
    viewer
        .wait_online(true, Duration::from_secs(10), Duration::from_secs(5))
        .await
        .expect("cam0 live");
    let mut stamps = Vec::new();
    for _ in 0..5 {
        let f = viewer
            .next_frame_within(Duration::from_secs(5))
            .await
            .expect("a frame of cam0");
        stamps.push(f.timestamp().expect("X-Timestamp"));
    }
    stamps.dedup();
    assert!(stamps.len() >= 4, "cam0 frames keep coming: {stamps:?}");

    let log = g.proc.log();
    let lines = log.matches("new stream refused").count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for 201 refusals"
    );
    eprintln!("201 names refused in {lines} log line(s); cam0 live throughout");
}

#[tokio::test]
async fn gone_streams_are_forgotten_unless_watched() {
    let mut p = Publisher::bind().await.expect("bind");
    let g = Gateway::start(&[&p.endpoint], &["--forget-after", "2"], &[]);

    // "ghost" has had a viewer (so a fan-out writer) before it goes; "kept"
    // has one while it is gone.
    publish_until_listed(&g, &mut p, &["kept", "ghost"], (32, 32)).await;
    {
        let mut once = MjpegReader::open(g.addr, "/stream/ghost")
            .await
            .expect("viewer");
        once.next_frame_within(Duration::from_secs(5))
            .await
            .expect("a frame of ghost");
    }
    let mut viewer = MjpegReader::open(g.addr, "/stream/kept")
        .await
        .expect("viewer");
    viewer
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("a frame of kept");

    let addr = g.addr;
    wait_for("ghost forgotten", Duration::from_secs(20), || async move {
        let now = listed(addr).await?;
        (!now.iter().any(|n| n == "ghost")).then_some(())
    })
    .await;
    assert_eq!(g.metric("gateway_streams_forgotten_total", &[]).await, 1.0);
    // "kept" went silent before "ghost", yet stays while watched: NO SIGNAL.
    assert!(listed(g.addr).await.expect("list").contains(&"kept".into()));
    viewer
        .wait_online(false, Duration::from_secs(5), Duration::from_secs(3))
        .await
        .expect("the viewer of a gone stream sees NO SIGNAL");
    assert_eq!(http::status(g.addr, "/snapshot/ghost").await, 404);

    // The last viewer leaves: forgotten too.
    drop(viewer);
    wait_for("kept forgotten", Duration::from_secs(20), || async move {
        let now = listed(addr).await?;
        (!now.iter().any(|n| n == "kept")).then_some(())
    })
    .await;
    assert_eq!(g.metric("gateway_streams_forgotten_total", &[]).await, 2.0);
    let text = test_support::metrics::scrape(g.addr)
        .await
        .expect("metrics");
    assert!(
        !text.contains("stream=\"ghost\""),
        "a forgotten stream's series stay"
    );

    // A forgotten name that comes back is a new stream, served live (not
    // by the old stream's writer).
    publish_until_listed(&g, &mut p, &["ghost"], (32, 32)).await;
    let mut again = MjpegReader::open(g.addr, "/stream/ghost")
        .await
        .expect("viewer");
    let f = again
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("a frame");
    assert_eq!(f.header("x-source-online"), Some("true"));
}

#[tokio::test]
async fn a_huge_claimed_size_gets_a_bounded_placeholder_rendered_once() {
    let mut p = Publisher::bind().await.expect("bind");
    let g = Gateway::start(&[&p.endpoint], &["--stale-after", "1"], &[]);
    let before_kib = vm(&g, "VmHWM").expect("VmHWM");
    // A small picture whose header claims 16384x16384.
    publish_until_listed(&g, &mut p, &["huge"], (16384, 16384)).await;
    let addr = g.addr;
    let (jpeg, stamp) = wait_for(
        "the NO SIGNAL placeholder",
        Duration::from_secs(20),
        || async move {
            let r = http::get(addr, "/snapshot/huge").await.ok()?;
            (r.head.header("x-source-online") == Some("false")).then(|| {
                let stamp = r.head.header("x-timestamp").map(String::from);
                (r.body, stamp)
            })
        },
    )
    .await;
    assert_eq!(
        stream_common::jpeg::dimensions(&jpeg),
        Some((1080, 1080)),
        "scaled to fit 1920x1080, keeping the shape"
    );
    // Re-sent once a second, never rendered again: the same picture, the
    // same time stamp.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let r = http::get(addr, "/snapshot/huge").await.expect("snapshot");
        assert_eq!(r.head.header("x-timestamp").map(String::from), stamp);
        assert_eq!(r.body, jpeg, "rendered again");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let peak_kib = vm(&g, "VmHWM").expect("VmHWM");
    eprintln!(
        "peak memory {} MB before, {} MB after the 16384x16384 stream went stale",
        before_kib / 1024,
        peak_kib / 1024
    );
    assert!(peak_kib < 120 * 1024, "peak memory {peak_kib} KiB");
}

/// A `Vm…` line of the gateway's /proc status, in KiB.
fn vm(g: &Gateway, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", g.proc.pid())).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
