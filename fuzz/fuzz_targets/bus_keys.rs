//! Bus key files and subscription tokens (`frame_wire::auth`): key files
//! are configuration read from disk at start and on every change, tokens
//! come from any subscriber on the network. Must never panic.
#![no_main]

use frame_wire::auth::KeyRing;
use libfuzzer_sys::fuzz_target;

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(ring) = KeyRing::parse(&text) {
        assert!(!ring.keys().is_empty() && ring.keys().len() <= 2);
        let _ = ring.ids();
    }
    let ring = KeyRing::parse(KEY).expect("key");
    let now = 1_800_000_000;
    // Arbitrary bytes as a token: forging one is the attack.
    if !data.starts_with(frame_wire::auth::TOKEN_PREFIX.as_bytes()) {
        assert_eq!(
            ring.verify_token(data, now),
            None,
            "a token without the prefix verified"
        );
    }
    let mut token = frame_wire::auth::TOKEN_PREFIX.as_bytes().to_vec();
    token.extend_from_slice(data);
    let _ = ring.verify_token(&token, now);
});
