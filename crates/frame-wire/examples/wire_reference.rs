//! Prints reference messages made by this crate's encoder, in hex, one
//! `name hex` pair a line, so that other implementations of the wire format
//! (`scripts/benchkit/wire.py`, held to these bytes by its unit test) can be
//! checked against the Rust side byte for byte:
//!
//!     cargo run -p frame-wire --example wire_reference
//!
//! Everything is fixed (key, times, nonce), so the output never changes
//! unless the format does.

use bytes::Bytes;
use frame_wire::auth::KeyRing;
use frame_wire::{Detection, Detections, FrameHeader, Kind, Limits};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ring = KeyRing::parse(
        "# reference key\n00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    )?;
    let key = ring.signing();
    let header = FrameHeader {
        version: frame_wire::KIND_VERSION,
        seq: 42,
        capture_ts_ns: 1_700_000_000_123_456_789,
        width: 1280,
        height: 720,
        producer_id: 0xDEAD_BEEF,
        stream: "cam0".into(),
    };
    let jpeg = Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9]);
    let frame = frame_wire::encode_message(
        Kind::Frame,
        &header,
        jpeg.clone(),
        &Limits::default(),
        Some(key),
    )?;
    let preview =
        frame_wire::encode_message(Kind::Preview, &header, jpeg, &Limits::default(), None)?;
    let detections = Detections {
        model: "bench-overlay".into(),
        boxes: vec![
            Detection {
                label: "person".into(),
                score: 0.91,
                x: 0.1,
                y: 0.2,
                w: 0.2,
                h: 0.6,
            },
            Detection {
                label: "dog".into(),
                score: 0.5,
                x: 0.75,
                y: 0.5,
                w: 0.25,
                h: 0.25,
            },
        ],
    };
    let dets = frame_wire::encode_detections(&header, &detections, Some(key))?;
    let lines = [
        ("key_id", key.id().to_vec()),
        ("frame_topic", frame[0].to_vec()),
        ("frame_header", frame[1].to_vec()),
        ("frame_mac", frame[3].to_vec()),
        ("preview_topic", preview[0].to_vec()),
        ("detections_topic", dets[0].to_vec()),
        ("detections_payload", dets[2].to_vec()),
        ("detections_mac", dets[3].to_vec()),
        (
            "token",
            key.subscription_token(1_700_000_000, *b"0123456789abcdef")
                .into_bytes(),
        ),
    ];
    for (name, bytes) in lines {
        println!("{name} {}", hex(&bytes));
    }
    Ok(())
}
