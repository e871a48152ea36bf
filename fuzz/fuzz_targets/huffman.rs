//! The Huffman-table inserter (`stream_common::huffman`) on arbitrary
//! "JPEGs": it runs on every passed-through frame from webcams, RTSP cameras,
//! files and relays. Must never panic; when it inserts tables, the result
//! must have them.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
#[path = "../../crates/stream-common/src/huffman.rs"]
#[allow(dead_code)]
mod huffman;

use huffman::{has_huffman_tables, with_huffman_tables};

fuzz_target!(|data: &[u8]| {
    let had = has_huffman_tables(data);
    let out = with_huffman_tables(Bytes::copy_from_slice(data));
    if out.len() != data.len() {
        assert!(!had, "tables inserted into a JPEG that had them");
        assert!(has_huffman_tables(&out), "inserted tables not found");
        assert!(out.len() > data.len() && out.starts_with(&data[..2]));
    } else {
        assert_eq!(&out[..], data);
    }
});
