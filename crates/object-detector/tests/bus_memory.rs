//! What a frozen subscriber costs the detector is bounded in bytes, as for
//! the producer (`stream-gateway/tests/bus_memory.rs`): the detector
//! publishes through the bus's own PUB server, so a gateway SIGSTOPped for
//! 20 s while the detector publishes large annotated frames
//! (`--annotate`, noisy camera-sized pictures) leaves the detector's RSS
//! within `--subscriber-queue-bytes` plus a stated allowance, the excess is
//! dropped and counted, and another subscriber keeps receiving. With the
//! zmq.rs PUB it had before, the frozen gateway's queue had no byte limit.

use std::time::{Duration, Instant};

use test_support::detector::Detector;
use test_support::gateway::Gateway;
use test_support::metrics::wait_metric;
use test_support::producer::Producer;
use test_support::zmq::Subscriber;
use test_support::{media, wait_for};

/// The bound under test (small, so it is reached quickly).
const QUEUE_BYTES: u64 = 4 << 20;
/// Allowance on top of it: the allocator's slack, frames being encoded and
/// in flight to the live subscriber.
const ALLOWANCE: u64 = 16 << 20;
const STALL: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_frozen_for_20_s_costs_the_detector_at_most_its_queue_bytes() {
    let dir = media::temp_dir("detector-bus-memory");
    let jpeg = media::noisy_jpeg(1920, 1080, 60);
    std::fs::write(dir.join("frame.jpg"), &jpeg).expect("write");
    let producer = Producer::start(&["--source", &dir.to_string_lossy(), "--fps", "15"]);
    let queue = QUEUE_BYTES.to_string();
    let detector = Detector::start(
        &[&producer.endpoint],
        &[
            "--annotate",
            "--detect-fps",
            "15",
            "--subscriber-queue-bytes",
            &queue,
            // Never let the frozen gateway go: the queue bound alone holds.
            "--subscriber-timeout",
            "0",
        ],
    );
    let frozen = Gateway::start(&[&detector.endpoint], &["--subscribe", "all"], &[]);
    let mut live = wait_for("a live subscriber", Duration::from_secs(30), || async {
        Subscriber::connect(&detector.endpoint, "f/").await.ok()
    })
    .await;
    let first = live
        .next_frame(Duration::from_secs(30))
        .await
        .expect("an annotated frame");
    assert_eq!(first.header.stream, "cam0-detect");
    wait_metric(
        frozen.addr,
        "gateway_frames_in_total",
        &[],
        3.0,
        Duration::from_secs(20),
    )
    .await;
    let baseline = detector.proc.rss_kib().expect("rss") << 10;

    frozen.proc.signal(19); // SIGSTOP: connected, not reading
    let start = Instant::now();
    let (mut peak, mut peak_queued, mut received) = (baseline, 0.0f64, 0u64);
    let mut annotated_bytes = 0usize;
    while start.elapsed() < STALL {
        let f = live
            .next_frame(Duration::from_secs(5))
            .await
            .expect("the live subscriber keeps receiving");
        annotated_bytes = f.jpeg.len();
        received += 1;
        peak = peak.max(detector.proc.rss_kib().unwrap_or(0) << 10);
        peak_queued = peak_queued.max(
            detector
                .metric("detector_subscriber_queued_bytes", &[])
                .await,
        );
    }
    let dropped = detector
        .metric("detector_subscriber_frames_dropped_total", &[])
        .await;
    frozen.proc.signal(18); // SIGCONT
    eprintln!(
        "annotated frames of {} KB; detector RSS {} MB -> peak {} MB (+{} MB) while a gateway \
         was frozen {STALL:?}; queued at most {} KB; {dropped} messages dropped for it; the live \
         subscriber got {received} frames",
        annotated_bytes / 1000,
        baseline >> 20,
        peak >> 20,
        peak.saturating_sub(baseline) >> 20,
        peak_queued as u64 / 1000,
    );
    assert!(
        peak <= baseline + QUEUE_BYTES + ALLOWANCE,
        "detector grew by {} MB, over the {} MB queue bound + {} MB allowance",
        peak.saturating_sub(baseline) >> 20,
        QUEUE_BYTES >> 20,
        ALLOWANCE >> 20
    );
    // Two subscribers' queues together, each within the bound.
    assert!(
        peak_queued <= 2.0 * QUEUE_BYTES as f64,
        "{peak_queued} bytes queued"
    );
    // The bound was what held: messages were dropped for the frozen gateway.
    assert!(dropped > 10.0, "only {dropped} messages dropped");
    let _ = std::fs::remove_dir_all(&dir);
}
