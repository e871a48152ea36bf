//! Codec tests: the exact byte layout, round trips, and every malformed shape.

use super::*;

fn header() -> FrameHeader {
    FrameHeader {
        version: VERSION,
        seq: 42,
        capture_ts_ns: 1_700_000_000_123_456_789,
        width: 1280,
        height: 720,
        producer_id: 0xDEAD_BEEF,
        stream: "cam0".into(),
    }
}

fn jpeg() -> Bytes {
    Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9])
}

fn parts() -> Vec<Bytes> {
    encode(&header(), jpeg(), &Limits::default())
        .expect("valid frame")
        .to_vec()
}

#[test]
fn header_layout_is_the_documented_one() {
    // docs/wire-format.md: <B Q Q I I Q> then u64 length and the UTF-8 name.
    let mut want = vec![1u8];
    want.extend_from_slice(&42u64.to_le_bytes());
    want.extend_from_slice(&1_700_000_000_123_456_789u64.to_le_bytes());
    want.extend_from_slice(&1280u32.to_le_bytes());
    want.extend_from_slice(&720u32.to_le_bytes());
    want.extend_from_slice(&0xDEAD_BEEFu64.to_le_bytes());
    want.extend_from_slice(&4u64.to_le_bytes());
    want.extend_from_slice(b"cam0");
    assert_eq!(encode_header(&header()).expect("encodes"), want);
    assert_eq!(want.len(), 45);
}

#[test]
fn round_trip() {
    let frame = decode(&parts(), &Limits::default()).expect("decodes");
    assert_eq!(frame.header, header());
    assert_eq!(frame.jpeg, jpeg());
}

#[test]
fn jpeg_is_shared_not_copied() {
    let p = parts();
    let frame = decode(&p, &Limits::default()).expect("decodes");
    assert_eq!(frame.jpeg.as_ptr(), p[2].as_ptr());
}

#[test]
fn wrong_part_counts_are_rejected() {
    let p = parts();
    for n in [0, 1, 2, 5] {
        let mut v: Vec<Bytes> = p.iter().cycle().take(n).cloned().collect();
        if n == 5 {
            v[3] = Bytes::from_static(b"extra");
        }
        assert_eq!(decode(&v, &Limits::default()), Err(WireError::PartCount(n)));
    }
}

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn ring(text: &str) -> auth::KeyRing {
    auth::KeyRing::parse(text).expect("key")
}

fn signed(key: &str) -> Vec<Bytes> {
    encode_signed(&header(), jpeg(), &Limits::default(), ring(key).signing())
        .expect("signs")
        .to_vec()
}

#[test]
fn signed_messages_round_trip_as_version_2_with_a_4th_part() {
    let p = signed(KEY);
    assert_eq!(p.len(), 4);
    assert_eq!(p[1][0], SIGNED_VERSION);
    assert_eq!(p[3].len(), auth::MAC_PART_BYTES);
    // The header layout is version 1's with another version byte.
    assert_eq!(p[1][1..], encode_header(&header()).expect("v1")[1..]);
    let frame = decode_with(&p, &Limits::default(), Some(&ring(KEY))).expect("verifies");
    assert_eq!(frame.header.version, SIGNED_VERSION);
    assert_eq!(frame.jpeg, jpeg());
    assert_eq!(frame.jpeg.as_ptr(), p[2].as_ptr(), "not copied");
}

#[test]
fn keys_decide_which_messages_pass() {
    let keys = ring(KEY);
    let l = Limits::default();
    // A keyed receiver refuses unsigned frames; an unkeyed one signed frames
    // (it cannot check them), as a gateway that predates signing does.
    assert_eq!(
        decode_with(&parts(), &l, Some(&keys)),
        Err(WireError::Unsigned)
    );
    assert_eq!(decode(&signed(KEY), &l), Err(WireError::SignedWithoutKey));
    assert_eq!(
        decode_with(&signed(OTHER), &l, Some(&keys)),
        Err(WireError::UnknownKey)
    );
    // Right format, right key id, wrong tag: a forger who knows the id.
    let mut forged = signed(KEY);
    let mut jpeg = forged[2].to_vec();
    jpeg[4] ^= 1;
    forged[2] = jpeg.into();
    assert_eq!(
        decode_with(&forged, &l, Some(&keys)),
        Err(WireError::BadMac)
    );
    // A version-1 header in a signed message is refused even with a good MAC.
    let mut v1 = parts();
    v1.push(keys.signing().sign_frame(&v1[0], &v1[1], &v1[2]));
    assert_eq!(
        decode_with(&v1, &l, Some(&keys)),
        Err(WireError::UnsupportedVersion(VERSION))
    );
    for e in [
        WireError::Unsigned,
        WireError::SignedWithoutKey,
        WireError::UnknownKey,
        WireError::BadMac,
    ] {
        assert!(!e.kind().is_empty());
    }
    // Rotation: a ring with the old and the new key takes both.
    let both = ring(&format!("{OTHER}\n{KEY}"));
    assert!(decode_with(&signed(KEY), &l, Some(&both)).is_ok());
    assert!(decode_with(&signed(OTHER), &l, Some(&both)).is_ok());
}

#[test]
fn python_struct_signing_matches() {
    // What scripts/publish_frames.py computes with hmac + hashlib: HMAC-SHA-256
    // over a domain string and each part with its u64 LE length.
    let p = signed(KEY);
    let mut msg = b"mjpeg-fanout frame v2\0".to_vec();
    for part in &p[..3] {
        msg.extend_from_slice(&(part.len() as u64).to_le_bytes());
        msg.extend_from_slice(part);
    }
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&[
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
        0xee, 0xff,
    ])
    .expect("key");
    m.update(&msg);
    assert_eq!(p[3][5..], m.finalize().into_bytes()[..]);
}

