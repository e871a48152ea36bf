//! The wire decoders (`frame_wire::decode_with` for versions 1/2,
//! `frame_wire::decode_message` for every version and kind) on arbitrary
//! messages: what any host that reaches a gateway's producer address can
//! send. Must never panic, and whatever they accept must re-encode to the
//! same bytes.
#![no_main]

use bytes::Bytes;
use frame_wire::auth::KeyRing;
use frame_wire::{Limits, Message, decode_message, decode_with, encode_message};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fuzz_target!(|data: &[u8]| {
    // Split the input into message parts at 0xFF 0x00 0xFF markers, so the
    // fuzzer controls the part count and each part's bytes.
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(3).position(|w| w == [0xFF, 0x00, 0xFF]) {
        parts.push(Bytes::copy_from_slice(&rest[..at]));
        rest = &rest[at + 3..];
    }
    parts.push(Bytes::copy_from_slice(rest));
    let limits = Limits {
        max_jpeg_bytes: 1 << 20,
    };
    if let Ok(frame) = decode_with(&parts, &limits, None) {
        let again = frame_wire::encode(&frame.header, frame.jpeg.clone(), &limits)
            .expect("an accepted frame re-encodes");
        assert_eq!(&again[..], &parts[..], "decode/encode round trip");
    }
    if let Ok(message) = decode_message(&parts, &limits, None) {
        let payload = parts[2].clone();
        let again = match &message {
            Message::Frame(f) if f.header.version != frame_wire::KIND_VERSION => {
                frame_wire::encode(&f.header, payload, &limits).map(|p| p.to_vec())
            }
            m => encode_message(m.kind(), m.header(), payload, &limits, None),
        }
        .expect("an accepted message re-encodes");
        assert_eq!(&again[..], &parts[..], "decode/encode round trip");
    }
    let ring = KeyRing::parse(KEY).expect("key");
    let _ = decode_message(&parts, &limits, Some(&ring));
    if let Ok(frame) = decode_with(&parts, &limits, Some(&ring)) {
        assert_eq!(frame.header.version, frame_wire::SIGNED_VERSION);
    }
});
