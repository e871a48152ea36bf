//! Frame pacing anchored to the start time, so the rate never drifts: tick `n`
//! is due at `start + n × interval`, and when the loop falls behind by more than
//! a tick it skips to the newest due tick instead of bursting to catch up.
//!
//! Live sources (cameras, streams, video files) set their own pace; [`RateCap`]
//! thins them to `--fps` by dropping surplus frames before any encoding work.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    fps: f64,
    next: u64,
}

impl Pacer {
    pub fn new(start: Instant, fps: f64) -> Self {
        Pacer {
            start,
            fps,
            next: 0,
        }
    }

    /// When the next frame is due.
    pub fn deadline(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.next as f64 / self.fps)
    }

    /// Marks the current tick done at `now`; returns how many ticks were
    /// skipped because they were already more than one interval overdue.
    pub fn advance(&mut self, now: Instant) -> u64 {
        let following = self.next + 1;
        let elapsed = now.saturating_duration_since(self.start);
        let newest_due = (elapsed.as_secs_f64() * self.fps).floor() as u64;
        let next = following.max(newest_due);
        self.next = next;
        next - following
    }
}

/// Lets through at most `fps` frames a second from a source with its own
/// rate, spread evenly: a 30 fps camera capped at 20 passes two frames of
/// three, not one of two. A frame within a fifth of an interval of its slot
/// counts as on time, so jitter does not cost frames.
#[derive(Debug)]
pub struct RateCap {
    interval: Duration,
    next_due: Option<Instant>,
}

impl RateCap {
    pub fn new(fps: f64) -> Self {
        RateCap {
            interval: Duration::from_secs_f64(1.0 / fps),
            next_due: None,
        }
    }

    /// Whether a frame arriving at `now` should be published.
    pub fn admit(&mut self, now: Instant) -> bool {
        let due = match self.next_due {
            Some(due) if now + self.interval / 5 < due => return false,
            Some(due) => due,
            None => now,
        };
        // After a gap (source stalled), restart from now rather than bursting.
        let next = due + self.interval;
        self.next_due = Some(if next + self.interval < now {
            now + self.interval
        } else {
            next
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_time_frames_follow_the_grid_without_drift() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 30.0);
        let mut produced = 0;
        // Each frame finishes 5 ms after its deadline (less than one interval).
        while p.deadline() < t0 + Duration::from_secs(60) {
            let done = p.deadline() + Duration::from_millis(5);
            assert_eq!(p.advance(done), 0);
            produced += 1;
        }
        assert_eq!(produced, 1800);
    }

    #[test]
    fn a_stall_skips_ticks_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 10.0);
        assert_eq!(p.advance(t0 + Duration::from_millis(10)), 0);
        assert_eq!(p.deadline(), t0 + Duration::from_millis(100));
        // Frame 1 took 450 ms: ticks 2 and 3 are lost, tick 4 (due at 400 ms) is next.
        let skipped = p.advance(t0 + Duration::from_millis(450));
        assert_eq!(skipped, 2);
        assert_eq!(p.deadline(), t0 + Duration::from_millis(400));
        // Published + skipped always equals the ticks elapsed.
        let mut total = 2 + skipped;
        while p.deadline() < t0 + Duration::from_secs(10) {
            total += 1 + p.advance(p.deadline());
        }
        assert_eq!(total, 100);
    }

    fn admitted(source_fps: f64, cap: f64, seconds: f64) -> usize {
        let t0 = Instant::now();
        let mut c = RateCap::new(cap);
        let n = (source_fps * seconds) as u32;
        (0..n)
            .filter(|i| c.admit(t0 + Duration::from_secs_f64(f64::from(*i) / source_fps)))
            .count()
    }

    #[test]
    fn rate_cap_thins_evenly_to_the_cap() {
        // 30 -> 20 must give 20, not 15 (every other frame).
        assert_eq!(admitted(30.0, 20.0, 10.0), 200);
        assert_eq!(admitted(30.0, 10.0, 10.0), 100);
        assert_eq!(admitted(25.0, 7.5, 10.0), 75);
        // A cap above the source's rate passes everything.
        assert_eq!(admitted(15.0, 30.0, 10.0), 150);
    }

    #[test]
    fn rate_cap_does_not_burst_after_a_stall() {
        let t0 = Instant::now();
        let mut c = RateCap::new(10.0);
        assert!(c.admit(t0));
        // Source silent for 5 s, then 30 fps again: still 10 fps, no catch-up.
        let resumed = t0 + Duration::from_secs(5);
        let passed = (0..30)
            .filter(|i| c.admit(resumed + Duration::from_secs_f64(f64::from(*i) / 30.0)))
            .count();
        assert_eq!(passed, 10);
    }
}
