//! Retention, every two seconds: segments older than `--keep` (event
//! recordings, those reaching into a kept event's window, and the event
//! stage's events with their snapshots: `--keep-events`) go, then the
//! oldest finished ones (continuous before event ones) while all
//! recordings together exceed `--max-bytes`; the segment being written is
//! never touched. The same pass updates the disk gauges.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::RecorderMetrics;
use crate::store::Store;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub keep: Duration,
    pub keep_events: Duration,
    pub max_bytes: Option<u64>,
}

pub async fn run(
    store: Arc<Store>,
    policy: Policy,
    metrics: RecorderMetrics,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let (store, metrics) = (store.clone(), metrics.clone());
        let _ = tokio::task::spawn_blocking(move || pass(&store, policy, &metrics)).await;
    }
}

/// One retention pass.
pub fn pass(store: &Store, policy: Policy, metrics: &RecorderMetrics) {
    let now_ms = stream_common::unix_now_ns() / 1_000_000;
    // Events first: an event that goes no longer keeps its recording.
    for path in store.expire_events(now_ms, policy.keep_events.as_millis() as u64) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "retention could not delete")
            }
        }
    }
    let expired = store.expire(
        now_ms,
        policy.keep.as_millis() as u64,
        policy.keep_events.as_millis() as u64,
        policy.max_bytes,
    );
    for (name, seg, reason) in expired {
        for path in [seg.path.clone(), seg.path.with_extension("idx")] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "retention could not delete")
                }
            }
        }
        tracing::debug!(stream = %name, start_ms = seg.start_ms, reason, "retention deleted a segment");
        metrics.deleted(reason);
    }
    metrics.disk_used.set(store.total_bytes() as i64);
    if let Ok(st) = rustix::fs::statvfs(store.dir()) {
        metrics
            .disk_free
            .set(st.f_bavail.saturating_mul(st.f_frsize) as i64);
    }
    for (name, oldest, _) in store.per_stream() {
        metrics.oldest(&name, oldest);
    }
}
