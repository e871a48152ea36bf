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

/// Version 3: kind-tagged topics, previews and detections.
mod kinds {
    use super::*;

    fn person() -> Detections {
        Detections {
            model: "ssdlite-person".into(),
            boxes: vec![Detection {
                label: "person".into(),
                score: 0.9,
                x: 0.25,
                y: 0.1,
                w: 0.5,
                h: 0.8,
            }],
        }
    }

    #[test]
    fn topics_name_one_kind_of_one_stream_exactly() {
        assert_eq!(&topic(Kind::Frame, "cam1")[..], b"f/cam1/");
        assert_eq!(&topic(Kind::Preview, "cam1")[..], b"p/cam1/");
        assert_eq!(&topic(Kind::Detections, "cam1")[..], b"d/cam1/");
        // Prefix filtering: cam1's subscription no longer matches cam10.
        let sub = subscription(Kind::Frame, Some("cam1"));
        assert!(topic(Kind::Frame, "cam1").starts_with(&sub));
        assert!(!topic(Kind::Frame, "cam10").starts_with(&sub));
        assert!(!topic(Kind::Preview, "cam1").starts_with(&sub));
        // `p/` is every preview and nothing else.
        let all = subscription(Kind::Preview, None);
        assert!(topic(Kind::Preview, "x.y-z_9").starts_with(&all));
        assert!(!topic(Kind::Frame, "x").starts_with(&all));
        // A version 1/2 topic never starts with a kind prefix and vice versa.
        assert!(!message::is_kind_topic(b"cam1"));
        assert!(!message::is_kind_topic(b"f"));
        assert!(message::is_kind_topic(b"f/cam1/"));
    }

    #[test]
    fn frames_and_previews_round_trip_unsigned_and_signed() {
        let l = Limits::default();
        for kind in [Kind::Frame, Kind::Preview] {
            let p = encode_message(kind, &header(), jpeg(), &l, None).expect("encodes");
            assert_eq!(p.len(), 3);
            assert_eq!(p[1][0], KIND_VERSION);
            // Same layout as version 1 after the version byte.
            assert_eq!(p[1][1..], encode_header(&header()).expect("v1")[1..]);
            let m = decode_message(&p, &l, None).expect("decodes");
            assert_eq!(m.kind(), kind);
            assert_eq!(m.header().seq, 42);
            match &m {
                Message::Frame(f) | Message::Preview(f) => {
                    assert_eq!(f.jpeg.as_ptr(), p[2].as_ptr(), "not copied")
                }
                _ => panic!("a picture"),
            }

            let keys = ring(KEY);
            let s =
                encode_message(kind, &header(), jpeg(), &l, Some(keys.signing())).expect("signs");
            assert_eq!(s.len(), 4);
            assert_eq!(
                decode_message(&s, &l, Some(&keys))
                    .expect("verifies")
                    .kind(),
                kind
            );
            assert_eq!(
                decode_message(&s, &l, None),
                Err(WireError::SignedWithoutKey)
            );
            assert_eq!(
                decode_message(&p, &l, Some(&keys)),
                Err(WireError::Unsigned)
            );
            assert_eq!(
                decode_message(&s, &l, Some(&ring(OTHER))),
                Err(WireError::UnknownKey)
            );
            // The MAC covers the topic: a frame cannot be replayed as a preview.
            let mut moved = s.clone();
            moved[0] = topic(
                if kind == Kind::Frame {
                    Kind::Preview
                } else {
                    Kind::Frame
                },
                "cam0",
            );
            assert_eq!(
                decode_message(&moved, &l, Some(&keys)),
                Err(WireError::BadMac)
            );
        }
    }

