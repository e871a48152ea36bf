//! The MJPEG multipart parser (`stream_common::multipart`) that the HTTP
//! relay source feeds with whatever a remote camera or relay sends. The first
//! byte picks strict or lenient mode and the chunk size, so partial reads are
//! fuzzed too. Must never panic, never return a part over its limit, and
//! never buffer without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
#[path = "../../crates/stream-common/src/multipart.rs"]
#[allow(dead_code)]
mod multipart;

use multipart::{MultipartParser, boundary_from_content_type};

const MAX_PART: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    // The Content-Type header is remote input too.
    let _ = boundary_from_content_type(&String::from_utf8_lossy(&body[..body.len().min(100)]));
    let strict = mode & 1 == 1;
    let chunk = usize::from(mode >> 1).max(1);
    let mut p = MultipartParser::new("frame", strict, MAX_PART);
    for piece in body.chunks(chunk) {
        p.push(piece);
        loop {
            match p.next_part() {
                Ok(Some(part)) => assert!(part.body.len() <= MAX_PART, "part over the limit"),
                Ok(None) | Err(_) => break,
            }
        }
        if p.is_done() {
            break;
        }
    }
    assert!(p.buffered() <= body.len());
});
