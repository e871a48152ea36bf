//! Keeps a repeating problem to one log line per period, saying how many
//! occurrences were folded into it.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogEvery {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogEvery {
    pub fn new(period: Duration) -> Self {
        LogEvery {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line should be logged now, `n` being how many
    /// occurrences were silenced since the last line; `None` to stay quiet.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_repeats_within_a_period() {
        let t0 = Instant::now();
        let mut l = LogEvery::new(Duration::from_secs(1));
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0 + Duration::from_millis(10)), None);
        assert_eq!(l.check(t0 + Duration::from_millis(900)), None);
        assert_eq!(l.check(t0 + Duration::from_millis(1001)), Some(2));
    }
}
