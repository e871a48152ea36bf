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

/// Camera affinity: the viewers of one stream go to a small stable subset
/// of the gateways, its `width` highest-ranked by rendezvous hashing of
/// (stream, gateway), and take turns within it. With many cameras each
/// gateway then serves a few cameras fully instead of all of them thinly.
/// A gateway that dies moves only the cameras it ranked high for, each to
/// its next-ranked gateway; every director computes the same subsets.
/// Requests that name no stream take turns over all gateways.
pub struct Affinity {
    width: usize,
    next: AtomicUsize,
}

impl Affinity {
    pub fn new(width: usize) -> Self {
        Affinity {
            width: width.max(1),
            next: AtomicUsize::new(0),
        }
    }

    /// The candidates' indexes, best first, for `stream`.
    pub fn ranking(stream: &str, candidates: &[Gateway]) -> Vec<usize> {
        let mut ranked: Vec<(u64, usize)> = candidates
            .iter()
            .enumerate()
            .map(|(i, g)| (weight(stream, &g.addr.to_string()), i))
            .collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        ranked.into_iter().map(|(_, i)| i).collect()
    }
}

impl Choose for Affinity {
    fn choose(&self, stream: &str, candidates: &[Gateway]) -> usize {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        if stream.is_empty() {
            return turn % candidates.len();
        }
        let ranked = Self::ranking(stream, candidates);
        ranked[turn % self.width.min(ranked.len())]
    }
}

/// A stable 64-bit weight of a (stream, gateway) pair: FNV-1a, then a
/// finalizer that spreads the bits (the same in every process and version).
fn weight(stream: &str, gateway: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes().chain([0xFF]).chain(gateway.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(port: u16) -> Gateway {
        Gateway {
            addr: ([10, 0, 0, 1], port).into(),
            host: "10.0.0.1".into(),
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

    fn addrs(chosen: &[usize], gws: &[Gateway]) -> std::collections::BTreeSet<u16> {
        chosen.iter().map(|&i| gws[i].addr.port()).collect()
    }

    #[test]
    fn affinity_keeps_a_camera_on_its_subset_and_spreads_cameras() {
        let gws: Vec<Gateway> = (1..=5).map(gw).collect();
        let a = Affinity::new(2);
        let mut load = [0usize; 5];
        for cam in 0..50 {
            let name = format!("cam{cam}");
            let picks: Vec<usize> = (0..20).map(|_| a.choose(&name, &gws)).collect();
            let subset = addrs(&picks, &gws);
            assert_eq!(subset.len(), 2, "{name} uses exactly its two gateways");
            assert_eq!(addrs(&Affinity::ranking(&name, &gws)[..2], &gws), subset);
            for p in picks {
                load[p] += 1;
            }
        }
        // 50 cameras spread over 5 gateways: none idle, none with most.
        assert!(load.iter().all(|&n| (100..=320).contains(&n)), "{load:?}");
        // Requests for no stream take turns over all.
        let page: std::collections::BTreeSet<usize> = (0..10).map(|_| a.choose("", &gws)).collect();
        assert_eq!(page.len(), 5);
    }

    #[test]
    fn a_dead_gateway_moves_only_the_cameras_it_served() {
        let gws: Vec<Gateway> = (1..=4).map(gw).collect();
        let survivors: Vec<Gateway> = gws.iter().filter(|g| g.addr.port() != 3).cloned().collect();
        for cam in 0..40 {
            let name = format!("cam{cam}");
            let before = addrs(&Affinity::ranking(&name, &gws)[..2], &gws);
            let after = addrs(&Affinity::ranking(&name, &survivors)[..2], &survivors);
            if before.contains(&3) {
                assert_eq!(
                    before.intersection(&after).count(),
                    1,
                    "{name} keeps its other gateway"
                );
            } else {
                assert_eq!(before, after, "{name} did not move");
            }
        }
    }
}
