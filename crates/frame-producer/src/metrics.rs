//! Producer metrics and the small HTTP listener for `/healthz` and `/metrics`
//! that container health checks and Prometheus use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio_util::sync::CancellationToken;
use warp::Filter;

/// A frame older than this makes `/healthz` fail.
const HEALTHY_WITHIN_NS: u64 = 5_000_000_000;

#[derive(Clone)]
pub struct ProducerMetrics {
    registry: Registry,
    pub published: IntCounter,
    pub skipped_late: IntCounter,
    pub skipped_rate: IntCounter,
    pub skipped_oversize: IntCounter,
    pub bad_frames: IntCounter,
    pub source_errors: IntCounter,
    pub encode_seconds: Histogram,
    pub frame_bytes: Histogram,
    pub bus: crate::bus::BusMetrics,
    started_ns: u64,
    last_publish_ns: Arc<AtomicU64>,
}

impl ProducerMetrics {
    pub fn new(stream: &str) -> prometheus::Result<Self> {
        let registry = Registry::new_custom(
            Some("producer".into()),
            Some([("stream".to_string(), stream.to_string())].into()),
        )?;
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let skipped = IntCounterVec::new(
            Opts::new("frames_skipped_total", "Frames not published, by reason"),
            &["reason"],
        )?;
        registry.register(Box::new(skipped.clone()))?;
        let encode_seconds = Histogram::with_opts(
            HistogramOpts::new("encode_seconds", "Time to JPEG-encode one frame").buckets(vec![
                0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064,
            ]),
        )?;
        registry.register(Box::new(encode_seconds.clone()))?;
        let frame_bytes = Histogram::with_opts(
            HistogramOpts::new("frame_bytes", "Size of published JPEGs")
                .buckets(prometheus::exponential_buckets(8192.0, 2.0, 10)?),
        )?;
        registry.register(Box::new(frame_bytes.clone()))?;
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let refused = IntCounterVec::new(
            Opts::new(
                "subscribers_refused_total",
                "Subscriber connections refused or dropped, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        let bus = crate::bus::BusMetrics {
            subscribers: gauge("subscribers", "Subscribers connected to the PUB socket")?,
            queued_bytes: gauge(
                "subscriber_queued_bytes",
                "Bytes of frames queued for subscribers, all together",
            )?,
            dropped: counter(
                "subscriber_frames_dropped_total",
                "Frames dropped for a subscriber whose queue was full (--subscriber-queue-bytes)",
            )?,
            refused,
        };
        Ok(ProducerMetrics {
            bus,
            published: counter("frames_published_total", "Frames published")?,
            skipped_late: skipped.with_label_values(&["late"]),
            skipped_rate: skipped.with_label_values(&["rate_cap"]),
            skipped_oversize: skipped.with_label_values(&["oversize"]),
            bad_frames: counter(
                "bad_frames_total",
                "Unreadable or corrupt input frames skipped",
            )?,
            source_errors: counter("source_errors_total", "Times the source was unavailable")?,
            encode_seconds,
            frame_bytes,
            started_ns: stream_common::unix_now_ns(),
            last_publish_ns: Arc::new(AtomicU64::new(0)),
            registry,
        })
    }

    pub fn mark_published(&self, bytes: usize) {
        self.published.inc();
        self.frame_bytes.observe(bytes as f64);
        self.last_publish_ns
            .store(stream_common::unix_now_ns(), Ordering::Relaxed);
    }

    /// Healthy when a frame went out recently, or during the first seconds.
    fn healthy(&self) -> bool {
        let now = stream_common::unix_now_ns();
        let last = self
            .last_publish_ns
            .load(Ordering::Relaxed)
            .max(self.started_ns);
        now.saturating_sub(last) < HEALTHY_WITHIN_NS
    }
}

/// Binds the listener (so a bad address fails at start-up) and serves it.
pub async fn serve(
    addr: SocketAddr,
    metrics: ProducerMetrics,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let m = metrics.clone();
    let health = warp::path!("healthz").map(move || {
        if m.healthy() {
            warp::reply::with_status(String::from("ok\n"), warp::http::StatusCode::OK)
        } else {
            warp::reply::with_status(
                String::from("no frame published recently\n"),
                warp::http::StatusCode::SERVICE_UNAVAILABLE,
            )
        }
    });
    let prom = warp::path!("metrics").map(move || {
        warp::reply::with_header(
            stream_common::metrics::render(&metrics.registry),
            "content-type",
            stream_common::metrics::CONTENT_TYPE,
        )
    });
    let routes = warp::get().and(health.or(prom));
    Ok(tokio::spawn(async move {
        warp::serve(routes)
            .incoming(listener)
            .graceful(async move { shutdown.cancelled().await })
            .run()
            .await;
    }))
}
