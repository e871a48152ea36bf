//! Latest-value slots between the receive tasks and the inference thread:
//! one per stream, holding only the newest frame not yet analysed. A frame
//! that arrives while the previous one still waits replaces it (the one
//! replaced is counted as skipped by the caller), so the detector never
//! falls behind the video, whatever the producer's rate and whatever an
//! inference costs. The inference thread takes a stream's frame when the
//! stream is due (at most `--detect-fps` per stream), the most overdue
//! stream first, so streams share the thread fairly.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use frame_wire::Frame;

pub struct Latest {
    state: Mutex<State>,
    changed: Condvar,
    period: Duration,
}

#[derive(Default)]
struct State {
    slots: BTreeMap<String, Slot>,
    closed: bool,
}

struct Slot {
    frame: Option<Frame>,
    /// When this stream may next be analysed.
    due: Instant,
}

/// What [`Latest::put`] did with the frame it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    /// It waits; no earlier frame was pending.
    Stored,
    /// It waits in place of an earlier frame that was never analysed.
    Replaced,
}

impl Latest {
    /// Slots that hand out each stream at most once per `period`.
    pub fn new(period: Duration) -> Self {
        Latest {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            period,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves valid data here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers the newest frame of its stream.
    pub fn put(&self, frame: Frame) -> Put {
        let mut state = self.lock();
        let slot = state
            .slots
            .entry(frame.header.stream.clone())
            .or_insert_with(|| Slot {
                frame: None,
                due: Instant::now(),
            });
        let put = if slot.frame.replace(frame).is_some() {
            Put::Replaced
        } else {
            Put::Stored
        };
        drop(state);
        self.changed.notify_one();
        put
    }

    /// Blocks until some stream that is due has a frame and returns it (the
    /// most overdue stream first); `None` once closed.
    pub fn next(&self) -> Option<Frame> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            let now = Instant::now();
            let ready = state
                .slots
                .values_mut()
                .filter(|s| s.frame.is_some())
                .min_by_key(|s| s.due);
            let wait = match ready {
                Some(slot) if slot.due <= now => {
                    // Never earlier than one period after this take, so
                    // the rate stays at most 1 / period however late we are.
                    slot.due = now + self.period;
                    return slot.frame.take();
                }
                Some(slot) => slot.due - now,
                None => Duration::from_secs(3600),
            };
            state = self
                .changed
                .wait_timeout(state, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wakes the taker and makes every later [`Latest::next`] return `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use frame_wire::FrameHeader;

    use super::*;

    fn frame(stream: &str, seq: u64) -> Frame {
        Frame {
            header: FrameHeader {
                version: 1,
                seq,
                capture_ts_ns: 0,
                width: 2,
                height: 2,
                producer_id: 1,
                stream: stream.into(),
            },
            jpeg: Bytes::new(),
        }
    }

    #[test]
    fn keeps_only_the_newest_frame_per_stream() {
        let l = Latest::new(Duration::from_millis(1));
        assert_eq!(l.put(frame("a", 1)), Put::Stored);
        assert_eq!(l.put(frame("a", 2)), Put::Replaced);
        assert_eq!(l.put(frame("a", 3)), Put::Replaced);
        assert_eq!(l.next().map(|f| f.header.seq), Some(3));
        assert_eq!(
            l.put(frame("a", 4)),
            Put::Stored,
            "3 was taken, not skipped"
        );
    }

    #[test]
    fn each_stream_is_handed_out_at_most_once_per_period() {
        let period = Duration::from_millis(200);
        let l = Latest::new(period);
        l.put(frame("a", 1));
        l.put(frame("b", 1));
        let t0 = Instant::now();
        let first = l.next().expect("frame").header.stream;
        let second = l.next().expect("frame").header.stream;
        assert_ne!(first, second, "both streams get a turn");
        assert!(
            t0.elapsed() < period,
            "different streams do not wait for each other"
        );
        l.put(frame("a", 2));
        assert_eq!(l.next().map(|f| f.header.seq), Some(2));
        assert!(
            t0.elapsed() >= period,
            "a's second frame waited for its period"
        );
    }

    #[test]
    fn close_wakes_a_waiting_taker() {
        let l = Arc::new(Latest::new(Duration::from_millis(1)));
        let taker = {
            let l = l.clone();
            std::thread::spawn(move || l.next())
        };
        l.close();
        assert!(taker.join().expect("taker").is_none());
    }
}