#[test]
fn other_versions_are_rejected_before_parsing() {
    let mut p = parts();
    let mut h = p[1].to_vec();
    h[0] = 2;
    p[1] = h.into();
    assert_eq!(
        decode(&p, &Limits::default()),
        Err(WireError::UnsupportedVersion(2))
    );
    let mut bad = header();
    bad.version = 9;
    assert_eq!(encode_header(&bad), Err(WireError::UnsupportedVersion(9)));
}

#[test]
fn empty_truncated_and_padded_headers_are_rejected() {
    let full = parts()[1].to_vec();
    assert_eq!(decode_header(&[]), Err(WireError::EmptyHeader));
    for cut in 1..full.len() {
        assert!(
            matches!(
                decode_header(&full[..cut]),
                Err(WireError::MalformedHeader(_))
            ),
            "cut at {cut}"
        );
    }
    let mut padded = full.clone();
    padded.push(0);
    assert_eq!(
        decode_header(&padded),
        Err(WireError::TrailingHeaderBytes(1))
    );
    let huge = vec![1u8; MAX_HEADER_BYTES + 1];
    assert_eq!(
        decode_header(&huge),
        Err(WireError::HeaderTooLarge(MAX_HEADER_BYTES + 1))
    );
}

#[test]
fn huge_string_length_does_not_allocate() {
    let mut h = encode_header(&header()).expect("encodes");
    let len_at = h.len() - 4 - 8;
    h[len_at..len_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        decode_header(&h),
        Err(WireError::MalformedHeader(_))
    ));
}

#[test]
fn bad_fields_are_rejected() {
    let lim = Limits::default();
    let mut h = header();
    h.width = 0;
    assert_eq!(
        encode(&h, jpeg(), &lim),
        Err(WireError::InvalidSize {
            width: 0,
            height: 720
        })
    );
    let mut h = header();
    h.height = MAX_DIMENSION + 1;
    assert!(matches!(
        encode(&h, jpeg(), &lim),
        Err(WireError::InvalidSize { .. })
    ));
    for name in ["", "has space", "sl/ash", "ü", &"x".repeat(65)] {
        let mut h = header();
        h.stream = name.into();
        assert!(
            matches!(
                encode(&h, jpeg(), &lim),
                Err(WireError::InvalidStreamName(_))
            ),
            "{name:?}"
        );
    }
}

#[test]
fn non_jpeg_and_oversized_payloads_are_rejected() {
    let lim = Limits { max_jpeg_bytes: 16 };
    let mut p = parts();
    for bad in [
        &b""[..],
        b"\xFF\xD8",
        b"GIF89a....",
        b"\xFF\xD8 no end",
        b"no start \xFF\xD9",
    ] {
        p[2] = Bytes::copy_from_slice(bad);
        assert_eq!(decode(&p, &lim), Err(WireError::NotJpeg), "{bad:?}");
    }
    let mut big = vec![0xFF, 0xD8];
    big.resize(17, 0);
    big.extend_from_slice(&[0xFF, 0xD9]);
    p[2] = big.into();
    assert_eq!(
        decode(&p, &lim),
        Err(WireError::JpegTooLarge { size: 19, max: 16 })
    );
}

#[test]
fn topic_must_match_stream() {
    let mut p = parts();
    p[0] = Bytes::from_static(b"cam1");
    assert!(matches!(
        decode(&p, &Limits::default()),
        Err(WireError::TopicMismatch { .. })
    ));
}

/// A small deterministic generator, so the garbage test needs no dependency
/// and fails the same way every time.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let good = parts();
    for i in 0..50_000 {
        let len = (rng.next() % 80) as usize;
        let mut head: Vec<u8> = if i % 2 == 0 {
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            // Mutate a valid header so the decoder gets past the version byte.
            let mut h = good[1].to_vec();
            let at = (rng.next() as usize) % h.len();
            h[at] = rng.next() as u8;
            h.truncate(((rng.next() as usize) % (h.len() + 1)).max(1));
            h
        };
        if i % 3 == 0 && !head.is_empty() {
            head[0] = VERSION;
        }
        let msg = [good[0].clone(), Bytes::from(head), good[2].clone()];
        let _ = decode(&msg, &Limits::default());
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any message, of any shape, decodes or fails with an error: no panic.
        #[test]
        fn arbitrary_messages_never_panic(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..5)) {
            let parts: Vec<Bytes> = parts.into_iter().map(Bytes::from).collect();
            let _ = decode(&parts, &Limits::default());
        }

        /// Headers that start right but go wrong anywhere are refused cleanly,
        /// and a length field never makes the decoder allocate past the limit.
        #[test]
        fn corrupted_headers_are_refused(tail in prop::collection::vec(any::<u8>(), 0..120)) {
            let mut head = vec![VERSION];
            head.extend_from_slice(&tail);
            let _ = decode_header(&head);
        }

        #[test]
        fn valid_frames_round_trip(
            seq: u64, ts: u64, producer_id: u64,
            width in 1u32..=MAX_DIMENSION, height in 1u32..=MAX_DIMENSION,
            stream in "[A-Za-z0-9_.-]{1,64}",
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let header = FrameHeader { version: VERSION, seq, capture_ts_ns: ts, width, height, producer_id, stream };
            let mut jpeg = vec![0xFF, 0xD8];
            jpeg.extend_from_slice(&body);
            jpeg.extend_from_slice(&[0xFF, 0xD9]);
            let parts = encode(&header, Bytes::from(jpeg.clone()), &Limits::default()).expect("valid frame encodes");
            let frame = decode(&parts, &Limits::default()).expect("and decodes");
            prop_assert_eq!(frame.header, header);
            prop_assert_eq!(&frame.jpeg[..], &jpeg[..]);
        }
    }
}
