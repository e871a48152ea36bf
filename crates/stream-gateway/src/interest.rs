//! Which streams this gateway's viewers watch, so that the receive tasks
//! subscribe at full rate to exactly those (subscribe on demand), and at
//! which picture: the full one or a rendition (`rendition.rs`), each
//! subscribed on its own (`f/<name>/`, `r/<name>/<width>/`).
//!
//! Every viewer of a stream, whatever it reads (an MJPEG response, a
//! WebSocket's watch list), holds a `Watching` guard (`serve/seats.rs`)
//! that counts it here while it lives. A stream is *wanted* from its first
//! viewer until `--subscribe-linger` after its last one left, so a viewer
//! that reloads the page or flips between cameras does not make the producer
//! stop and restart sending. The wanted set is published on a `watch`
//! channel that every receive task follows; unwatched streams still arrive as
//! previews, about once a second. The set only follows viewers: it never
//! depends on what the metrics say. With `--subscribe all` every stream is
//! received at full rate and nothing here changes that.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::{GatewayMetrics, StreamMetrics};
use crate::receive::subscriptions::Mode;
use crate::rendition::{Choice, Feed};

/// The feeds wanted at full rate now.
pub type Wanted = Arc<BTreeSet<Feed>>;

pub struct Interest {
    mode: Mode,
    linger: Duration,
    streams: Mutex<HashMap<Feed, Entry>>,
    wanted: watch::Sender<Wanted>,
    /// Wakes [`run`] when a stream's last viewer leaves.
    idle: Notify,
    metrics: Arc<GatewayMetrics>,
}

/// One wanted stream: its viewers now, and since when it has none.
struct Entry {
    viewers: usize,
    idle_since: Option<Instant>,
}

impl Interest {
    pub fn new(mode: Mode, linger: Duration, metrics: Arc<GatewayMetrics>) -> Self {
        Interest {
            mode,
            linger,
            streams: Mutex::new(HashMap::new()),
            wanted: watch::Sender::new(Wanted::default()),
            idle: Notify::new(),
            metrics,
        }
    }

    /// The wanted set, now and as it changes.
    pub fn watch(&self) -> watch::Receiver<Wanted> {
        self.wanted.subscribe()
    }

    /// A stream appeared: with `--subscribe all` it is received at full rate.
    pub fn stream_created(&self, metrics: &StreamMetrics) {
        if self.mode == Mode::All {
            metrics.subscribed.set(1);
        }
    }

    /// A viewer of `stream` at `choice` arrived: wanted from now on.
    pub fn joined(&self, stream: &str, choice: Choice) {
        if self.mode == Mode::All {
            return;
        }
        let key = (stream.to_string(), choice);
        let mut streams = self.lock();
        match streams.get_mut(&key) {
            Some(e) => {
                e.viewers += 1;
                e.idle_since = None;
            }
            None => {
                streams.insert(
                    key,
                    Entry {
                        viewers: 1,
                        idle_since: None,
                    },
                );
                tracing::debug!(stream, ?choice, "first viewer: subscribing at full rate");
                self.publish(&streams);
            }
        }
    }

    /// A viewer of `stream` at `choice` left; with none left it stays
    /// wanted for the linger.
    pub fn left(&self, stream: &str, choice: Choice) {
        if self.mode == Mode::All {
            return;
        }
        let mut streams = self.lock();
        let Some(e) = streams.get_mut(&(stream.to_string(), choice)) else {
            return;
        };
        e.viewers = e.viewers.saturating_sub(1);
        if e.viewers == 0 {
            e.idle_since = Some(Instant::now());
            drop(streams);
            self.idle.notify_one();
        }
    }

