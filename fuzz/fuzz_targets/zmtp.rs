//! What our PUB socket (frame-bus's `publisher.rs`, the producer's and the
//! detector's) reads from a subscriber: the 64-byte greeting, then ZMTP
//! frames (READY, subscriptions, anything). Any host that reaches a
//! producer's or detector's port can send these bytes. The file is a module
//! of the frame-bus crate, included here by path so the fuzz build compiles
//! only it. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/frame-bus/src/zmtp.rs"]
#[allow(dead_code)]
mod zmtp;

fuzz_target!(|data: &[u8]| {
    let (greeting, mut rest) = data.split_at(data.len().min(64));
    if let Ok(g) = <&[u8; 64]>::try_from(greeting) {
        let _ = zmtp::check_greeting(g);
    }
    while let Ok(Some((frame, used))) = zmtp::parse_frame(rest) {
        assert!(used > 0 && used <= rest.len());
        assert!(frame.body.len() <= zmtp::MAX_INBOUND_FRAME);
        if let Some((name, props)) = zmtp::command_parts(&frame.body) {
            assert!(name.len() < frame.body.len());
            let _ = zmtp::socket_type(props);
        }
        let _ = zmtp::request(&frame);
        rest = &rest[used..];
    }
});
