//! Connecting a ZeroMQ SUB socket to a producer, the same way for every
//! subscriber: a short connect timeout, a retry every 200 ms, and a warning
//! at most every 30 s once the producer has been unreachable for
//! [`QUIET_START`] (services started together, as `scripts/run.sh` does,
//! connect before the producer binds: that is no cause for a warning); and
//! [`Silence`],
//! which says when a connected producer has gone quiet for long enough that
//! the socket is to be recreated (zmq.rs reconnects on its own, but backs off
//! up to 30 s).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketOptions, SubSocket};

use stream_common::ratelimit::LogEvery;

/// How long failed connects go unreported (logged at debug level only).
pub const QUIET_START: Duration = Duration::from_secs(5);

/// A new SUB socket connected to `endpoint`, or `None` at shutdown. Nothing
/// is subscribed yet.
pub async fn connect(
    endpoint: &str,
    shutdown: &CancellationToken,
    log: &mut LogEvery,
) -> Option<SubSocket> {
    let started = Instant::now();
    loop {
        let mut options = SocketOptions::default();
        options.connect_timeout(Duration::from_millis(300));
        let mut socket = SubSocket::with_options(options);
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = socket.connect(endpoint) => r,
        };
        match connected {
            Ok(()) => return Some(socket),
            Err(e) => {
                let now = Instant::now();
                if now.duration_since(started) < QUIET_START {
                    tracing::debug!(producer = %endpoint, error = %e, "producer not reachable yet; retrying");
                } else if log.check(now).is_some() {
                    tracing::warn!(producer = %endpoint, error = %e, "cannot reach producer; retrying");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// When a producer counts as silent: no message for three times its usual
/// gap between messages (smoothed), and never sooner than a floor, so a
/// producer sending slower than the floor is not reconnected on every
/// message. The smoothed gap outlives the socket; silence is counted from
/// the last message or from the socket's connection, whichever is later.
#[derive(Debug)]
pub struct Silence {
    last: Instant,
    gap_ewma: f64,
    ever_heard: bool,
}

impl Default for Silence {
    fn default() -> Self {
        Silence {
            last: Instant::now(),
            gap_ewma: 0.0,
            ever_heard: false,
        }
    }
}

impl Silence {
    /// A new socket: count silence from now.
    pub fn connected(&mut self) {
        self.last = Instant::now();
    }

    /// A message came at `now`.
    pub fn heard(&mut self, now: Instant) {
        let gap = now.duration_since(self.last).as_secs_f64().min(60.0);
        self.gap_ewma = if self.ever_heard {
            0.9 * self.gap_ewma + 0.1 * gap
        } else {
            0.0
        };
        self.last = now;
        self.ever_heard = true;
    }

    /// When the producer counts as silent, waiting at least `floor`.
    pub fn deadline(&self, floor: Duration) -> tokio::time::Instant {
        let wait = floor.max(Duration::from_secs_f64(self.gap_ewma * 3.0));
        tokio::time::Instant::from_std(self.last + wait)
    }

    /// Whether any message ever came (over any socket).
    pub fn ever_heard(&self) -> bool {
        self.ever_heard
    }

    /// Time since the last message (or the connection).
    pub fn quiet_for(&self) -> Duration {
        self.last.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_follows_the_usual_gap_but_never_below_the_floor() {
        let mut s = Silence::default();
        let floor = Duration::from_millis(100);
        let start = s.last;
        // Messages every 2 s: the wait grows towards 3 x 2 s.
        for i in 1..=60 {
            s.heard(start + Duration::from_secs(2 * i));
        }
        let wait = s.deadline(floor).into_std() - s.last;
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
        // Fast messages bring it down to the floor.
        let base = s.last;
        for i in 1..=200 {
            s.heard(base + Duration::from_millis(i));
        }
        let wait = s.deadline(floor).into_std() - s.last;
        assert_eq!(wait, floor);
        assert!(s.ever_heard());
    }
}
