//! Motion-JPEG from many USB webcams (the UVC "AVI1" flavour) and some IP
//! cameras leaves out the Huffman tables, relying on the standard ones. Chrome
//! and Firefox cope; Safari paints such frames black. Frames passed through
//! without re-encoding therefore get the standard tables (ITU T.81, Annex K.3)
//! inserted before their scan, once, in the producer.

use bytes::{BufMut, Bytes, BytesMut};

/// Counts of codes of each length 1..=16, then the symbols, per table.
const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
#[rustfmt::skip]
const AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];
const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
#[rustfmt::skip]
const AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0,
    0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

/// One DHT segment holding the four standard tables.
fn standard_dht() -> Vec<u8> {
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &DC_LUMA_BITS, &DC_VALUES),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES),
        (0x01, &DC_CHROMA_BITS, &DC_VALUES),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES),
    ];
    let body: usize = tables.iter().map(|(_, b, v)| 1 + b.len() + v.len()).sum();
    let mut seg = Vec::with_capacity(4 + body);
    seg.extend_from_slice(&[0xFF, 0xC4]);
    seg.extend_from_slice(&((body + 2) as u16).to_be_bytes());
    for (class_id, bits, values) in tables {
        seg.push(class_id);
        seg.extend_from_slice(bits);
        seg.extend_from_slice(values);
    }
    seg
}

/// Where the header segments end: the offset of the first SOS marker, and
/// whether a DHT segment came before it. `None` if the header is malformed.
fn scan_header(jpeg: &[u8]) -> Option<(usize, bool)> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    let mut has_dht = false;
    loop {
        if *jpeg.get(i)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(i + 1)?;
        match marker {
            0xFF => i += 1, // fill byte
            0xDA => return Some((i, has_dht)),
            0xD9 => return None,
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                has_dht |= marker == 0xC4;
                let len = usize::from(u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]));
                if len < 2 {
                    return None;
                }
                i += 2 + len;
            }
        }
    }
}

/// Whether the JPEG defines its Huffman tables before its scan.
pub fn has_huffman_tables(jpeg: &[u8]) -> bool {
    scan_header(jpeg).is_some_and(|(_, dht)| dht)
}

/// The JPEG with the standard Huffman tables added if it has none; the same
/// bytes (no copy) if it has them or its header cannot be read.
pub fn with_huffman_tables(jpeg: Bytes) -> Bytes {
    match scan_header(&jpeg) {
        Some((sos, false)) => {
            let dht = standard_dht();
            let mut out = BytesMut::with_capacity(jpeg.len() + dht.len());
            out.put_slice(&jpeg[..sos]);
            out.put_slice(&dht);
            out.put_slice(&jpeg[sos..]);
            out.freeze()
        }
        _ => jpeg,
    }
}

/// The JPEG with its Huffman tables removed, as a UVC webcam's MJPEG comes;
/// for tests. `None` if the header cannot be read.
pub fn without_huffman_tables(jpeg: &[u8]) -> Option<Vec<u8>> {
    let (sos, _) = scan_header(jpeg)?;
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while i < sos {
        if jpeg[i + 1] == 0xFF {
            i += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if jpeg[i + 1] != 0xC4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpeg[sos..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::Canvas;
    use crate::jpeg::{JpegEncoder, decode_rgb};

    #[test]
    fn tables_are_the_standard_ones_the_encoder_uses() {
        // libjpeg-turbo encodes with the standard tables, so stripping them and
        // putting ours back must decode to exactly the same pixels.
        let mut c = Canvas::new(64, 48);
        c.fill([30, 140, 220]);
        c.draw_text(2, 2, 2, [255, 255, 0], "12:34");
        let original = JpegEncoder::new(85)
            .and_then(|mut e| e.encode(&c))
            .expect("jpeg");
        assert!(has_huffman_tables(&original));
        let stripped = Bytes::from(without_huffman_tables(&original).expect("valid"));
        assert!(!has_huffman_tables(&stripped));
        assert!(stripped.len() < original.len());

        let fixed = with_huffman_tables(stripped);
        assert!(has_huffman_tables(&fixed));
        let (want, ..) = decode_rgb(&original).expect("decode original");
        let (got, ..) = decode_rgb(&fixed).expect("decode fixed");
        assert_eq!(got, want, "same pixels with the inserted tables");
    }

    #[test]
    fn complete_or_unreadable_jpegs_are_left_alone() {
        let c = Canvas::new(16, 16);
        let jpeg = JpegEncoder::new(80)
            .and_then(|mut e| e.encode(&c))
            .expect("jpeg");
        let same = with_huffman_tables(jpeg.clone());
        assert_eq!(same.as_ptr(), jpeg.as_ptr(), "no copy");
        for junk in [
            &b""[..],
            b"\xFF\xD8",
            b"\xFF\xD8\xFF\xE0\x00",
            b"not a jpeg",
            b"\xFF\xD8\xFF\xD9",
        ] {
            let b = Bytes::copy_from_slice(junk);
            assert_eq!(with_huffman_tables(b.clone()), b);
            assert!(!has_huffman_tables(junk));
        }
    }
}
