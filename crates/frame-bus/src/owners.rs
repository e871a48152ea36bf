//! Who owns a stream name, shared by every bus client of the process: a
//! name belongs to the producer run (`producer_id`, new at each start) that
//! first published a frame or preview of it; frames and previews of that
//! name from another producer run are refused ([`Refusal::Owner`]) while
//! the owner is live, so a second publisher, key or not, cannot take over a
//! camera's picture. A producer restarted on the same endpoint (a new
//! `producer_id`) takes its names over at once; from another endpoint,
//! only once the owner has been silent for the takeover time
//! ([`set_takeover_after`], default [`DEFAULT_TAKEOVER_AFTER`]: a live
//! producer sends every camera's preview about once a second). Detections
//! name the frame they were found in and are not owned (the key's scope
//! limits who may send them).
//!
//! [`Refusal::Owner`]: crate::client::Refusal::Owner

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long an owner must be silent before another endpoint's producer may
/// take its names.
pub const DEFAULT_TAKEOVER_AFTER: Duration = Duration::from_secs(3);
/// Most names remembered; beyond it the longest-silent one is forgotten.
const MAX_NAMES: usize = 4096;

/// The takeover time in milliseconds; `u64::MAX`: never set (the default).
static TAKEOVER_MS: AtomicU64 = AtomicU64::new(u64::MAX);
static OWNERS: Mutex<Option<HashMap<String, Owner>>> = Mutex::new(None);

struct Owner {
    producer_id: u64,
    endpoint: String,
    seen: Instant,
}

/// Sets the takeover time for the whole process (a service's flag, at
/// start-up); zero turns ownership off: any producer may publish any name.
pub fn set_takeover_after(after: Duration) {
    TAKEOVER_MS.store(after.as_millis() as u64, Ordering::Relaxed);
}

/// The takeover time in force; `None` when ownership is off.
pub fn takeover_after() -> Option<Duration> {
    match TAKEOVER_MS.load(Ordering::Relaxed) {
        u64::MAX => Some(DEFAULT_TAKEOVER_AFTER),
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

/// Why a frame was refused: the name's owner, still live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub owner: u64,
}

/// Checks (and records) a frame or preview of `stream` from producer run
/// `producer_id`, received from `endpoint` at `now`.
pub fn claim(stream: &str, producer_id: u64, endpoint: &str, now: Instant) -> Result<(), Owned> {
    let Some(after) = takeover_after() else {
        return Ok(());
    };
    let mut guard = OWNERS.lock().unwrap_or_else(|e| e.into_inner());
    let owners = guard.get_or_insert_with(HashMap::new);
    if let Some(o) = owners.get_mut(stream) {
        let live = now.saturating_duration_since(o.seen) < after;
        if o.producer_id != producer_id && live && o.endpoint != endpoint {
            return Err(Owned {
                owner: o.producer_id,
            });
        }
        o.producer_id = producer_id;
        if o.endpoint != endpoint {
            o.endpoint = endpoint.to_string();
        }
        o.seen = now;
        return Ok(());
    }
    if owners.len() >= MAX_NAMES {
        owners.retain(|_, o| now.saturating_duration_since(o.seen) < after);
        if owners.len() >= MAX_NAMES
            && let Some(oldest) = owners
                .iter()
                .min_by_key(|(_, o)| o.seen)
                .map(|(k, _)| k.clone())
        {
            owners.remove(&oldest);
        }
    }
    owners.insert(
        stream.to_string(),
        Owner {
            producer_id,
            endpoint: endpoint.to_string(),
            seen: now,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_stays_with_its_first_producer_until_it_falls_silent() {
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        let name = "owners-test-cam";
        assert_eq!(claim(name, 1, "tcp://a:1", s(0)), Ok(()));
        // Another producer from another endpoint: refused while 1 is live.
        assert_eq!(claim(name, 2, "tcp://b:1", s(500)), Err(Owned { owner: 1 }));
        assert_eq!(claim(name, 1, "tcp://a:1", s(1000)), Ok(()));
        assert_eq!(
            claim(name, 2, "tcp://b:1", s(3900)),
            Err(Owned { owner: 1 })
        );
        // Silent past the takeover time: 2 takes the name, and keeps it.
        assert_eq!(claim(name, 2, "tcp://b:1", s(4100)), Ok(()));
        assert_eq!(
            claim(name, 1, "tcp://a:1", s(4200)),
            Err(Owned { owner: 2 })
        );
        // A restart on the owner's endpoint (a new id) takes over at once.
        assert_eq!(claim(name, 3, "tcp://b:1", s(4300)), Ok(()));
        assert_eq!(
            claim(name, 2, "tcp://c:1", s(4400)),
            Err(Owned { owner: 3 })
        );
    }
}
