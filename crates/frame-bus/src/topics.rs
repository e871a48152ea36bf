//! The subscriptions one socket holds, kept equal to what its service wants:
//! a change is sent on the open socket as a difference, and everything is
//! asked again on each new socket. A service hands its client a
//! `watch::Receiver` of topic prefixes (`f/cam1/`, `p/`, `d/`; see
//! `frame_wire::subscription`) and changes it whenever it likes.

use std::collections::BTreeSet;

use zeromq::ZmqResult;

/// Topic prefixes, as ZeroMQ subscriptions.
pub type Topics = BTreeSet<String>;

/// What one socket holds now; starts empty with each new socket.
#[derive(Default)]
pub struct Held(BTreeSet<String>);

impl Held {
    /// Subscribes to what `want` adds and unsubscribes from what it drops.
    /// On an error the socket is to be recreated (and everything asked again).
    pub async fn update(&mut self, socket: &mut zeromq::SubSocket, want: &Topics) -> ZmqResult<()> {
        for gone in self.0.difference(want).cloned().collect::<Vec<_>>() {
            socket.unsubscribe(&gone).await?;
            self.0.remove(&gone);
        }
        for new in want.difference(&self.0).cloned().collect::<Vec<_>>() {
            socket.subscribe(&new).await?;
            self.0.insert(new);
        }
        Ok(())
    }
}

/// Topics as strings: subscriptions are ASCII (stream names and tags are
/// validated), so this loses nothing.
pub fn topic_strings(subs: impl IntoIterator<Item = Vec<u8>>) -> Topics {
    subs.into_iter()
        .map(|s| String::from_utf8_lossy(&s).into_owned())
        .collect()
}
