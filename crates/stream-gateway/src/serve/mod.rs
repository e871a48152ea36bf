//! The HTTP side, in the order a request goes through it:
//! `server` runs the serving threads and accepts connections;
//! `connection` serves one connection's requests: `head` reads each request
//! head, `admission` decides it (credentials, CORS, capacity, which stream),
//! and then a stream, or the page's `websocket`, goes to `fanout`, the one
//! writer every viewer is served by, while anything else is answered by
//! `routes` (warp's route table).
//! `response` writes every response head; `auth` checks credentials;
//! `page.html` is the viewer page. `tls` runs HTTPS handshakes and `wire`
//! carries a connection's bytes, plain or TLS, for all of the above.

pub mod admission;
pub mod auth;
pub mod connection;
pub mod fanout;
pub mod head;
pub mod response;
pub mod routes;
pub mod server;
pub mod tls;
pub mod websocket;
pub mod wire;
