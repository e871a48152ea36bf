//! Prometheus text rendering shared by the services' `/metrics` routes.

use prometheus::{Encoder, Registry, TextEncoder};

/// The registry in Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::with_capacity(4096);
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "rendering metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