    #[test]
    fn renditions_travel_on_their_width_topic() {
        let l = Limits::default();
        let mut h = header();
        h.width = 320;
        h.height = 180;
        assert_eq!(&rendition_topic("cam0", 320)[..], b"r/cam0/320/");
        // Exact: 320's subscription matches neither 3200 nor cam00.
        let sub = rendition_topic("cam0", 320);
        assert!(!rendition_topic("cam0", 3200).starts_with(&sub));
        assert!(!rendition_topic("cam00", 320).starts_with(&sub));
        assert!(!topic(Kind::Frame, "cam0").starts_with(&sub));
        let p = encode_message(Kind::Rendition, &h, jpeg(), &l, None).expect("encodes");
        assert_eq!(&p[0][..], b"r/cam0/320/");
        match decode_message(&p, &l, None).expect("decodes") {
            Message::Rendition(f) => {
                assert_eq!((f.header.width, f.header.seq), (320, 42));
                assert_eq!(f.jpeg.as_ptr(), p[2].as_ptr(), "not copied");
            }
            other => panic!("a rendition expected, got {other:?}"),
        }
        let keys = ring(KEY);
        let s =
            encode_message(Kind::Rendition, &h, jpeg(), &l, Some(keys.signing())).expect("signs");
        assert!(matches!(
            decode_message(&s, &l, Some(&keys)),
            Ok(Message::Rendition(_))
        ));
        // Signed for one width, it cannot be replayed as another.
        let mut moved = s.clone();
        moved[0] = rendition_topic("cam0", 640);
        assert_eq!(
            decode_message(&moved, &l, Some(&keys)),
            Err(WireError::BadMac)
        );
        // Unsigned, a topic naming another width than the header is refused.
        let mut other = p.clone();
        other[0] = rendition_topic("cam0", 640);
        assert!(matches!(
            decode_message(&other, &l, None),
            Err(WireError::TopicMismatch { .. })
        ));
        for bad in [
            &b"r/cam0/"[..],
            b"r/cam0//",
            b"r/cam0/0320/",
            b"r/cam0/+320/",
            b"r/cam0/99999/",
            b"r/cam0/32a/",
            b"r//320/",
            b"r/ca m/320/",
            b"r/a/b/320/",
        ] {
            other[0] = Bytes::from_static(bad);
            let e = decode_message(&other, &l, None).expect_err("refused");
            assert!(
                matches!(e, WireError::BadTopic(_) | WireError::InvalidStreamName(_)),
                "{bad:?}: {e:?}"
            );
        }
        assert_eq!(rendition_width(b"r/cam0/320/"), Some(320));
        assert_eq!(rendition_width(b"f/cam0/"), None);
    }

    #[test]
    fn the_renditions_list_round_trips_and_is_checked() {
        let l = Limits::default();
        let list = Renditions::new(vec![(320, 180), (640, 360)]).expect("valid");
        let payload = Bytes::from(list.encode());
        let p = encode_message(Kind::Info, &header(), payload, &l, None).expect("encodes");
        assert_eq!(&p[0][..], b"i/cam0/");
        match decode_message(&p, &l, None).expect("decodes") {
            Message::Info {
                header: h,
                renditions,
            } => {
                assert_eq!((h.width, h.height), (header().width, header().height));
                assert_eq!(renditions, list);
            }
            other => panic!("info expected, got {other:?}"),
        }
        let mut bad = p.clone();
        bad[2] = Bytes::from_static(b"640x360 320x180");
        let e = decode_message(&bad, &l, None).expect_err("refused");
        assert_eq!(e.kind(), "bad_renditions");
        assert!(
            encode_message(Kind::Info, &header(), bad[2].clone(), &l, None).is_err(),
            "a publisher cannot send what a receiver refuses"
        );
    }

    #[test]
    fn detections_round_trip_and_name_their_frame() {
        let l = Limits::default();
        let p = encode_detections(&header(), &person(), None).expect("encodes");
        assert_eq!(&p[0][..], b"d/cam0/");
        match decode_message(&p, &l, None).expect("decodes") {
            Message::Detections {
                header: h,
                detections,
            } => {
                assert_eq!(
                    (h.seq, h.capture_ts_ns, h.stream.as_str()),
                    (42, header().capture_ts_ns, "cam0")
                );
                assert_eq!(detections, person());
            }
            other => panic!("detections expected, got {other:?}"),
        }
        let keys = ring(KEY);
        let s = encode_detections(&header(), &person(), Some(keys.signing())).expect("signs");
        assert!(matches!(
            decode_message(&s, &l, Some(&keys)),
            Ok(Message::Detections { .. })
        ));
        // Nothing found is a valid message too.
        let none = Detections {
            model: "m".into(),
            boxes: vec![],
        };
        assert!(encode_detections(&header(), &none, None).is_ok());
    }

    #[test]
    fn old_decoders_refuse_version_3_by_its_version_byte() {
        let p = encode_message(Kind::Frame, &header(), jpeg(), &Limits::default(), None)
            .expect("encodes");
        assert_eq!(
            decode(&p, &Limits::default()),
            Err(WireError::UnsupportedVersion(3))
        );
        // And version 1/2 messages still decode as frames.
        assert!(matches!(
            decode_message(&parts(), &Limits::default(), None),
            Ok(Message::Frame(_))
        ));
        assert!(matches!(
            decode_message(&signed(KEY), &Limits::default(), Some(&ring(KEY))),
            Ok(Message::Frame(_))
        ));
    }

