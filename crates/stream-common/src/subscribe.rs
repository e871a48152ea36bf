//! Connecting a ZeroMQ SUB socket to a producer, the same way for every
//! service that reads the bus (the gateway, the detector): a short connect
//! timeout, a retry every 200 ms, and a warning at most every 30 s while the
//! producer cannot be reached.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketOptions, SubSocket};

use crate::ratelimit::LogEvery;

/// A new SUB socket connected to `endpoint`, or `None` at shutdown. Nothing
/// is subscribed yet.
pub async fn connect(
    endpoint: &str,
    shutdown: &CancellationToken,
    log: &mut LogEvery,
) -> Option<SubSocket> {
    loop {
        let mut options = SocketOptions::default();
        options.connect_timeout(Duration::from_millis(300));
        let mut socket = SubSocket::with_options(options);
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = socket.connect(endpoint) => r,
        };
        match connected {
            Ok(()) => return Some(socket),
            Err(e) => {
                if log.check(Instant::now()).is_some() {
                    tracing::warn!(producer = %endpoint, error = %e, "cannot reach producer; retrying");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
