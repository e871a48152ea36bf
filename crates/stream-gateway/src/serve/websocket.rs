//! The page's WebSocket (docs/websocket.md): one connection carries every
//! camera the page shows, so a wall of 16 cameras is one connection, not 16
//! (browsers allow 6 per host over HTTP/1.1).
//!
//! The frames themselves go out through the same fan-out writers as MJPEG
//! (`writer.rs`): a WebSocket viewer joins the writer of each stream it
//! watches on its thread, and each writes the frame's prepared message
//! (`Part::ws`) with one `write()`. What is per connection lives here: the
//! handshake, the client's small messages (which streams, at what rate,
//! with or without their detections),
//! pings and close. What the writers share for one socket is `wsconn.rs`.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use serde::Deserialize;
use sha1::{Digest, Sha1};
use tokio_util::sync::CancellationToken;

use crate::rendition::Width;
use crate::serve::response::{self, Common};
use crate::serve::seats::{Seat, Watching};
use crate::serve::wire::Wire;
use crate::serve::writer::{Joined, Writers};
use crate::serve::wsconn::WsShared;
use crate::streams::{Stream, Streams};

/// Largest client message accepted; larger closes the connection.
const MAX_MESSAGE: usize = 64 * 1024;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's key (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The `101 Switching Protocols` head.
pub fn upgrade_head(common: &Common<'_>, key: &str) -> Bytes {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&accept_key(key)) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response::head(common, http::StatusCode::SWITCHING_PROTOCOLS, h)
}

/// A client → gateway message.
#[derive(Debug, Deserialize, PartialEq)]
struct Watch {
    watch: Vec<String>,
    #[serde(default)]
    fps: Option<f64>,
    /// Also the watched streams' detections; pages that predate them do not ask.
    #[serde(default)]
    detections: bool,
    /// The watched streams' events: on unless `false`.
    #[serde(default = "yes")]
    events: bool,
    /// The width wanted of each watched stream (absent: the full picture):
    /// the smallest rendition at least that wide (`rendition.rs`).
    #[serde(default)]
    width: HashMap<String, u32>,
    /// Adapt each watched stream to the link, at or below its width.
    #[serde(default)]
    auto: bool,
}

impl Watch {
    /// The width asked of each watched stream.
    fn widths(&self) -> HashMap<String, Width> {
        self.watch
            .iter()
            .map(|name| {
                let asked = self.width.get(name).copied().filter(|&w| w > 0);
                let width = match (asked, self.auto) {
                    (None, false) => Width::Full,
                    (Some(w), false) => Width::AtLeast(w),
                    (max, true) => Width::Auto { max },
                };
                (name.clone(), width)
            })
            .collect()
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, PartialEq)]
enum ClientFrame {
    Text(Bytes),
    Ping(Bytes),
    Close,
    /// Pong, binary, continuation: nothing to do.
    Other,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum FrameError {
    #[error("client frame not masked")]
    Unmasked,
    #[error("client message over {MAX_MESSAGE} bytes")]
    TooLarge,
}

/// Takes one client frame off the front of `buf`, unmasked; `None` until a
/// whole frame is there.
fn parse_frame(buf: &mut BytesMut) -> Result<Option<ClientFrame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, at) = match b1 & 0x7F {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&buf[2..10]);
            (
                usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                10,
            )
        }
        126 | 127 => return Ok(None),
        n => (usize::from(n), 2),
    };
    if len > MAX_MESSAGE {
        return Err(FrameError::TooLarge);
    }
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[at..at + 4]);
    buf.advance(at + 4);
    let mut payload = buf.split_to(len);
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some(match b0 & 0x0F {
        0x1 => ClientFrame::Text(payload.freeze()),
        0x8 => ClientFrame::Close,
        0x9 => ClientFrame::Ping(payload.freeze()),
        _ => ClientFrame::Other,
    }))
}

/// An unmasked control frame from the gateway.
fn control_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let payload = &payload[..payload.len().min(125)];
    let mut b = Vec::with_capacity(2 + payload.len());
    b.push(0x80 | opcode);
    b.push(payload.len() as u8);
    b.extend_from_slice(payload);
    Bytes::from(b)
}

