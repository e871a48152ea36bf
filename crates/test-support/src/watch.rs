//! A bus subscriber that keeps what it reads, for tests that look back over
//! everything a detector (`d/`) or an event stage (`e/`) published while a
//! scene played: it reads in the background from the moment it connects,
//! decoded by the real wire codec, so a test asks "what came so far" and
//! waits on conditions instead of pulling messages one at a time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use frame_wire::{Detections, EventMessage, FrameHeader, Message};

use crate::wait_for;
use crate::zmq::Subscriber;

/// Everything one subscription took, in order.
pub struct BusWatch {
    seen: Arc<Mutex<Vec<Message>>>,
    task: tokio::task::JoinHandle<()>,
}

impl BusWatch {
    /// Subscribes (unsigned bus) to the raw prefix `topic` of `endpoint`:
    /// `"d/"` for a detector's detections, `"e/"` for a stage's events.
    pub async fn start(endpoint: &str, topic: &str) -> BusWatch {
        let mut sub = Subscriber::connect(endpoint, topic)
            .await
            .unwrap_or_else(|e| panic!("subscribing to {endpoint}: {e}"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                // Quiet stretches are normal (a stage between events).
                if let Ok(m) = sub.next_message(Duration::from_secs(3600)).await {
                    kept.lock().unwrap_or_else(|e| e.into_inner()).push(m);
                }
            }
        });
        BusWatch { seen, task }
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<Message> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The detections messages so far.
    pub fn detections(&self) -> Vec<(FrameHeader, Detections)> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::Detections { header, detections } => Some((header, detections)),
                _ => None,
            })
            .collect()
    }

    /// The event messages so far.
    pub fn events(&self) -> Vec<(FrameHeader, EventMessage)> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::Event { header, event } => Some((header, *event)),
                _ => None,
            })
            .collect()
    }

    /// Waits until the messages so far satisfy `check`; what it returns.
    pub async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Message]) -> Option<T>,
    ) -> T {
        let check = &check;
        wait_for(what, timeout, || async move { check(&self.messages()) }).await
    }
}

impl Drop for BusWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