    /// Drops the streams idle for the linger at `now`; returns when the next
    /// one will be due, if any lingers.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut streams = self.lock();
        let before = streams.len();
        streams.retain(|name, e| {
            let keep = e
                .idle_since
                .is_none_or(|t| now.duration_since(t) < self.linger);
            if !keep {
                tracing::debug!(stream = %name.0, choice = ?name.1, "no viewers for the linger: unsubscribing");
            }
            keep
        });
        if streams.len() != before {
            self.publish(&streams);
        }
        streams
            .values()
            .filter_map(|e| e.idle_since)
            .min()
            .map(|t| t + self.linger)
    }

    fn publish(&self, streams: &HashMap<Feed, Entry>) {
        let set: BTreeSet<Feed> = streams.keys().cloned().collect();
        let old = self.wanted.send_replace(Arc::new(set.clone()));
        let full = |set: &BTreeSet<Feed>| -> BTreeSet<String> {
            set.iter()
                .filter(|(_, c)| c.is_none())
                .map(|(n, _)| n.clone())
                .collect()
        };
        let (old, new) = (full(&old), full(&set));
        for name in old.difference(&new) {
            self.metrics.set_subscribed(name, false);
        }
        for name in new.difference(&old) {
            self.metrics.set_subscribed(name, true);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Feed, Entry>> {
        // Counts only: nothing a panic elsewhere could leave half-done.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Wants one feed while it lives, as a viewer does: a snapshot waiting for
/// a full-size frame holds one.
pub struct Wanting {
    interest: Arc<Interest>,
    stream: String,
    choice: Choice,
}

impl Wanting {
    pub fn new(interest: Arc<Interest>, stream: &str, choice: Choice) -> Self {
        interest.joined(stream, choice);
        Wanting {
            interest,
            stream: stream.to_string(),
            choice,
        }
    }
}

impl Drop for Wanting {
    fn drop(&mut self) {
        self.interest.left(&self.stream, self.choice);
    }
}

/// Unsubscribes streams whose linger has passed, until shutdown.
pub async fn run(interest: Arc<Interest>, shutdown: CancellationToken) {
    let mut due = None;
    loop {
        let sleep = async {
            match due {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interest.idle.notified() => {}
            _ = sleep => {}
        }
        due = interest.expire(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(i: &Interest) -> Vec<String> {
        i.watch()
            .borrow()
            .iter()
            .map(|(n, c)| match c {
                None => n.clone(),
                Some(w) => format!("{n}@{w}"),
            })
            .collect()
    }

    #[test]
    fn a_stream_is_wanted_from_its_first_viewer_until_the_linger_after_its_last() {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let i = Interest::new(Mode::OnDemand, Duration::from_secs(10), metrics);
        let t0 = Instant::now();
        i.joined("cam1", None);
        i.joined("cam1", None);
        i.joined("cam2", None);
        assert_eq!(names(&i), ["cam1", "cam2"]);
        // A rendition is wanted on its own.
        i.joined("cam1", Some(320));
        assert_eq!(names(&i), ["cam1", "cam1@320", "cam2"]);
        i.left("cam1", Some(320));
        assert_eq!(i.expire(Instant::now() + Duration::from_secs(11)), None);
        assert_eq!(names(&i), ["cam1", "cam2"]);
        i.left("cam1", None);
        assert_eq!(i.expire(t0 + Duration::from_secs(60)), None, "one left");
        i.left("cam1", None);
        i.left("unknown", None);
        let due = i.expire(Instant::now()).expect("cam1 lingers");
        assert!(due > Instant::now() + Duration::from_secs(9));
        assert_eq!(names(&i), ["cam1", "cam2"]);
        // Back within the linger: nothing changes.
        i.joined("cam1", None);
        i.left("cam1", None);
        assert_eq!(names(&i), ["cam1", "cam2"]);
        assert_eq!(i.expire(Instant::now() + Duration::from_secs(11)), None);
        assert_eq!(names(&i), ["cam2"]);
    }

    #[tokio::test]
    async fn the_task_unsubscribes_when_the_linger_has_passed() {
        let metrics = Arc::new(GatewayMetrics::new().expect("metrics"));
        let i = Arc::new(Interest::new(
            Mode::OnDemand,
            Duration::from_millis(100),
            metrics.clone(),
        ));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(i.clone(), stop.clone()));
        let mut rx = i.watch();
        i.joined("cam1", None);
        rx.changed().await.expect("open");
        let line = |v: u8| format!("gateway_stream_subscribed{{stream=\"cam1\"}} {v}");
        assert!(metrics.render().contains(&line(1)));
        let left = Instant::now();
        i.left("cam1", None);
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("unsubscribed in time")
            .expect("open");
        assert!(
            left.elapsed() >= Duration::from_millis(100),
            "not before the linger"
        );
        assert!(rx.borrow().is_empty());
        assert!(metrics.render().contains(&line(0)));
        stop.cancel();
        task.await.expect("task");
    }
}