/// Serves one WebSocket client on this thread until it leaves or `stop`:
/// reads its messages and has the writers of the streams it watches take it
/// in. Its frames are written by those writers.
pub async fn run_client(
    socket: Wire,
    seat: Seat,
    writers: Arc<Writers>,
    streams: Arc<Streams>,
    stop: CancellationToken,
) {
    let shared = Arc::new(WsShared::new(socket));
    // Streams asked for whose writer has this client, and those asked for
    // that do not exist yet (at most MAX_WAITING, looked for once a second).
    // Work happens only when the list changes or something is waited for,
    // never per ping.
    let mut joined: HashMap<String, Width> = HashMap::new();
    // Joined at a width before the stream announced its renditions (so at
    // the full picture): looked at again once a second until it has.
    let mut early: HashSet<String> = HashSet::new();
    let names = streams.metrics().ws_watched_names.clone();
    let mut held = 0usize;
    let mut waiting: Vec<String> = Vec::new();
    let mut buf = BytesMut::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let mut changed = false;
        let ticked = tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => true,
            r = shared.socket.readable() => {
                if r.is_err() || !read_into(&shared.socket, &mut buf) {
                    break;
                }
                match handle_frames(&shared, &mut buf, &mut changed) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "closing a WebSocket");
                        break;
                    }
                }
                false
            }
        };
        if !changed && (!ticked || (waiting.is_empty() && early.is_empty())) {
            continue;
        }
        let known: HashMap<String, Arc<Stream>> = streams
            .all()
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut moved = Vec::new();
        if changed {
            let mut st = shared.lock();
            let asked = std::mem::take(&mut st.watching);
            let (mut kept, mut unknown) = (HashSet::new(), Vec::new());
            for name in asked {
                if known.contains_key(&name) {
                    kept.insert(name);
                } else if unknown.len() < MAX_WAITING {
                    unknown.push(name);
                }
            }
            kept.extend(unknown);
            joined.retain(|name, _| kept.contains(name));
            early.retain(|name| kept.contains(name));
            st.serving.retain(|name, _| kept.contains(name));
            // A stream asked for at another width moves to that picture's
            // writer when it is another picture (the old writer lets go).
            for (name, width) in joined.iter_mut() {
                let want = st.widths.get(name).copied().unwrap_or_default();
                if *width == want {
                    continue;
                }
                *width = want;
                let Some(stream) = known.get(name) else {
                    continue;
                };
                let choice = stream.choose(want);
                if st.serving.get(name) != Some(&choice) {
                    st.serving.insert(name.clone(), choice);
                    moved.push((stream.clone(), choice));
                }
            }
            waiting = kept
                .iter()
                .filter(|n| !joined.contains_key(*n))
                .cloned()
                .collect();
            names.add(kept.len() as i64 - held as i64);
            held = kept.len();
            st.watching = kept;
        }
        if ticked && !early.is_empty() {
            let mut st = shared.lock();
            early.retain(|name| {
                let Some(stream) = known.get(name) else {
                    return false;
                };
                if stream.renditions().is_empty() {
                    return true;
                }
                let want = st.widths.get(name).copied().unwrap_or_default();
                let choice = stream.choose(want);
                if st.serving.get(name) != Some(&choice) {
                    st.serving.insert(name.clone(), choice);
                    moved.push((stream.clone(), choice));
                }
                false
            });
        }
        for (stream, choice) in moved {
            writers.deliver(
                stream.clone(),
                Joined::Ws {
                    shared: shared.clone(),
                    watching: Watching::new(stream, choice),
                },
            );
        }
        waiting.retain(|name| {
            let Some(stream) = known.get(name) else {
                return true;
            };
            if !joined.contains_key(name) {
                let width = shared.lock().widths.get(name).copied().unwrap_or_default();
                let choice = stream.choose(width);
                if matches!(width, Width::AtLeast(_)) && stream.renditions().is_empty() {
                    early.insert(name.clone());
                }
                joined.insert(name.clone(), width);
                shared.lock().serving.insert(name.clone(), choice);
                writers.deliver(
                    stream.clone(),
                    Joined::Ws {
                        shared: shared.clone(),
                        watching: Watching::new(stream.clone(), choice),
                    },
                );
            }
            false
        });
    }
    names.sub(held as i64);
    shared.lock().closed = true;
    // The writers holding this socket see it closed at their next write.
    shared.socket.shutdown_both();
    drop(seat);
}

