//! The bus key on the detector's side (`frame_bus::BusKeys`, shared with
//! every subscriber): with a key, only frames whose MAC verifies are
//! analysed, the bus clients prove the key to the producers, and every
//! message this detector publishes is signed with the ring's signing key.

use anyhow::Context;
use frame_bus::BusKeys;

use crate::config::Config;

/// The keys `c` names; an unusable key stops start-up.
pub fn keys(c: &Config) -> anyhow::Result<BusKeys> {
    let keys = c.bus.load().context("bus key unusable")?;
    if keys.is_on() {
        tracing::info!(
            keys = %keys.describe(),
            "bus key set: only frames signed with it are analysed, detections are signed"
        );
    }
    Ok(keys)
}
