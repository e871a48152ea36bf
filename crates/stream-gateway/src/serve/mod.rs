//! The HTTP side: `server` accepts connections and reads the request head;
//! `direct` takes stream requests onto their stream's fan-out writer;
//! `routes` (warp) answers everything else, `viewer` being its MJPEG body
//! for the rare stream request that arrives on a kept-alive connection;
//! `auth` checks credentials; `page.html` is the viewer page.

pub mod auth;
pub mod direct;
pub mod routes;
pub mod server;
pub mod viewer;
