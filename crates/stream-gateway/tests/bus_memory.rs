//! What a frozen subscriber costs the producer is bounded in bytes
//! (`--subscriber-queue-bytes`), whatever the frame size and rate: a gateway
//! SIGSTOPped for 30 s while the producer publishes 1 MB frames at 30 fps
//! leaves the producer's RSS within the bound plus a stated allowance, and
//! another gateway keeps streaming every frame. Before the producer had its
//! own PUB socket (zmq.rs queues 100,000 messages per subscriber) this grew
//! the producer by 312 MB.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use test_support::gateway::Gateway;
use test_support::http::{self, MjpegReader};
use test_support::process::Proc;
use test_support::{free_port, media, wait_for};

/// The bound under test: the producer's default `--subscriber-queue-bytes`.
const QUEUE_BYTES: u64 = 32 << 20;
/// Allowance on top of it: the allocator's slack, the frame being written,
/// the other subscriber's few frames in flight.
const ALLOWANCE: u64 = 16 << 20;

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

async fn metric(addr: SocketAddr, name: &str) -> f64 {
    test_support::metrics::metric(addr, name, &[]).await
}

/// A gateway subscribed to every frame (`--subscribe all`), viewers or not.
fn gateway(producer: &str) -> (Proc, SocketAddr) {
    let g = Gateway::start(&[producer], &["--subscribe", "all"], &[]);
    (g.proc, g.addr)
}

async fn wait_ready(addr: SocketAddr) {
    wait_for("gateway ready", Duration::from_secs(20), || async move {
        (http::get(addr, "/readyz").await.ok()?.head.status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_gateway_frozen_for_30_s_costs_the_producer_at_most_its_queue_bytes() {
    let dir = media::temp_dir("bus-memory");
    let jpeg = media::noisy_jpeg(1920, 1080, 60);
    assert!(
        (900_000..1_400_000).contains(&jpeg.len()),
        "test frame is {} bytes, not about 1 MB",
        jpeg.len()
    );
    std::fs::write(dir.join("frame.jpg"), &jpeg).expect("write");
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let p_metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let m = p_metrics.to_string();
    let d = dir.to_string_lossy().into_owned();
    // --subscriber-timeout 0: the frozen gateway is never dropped, so the
    // queue bound alone is what holds memory down.
    let producer = Proc::start(
        "frame-producer",
        &[
            "--bind",
            &ep,
            "--metrics-listen",
            &m,
            "--source",
            &d,
            "--fps",
            "30",
            "--subscriber-timeout",
            "0",
        ],
        &[],
    );
    let (frozen, frozen_addr) = gateway(&ep);
    let (_live, live_addr) = gateway(&ep);
    wait_ready(frozen_addr).await;
    wait_ready(live_addr).await;
    let mut viewer = MjpegReader::open(live_addr, "/video_feed")
        .await
        .expect("viewer");
    viewer
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("first frame");
    let baseline = rss_bytes(producer.pid());
    let live_before = metric(live_addr, "gateway_frames_in_total").await;

    frozen.signal(19); // SIGSTOP: connected, not reading
    let stall = Duration::from_secs(30);
    let start = Instant::now();
    let (mut peak, mut max_gap, mut last) = (baseline, Duration::ZERO, Instant::now());
    while start.elapsed() < stall {
        let f = viewer
            .next_frame_within(Duration::from_secs(5))
            .await
            .expect("the other gateway keeps streaming");
        assert_eq!(f.jpeg.len(), jpeg.len());
        max_gap = max_gap.max(last.elapsed());
        last = Instant::now();
        peak = peak.max(rss_bytes(producer.pid()));
    }
    let live_frames = metric(live_addr, "gateway_frames_in_total").await - live_before;
    let dropped = metric(p_metrics, "producer_subscriber_frames_dropped_total").await;
    frozen.signal(18); // SIGCONT
    eprintln!(
        "frame {} KB at 30 fps; producer RSS {} MB -> peak {} MB (+{} MB) while a gateway was \
         frozen {stall:?}; {dropped} frames dropped for it; the live gateway got {live_frames} \
         frames, its viewer's longest gap {max_gap:?}",
        jpeg.len() / 1000,
        baseline >> 20,
        peak >> 20,
        peak.saturating_sub(baseline) >> 20
    );
    assert!(
        peak <= baseline + QUEUE_BYTES + ALLOWANCE,
        "producer grew by {} MB, over the {} MB queue bound + {} MB allowance",
        peak.saturating_sub(baseline) >> 20,
        QUEUE_BYTES >> 20,
        ALLOWANCE >> 20
    );
    // The bound was what held: frames were dropped for the frozen gateway.
    assert!(dropped > 100.0, "only {dropped} frames dropped");
    assert!(
        live_frames >= 0.85 * 30.0 * stall.as_secs_f64(),
        "the live gateway got {live_frames} frames in {stall:?}"
    );
    assert!(
        max_gap < Duration::from_secs(1),
        "viewer waited {max_gap:?}"
    );
    // The thawed gateway streams again.
    let before = metric(frozen_addr, "gateway_frames_in_total").await;
    wait_for(
        "thawed gateway receives",
        Duration::from_secs(15),
        || async move {
            (metric(frozen_addr, "gateway_frames_in_total").await > before + 30.0).then_some(())
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
