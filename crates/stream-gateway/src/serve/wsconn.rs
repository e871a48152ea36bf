//! One page's WebSocket as its streams' writers share it: the socket, the
//! bytes not yet written (whichever stream's, so two streams' messages
//! never interleave on it), and what the client asked for. The client task
//! (`websocket.rs`) sets what is asked; the writers (`writer.rs`) read it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::rendition::{Choice, Width};
use crate::serve::wire::Wire;

/// What one socket's writers share: the bytes not yet written (whichever
/// stream's), and what the client asked for.
pub struct WsShared {
    pub socket: Arc<Wire>,
    state: Mutex<WsState>,
}

pub struct WsState {
    pub pending: Option<(Bytes, usize)>,
    pub watching: HashSet<String>,
    /// The width asked for each watched stream (absent: the full picture).
    pub widths: HashMap<String, Width>,
    /// The picture each joined stream is served at now, as its writers
    /// check: set by the client task when it delivers the socket to a
    /// picture's writer (`websocket.rs`; adaptation moves it).
    pub serving: HashMap<String, Choice>,
    pub min_interval: Option<Duration>,
    /// Also send the watched streams' detections (`detections.rs`).
    pub detections: bool,
    /// Also send the watched streams' events (`events.rs`); on unless the
    /// client said `"events": false`.
    pub events: bool,
    pub closed: bool,
}

impl WsState {
    /// Whether `stream` is watched and served at `choice`.
    pub fn serves(&self, stream: &str, choice: Choice) -> bool {
        self.watching.contains(stream) && self.serving.get(stream) == Some(&choice)
    }
}

impl WsShared {
    pub fn lock(&self) -> MutexGuard<'_, WsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A socket whose client has asked for nothing yet.
    pub fn new(socket: Wire) -> Self {
        WsShared {
            socket: Arc::new(socket),
            state: Mutex::new(WsState {
                pending: None,
                watching: HashSet::new(),
                widths: HashMap::new(),
                serving: HashMap::new(),
                min_interval: None,
                detections: false,
                events: true,
                closed: false,
            }),
        }
    }
}
