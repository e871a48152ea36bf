//! The balancing tier that carries no video: viewers ask the director for a
//! stream and get a `307` to a healthy gateway's own address, then stream
//! from that gateway directly, so no byte of video passes through a proxy.
//! Small requests (page, snapshots, API) are relayed to a gateway as they
//! are. Which gateway serves a request is one replaceable function
//! ([`choose::Choose`]). The director and the gateways may speak HTTPS
//! (`tls`, `upstream`).

pub mod choose;
pub mod config;
pub mod pool;
pub mod redirect;
pub mod request;
pub mod serve;
pub mod tls;
pub mod upstream;