    #[test]
    fn unknown_kinds_and_bad_topics_are_named() {
        let l = Limits::default();
        let mut p = encode_message(Kind::Frame, &header(), jpeg(), &l, None).expect("encodes");
        p[0] = Bytes::from_static(b"x/cam0/");
        assert_eq!(
            decode_message(&p, &l, None),
            Err(WireError::UnknownKind(b'x'))
        );
        assert_eq!(WireError::UnknownKind(b'x').kind(), "unknown_kind");
        for bad in [&b"f/cam0"[..], b"f//", b"f/ca m/", b"f/\xff/"] {
            p[0] = Bytes::from_static(bad);
            let e = decode_message(&p, &l, None).expect_err("refused");
            assert!(
                matches!(e, WireError::BadTopic(_) | WireError::InvalidStreamName(_)),
                "{bad:?}: {e:?}"
            );
        }
        p[0] = topic(Kind::Frame, "cam9");
        assert!(matches!(
            decode_message(&p, &l, None),
            Err(WireError::TopicMismatch { .. })
        ));
        // A picture kind needs a JPEG; a detections kind needs detections.
        p[0] = topic(Kind::Detections, "cam0");
        assert!(matches!(
            decode_message(&p, &l, None),
            Err(WireError::MalformedDetections(_))
        ));
        let d = encode_detections(&header(), &person(), None).expect("encodes");
        let mut q = d.clone();
        q[0] = topic(Kind::Preview, "cam0");
        assert_eq!(decode_message(&q, &l, None), Err(WireError::NotJpeg));
    }

    #[test]
    fn detections_are_validated_both_ways() {
        let ok = person();
        let cases: Vec<fn(&mut Detections)> = vec![
            |d| d.model.clear(),
            |d| d.model = "m\n".into(),
            |d| d.boxes[0].label = "x".repeat(65),
            |d| d.boxes[0].score = f32::NAN,
            |d| d.boxes[0].score = 1.5,
            |d| d.boxes[0].x = -0.1,
            |d| d.boxes[0].w = 0.9,
            |d| d.boxes[0].h = f32::INFINITY,
            |d| d.boxes = vec![d.boxes[0].clone(); MAX_BOXES_PLUS_ONE],
        ];
        const MAX_BOXES_PLUS_ONE: usize = detections::MAX_BOXES + 1;
        for (i, spoil) in cases.iter().enumerate() {
            let mut d = ok.clone();
            spoil(&mut d);
            assert!(d.encode().is_err(), "case {i} encodes");
            // Bypass the encoder's check: the decoder refuses it as well.
            let raw = bincode::serde::encode_to_vec(&d, bincode::config::legacy()).expect("raw");
            assert!(Detections::decode(&raw).is_err(), "case {i} decodes");
        }
        let mut raw = ok.encode().expect("encodes");
        raw.push(0);
        assert!(Detections::decode(&raw).is_err(), "trailing byte");
        // A huge box count in 20 bytes must not allocate.
        let mut huge = vec![1u8, 0, 0, 0, 0, 0, 0, 0, b'm'];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Detections::decode(&huge).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            /// Kind-tagged messages of any shape decode or fail cleanly.
            #[test]
            fn arbitrary_kind_messages_never_panic(
                tag in prop::sample::select(vec![b'f', b'p', b'd', b'x']),
                rest in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4),
            ) {
                let mut parts = vec![Bytes::from(vec![tag, b'/', b'c', b'/'])];
                parts.extend(rest.into_iter().map(Bytes::from));
                let _ = decode_message(&parts, &Limits::default(), None);
                let _ = decode_message(&parts, &Limits::default(), Some(&ring(KEY)));
            }

            #[test]
            fn arbitrary_detection_payloads_never_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
                let _ = Detections::decode(&body);
            }
        }
    }
}

#[test]
fn a_detections_only_key_signs_detections_and_annotated_streams_only() {
    let d_key = ring(&format!("{KEY} scope=d"));
    let l = Limits::default();
    let mut h = header();
    h.version = KIND_VERSION;
    let signed = |kind: Kind, h: &FrameHeader| {
        encode_message(kind, h, jpeg(), &l, Some(d_key.signing())).expect("signs")
    };
    for kind in [Kind::Frame, Kind::Preview] {
        assert_eq!(
            decode_message(&signed(kind, &h), &l, Some(&d_key)),
            Err(WireError::Scope("cam0".into()))
        );
    }
    assert_eq!(WireError::Scope("cam0".into()).kind(), "scope");
    let d = Detections {
        model: "m".into(),
        boxes: vec![],
    };
    let det = encode_detections(&h, &d, Some(d_key.signing())).expect("signs");
    assert!(decode_message(&det, &l, Some(&d_key)).is_ok());
    let mut annotated = h.clone();
    annotated.stream = "cam0-detect".into();
    for kind in [Kind::Frame, Kind::Preview] {
        assert!(decode_message(&signed(kind, &annotated), &l, Some(&d_key)).is_ok());
    }
    // The same key without the scope signs anything.
    let full = ring(KEY);
    let frame = encode_message(Kind::Frame, &h, jpeg(), &l, Some(full.signing())).expect("signs");
    assert!(decode_message(&frame, &l, Some(&full)).is_ok());
}
