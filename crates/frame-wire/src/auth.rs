//! Frame authentication on the bus: a shared key signs every frame
//! (HMAC-SHA-256 over topic, header and JPEG, carried as a 4th message part)
//! and lets a subscriber prove it holds the key before a producer sends it
//! anything (a token in its subscription).
//!
//! It exists because ZeroMQ's NULL mechanism, the only one zmq.rs speaks, lets
//! anyone who reaches a producer's port read every camera and lets anyone who
//! can pose as a producer put pictures on every screen. The bus is still not
//! encrypted: whoever can *sniff* the network sees the JPEGs (see
//! `docs/wire-format.md`, "Authentication").
//!
//! Keys come from a file or an environment variable, never a bare flag value.
//! A key ring holds one or two keys so a key can be rotated without restarting
//! the other side: the first key signs, every key verifies. [`KeyStore`]
//! re-reads its file when it changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted, in bytes (32 recommended: `openssl rand -hex 32`).
pub const MIN_KEY_BYTES: usize = 16;
/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Keys in one ring: the current one and, during a rotation, one more.
pub const MAX_KEYS: usize = 2;
/// The authentication scheme byte of the MAC part: HMAC-SHA-256.
pub const SCHEME_HMAC_SHA256: u8 = 1;
/// Length of a key id.
pub const KEY_ID_BYTES: usize = 4;
/// Length of an HMAC-SHA-256 tag.
pub const TAG_BYTES: usize = 32;
/// The 4th part of a signed message: scheme, key id, tag.
pub const MAC_PART_BYTES: usize = 1 + KEY_ID_BYTES + TAG_BYTES;
/// Every subscription token starts with this (a stream name never does).
pub const TOKEN_PREFIX: &str = "\0mjpf-auth1 ";
/// How far a token's timestamp may be from the producer's clock.
pub const TOKEN_MAX_SKEW: Duration = Duration::from_secs(600);

const FRAME_DOMAIN: &[u8] = b"mjpeg-fanout frame v2\0";
const TOKEN_DOMAIN: &[u8] = b"mjpeg-fanout subscribe v1\0";
const KEY_ID_DOMAIN: &[u8] = b"mjpeg-fanout key id\0";

/// Why a key ring or a signed message was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no key: the key file or variable is empty")]
    Empty,
    #[error("more than {MAX_KEYS} keys of one scope (one line each; the first signs)")]
    TooMany,
    #[error(
        "line {line}: after the key only `scope=d` (detections only) or `scope=all` may follow"
    )]
    BadScope { line: usize },
    #[error(
        "line {line}: a key is {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes written as hex (`openssl rand -hex 32`)"
    )]
    BadKey { line: usize },
    #[error("reading key file {path}: {error}")]
    Read { path: String, error: String },
}

/// What a key may sign. Any key proves itself to a publisher (reading);
/// a [`Scope::Detections`] key (`scope=d` in a key file) signs only
/// detections (`d/`) and the detector's annotated streams (names ending in
/// [`ANNOTATED_SUFFIX`]): a message of any other name signed with it is
/// refused (`message::scope_allows`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Detections,
}

/// The suffix of the detector's annotated streams (`cam0-detect`).
pub const ANNOTATED_SUFFIX: &str = "-detect";

/// One shared key, ready to sign: the HMAC state is keyed once.
#[derive(Clone)]
pub struct Key {
    id: [u8; KEY_ID_BYTES],
    mac: HmacSha256,
    scope: Scope,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id_hex())
    }
}

