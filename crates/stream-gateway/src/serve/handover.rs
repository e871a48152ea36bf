//! Handing admitted viewers to the serving threads: a new viewer goes to
//! the shard (serving thread, `server.rs`) with the fewest viewers, so every
//! core carries its share and, when the machine cannot keep up, every
//! viewer's rate drops together. Its socket is moved out of the accepting
//! thread's reactor into the chosen thread's, so each thread only ever
//! polls its own sockets. There each shard gives the viewer to its stream's
//! writer (`writer.rs`), or runs the page's WebSocket client
//! (`websocket.rs`), which joins the writers of the streams it watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use prometheus::IntGauge;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::adapt::Switches;
use crate::metrics::GatewayMetrics;
use crate::serve::seats::{EventsViewer, Load, OwnSocket, Viewer, WsViewer};
use crate::serve::websocket;
use crate::serve::wire::{StdWire, Wire};
use crate::serve::writer::{Joined, Writers};
use crate::streams::Streams;

/// Hands admitted viewers to the shards; shared by all serving threads.
pub struct Fanout {
    shards: Vec<ShardHandle>,
}

struct ShardHandle {
    tx: mpsc::UnboundedSender<Joining>,
    load: Arc<AtomicUsize>,
    gauge: IntGauge,
}

/// One shard's end of the hand-over, run by [`run_shard`] on its thread.
pub struct ShardInbox {
    rx: mpsc::UnboundedReceiver<Joining>,
    streams: Arc<Streams>,
    switches: Switches,
}

/// A viewer on its way to a shard, its socket out of any reactor.
struct Joining {
    socket: StdWire,
    kind: JoiningKind,
    load: Load,
}

enum JoiningKind {
    /// A viewer with a socket of its own and its response head, to be
    /// written first.
    Own { head: Bytes, viewer: OwnSocket },
    /// A WebSocket whose handshake is answered.
    Ws(WsViewer),
}

impl Fanout {
    /// A fan-out over `shards` serving threads, and each thread's inbox.
    pub fn new(
        shards: usize,
        streams: Arc<Streams>,
        metrics: &GatewayMetrics,
    ) -> (Arc<Fanout>, Vec<ShardInbox>) {
        let switches = Switches::new(&metrics.registry);
        let (handles, inboxes) = (0..shards.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::unbounded_channel();
                let handle = ShardHandle {
                    tx,
                    load: Arc::new(AtomicUsize::new(0)),
                    gauge: metrics.for_thread(i),
                };
                let inbox = ShardInbox {
                    rx,
                    streams: streams.clone(),
                    switches: switches.clone(),
                };
                (handle, inbox)
            })
            .unzip();
        (Arc::new(Fanout { shards: handles }), inboxes)
    }

    /// Hands an MJPEG viewer whose request was read on shard `local` to the
    /// least loaded shard (`local` on a tie). `head` is written before any part.
    pub fn join(&self, local: usize, socket: Wire, head: Bytes, viewer: Viewer) {
        self.hand_over(
            local,
            socket,
            JoiningKind::Own {
                head,
                viewer: OwnSocket::Mjpeg(viewer),
            },
        );
    }

    /// Hands a WebSocket viewer (handshake answered) to the least loaded shard.
    pub fn join_ws(&self, local: usize, socket: Wire, viewer: WsViewer) {
        self.hand_over(local, socket, JoiningKind::Ws(viewer));
    }

    /// Hands a Server-Sent Events listener of a stream's detections to the
    /// least loaded shard. `head` is written before any event.
    pub fn join_events(&self, local: usize, socket: Wire, head: Bytes, viewer: EventsViewer) {
        self.hand_over(
            local,
            socket,
            JoiningKind::Own {
                head,
                viewer: OwnSocket::Events(viewer),
            },
        );
    }

    fn hand_over(&self, local: usize, socket: Wire, kind: JoiningKind) {
        let load = |i: usize| self.shards[i].load.load(Ordering::Relaxed);
        let local = local.min(self.shards.len() - 1);
        let target = (0..self.shards.len())
            .fold(local, |best, i| if load(i) < load(best) { i } else { best });
        let socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "viewer socket lost before it joined");
                return;
            }
        };
        let shard = &self.shards[target];
        let joining = Joining {
            socket,
            kind,
            load: Load::new(shard.load.clone(), shard.gauge.clone()),
        };
        // Fails only when that thread has stopped (shutdown): the viewer is
        // dropped with the message, closing its socket.
        let _ = shard.tx.send(joining);
    }
}

/// Runs one shard until `stop`: takes viewers in and gives each to its
/// stream's writer on this thread.
pub async fn run_shard(mut inbox: ShardInbox, stop: CancellationToken) {
    let writers = Arc::new(Writers::new(stop.clone(), inbox.switches.clone()));
    loop {
        let joining = tokio::select! {
            _ = stop.cancelled() => return,
            j = inbox.rx.recv() => match j { Some(j) => j, None => return },
        };
        let socket = match joining.socket.into_wire() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register a viewer's socket");
                continue;
            }
        };
        match joining.kind {
            JoiningKind::Own { head, viewer } => {
                let stream = viewer.stream().clone();
                let joined = Joined::Own {
                    socket,
                    head,
                    viewer,
                    load: joining.load,
                };
                writers.deliver(stream, joined);
            }
            JoiningKind::Ws(viewer) => {
                let load = joining.load;
                let client = websocket::run_client(
                    socket,
                    viewer.seat,
                    writers.clone(),
                    inbox.streams.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    client.await;
                    drop(load);
                });
            }
        }
    }
}
