//! The bus key on the event stage's side, as on the detector's: with a key
//! (file or variable), only messages whose MAC verifies are read, the SUB
//! sockets prove the key to their publishers with subscription tokens, and
//! every event published is signed with the ring's signing key. The key
//! file is re-read when it changes (`docs/wire-format.md`).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use frame_wire::auth::{Key, KeyRing, KeySource, KeyStore};
use frame_wire::{Limits, Message, WireError};

use crate::config::Config;

#[derive(Clone, Debug)]
pub enum BusAuth {
    /// No key: unsigned messages only, and ours go out unsigned.
    Off,
    /// Signed messages only, verified with this ring; ours signed with it.
    Keys(KeyStore),
}

#[derive(Debug, thiserror::Error)]
#[error("bus key unusable: {0}")]
pub struct BusKeyError(String);

impl BusAuth {
    pub fn from_config(c: &Config) -> Result<BusAuth, BusKeyError> {
        if std::env::args().any(|a| a == "--bus-key" || a.starts_with("--bus-key=")) {
            tracing::warn!(
                "--bus-key on the command line is visible to every user of this host in \
                 the process list: use EVENTS_BUS_KEY_FILE (or the EVENTS_BUS_KEY variable)"
            );
        }
        let source = match (&c.bus_key_file, &c.bus_key) {
            (Some(path), _) => KeySource::File(path.clone()),
            (None, Some(v)) => KeySource::Value(v.clone()),
            (None, None) => return Ok(BusAuth::Off),
        };
        // The message never contains the key.
        let store = KeyStore::load(source).map_err(|e| BusKeyError(e.to_string()))?;
        tracing::info!(keys = %store.ring().ids(), "bus key set: only signed messages are read, events are signed");
        Ok(BusAuth::Keys(store))
    }

    /// Subscriptions that prove the key to a publisher, one per key held.
    pub fn tokens(&self) -> Vec<String> {
        match self {
            BusAuth::Keys(store) => store.ring().subscription_tokens(),
            BusAuth::Off => Vec::new(),
        }
    }

    fn ring(&self) -> Option<Arc<KeyRing>> {
        match self {
            BusAuth::Off => None,
            BusAuth::Keys(store) => {
                if let Err(e) = store.refresh_if_due() {
                    tracing::error!(error = %e, "bus key file unusable; keeping the previous keys");
                }
                Some(store.ring())
            }
        }
    }

    /// Decodes and, with a key, verifies one message.
    pub fn decode(&self, parts: &[Bytes], limits: &Limits) -> Result<Message, WireError> {
        let ring = self.ring();
        frame_wire::decode_message(parts, limits, ring.as_deref())
    }

    /// The key to sign outgoing messages with (the ring's current one).
    pub fn signing_key(&self) -> Option<Key> {
        self.ring().map(|r| r.signing().clone())
    }
}

/// clap value parser for `--bus-key-file`: the file must hold a valid key
/// ring at start-up (a typo is an exit with a message, not silence).
pub fn parse_key_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {s}: {e}"))?;
    KeyRing::parse(&text).map_err(|e| e.to_string())?;
    Ok(path)
}
