//! One multipart part, built once per frame and shared by every viewer.
//!
//! Layout follows what the best servers send: the part's headers, the JPEG,
//! then CRLF and the *next* boundary at once, so a browser can show a frame as
//! soon as it arrives instead of waiting for the following one. A stream
//! therefore starts with [`PREAMBLE`] and every part ends with a boundary.

use bytes::Bytes;
pub use stream_common::multipart::{PREAMBLE, timestamp_text};

pub const CONTENT_TYPE: &str = "multipart/x-mixed-replace; boundary=frame";

#[derive(Debug)]
pub struct Part {
    /// Headers + JPEG + CRLF + next boundary, ready to write.
    pub bytes: Bytes,
    /// The JPEG alone (a view into `bytes`), for snapshots.
    pub jpeg: Bytes,
    /// Increases by one per distinct frame of a stream; re-sends keep it.
    pub seq: u64,
    pub capture_ts_ns: u64,
    /// False for the "NO SIGNAL" placeholder.
    pub live: bool,
}

impl Part {
    pub fn build(jpeg: &[u8], seq: u64, capture_ts_ns: u64, live: bool) -> Part {
        let (bytes, range) = stream_common::multipart::build_part(jpeg, capture_ts_ns, live);
        let jpeg = bytes.slice(range);
        Part {
            bytes,
            jpeg,
            seq,
            capture_ts_ns,
            live,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stream_common::multipart::MultipartParser;

    #[test]
    fn golden_bytes() {
        let p = Part::build(b"\xFF\xD8xy\xFF\xD9", 7, 1_700_000_000_123_456_789, true);
        let want = b"Content-Type: image/jpeg\r\nContent-Length: 6\r\nX-Timestamp: 1700000000.123456\r\nX-Source-Online: true\r\n\r\n\xFF\xD8xy\xFF\xD9\r\n--frame\r\n";
        assert_eq!(&p.bytes[..], &want[..]);
        assert_eq!(&p.jpeg[..], b"\xFF\xD8xy\xFF\xD9");
    }

    #[test]
    fn a_stream_of_parts_parses_strictly() {
        let mut data = PREAMBLE.to_vec();
        for i in 0..3u8 {
            data.extend_from_slice(
                &Part::build(&[0xFF, 0xD8, i, 0xFF, 0xD9], u64::from(i), 0, true).bytes,
            );
        }
        let mut parser = MultipartParser::new("frame", true, 1024);
        parser.push(&data);
        for i in 0..3u8 {
            let part = parser.next_part().expect("valid").expect("part");
            assert_eq!(&part.body[..], &[0xFF, 0xD8, i, 0xFF, 0xD9]);
        }
    }
}
