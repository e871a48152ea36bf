//! The event history's writer: one thread of its own, fed through a bounded
//! queue, stores each event message the bus brings (`history.rs` says how
//! on disk). A slow or full disk costs event messages, dropped and counted
//! (`recorder_event_messages_total{result="queue_full"}`), never the bus or
//! a camera's frames.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use frame_wire::EventMessage;
use stream_common::ratelimit::LogEvery;

use crate::metrics::RecorderMetrics;
use crate::store::Store;

/// Event messages that may wait for the writer.
const QUEUE: usize = 256;

/// The history's writer thread and its queue.
pub struct Keeper {
    tx: Mutex<Option<SyncSender<EventMessage>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: RecorderMetrics,
    full_log: Mutex<LogEvery>,
}

impl Keeper {
    pub fn start(store: Arc<Store>, metrics: RecorderMetrics) -> std::io::Result<Keeper> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<EventMessage>(QUEUE);
        let m = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("rec-events".into())
            .spawn(move || {
                let mut log = LogEvery::new(Duration::from_secs(5));
                for message in rx {
                    let result = match store.keep_event(&message) {
                        Ok(()) => "stored",
                        Err(e) => {
                            if let Some(folded) = log.check(Instant::now()) {
                                tracing::warn!(id = %message.event.id.escape_default(), error = %e, repeats = folded, "event not kept");
                            }
                            e.result()
                        }
                    };
                    m.event_message(result);
                }
            })?;
        Ok(Keeper {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            metrics,
            full_log: Mutex::new(LogEvery::new(Duration::from_secs(5))),
        })
    }

    /// Hands a message to the writer, never waiting (dropped and counted when full).
    pub fn offer(&self, message: EventMessage) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(message) {
            self.metrics.event_message("queue_full");
            let mut log = self.full_log.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(folded) = log.check(Instant::now()) {
                tracing::warn!(
                    repeats = folded,
                    "event history queue full (disk too slow?); dropping event messages"
                );
            }
        }
    }

    /// Writes what is queued, then stops the thread.
    pub fn stop(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}
