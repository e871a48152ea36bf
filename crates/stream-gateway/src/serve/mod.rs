//! The HTTP side: `server` accepts connections, `routes` maps URLs to
//! replies, `viewer` is one client's MJPEG response, `page.html` the viewer page.

pub mod auth;
pub mod direct;
pub mod routes;
pub mod server;
pub mod viewer;
