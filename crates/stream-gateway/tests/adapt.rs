//! `auto` over a link with a real bandwidth limit (test_support::netns: a
//! network namespace behind a veth with a 2 Mbit/s token bucket): a real
//! producer of a 1280x720 camera at 15 fps (pictures of about 60 KB,
//! `media::camera_frames`) with renditions 640 and 320, a real gateway, a
//! viewer in the namespace and one on loopback. The full picture over the
//! limited link is a slide show; with `width=auto` the viewer settles on a
//! rendition it can take at (nearly) the camera rate, and climbs back to
//! the full picture once the limit is lifted; the viewer on loopback gets
//! the full picture at the full rate throughout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::gateway::Gateway;
use test_support::http::{Connection, MjpegReader};
use test_support::netns::Throttled;
use test_support::producer::Producer;
use test_support::wait_for;
use tokio_tungstenite::tungstenite::Message;

const FULL_WIDTH: u32 = 1280;

/// Every frame a viewer received: when, and how wide.
type Log = Arc<Mutex<Vec<(Instant, u32)>>>;

/// Reads `r` until the test ends (or the stream breaks), logging each frame.
fn record(mut r: MjpegReader) -> (Log, tokio::task::JoinHandle<()>) {
    let log: Log = Arc::default();
    let into = log.clone();
    let task = tokio::spawn(async move {
        while let Ok(f) = r.next_frame().await {
            let w = stream_common::jpeg::dimensions(&f.jpeg).map_or(0, |(w, _)| w);
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Instant::now(), w));
        }
    });
    (log, task)
}

/// Reads a page's WebSocket until the test ends, logging each frame's
/// picture (`[1][flags][name_len][name][capture_ts][seq][jpeg]`).
fn record_ws<S>(mut ws: tokio_tungstenite::WebSocketStream<S>) -> Log
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::StreamExt;
    let log: Log = Arc::default();
    let into = log.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            let Message::Binary(b) = m else { continue };
            let Some(&n) = b.get(2) else { continue };
            let Some(jpeg) = b.get(3 + usize::from(n) + 16..) else {
                continue;
            };
            let w = stream_common::jpeg::dimensions(jpeg).map_or(0, |(w, _)| w);
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Instant::now(), w));
        }
    });
    log
}

/// Frames logged in `[from, to)`, and the widths they had.
fn between(log: &Log, from: Instant, to: Instant) -> Vec<u32> {
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, w)| *w)
        .collect()
}

fn fps(frames: usize, d: Duration) -> f64 {
    frames as f64 / d.as_secs_f64()
}

