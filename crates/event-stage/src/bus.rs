//! The bus key on the event stage's side (`frame_bus::BusKeys`, shared with
//! every subscriber): with a key, only detections and frames whose MAC
//! verifies are read, the bus clients prove the key to their publishers,
//! and every event this stage publishes is signed with the ring's signing
//! key (`docs/wire-format.md`).

use anyhow::Context;
use frame_bus::BusKeys;

use crate::config::Config;

/// The keys `c` names; an unusable key stops start-up.
pub fn keys(c: &Config) -> anyhow::Result<BusKeys> {
    let keys = c.bus.load().context("bus key unusable")?;
    if keys.is_on() {
        tracing::info!(
            keys = %keys.describe(),
            "bus key set: only signed messages are read, events are signed"
        );
    }
    Ok(keys)
}
