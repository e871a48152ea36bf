//! The HTTP side, in the order a request goes through it:
//! `server` runs the serving threads and accepts connections;
//! `connection` serves one connection's requests: `head` reads each request
//! head, `admission` decides it once (credentials, CORS, the route from
//! `stream_common::route`, which stream, a seat from `seats`), and then
//! `routes` answers a finite route through warp, or `handover` moves a
//! viewer to the least loaded serving thread, where `writer` (the one
//! writer every viewer is served by) writes it every frame; the page's
//! `websocket` client shares its socket with its streams' writers through
//! `wsconn`. `response` writes every response head; `page.html` is the
//! viewer page. `tls` runs HTTPS handshakes (`ktls` moves streaming
//! sessions into the kernel where it can) and `wire` carries a
//! connection's bytes, plain or TLS, for all of the above.

pub mod admission;
pub mod connection;
pub mod handover;
pub mod head;
pub mod ktls;
pub mod response;
pub mod routes;
pub mod seats;
pub mod server;
pub mod tls;
pub mod websocket;
pub mod wire;
pub mod writer;
pub mod wsconn;
