//! Bus authentication on the gateway's side: with a bus key (file or
//! variable, as the producer's), only frames whose MAC verifies are shown, and
//! the SUB socket proves the key to the producer with subscription tokens so
//! the producer sends it anything at all. Everything else is dropped and
//! counted (`gateway_invalid_messages_total{reason="unsigned"|"bad_mac"|
//! "unknown_key"|"no_key"}`). The key file is re-read when it changes, so a
//! key can be rotated without restarting the gateway (`docs/wire-format.md`).

use std::path::PathBuf;
use std::sync::Once;

use bytes::Bytes;
use frame_wire::auth::{KeyRing, KeySource, KeyStore};
use frame_wire::{Limits, Message, WireError};

use crate::config::Config;

/// How this gateway treats the bus.
#[derive(Clone, Debug)]
pub enum BusAuth {
    /// No key: unsigned frames only (signed ones are dropped as `no_key`).
    Off,
    /// Signed frames only, verified with this ring.
    Keys(KeyStore),
}

impl BusAuth {
    pub fn from_config(c: &Config) -> BusAuth {
        static CLI_WARNING: Once = Once::new();
        if std::env::args().any(|a| a == "--bus-key" || a.starts_with("--bus-key=")) {
            CLI_WARNING.call_once(|| {
                tracing::warn!(
                    "--bus-key on the command line is visible to every user of this host in \
                     the process list: use GATEWAY_BUS_KEY_FILE (or the GATEWAY_BUS_KEY variable)"
                )
            });
        }
        let source = match (&c.bus_key_file, &c.bus_key) {
            (Some(path), _) => KeySource::File(path.clone()),
            (None, Some(v)) => KeySource::Value(v.clone()),
            (None, None) => return BusAuth::Off,
        };
        match KeyStore::load(source) {
            Ok(store) => {
                static KEYS_INFO: Once = Once::new();
                KEYS_INFO.call_once(|| {
                    tracing::info!(
                        keys = %store.ring().ids(),
                        "bus key set: only frames signed with it are shown"
                    )
                });
                BusAuth::Keys(store)
            }
            Err(e) => {
                // At start-up (from_config runs before anything is served):
                // refuse to run blind rather than show nothing. The message
                // never contains the key.
                tracing::error!(error = %e, "bus key unusable");
                eprintln!("stream-gateway: bus key unusable: {e}");
                std::process::exit(2);
            }
        }
    }

    /// Subscriptions that prove the key to the producer, one per key held
    /// (so a producer that has moved to the new key, or not yet, accepts us).
    pub fn tokens(&self) -> Vec<String> {
        match self {
            BusAuth::Keys(store) => store.ring().subscription_tokens(),
            BusAuth::Off => Vec::new(),
        }
    }

    /// Fresh tokens when the key ring changed since `seen` (updated): sent
    /// on the open socket, so a producer moving to the new key keeps us.
    pub fn tokens_if_changed(&self, seen: &mut usize) -> Option<Vec<String>> {
        let BusAuth::Keys(store) = self else {
            return None;
        };
        let ring = store.ring();
        let now = std::sync::Arc::as_ptr(&ring) as usize;
        if *seen == now {
            return None;
        }
        let first = *seen == 0;
        *seen = now;
        if first {
            return None;
        }
        tracing::info!(keys = %ring.ids(), "bus key file changed; keys reloaded");
        Some(ring.subscription_tokens())
    }

    /// Decodes and, with a key, verifies one message.
    pub fn decode(&self, parts: &[Bytes], limits: &Limits) -> Result<Message, WireError> {
        match self {
            BusAuth::Off => frame_wire::decode_message(parts, limits, None),
            BusAuth::Keys(store) => {
                if let Err(e) = store.refresh_if_due() {
                    log_reload_error(&e.to_string());
                }
                let ring: std::sync::Arc<KeyRing> = store.ring();
                frame_wire::decode_message(parts, limits, Some(&ring))
            }
        }
    }
}

fn log_reload_error(error: &str) {
    use std::sync::Mutex;
    static LAST: Mutex<String> = Mutex::new(String::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if *last != error {
        tracing::error!(error, "bus key file unusable; keeping the previous keys");
        *last = error.to_string();
    }
}

/// clap value parser for `--bus-key-file`: the file must hold a valid key
/// ring at start-up (a typo is an exit with a message, not a silent screen).
pub fn parse_key_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {s}: {e}"))?;
    KeyRing::parse(&text).map_err(|e| e.to_string())?;
    Ok(path)
}
