//! Frame pacing anchored to the start time, so the rate never drifts: tick `n`
//! is due at `start + n × interval`, and when the loop falls behind by more than
//! a tick it skips to the newest due tick instead of bursting to catch up.

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
}
