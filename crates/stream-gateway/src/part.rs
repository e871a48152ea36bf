//! One frame as every viewer gets it, built once and shared: the multipart
//! part for MJPEG viewers, and the WebSocket message for the page
//! (docs/websocket.md), which is built the first time a WebSocket viewer
//! needs it, so streams that no page watches never pay for it.
//!
//! Layout follows what the best servers send: the part's headers, the JPEG,
//! then CRLF and the *next* boundary at once, so a browser can show a frame as
//! soon as it arrives instead of waiting for the following one. A stream
//! therefore starts with [`PREAMBLE`] and every part ends with a boundary.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
pub use stream_common::multipart::{PREAMBLE, timestamp_text};

pub const CONTENT_TYPE: &str = "multipart/x-mixed-replace; boundary=frame";

#[derive(Debug)]
pub struct Part {
    /// Headers + JPEG + CRLF + next boundary, ready to write.
    pub bytes: Bytes,
    /// The JPEG alone (a view into `bytes`), for snapshots.
    pub jpeg: Bytes,
    /// The whole WebSocket binary frame (header, stream, times, JPEG), once
    /// asked for ([`Part::ws`]).
    ws: OnceLock<Bytes>,
    /// The stream's name, which the WebSocket frame carries.
    stream: Box<str>,
    /// Increases by one per distinct frame of a stream; re-sends keep it.
    pub seq: u64,
    pub capture_ts_ns: u64,
    /// False for the "NO SIGNAL" placeholder.
    pub live: bool,
}

impl Part {
    pub fn build(stream: &str, jpeg: &[u8], seq: u64, capture_ts_ns: u64, live: bool) -> Part {
        let (bytes, range) = stream_common::multipart::build_part(jpeg, capture_ts_ns, live);
        let jpeg = bytes.slice(range);
        Part {
            ws: OnceLock::new(),
            stream: stream.into(),
            bytes,
            jpeg,
            seq,
            capture_ts_ns,
            live,
        }
    }

    /// The same picture under another `seq` (another slot's numbering),
    /// sharing its bytes; its WebSocket message is built anew when asked.
    pub fn with_seq(&self, seq: u64) -> Part {
        Part {
            bytes: self.bytes.clone(),
            jpeg: self.jpeg.clone(),
            ws: OnceLock::new(),
            stream: self.stream.clone(),
            seq,
            capture_ts_ns: self.capture_ts_ns,
            live: self.live,
        }
    }

    /// The frame as one WebSocket binary message, built by the first
    /// viewer that needs it and shared by all the others.
    pub fn ws(&self) -> &Bytes {
        self.ws.get_or_init(|| {
            ws_message(
                &self.stream,
                &self.jpeg,
                self.seq,
                self.capture_ts_ns,
                self.live,
            )
        })
    }
}

/// The WebSocket message of a frame: an unmasked binary frame whose payload
/// is `[1][flags][name_len][name][capture_ts_ns LE][seq LE][jpeg]`.
fn ws_message(stream: &str, jpeg: &[u8], seq: u64, capture_ts_ns: u64, live: bool) -> Bytes {
    let name = &stream.as_bytes()[..stream.len().min(255)];
    let len = 3 + name.len() + 16 + jpeg.len();
    let mut b = BytesMut::with_capacity(len + 10);
    b.put_u8(0x82); // FIN, binary
    match len {
        0..=125 => b.put_u8(len as u8),
        126..=0xFFFF => {
            b.put_u8(126);
            b.put_u16(len as u16);
        }
        _ => {
            b.put_u8(127);
            b.put_u64(len as u64);
        }
    }
    b.put_u8(1);
    b.put_u8(u8::from(live));
    b.put_u8(name.len() as u8);
    b.put_slice(name);
    b.put_u64_le(capture_ts_ns);
    b.put_u64_le(seq);
    b.put_slice(jpeg);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stream_common::multipart::MultipartParser;

    #[test]
    fn golden_bytes() {
        let p = Part::build(
            "cam0",
            b"\xFF\xD8xy\xFF\xD9",
            7,
            1_700_000_000_123_456_789,
            true,
        );
        let want = b"Content-Type: image/jpeg\r\nContent-Length: 6\r\nX-Timestamp: 1700000000.123456\r\nX-Source-Online: true\r\n\r\n\xFF\xD8xy\xFF\xD9\r\n--frame\r\n";
        assert_eq!(&p.bytes[..], &want[..]);
        assert_eq!(&p.jpeg[..], b"\xFF\xD8xy\xFF\xD9");
        let mut ws = vec![0x82, 29, 1, 1, 4];
        ws.extend_from_slice(b"cam0");
        ws.extend_from_slice(&1_700_000_000_123_456_789u64.to_le_bytes());
        ws.extend_from_slice(&7u64.to_le_bytes());
        ws.extend_from_slice(b"\xFF\xD8xy\xFF\xD9");
        assert_eq!(&p.ws()[..], &ws[..]);
    }

    #[test]
    fn large_frames_use_the_long_websocket_lengths() {
        let jpeg = vec![0u8; 70_000];
        let p = Part::build("c", &jpeg, 0, 0, false);
        let ws = p.ws();
        assert_eq!(&ws[..2], &[0x82, 127]);
        let len = u64::from_be_bytes(ws[2..10].try_into().expect("8 bytes"));
        assert_eq!(len as usize, ws.len() - 10);
        assert_eq!(ws[11], 0, "placeholder flag");
        let p = Part::build("c", &jpeg[..1000], 0, 0, true);
        let ws = p.ws();
        assert_eq!(&ws[..2], &[0x82, 126]);
        assert_eq!(u16::from_be_bytes([ws[2], ws[3]]) as usize, ws.len() - 4);
    }

    #[test]
    fn the_websocket_message_is_built_only_when_asked_for_and_once() {
        let p = Part::build("c", b"\xFF\xD8\xFF\xD9", 0, 0, true);
        assert!(p.ws.get().is_none(), "built before any viewer asked");
        let first = p.ws().clone();
        assert_eq!(p.ws().as_ptr(), first.as_ptr(), "shared, not rebuilt");
    }

    #[test]
    fn a_stream_of_parts_parses_strictly() {
        let mut data = PREAMBLE.to_vec();
        for i in 0..3u8 {
            data.extend_from_slice(
                &Part::build("c", &[0xFF, 0xD8, i, 0xFF, 0xD9], u64::from(i), 0, true).bytes,
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