/// A producer of a 1280x720 camera `cam0` with renditions and a gateway
/// reachable from the namespace, once the gateway lists the renditions.
async fn camera_and_gateway(frames: &str) -> (Producer, Gateway) {
    let mut flags = test_support::media::camera_flags(frames);
    flags.extend(["--stream".to_string(), "cam0".to_string()]);
    let producer = Producer::start(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let gw = Gateway::start_reachable(&[&producer.endpoint], &[], &[]);
    gw.wait_stream("cam0", Duration::from_secs(20)).await;
    let addr = gw.addr;
    wait_for(
        "cam0's renditions listed",
        Duration::from_secs(20),
        || async move {
            let r = test_support::http::get(addr, "/api/streams").await.ok()?;
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            let s = v["streams"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "cam0")?;
            (s["renditions"].as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    (producer, gw)
}

/// Waits until the last 4 s of `log` are all one width below the full
/// picture at 10 fps or more: that width and rate.
async fn settles(log: &Log, within: Duration) -> (u32, f64) {
    let settle = Duration::from_secs(4);
    wait_for(
        "the auto viewer settled on a rendition at 10 fps or more",
        within,
        || {
            let log = log.clone();
            async move {
                let now = Instant::now();
                let from = now.checked_sub(settle)?;
                let got = between(&log, from, now);
                let w = *got.first()?;
                let rate = fps(got.len(), settle);
                (w < FULL_WIDTH && got.iter().all(|x| *x == w) && rate >= 10.0).then_some((w, rate))
            }
        },
    )
    .await
}

/// Waits (at most 10 s) until `log`'s last frames since `lifted` are the
/// full picture.
async fn back_to_full(log: &Log, lifted: Instant) {
    wait_for(
        "the auto viewer back on the full picture",
        Duration::from_secs(10),
        || {
            let log = log.clone();
            async move {
                let got = between(&log, lifted, Instant::now());
                got.iter()
                    .rev()
                    .take(3)
                    .all(|w| *w == FULL_WIDTH)
                    .then_some(())?;
                (got.len() >= 3).then_some(())
            }
        },
    )
    .await;
}

/// `path` of the gateway, read from inside the namespace: over the limit.
async fn throttled_viewer(link: &Throttled, gw: &Gateway, path: &str) -> MjpegReader {
    let addr = link.host_addr(gw.addr.port());
    let socket = link
        .connect(addr)
        .await
        .expect("connect from the namespace");
    let conn = Connection::request_on(socket, addr, "GET", path, &[], b"")
        .await
        .expect("request over the limited link");
    MjpegReader::from_connection(conn, path).expect("an MJPEG stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_viewer_on_a_2_mbit_link_takes_a_rendition_and_climbs_back_when_lifted() {
    let Some(link) = Throttled::new(2000) else {
        eprintln!("skipped: no network namespace (needs root, ip and tc)");
        return;
    };
    let (_producer, gw) = camera_and_gateway("adapt-frames").await;

    // The viewer on loopback, unthrottled, from start to end.
    let start = Instant::now();
    let open = MjpegReader::open(gw.addr, "/stream/cam0")
        .await
        .expect("open");
    let (free_log, free_task) = record(open);

    // 1. The full picture over the limit: a slide show. The first seconds
    // fill the socket buffers; what follows is what the link carries.
    let (full_log, full_task) = record(throttled_viewer(&link, &gw, "/stream/cam0").await);
    wait_for(
        "the full picture over the limit",
        Duration::from_secs(20),
        || {
            let log = full_log.clone();
            async move {
                (!between(&log, start, Instant::now() + Duration::from_secs(1)).is_empty())
                    .then_some(())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(6);
    let from = Instant::now();
    // The duration under measurement.
    tokio::time::sleep(window).await;
    let full = between(&full_log, from, from + window);
    let full_fps = fps(full.len(), window);
    full_task.abort();
    eprintln!("full picture over 2 Mbit/s: {full_fps:.1} fps");
    assert!(
        full.iter().all(|w| *w == FULL_WIDTH),
        "full picture widths {full:?}"
    );
    assert!(
        full_fps < 5.0,
        "the full picture gave {full_fps:.1} fps over 2 Mbit/s"
    );

    // 2. `auto` over the same limit: down to a rendition it can take.
    let downs = gw
        .metric("gateway_rendition_switches_total", &["direction=\"down\""])
        .await;
    let (auto_log, _auto_task) =
        record(throttled_viewer(&link, &gw, "/stream/cam0?width=auto").await);
    let moved = Instant::now();
    let (width, settled_fps) = settles(&auto_log, Duration::from_secs(40)).await;
    eprintln!(
        "auto over 2 Mbit/s: settled on {width} px at {settled_fps:.1} fps, {:?} after joining",
        moved.elapsed()
    );
    assert!(
        gw.metric(
            "gateway_rendition_switches_total",
            &["direction=\"down\"", "reason=\"skipping\""]
        )
        .await
            > downs,
        "the move down is counted with its reason"
    );

    // 3. The limit lifted: back to the full picture within 10 s.
    assert!(link.set_rate(None), "lift the limit");
    let lifted = Instant::now();
    back_to_full(&auto_log, lifted).await;
    eprintln!(
        "limit lifted: full picture again after {:?}",
        lifted.elapsed()
    );
    assert!(
        gw.metric(
            "gateway_rendition_switches_total",
            &["direction=\"up\"", "reason=\"headroom\""]
        )
        .await
            >= 1.0
    );

    // The loopback viewer, throughout: the full picture at the camera rate.
    let end = Instant::now();
    let free = between(&free_log, start + Duration::from_secs(2), end);
    let span = end - start - Duration::from_secs(2);
    free_task.abort();
    let free_fps = fps(free.len(), span);
    eprintln!("unthrottled viewer: {free_fps:.1} fps over {span:?}");
    assert!(free.iter().all(|w| *w == FULL_WIDTH), "unthrottled widths");
    assert!(
        free_fps >= 12.0,
        "the unthrottled viewer got {free_fps:.1} fps"
    );
}

/// The page's way: a WebSocket watching cam0 with `"auto": true` over the
/// same kind of link moves down to a rendition it can take, and back up
/// once the limit is lifted (its writer moves it; the socket stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_watching_with_auto_over_2_mbit_moves_down_and_back() {
    let Some(link) = Throttled::new(2000) else {
        eprintln!("skipped: no network namespace (needs root, ip and tc)");
        return;
    };
    let (_producer, gw) = camera_and_gateway("adapt-ws-frames").await;
    let addr = link.host_addr(gw.addr.port());
    let socket = link
        .connect(addr)
        .await
        .expect("connect from the namespace");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), socket)
        .await
        .expect("WebSocket over the limited link");
    {
        use futures_util::SinkExt;
        ws.send(Message::text(r#"{"watch":["cam0"],"auto":true}"#))
            .await
            .expect("watch");
    }
    let log = record_ws(ws);
    let (width, rate) = settles(&log, Duration::from_secs(40)).await;
    eprintln!("page with auto over 2 Mbit/s: {width} px at {rate:.1} fps");
    assert!(link.set_rate(None), "lift the limit");
    let lifted = Instant::now();
    back_to_full(&log, lifted).await;
    eprintln!(
        "limit lifted: the page's full picture after {:?}",
        lifted.elapsed()
    );
    assert_eq!(
        gw.metric("gateway_viewers_total", &[]).await,
        1.0,
        "one connection throughout"
    );
}
