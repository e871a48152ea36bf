//! The frame bus as every subscriber sees it: the gateway, the detector and
//! the recorder each open a [`Client`] per producer endpoint and only say
//! what to do with each kind of message.
//!
//! The client connects and reconnects (`connect.rs`), holds the
//! subscriptions it is given and changes them on the open socket
//! (`topics.rs`), recreates the socket when the producer goes silent
//! (`connect::Silence`), keeps the bus key ring current on a timer and proves
//! it to the producer on every connection and after every change
//! (`keys.rs`), and verifies and decodes every message into a typed
//! [`frame_wire::Message`] (`client.rs`), refusing replays and frames of a
//! stream name another live producer owns (`owners.rs`, one registry for
//! every client of the process). Errors are returned, never exits.
//!
//! The publishing side is here too, for every service that publishes (the
//! producer, the detector): one PUB server (`publisher.rs`, speaking the
//! ZMTP bytes of `zmtp.rs` on an endpoint bound by `listen.rs`) that bounds
//! each subscriber's queue in bytes and, with a key, serves only
//! subscribers that prove it.

pub mod args;
pub mod client;
pub mod connect;
pub mod keys;
pub mod listen;
pub mod owners;
pub mod publisher;
pub mod topics;
pub mod zmtp;

pub use client::{Client, Event, Received, Refusal, Settings};
pub use frame_wire::auth::KeyError;
pub use keys::{BusKeys, parse_key_file};
pub use publisher::{BusHandle, BusMetrics, BusSettings, PubServer};
