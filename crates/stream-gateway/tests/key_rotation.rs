//! "Keys rotate without restarts", for every bus subscriber: the producer
//! stopped, the subscribers' key file changed from K1 to K2, the producer
//! restarted on K2 only. A gateway (with a viewer watching) and a detector
//! both receive again within 3 s, neither restarted: their bus client
//! re-reads the key file on a timer, not only when a message arrives, and
//! proves the current ring on every reconnection. Real binaries on loopback.

use std::path::Path;
use std::time::{Duration, Instant};

use test_support::detector::Detector;
use test_support::events::EventStage;
use test_support::gateway::Gateway;
use test_support::http::MjpegReader;
use test_support::keys::write_key_file as key_file;
use test_support::metrics::{metric, wait_metric};
use test_support::process::Proc;
use test_support::recorder::Recorder;
use test_support::{free_port, media, wait_for};

const K1: &str = "6b1e0c3f9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
const K2: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn producer(bind: &str, key_file: &Path) -> Proc {
    let metrics = format!("127.0.0.1:{}", free_port());
    Proc::start(
        "frame-producer",
        &["--bind", bind, "--metrics-listen", &metrics, "--fps", "20"],
        &[("PRODUCER_BUS_KEY_FILE", &key_file.to_string_lossy())],
    )
}

/// Waits until `read` exceeds `above`, returning how long it took.
async fn rises<F, Fut>(what: &str, above: f64, read: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let start = Instant::now();
    wait_for(what, Duration::from_secs(3), || {
        let v = read();
        async move { (v.await > above).then_some(()) }
    })
    .await;
    start.elapsed()
}

#[tokio::test]
async fn every_subscriber_receives_again_after_the_producer_restarts_on_a_new_key() {
    let dir = media::temp_dir("key-rotation");
    let p_key = key_file(&dir, "producer.key", K1);
    let s_key = key_file(&dir, "subscribers.key", K1);
    let s_key_s = s_key.to_string_lossy().into_owned();
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let mut p = producer(&ep, &p_key);
    let g = Gateway::start(&[&ep], &[], &[("GATEWAY_BUS_KEY_FILE", &s_key_s)]);
    let d = Detector::start(&[&ep], &["--bus-key-file", &s_key_s]);
    let r = Recorder::start(&ep, &dir.join("recordings"), &["--bus-key-file", &s_key_s]);
    let recorded = || metric(r.addr, "recorder_frames_written_total", &[]);
    let e = EventStage::start(&[&d.endpoint], &[&ep], &["--bus-key-file", &s_key_s]);
    let taken_in = || metric(e.metrics, "events_detections_messages_total", &[]);
    // A viewer, so the gateway asks for full-rate frames.
    let mut viewer = wait_for("a viewer", Duration::from_secs(20), || async {
        MjpegReader::open(g.addr, "/video_feed").await.ok()
    })
    .await;
    viewer
        .next_frame_within(Duration::from_secs(20))
        .await
        .expect("first frame");
    wait_metric(
        g.addr,
        "gateway_frames_in_total",
        &[],
        5.0,
        Duration::from_secs(20),
    )
    .await;
    wait_metric(
        d.metrics,
        "detector_frames_analysed_total",
        &[],
        1.0,
        Duration::from_secs(30),
    )
    .await;
    wait_metric(
        r.addr,
        "recorder_frames_written_total",
        &[],
        1.0,
        Duration::from_secs(30),
    )
    .await;
    wait_metric(
        e.metrics,
        "events_detections_messages_total",
        &[],
        1.0,
        Duration::from_secs(30),
    )
    .await;

    // The producer stops; everyone's key goes from K1 to K2.
    p.kill();
    key_file(&dir, "producer.key", K2);
    key_file(&dir, "subscribers.key", K2);
    // Long enough for both clients' watchdogs to notice the silence and
    // for their key timers to pass: nothing else happens meanwhile.
    wait_for(
        "the gateway's watchdog",
        Duration::from_secs(15),
        || async { (g.metric("gateway_resubscribes_total", &[]).await >= 1.0).then_some(()) },
    )
    .await;
    let g_before = g.metric("gateway_frames_in_total", &[]).await;
    let d_before = d.metric("detector_frames_analysed_total", &[]).await;

    // Back on K2 only, same port.
    let _p = producer(&ep, &p_key);
    // The recorder writes what it has queued for a moment after the
    // producer stops, so its count is read once the producer is back.
    let r_before = recorded().await;
    let e_before = taken_in().await;
    let (g_back, d_back, r_back, e_back) = tokio::join!(
        rises("gateway frames again", g_before, || {
            g.metric("gateway_frames_in_total", &[])
        }),
        rises("detector analysing again", d_before, || {
            d.metric("detector_frames_analysed_total", &[])
        }),
        rises("recorder writing again", r_before, recorded),
        rises("event stage taking detections again", e_before, taken_in),
    );
    eprintln!(
        "after the producer restarted on K2 only: gateway back in {g_back:?}, detector in {d_back:?}, recorder in {r_back:?}, event stage in {e_back:?}"
    );
    viewer
        .next_frame_within(Duration::from_secs(3))
        .await
        .expect("the viewer sees frames again");
    assert!(g.proc.log().contains("keys reloaded"), "gateway log");
    assert!(d.proc.log().contains("keys reloaded"), "detector log");
    assert!(r.proc.log().contains("keys reloaded"), "recorder log");
    assert!(e.proc.log().contains("keys reloaded"), "event stage log");
}