/// The most names a watch list may hold that are not (yet) streams here:
/// a list is otherwise bounded by the streams the gateway knows.
const MAX_WAITING: usize = 16;

/// Reads what the client sent; `false` at its end.
fn read_into(socket: &Wire, buf: &mut BytesMut) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match socket.try_read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_MESSAGE + 16 {
                    return true;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Acts on every whole frame in `buf`; `Ok(false)` when the client closed.
/// `changed` is set when a new watch list arrived.
fn handle_frames(
    shared: &WsShared,
    buf: &mut BytesMut,
    changed: &mut bool,
) -> Result<bool, FrameError> {
    while let Some(frame) = parse_frame(buf)? {
        match frame {
            ClientFrame::Text(text) => match serde_json::from_slice::<Watch>(&text) {
                Ok(w) => {
                    let mut st = shared.lock();
                    st.widths = w.widths();
                    st.watching = w.watch.into_iter().collect();
                    st.min_interval = w
                        .fps
                        .filter(|f| (0.1..=240.0).contains(f))
                        .map(|f| Duration::from_secs_f64(1.0 / f));
                    st.detections = w.detections;
                    st.events = w.events;
                    *changed = true;
                }
                Err(e) => tracing::debug!(error = %e, "ignoring a WebSocket message"),
            },
            ClientFrame::Ping(payload) => send_control(shared, control_frame(0xA, &payload)),
            ClientFrame::Close => {
                send_control(shared, control_frame(0x8, &[]));
                return Ok(false);
            }
            ClientFrame::Other => {}
        }
    }
    Ok(true)
}

/// Writes a control frame unless a frame is half written (then a pong is
/// skipped: the client's next ping gets one).
fn send_control(shared: &WsShared, frame: Bytes) {
    let mut st = shared.lock();
    if st.pending.is_none()
        && let Ok(n) = shared.socket.try_write(&frame)
        && n < frame.len()
    {
        st.pending = Some((frame, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn client_frames_are_unmasked_one_by_one() {
        let watch = br#"{"watch":["cam0","cam1"],"fps":2}"#;
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&masked(0x1, watch));
        buf.extend_from_slice(&masked(0x9, b"hi"));
        let long = vec![b' '; 300];
        buf.extend_from_slice(&masked(0x1, &long));
        buf.extend_from_slice(&masked(0x8, b"")[..3]);
        let Some(ClientFrame::Text(t)) = parse_frame(&mut buf).expect("ok") else {
            panic!("text")
        };
        let w: Watch = serde_json::from_slice(&t).expect("json");
        assert_eq!(w.watch, ["cam0", "cam1"]);
        assert_eq!(w.fps, Some(2.0));
        assert!(!w.detections, "old pages never get detections");
        assert!(w.events, "events unless a page says no");
        let no: Watch = serde_json::from_str(r#"{"watch":[],"events":false}"#).expect("json");
        assert!(!no.events);
        assert_eq!(
            parse_frame(&mut buf).expect("ok"),
            Some(ClientFrame::Ping(Bytes::from_static(b"hi")))
        );
        assert!(matches!(parse_frame(&mut buf), Ok(Some(ClientFrame::Text(t))) if t.len() == 300));
        assert_eq!(parse_frame(&mut buf).expect("partial"), None);
        buf.extend_from_slice(&masked(0x8, b"")[3..]);
        assert_eq!(parse_frame(&mut buf).expect("ok"), Some(ClientFrame::Close));
    }

    #[test]
    fn unmasked_and_oversized_frames_are_refused() {
        let mut buf = BytesMut::from(&[0x81u8, 0x02, b'h', b'i'][..]);
        assert_eq!(parse_frame(&mut buf), Err(FrameError::Unmasked));
        let mut buf = BytesMut::from(&[0x81u8, 0xFF, 0, 0, 0, 0, 0, 0x10, 0, 0][..]);
        assert_eq!(parse_frame(&mut buf), Err(FrameError::TooLarge));
    }
}
