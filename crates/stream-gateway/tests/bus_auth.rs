//! The frame bus is no open door: with a bus key, a subscriber without the
//! key gets nothing from a producer bound to a non-loopback address; frames
//! signed with another key (or not at all) never reach a viewer and are
//! counted; a key rotation keeps the stream live; the Python publisher signs
//! so a gateway shows its frames. Real binaries on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use test_support::gateway::Gateway;
use test_support::http::{self, MjpegReader};
use test_support::keys::write_key_file as key_file;
use test_support::metrics::{metric, wait_metric};
use test_support::process::Proc;
use test_support::{free_port, media, wait_for};

const K1: &str = "6b1e0c3f9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
const K2: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const FORGER: &str = "deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef";

fn producer(bind: &str, args: &[&str], env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let m = metrics.to_string();
    let mut all = vec![
        "--bind",
        bind,
        "--metrics-listen",
        m.as_str(),
        "--fps",
        "20",
    ];
    all.extend_from_slice(args);
    (Proc::start("frame-producer", &all, env), metrics)
}

fn gateway(producers: &[&str], env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let g = Gateway::start(producers, &[], env);
    (g.proc, g.addr)
}

/// Opens a stream once the gateway is ready (it has had a valid frame).
async fn open_when_ready(addr: SocketAddr, path: &str) -> anyhow::Result<MjpegReader> {
    wait_for("gateway ready", Duration::from_secs(20), || async move {
        (http::get(addr, "/readyz").await.ok()?.head.status == 200).then_some(())
    })
    .await;
    MjpegReader::open(addr, path).await
}