impl Key {
    /// A key from its raw bytes.
    pub fn new(secret: &[u8]) -> Result<Key, KeyError> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&secret.len()) {
            return Err(KeyError::BadKey { line: 1 });
        }
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(secret)
            .finalize();
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyError::BadKey { line: 1 })?;
        Ok(Key {
            id,
            mac,
            scope: Scope::All,
        })
    }

    /// The same key limited to `scope`.
    pub fn with_scope(mut self, scope: Scope) -> Key {
        self.scope = scope;
        self
    }

    /// What this key may sign.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// A short public fingerprint of the key (not secret), for logs and lookup.
    pub fn id(&self) -> [u8; KEY_ID_BYTES] {
        self.id
    }

    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    fn frame_mac(&self, topic: &[u8], header: &[u8], jpeg: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(FRAME_DOMAIN);
        for part in [topic, header, jpeg] {
            m.update(&(part.len() as u64).to_le_bytes());
            m.update(part);
        }
        m
    }

    /// The 4th message part for `[topic][header][jpeg]`.
    pub fn sign_frame(&self, topic: &[u8], header: &[u8], jpeg: &[u8]) -> Bytes {
        let tag = self.frame_mac(topic, header, jpeg).finalize().into_bytes();
        let mut part = Vec::with_capacity(MAC_PART_BYTES);
        part.push(SCHEME_HMAC_SHA256);
        part.extend_from_slice(&self.id);
        part.extend_from_slice(&tag);
        Bytes::from(part)
    }

    fn token_mac(&self, ts: u64, nonce: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(TOKEN_DOMAIN);
        m.update(&ts.to_le_bytes());
        m.update(nonce);
        m
    }

    /// A subscription a subscriber sends to prove it holds this key:
    /// [`TOKEN_PREFIX`] then hex of key id, `unix_secs` (u64 LE), a 16-byte
    /// nonce and the HMAC of those.
    pub fn subscription_token(&self, unix_secs: u64, nonce: [u8; 16]) -> String {
        let tag = self.token_mac(unix_secs, &nonce).finalize().into_bytes();
        let mut raw = Vec::with_capacity(KEY_ID_BYTES + 8 + 16 + TAG_BYTES);
        raw.extend_from_slice(&self.id);
        raw.extend_from_slice(&unix_secs.to_le_bytes());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&tag);
        format!("{TOKEN_PREFIX}{}", hex(&raw))
    }
}

/// The keys in force: the first signs, each verifies.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<Key>,
}

/// What verifying a signed message found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacError {
    /// The MAC part has the wrong length or an unknown scheme.
    Malformed,
    /// Signed with a key this ring does not hold.
    UnknownKey,
    /// The tag does not match: forged or altered.
    Mismatch,
}

impl KeyRing {
    /// Parses a key file or variable: one hex key per line, optionally
    /// followed by `scope=d` (detections only; `scope=all` is the default),
    /// at most two keys of each scope; blank lines and `#` comments ignored.
    /// The first key signs.
    pub fn parse(text: &str) -> Result<KeyRing, KeyError> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = KeyError::BadKey { line: i + 1 };
            let mut words = line.split_whitespace();
            let raw = words.next().and_then(unhex).ok_or(bad.clone())?;
            let mut scope = Scope::All;
            for word in words {
                scope = match word {
                    "scope=d" => Scope::Detections,
                    "scope=all" => Scope::All,
                    _ => return Err(KeyError::BadScope { line: i + 1 }),
                };
            }
            let key = Key::new(&raw).map_err(|_| bad)?.with_scope(scope);
            if keys.iter().filter(|k| k.scope == scope).count() == MAX_KEYS {
                return Err(KeyError::TooMany);
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// The key that signs.
    pub fn signing(&self) -> &Key {
        &self.keys[0]
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Key ids, comma-separated, for logs.
    pub fn ids(&self) -> String {
        self.keys
            .iter()
            .map(Key::id_hex)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn find(&self, id: &[u8]) -> Option<&Key> {
        self.keys.iter().find(|k| k.id.as_slice() == id)
    }

    /// Checks the MAC part of `[topic][header][jpeg][mac]` in constant time.
    pub fn verify_frame(
        &self,
        topic: &[u8],
        header: &[u8],
        jpeg: &[u8],
        mac_part: &[u8],
    ) -> Result<(), MacError> {
        self.verify_frame_scope(topic, header, jpeg, mac_part)
            .map(|_| ())
    }

    /// [`verify_frame`](Self::verify_frame), returning the scope of the key
    /// that signed.
    pub fn verify_frame_scope(
        &self,
        topic: &[u8],
        header: &[u8],
        jpeg: &[u8],
        mac_part: &[u8],
    ) -> Result<Scope, MacError> {
        if mac_part.len() != MAC_PART_BYTES || mac_part[0] != SCHEME_HMAC_SHA256 {
            return Err(MacError::Malformed);
        }
        let key = self
            .find(&mac_part[1..1 + KEY_ID_BYTES])
            .ok_or(MacError::UnknownKey)?;
        key.frame_mac(topic, header, jpeg)
            .verify_slice(&mac_part[1 + KEY_ID_BYTES..])
            .map_err(|_| MacError::Mismatch)?;
        Ok(key.scope)
    }

    /// Checks a subscription token received at `now_unix_secs`; `Some(key
    /// id)` when it was made with a key of this ring within
    /// [`TOKEN_MAX_SKEW`] of that time. `None` for anything else.
    pub fn verify_token(&self, token: &[u8], now_unix_secs: u64) -> Option<[u8; KEY_ID_BYTES]> {
        let body = token.strip_prefix(TOKEN_PREFIX.as_bytes())?;
        let raw = unhex(std::str::from_utf8(body).ok()?)?;
        if raw.len() != KEY_ID_BYTES + 8 + 16 + TAG_BYTES {
            return None;
        }
        let (id, rest) = raw.split_at(KEY_ID_BYTES);
        let (ts, rest) = rest.split_at(8);
        let (nonce, tag) = rest.split_at(16);
        let ts = u64::from_le_bytes(ts.try_into().ok()?);
        if ts.abs_diff(now_unix_secs) > TOKEN_MAX_SKEW.as_secs() {
            return None;
        }
        let key = self.find(id)?;
        key.token_mac(ts, nonce).verify_slice(tag).ok()?;
        Some(key.id)
    }

    /// One fresh token per key, for a subscriber to send.
    pub fn subscription_tokens(&self) -> Vec<String> {
        let now = unix_secs();
        self.keys
            .iter()
            .map(|k| k.subscription_token(now, random_nonce()))
            .collect()
    }
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A nonce that differs per call; it need not be secret, only fresh.
fn random_nonce() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Where a key ring comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A file, re-read when it changes (rotation without restart).
    File(PathBuf),
    /// An environment variable's value, fixed for the process's life.
    Value(String),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "File({})", p.display()),
            KeySource::Value(_) => f.write_str("Value(<hidden>)"),
        }
    }
}

