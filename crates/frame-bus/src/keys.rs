//! The bus key on a subscriber's side: with a key (a file or a variable's
//! value), only messages whose MAC verifies are accepted, the subscriber
//! proves the key to each producer with subscription tokens, and what a
//! subscriber publishes itself (the detector) is signed with the ring's
//! signing key. A key file is re-read on a timer by every client, whether
//! or not messages arrive, so a rotation done the documented way
//! (`docs/wire-format.md`) never needs a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use frame_wire::auth::{Key, KeyError, KeyRing, KeySource, KeyStore};

use stream_common::ratelimit::LogEvery;

/// How often a client re-reads the key file.
pub const KEY_FILE_CHECK: Duration = frame_wire::auth::KEY_FILE_CHECK;

/// How a subscriber treats the bus.
#[derive(Clone, Debug)]
pub enum BusKeys {
    /// No key: unsigned messages only (signed ones are refused as `no_key`),
    /// and what we publish goes out unsigned.
    Off,
    /// Signed messages only, verified with this ring; ours signed with it.
    Keys(KeyStore),
}

impl BusKeys {
    /// The ring from `file` or else `value`; neither: no key. An unreadable
    /// or malformed key is an error (its text never holds the key).
    pub fn load(file: Option<&Path>, value: Option<&str>) -> Result<BusKeys, KeyError> {
        let source = match (file, value) {
            (Some(path), _) => KeySource::File(path.to_path_buf()),
            (None, Some(v)) => KeySource::Value(v.to_string()),
            (None, None) => return Ok(BusKeys::Off),
        };
        Ok(BusKeys::Keys(KeyStore::load(source)?))
    }

    /// Whether a key is set.
    pub fn is_on(&self) -> bool {
        matches!(self, BusKeys::Keys(_))
    }

    /// The ring in force, if any (as last read).
    pub fn ring(&self) -> Option<Arc<KeyRing>> {
        match self {
            BusKeys::Off => None,
            BusKeys::Keys(store) => Some(store.ring()),
        }
    }

    /// The store behind the ring, if any (what a PUB server checks
    /// subscribers' tokens against).
    pub fn store(&self) -> Option<&KeyStore> {
        match self {
            BusKeys::Off => None,
            BusKeys::Keys(store) => Some(store),
        }
    }

    /// The key to sign outgoing messages with (the ring's first).
    pub fn signing_key(&self) -> Option<Key> {
        self.ring().map(|r| r.signing().clone())
    }

    /// Key ids for logs (never the keys), or `off`.
    pub fn describe(&self) -> String {
        self.ring().map_or_else(|| "off".into(), |r| r.ids())
    }

    /// Re-reads the key file if one is used and the last look is
    /// [`KEY_FILE_CHECK`] old; a bad file is logged (at most every 30 s per
    /// `log`) and the previous ring stays in force. Several clients may
    /// share one store: each compares rings, not this result.
    pub fn refresh(&self, log: &mut LogEvery) {
        let BusKeys::Keys(store) = self else {
            return;
        };
        if let Err(e) = store.refresh_if_due()
            && let Some(folded) = log.check(std::time::Instant::now())
        {
            tracing::error!(error = %e, repeats = folded, "bus key file unusable; keeping the previous keys");
        }
    }
}

/// A warning for `--bus-key` given on the command line (visible to every
/// user of the host in the process list), naming the variables to use.
pub fn warn_if_on_command_line(file_var: &str, value_var: &str) {
    if std::env::args().any(|a| a == "--bus-key" || a.starts_with("--bus-key=")) {
        tracing::warn!(
            "--bus-key on the command line is visible to every user of this host in the \
             process list: use {file_var} (or the {value_var} variable)"
        );
    }
}

/// clap value parser for a `--bus-key-file`: the file must hold a valid key
/// ring at start-up (a typo is an exit with a message, not silence).
pub fn parse_key_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {s}: {e}"))?;
    KeyRing::parse(&text).map_err(|e| e.to_string())?;
    Ok(path)
}
