//! A bounded queue between the stage and one slow consumer (the MQTT
//! broker, one webhook), so that a consumer that is down or slow never
//! slows the stage, and so that what is dropped when it is full is chosen:
//! updates first, then whole events that were never announced, never the
//! end of an event whose start may have gone out. Every drop is counted.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use frame_wire::Phase;
use tokio::sync::Notify;

/// One queued message about an event.
#[derive(Debug)]
pub struct Entry<T> {
    pub phase: Phase,
    /// The event's id: a start and its end share it.
    pub event: String,
    pub item: T,
}

struct State<T> {
    queue: VecDeque<Entry<T>>,
    /// Events whose start was dropped: their updates and end go too.
    unannounced: HashSet<String>,
    closed: bool,
}

pub struct Outbox<T> {
    state: Mutex<State<T>>,
    ready: Notify,
    capacity: usize,
}

/// What a push cost: how many entries were dropped to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dropped(pub usize);

impl<T> Outbox<T> {
    pub fn new(capacity: usize) -> Outbox<T> {
        Outbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                unannounced: HashSet::new(),
                closed: false,
            }),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A consumer that panicked holding it leaves a queue still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `entry` without waiting; returns how many entries it cost.
    pub fn push(&self, entry: Entry<T>) -> Dropped {
        let mut s = self.lock();
        if s.unannounced.contains(&entry.event) {
            if entry.phase == Phase::End {
                s.unannounced.remove(&entry.event);
            }
            return Dropped(1);
        }
        let mut dropped = 0;
        if s.queue.len() >= self.capacity {
            // 1. The oldest update.
            if let Some(i) = s.queue.iter().position(|e| e.phase == Phase::Update) {
                s.queue.remove(i);
                dropped += 1;
            } else if entry.phase == Phase::Update {
                return Dropped(1);
            } else if let Some(i) = s.queue.iter().position(|e| e.phase == Phase::Start) {
                // 2. The oldest start still queued: that event was never
                //    announced, so nothing of it goes out.
                let gone = s.queue.remove(i).map(|e| e.event).unwrap_or_default();
                dropped += 1;
                let before = s.queue.len();
                s.queue.retain(|e| e.event != gone);
                dropped += before - s.queue.len();
                if entry.event == gone {
                    return Dropped(dropped + 1);
                }
                s.unannounced.insert(gone);
            } else if entry.phase == Phase::Start {
                s.unannounced.insert(entry.event);
                return Dropped(1);
            }
            // 3. Only ends queued and an end comes: it is kept, past the
            //    capacity (bounded by the events running at once).
        }
        s.queue.push_back(entry);
        drop(s);
        self.ready.notify_one();
        Dropped(dropped)
    }

    /// The next entry; `None` once closed and empty.
    pub async fn pop(&self) -> Option<Entry<T>> {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.lock();
                if let Some(e) = s.queue.pop_front() {
                    return Some(e);
                }
                if s.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Puts back an entry that could not be delivered, at the front.
    pub fn unpop(&self, entry: Entry<T>) {
        self.lock().queue.push_front(entry);
        self.ready.notify_one();
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// No more pushes: `pop` drains what is queued, then returns `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_waiters();
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(phase: Phase, event: &str) -> Entry<()> {
        Entry {
            phase,
            event: event.into(),
            item: (),
        }
    }

    fn drain(o: &Outbox<()>) -> Vec<(Phase, String)> {
        let mut out = Vec::new();
        while let Some(x) = o.lock().queue.pop_front() {
            out.push((x.phase, x.event));
        }
        out
    }

    #[test]
    fn updates_go_first_then_unannounced_events_never_an_end() {
        let o = Outbox::new(3);
        assert_eq!(o.push(e(Phase::Start, "a")), Dropped(0));
        o.push(e(Phase::Update, "a"));
        o.push(e(Phase::Start, "b"));
        // Full: the update makes room.
        assert_eq!(o.push(e(Phase::End, "a")), Dropped(1));
        // Full again, no updates: the oldest start (a) goes with its end.
        assert_eq!(o.push(e(Phase::Start, "c")), Dropped(2));
        assert_eq!(
            drain(&o),
            [(Phase::Start, "b".into()), (Phase::Start, "c".into())]
        );
    }

    #[test]
    fn a_dropped_start_takes_its_later_updates_and_end_along() {
        let o = Outbox::new(2);
        o.push(e(Phase::End, "x"));
        o.push(e(Phase::End, "y"));
        // Only ends queued: a new start is the one dropped...
        assert_eq!(o.push(e(Phase::Start, "z")), Dropped(1));
        assert_eq!(o.len(), 2);
        // ...and so are its update and end, however much room there is.
        drain(&o);
        assert_eq!(o.push(e(Phase::Update, "z")), Dropped(1));
        assert_eq!(o.push(e(Phase::End, "z")), Dropped(1));
        assert_eq!(o.len(), 0);
        // Another event of the same name later is sent again.
        assert_eq!(o.push(e(Phase::Start, "z")), Dropped(0));
    }

    #[test]
    fn an_end_whose_start_may_be_out_is_kept_past_the_capacity() {
        let o = Outbox::new(1);
        o.push(e(Phase::End, "a"));
        assert_eq!(o.push(e(Phase::End, "b")), Dropped(0));
        assert_eq!(o.len(), 2);
    }

    #[tokio::test]
    async fn pop_waits_for_a_push_and_ends_when_closed() {
        let o = std::sync::Arc::new(Outbox::new(4));
        let waiter = {
            let o = o.clone();
            tokio::spawn(async move { o.pop().await.map(|x| x.event) })
        };
        tokio::task::yield_now().await;
        o.push(e(Phase::Start, "a"));
        assert_eq!(waiter.await.expect("task"), Some("a".into()));
        o.close();
        assert!(o.pop().await.is_none());
    }
}