fn read_file(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|e| KeyError::Read {
        path: path.display().to_string(),
        error: e.to_string(),
    })
}

/// The current key ring, shared, and re-read from its file on request.
#[derive(Clone)]
pub struct KeyStore {
    source: KeySource,
    current: Arc<RwLock<Arc<KeyRing>>>,
    /// The text the current ring came from and when the file was last checked.
    seen: Arc<Mutex<(String, Instant)>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyStore({:?}, keys {})", self.source, self.ring().ids())
    }
}

/// How often [`KeyStore::refresh_if_due`] looks at the file.
pub const KEY_FILE_CHECK: Duration = Duration::from_secs(1);

impl KeyStore {
    /// Loads the ring now; a missing or malformed key is an error at start.
    pub fn load(source: KeySource) -> Result<KeyStore, KeyError> {
        let text = match &source {
            KeySource::File(p) => read_file(p)?,
            KeySource::Value(v) => v.clone(),
        };
        let ring = KeyRing::parse(&text)?;
        Ok(KeyStore {
            source,
            current: Arc::new(RwLock::new(Arc::new(ring))),
            seen: Arc::new(Mutex::new((text, Instant::now()))),
        })
    }

    /// A store holding `ring` for good (tests, fixed keys).
    pub fn fixed(ring: KeyRing) -> KeyStore {
        KeyStore {
            source: KeySource::Value(String::new()),
            current: Arc::new(RwLock::new(Arc::new(ring))),
            seen: Arc::new(Mutex::new((String::new(), Instant::now()))),
        }
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The ring in force.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the key file. `Ok(true)` when the ring changed; on an
    /// unreadable or malformed file the old ring stays in force and the
    /// error is returned (to log), so a half-written file never locks
    /// everyone out.
    pub fn refresh(&self) -> Result<bool, KeyError> {
        let KeySource::File(path) = &self.source else {
            return Ok(false);
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.1 = Instant::now();
        let text = read_file(path)?;
        if text == seen.0 {
            return Ok(false);
        }
        let ring = KeyRing::parse(&text)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        seen.0 = text;
        Ok(true)
    }

    /// [`refresh`](Self::refresh) at most once per [`KEY_FILE_CHECK`].
    pub fn refresh_if_due(&self) -> Result<bool, KeyError> {
        {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.1.elapsed() < KEY_FILE_CHECK {
                return Ok(false);
            }
        }
        self.refresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const K2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2 checks the primitive itself.
        let mut m = HmacSha256::new_from_slice(b"Jefe").expect("any key length");
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn key_files_parse_with_comments_and_refuse_bad_keys() {
        let ring = KeyRing::parse(&format!("# current\n{K1}\n\n{K2}\n")).expect("two keys");
        assert_eq!(ring.keys().len(), 2);
        assert_ne!(ring.keys()[0].id(), ring.keys()[1].id());
        assert_eq!(KeyRing::parse("\n# none\n").err(), Some(KeyError::Empty));
        assert_eq!(
            KeyRing::parse(&format!("{K1}\n{K2}\n{K1}")).err(),
            Some(KeyError::TooMany)
        );
        assert_eq!(
            KeyRing::parse("abcd").err(),
            Some(KeyError::BadKey { line: 1 })
        );
        assert_eq!(
            KeyRing::parse(&format!("{K1}\nnot hex at all, no")).err(),
            Some(KeyError::BadKey { line: 2 })
        );
        assert!(
            !format!("{ring:?}").contains(K1),
            "Debug must not print keys"
        );
    }

    #[test]
    fn a_key_line_may_limit_the_key_to_detections() {
        let ring = KeyRing::parse(&format!("{K2} scope=d\n{K1}\n")).expect("two scopes");
        assert_eq!(ring.signing().scope(), Scope::Detections);
        assert_eq!(ring.keys()[1].scope(), Scope::All);
        let mac = ring.signing().sign_frame(b"d/cam0/", b"h", b"j");
        assert_eq!(
            ring.verify_frame_scope(b"d/cam0/", b"h", b"j", &mac),
            Ok(Scope::Detections)
        );
        // Two of each scope, but not three of one.
        let k3 = "aa".repeat(32);
        assert!(KeyRing::parse(&format!("{K1}\n{K2}\n{k3} scope=d\n{K1} scope=d")).is_ok());
        assert_eq!(
            KeyRing::parse(&format!("{K1} scope=d\n{K2} scope=d\n{k3} scope=d")).err(),
            Some(KeyError::TooMany)
        );
        assert_eq!(
            KeyRing::parse(&format!("{K1} scope=x")).err(),
            Some(KeyError::BadScope { line: 1 })
        );
    }

    #[test]
    fn frames_verify_with_any_key_of_the_ring_and_nothing_else() {
        let old = KeyRing::parse(K1).expect("k1");
        let both = KeyRing::parse(&format!("{K2}\n{K1}")).expect("k2, k1");
        let new = KeyRing::parse(K2).expect("k2");
        let mac = old.signing().sign_frame(b"cam0", b"head", b"jpeg");
        assert_eq!(mac.len(), MAC_PART_BYTES);
        assert_eq!(old.verify_frame(b"cam0", b"head", b"jpeg", &mac), Ok(()));
        assert_eq!(both.verify_frame(b"cam0", b"head", b"jpeg", &mac), Ok(()));
        assert_eq!(
            new.verify_frame(b"cam0", b"head", b"jpeg", &mac),
            Err(MacError::UnknownKey)
        );
        for (t, h, j) in [
            (&b"cam1"[..], &b"head"[..], &b"jpeg"[..]),
            (b"cam0", b"heae", b"jpeg"),
            (b"cam0", b"head", b"jpeh"),
            // Moving bytes between parts changes the MAC (lengths are signed).
            (b"cam0h", b"ead", b"jpeg"),
        ] {
            assert_eq!(old.verify_frame(t, h, j, &mac), Err(MacError::Mismatch));
        }
        let mut bad = mac.to_vec();
        bad[0] = 9;
        assert_eq!(
            old.verify_frame(b"cam0", b"head", b"jpeg", &bad),
            Err(MacError::Malformed)
        );
        assert_eq!(
            old.verify_frame(b"cam0", b"head", b"jpeg", &mac[..10]),
            Err(MacError::Malformed)
        );
    }

    #[test]
    fn tokens_prove_the_key_and_expire() {
        let ring = KeyRing::parse(K1).expect("k1");
        let other = KeyRing::parse(K2).expect("k2");
        let now = 1_800_000_000;
        let token = ring.signing().subscription_token(now, [7; 16]);
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(
            ring.verify_token(token.as_bytes(), now + 5),
            Some(ring.signing().id())
        );
        assert_eq!(other.verify_token(token.as_bytes(), now), None);
        assert_eq!(ring.verify_token(token.as_bytes(), now + 601), None);
        assert_eq!(ring.verify_token(token.as_bytes(), now - 601), None);
        let mut forged = token.into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(ring.verify_token(&forged, now), None);
        assert_eq!(ring.verify_token(b"cam0", now), None);
        assert_eq!(ring.verify_token(TOKEN_PREFIX.as_bytes(), now), None);
    }

    #[test]
    fn the_store_follows_its_file_and_keeps_the_old_ring_on_a_bad_one() {
        let path = std::env::temp_dir().join(format!("keys-{}", std::process::id()));
        std::fs::write(&path, K1).expect("write");
        let store = KeyStore::load(KeySource::File(path.clone())).expect("load");
        let id1 = store.ring().signing().id();
        assert_eq!(store.refresh(), Ok(false));
        std::fs::write(&path, format!("{K2}\n{K1}\n")).expect("write");
        assert_eq!(store.refresh(), Ok(true));
        assert_eq!(store.ring().keys().len(), 2);
        assert_ne!(store.ring().signing().id(), id1);
        std::fs::write(&path, "garbage").expect("write");
        assert!(store.refresh().is_err());
        assert_eq!(store.ring().keys().len(), 2, "old ring kept");
        let _ = std::fs::remove_file(&path);
        assert!(KeyStore::load(KeySource::File(path)).is_err());
    }
}
