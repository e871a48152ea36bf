//! The choice of gateway for one request, kept behind a trait so it can be
//! replaced (camera affinity: a consistent hash of the stream name over the
//! healthy gateways) without touching discovery, health or HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::pool::Gateway;

/// Picks one of `candidates` (never empty) for a request for `stream`
/// (`""` for requests that name no stream: page, API).
pub trait Choose: Send + Sync {
    fn choose(&self, stream: &str, candidates: &[Gateway]) -> usize;
}

/// Each request to the next gateway in turn. Viewers stay where they were
/// sent for as long as they watch, so turns spread them evenly; a gateway
/// that joins gets its share of new viewers from then on.
#[derive(Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Choose for RoundRobin {
    fn choose(&self, _stream: &str, candidates: &[Gateway]) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(port: u16) -> Gateway {
        Gateway {
            addr: ([10, 0, 0, 1], port).into(),
            instance: None,
            ready: true,
        }
    }

    #[test]
    fn round_robin_visits_every_gateway_evenly() {
        let rr = RoundRobin::default();
        let gws = [gw(1), gw(2), gw(3)];
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[rr.choose("cam0", &gws)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        assert_eq!(rr.choose("cam0", &gws[..1]), 0);
    }
}