async fn wait_log(p: &Proc, needle: &str, count: usize) {
    wait_for(
        &format!("{} logging {needle:?} x{count}", p.name),
        Duration::from_secs(15),
        || async move { (p.log().matches(needle).count() >= count).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn without_the_key_a_subscriber_gets_nothing_from_a_producer_on_every_interface() {
    let dir = media::temp_dir("bus-open");
    let keys = key_file(&dir, "bus.key", K1);
    let port = free_port();
    // Bound to every interface (not loopback); we reach it over loopback.
    let bind = format!("tcp://0.0.0.0:{port}");
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let keys_s = keys.to_string_lossy().into_owned();
    let (p, p_metrics) = producer(&bind, &[], &[("PRODUCER_BUS_KEY_FILE", &keys_s)]);
    wait_log(&p, "bus key set", 1).await;
    assert!(!p.log().contains("FRAME BUS OPEN"), "{}", p.log());

    // A gateway with the key streams: the producer is really publishing.
    let (_g, g_addr) = gateway(&[&endpoint], &[("GATEWAY_BUS_KEY_FILE", &keys_s)]);
    let mut viewer = open_when_ready(g_addr, "/video_feed")
        .await
        .expect("keyed gateway serves");
    viewer
        .next_frame_within(Duration::from_secs(10))
        .await
        .expect("frame through the keyed gateway");

    // A plain ZeroMQ subscriber (no token) gets nothing and is let go.
    let mut sub = test_support::zmq::Subscriber::connect(&endpoint, "")
        .await
        .expect("connect");
    let got = sub.next_frame(Duration::from_secs(3)).await;
    assert!(got.is_err(), "an unauthenticated subscriber got a frame");
    wait_metric(
        p_metrics,
        "producer_subscribers_refused_total",
        &["reason=\"no_valid_token\""],
        1.0,
        Duration::from_secs(20),
    )
    .await;
    // The keyed gateway kept streaming meanwhile.
    viewer
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("still streaming");

    // Without a key the same bind is loudly reported, once.
    let open_port = free_port();
    let (open, _) = producer(&format!("tcp://0.0.0.0:{open_port}"), &[], &[]);
    wait_log(&open, "frame-producer started", 1).await;
    assert_eq!(
        open.log().matches("FRAME BUS OPEN").count(),
        1,
        "{}",
        open.log()
    );
    // And on loopback (the default) it is not.
    assert!(!p.log().contains("FRAME BUS OPEN"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn forged_and_unsigned_frames_never_reach_a_viewer_and_are_counted() {
    let dir = media::temp_dir("bus-forged");
    let keys = key_file(&dir, "bus.key", K1);
    let keys_s = keys.to_string_lossy().into_owned();
    let forged_key = key_file(&dir, "forger.key", FORGER);
    // The forger publishes a red 64x32 picture on the real stream's name,
    // in the right format, signed with its own key, from a libzmq PUB that
    // sends to anyone.
    let red = media::solid_jpeg(64, 32, [220, 0, 0]);
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).expect("dir");
    std::fs::write(frames.join("red.jpg"), &red).expect("write");
    let forger_ep = format!("tcp://127.0.0.1:{}", free_port());
    let script = test_support::process::workspace_root().join("scripts/publish_frames.py");
    let forger = Proc::start_program(
        "forger",
        Path::new("python3"),
        &[
            &script.to_string_lossy(),
            "--bind",
            &forger_ep,
            "--stream",
            "cam0",
            "--fps",
            "20",
            "--key-file",
            &forged_key.to_string_lossy(),
            &frames.to_string_lossy(),
        ],
        &[],
    );
    // An old, unkeyed producer on another stream.
    let plain_ep = format!("tcp://127.0.0.1:{}", free_port());
    let (_plain, _) = producer(&plain_ep, &["--stream", "plain"], &[]);
    // The real producer.
    let real_ep = format!("tcp://127.0.0.1:{}", free_port());
    let (_real, _) = producer(&real_ep, &[], &[("PRODUCER_BUS_KEY_FILE", &keys_s)]);

    let (_g, g) = gateway(
        &[&real_ep, &forger_ep, &plain_ep],
        &[("GATEWAY_BUS_KEY_FILE", &keys_s)],
    );
    wait_metric(
        g,
        "gateway_invalid_messages_total",
        &["reason=\"unknown_key\""],
        5.0,
        Duration::from_secs(20),
    )
    .await;
    wait_metric(
        g,
        "gateway_invalid_messages_total",
        &["reason=\"unsigned\""],
        5.0,
        Duration::from_secs(20),
    )
    .await;
    let mut viewer = open_when_ready(g, "/stream/cam0").await.expect("viewer");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut n = 0;
    while Instant::now() < deadline {
        let f = viewer
            .next_frame_within(Duration::from_secs(5))
            .await
            .expect("frame");
        assert_ne!(f.jpeg, red, "a forged frame reached a viewer");
        n += 1;
    }
    assert!(n >= 20, "only {n} real frames in 3 s");
    assert_ne!(
        http::get(g, "/snapshot/cam0").await.expect("snap").body,
        red
    );
    let streams = http::get(g, "/api/streams").await.expect("api").text();
    assert!(
        !streams.contains("\"plain\""),
        "unsigned stream listed: {streams}"
    );
    assert_ne!(http::status(g, "/snapshot/plain").await, 200);
    assert!(forger.log().is_empty() || !forger.log().contains("Traceback"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_key_rotation_keeps_the_stream_live() {
    let dir = media::temp_dir("bus-rotate");
    let g_keys = key_file(&dir, "gateway.key", K1);
    let p_keys = key_file(&dir, "producer.key", K1);
    let g_keys_s = g_keys.to_string_lossy().into_owned();
    let p_keys_s = p_keys.to_string_lossy().into_owned();
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let (p, _) = producer(&ep, &[], &[("PRODUCER_BUS_KEY_FILE", &p_keys_s)]);
    let (g, g_addr) = gateway(&[&ep], &[("GATEWAY_BUS_KEY_FILE", &g_keys_s)]);
    let mut viewer = open_when_ready(g_addr, "/video_feed")
        .await
        .expect("viewer");
    viewer
        .next_frame_within(Duration::from_secs(10))
        .await
        .expect("first frame");

    // Reads the viewer for `d`, returning the longest gap between frames.
    async fn watch(viewer: &mut MjpegReader, d: Duration) -> Duration {
        let start = Instant::now();
        let (mut last, mut gap) = (Instant::now(), Duration::ZERO);
        while start.elapsed() < d {
            let f = viewer
                .next_frame_within(Duration::from_secs(5))
                .await
                .expect("the stream stays live");
            assert_eq!(f.header("x-source-online"), Some("true"));
            gap = gap.max(last.elapsed());
            last = Instant::now();
        }
        gap
    }

    // 1. Gateways learn the new key (both accepted).
    key_file(&dir, "gateway.key", &format!("{K1}\n{K2}\n"));
    wait_log(&g, "keys reloaded", 1).await;
    let mut worst = watch(&mut viewer, Duration::from_millis(1500)).await;
    // 2. The producer signs with the new key, still knowing the old.
    key_file(&dir, "producer.key", &format!("{K2}\n{K1}\n"));
    wait_log(&p, "keys reloaded", 1).await;
    worst = worst.max(watch(&mut viewer, Duration::from_millis(1500)).await);
    // 3. The old key goes, producer then gateway.
    key_file(&dir, "producer.key", K2);
    wait_log(&p, "keys reloaded", 2).await;
    worst = worst.max(watch(&mut viewer, Duration::from_millis(1500)).await);
    key_file(&dir, "gateway.key", K2);
    wait_log(&g, "keys reloaded", 2).await;
    worst = worst.max(watch(&mut viewer, Duration::from_secs(2)).await);

    let dropped = metric(g_addr, "gateway_invalid_messages_total", &[]).await;
    assert_eq!(dropped, 0.0, "frames were refused during the rotation");
    assert!(
        worst < Duration::from_millis(500),
        "the viewer waited {worst:?} for a frame during the rotation"
    );
    // Only the new key works now: a gateway holding just the old one gets nothing.
    let old_keys = key_file(&dir, "old.key", K1);
    let (_old, old_addr) = gateway(
        &[&ep],
        &[("GATEWAY_BUS_KEY_FILE", &old_keys.to_string_lossy())],
    );
    wait_for(
        "old-key gateway answers",
        Duration::from_secs(10),
        || async move { http::get(old_addr, "/healthz").await.ok().map(|_| ()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // nothing to wait for: absence
    assert_eq!(
        metric(old_addr, "gateway_frames_in_total", &[]).await,
        0.0,
        "a gateway with the retired key received frames"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_python_publisher_signs_so_a_gateway_shows_its_frames() {
    let dir = media::temp_dir("bus-python");
    let keys = key_file(&dir, "bus.key", &format!("# comment\n{K2}\n"));
    let green = media::solid_jpeg(64, 32, [0, 200, 0]);
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).expect("dir");
    std::fs::write(frames.join("green.jpg"), &green).expect("write");
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let script = test_support::process::workspace_root().join("scripts/publish_frames.py");
    let _py = Proc::start_program(
        "publish_frames.py",
        Path::new("python3"),
        &[
            &script.to_string_lossy(),
            "--bind",
            &ep,
            "--stream",
            "py0",
            "--fps",
            "20",
            &frames.to_string_lossy(),
        ],
        &[("BUS_KEY_FILE", &keys.to_string_lossy())],
    );
    let (_g, g) = gateway(&[&ep], &[("GATEWAY_BUS_KEY", K2)]);
    let body = wait_for(
        "the Python frame on /snapshot/py0",
        Duration::from_secs(20),
        || async move {
            let r = http::get(g, "/snapshot/py0").await.ok()?;
            (r.head.status == 200).then_some(r.body)
        },
    )
    .await;
    assert_eq!(body, green);
    assert_eq!(metric(g, "gateway_invalid_messages_total", &[]).await, 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unusable_bus_key_stops_start_up_without_printing_it() {
    // A near-miss of a real key (one character off) must not end up in logs.
    let bad = format!("{}g", &K1[..63]);
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let (mut p, _) = producer(&ep, &[], &[("PRODUCER_BUS_KEY", &bad)]);
    let (mut g, _) = gateway(&[&ep], &[("GATEWAY_BUS_KEY", &bad)]);
    let dir = media::temp_dir("bus-badfile");
    let missing = dir.join("missing.key").to_string_lossy().into_owned();
    let (mut g2, _) = gateway(&[&ep], &[("GATEWAY_BUS_KEY_FILE", &missing)]);
    for proc in [&mut p, &mut g, &mut g2] {
        let status = wait_for(
            &format!("{} exits", proc.name),
            Duration::from_secs(10),
            || {
                let s = proc.try_wait();
                async move { s }
            },
        )
        .await;
        assert!(!status.success(), "{} started with a bad key", proc.name);
        let log = proc.log();
        assert!(log.contains("key"), "{log}");
        assert!(!log.contains(&bad[..40]), "the key was printed: {log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
