//! The gateway's request-head reader and parser (`serve/head.rs`), which
//! every byte a client sends goes through first. The module is included by
//! path: the gateway is a binary crate, and the module depends only on
//! libraries. The first byte sets the read size, so the incremental search
//! for the end of a head is checked against a one-shot search of the same
//! bytes; whatever it finds must parse or be refused, never panic.
#![no_main]

/// head.rs reads through the gateway's connection type (plain TCP or TLS);
/// a plain socket has the same reading methods, and the fuzzer never reads.
mod serve {
    pub mod wire {
        pub use tokio::net::TcpStream as Wire;
    }
}

#[path = "../../crates/stream-gateway/src/serve/head.rs"]
#[allow(dead_code)]
mod head;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// The first blank line, searched the plain way.
fn naive_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        if buf[i] != b'\n' {
            return None;
        }
        match &buf[i + 1..] {
            [b'\n', ..] => Some(i + 2),
            [b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut scanned = 0;
    let mut found = None;
    while scanned < bytes.len() && found.is_none() {
        let upto = (scanned + step).min(bytes.len());
        found = head::head_end(&bytes[..upto], scanned);
        scanned = upto;
    }
    assert_eq!(found, naive_end(bytes), "incremental search disagrees");
    if let Some(end) = found {
        if let Ok(h) = head::parse(&Bytes::copy_from_slice(&bytes[..end])) {
            assert!(h.path.starts_with('/'));
            let _ = h.keep_alive();
        }
    }
});
