//! Reading recordings back: the frame nearest a time, a paced MJPEG stream
//! from a time, and a clip (a new Matroska file made of the recorded JPEGs,
//! as they are) of a range. Everything is found through the segments'
//! indexes and read with positional reads; nothing is decoded or demuxed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::mkv;
use crate::store::{Entry, Segment, Store, duration_ms};

/// How far from the asked time the nearest frame may be (else "nothing recorded then").
pub const NEAREST_WITHIN_NS: u64 = 1_000_000_000;
/// Longest clip one request may ask for.
pub const MAX_CLIP_MS: u64 = 3_600_000;

/// Reads one JPEG (blocking; call from a blocking context or spawn_blocking).
fn read_jpeg(file: &File, e: &Entry) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; e.len as usize];
    file.read_exact_at(&mut buf, e.offset)?;
    Ok(Bytes::from(buf))
}

/// The recorded frame nearest to `at_ns`: its capture time and JPEG.
pub async fn frame_at(
    store: Arc<Store>,
    name: String,
    at_ns: u64,
) -> std::io::Result<Option<(u64, Bytes)>> {
    tokio::task::spawn_blocking(move || {
        let Some(segments) = store.segments_around(&name, at_ns) else {
            return Ok(None);
        };
        let mut best: Option<(u64, Entry, &Segment)> = None;
        let mut loaded = Vec::new();
        for seg in &segments {
            loaded.push(seg.load_entries()?);
        }
        for (seg, entries) in segments.iter().zip(&loaded) {
            let i = entries.partition_point(|e| e.ts_ns < at_ns);
            for e in [i.checked_sub(1), Some(i)]
                .into_iter()
                .flatten()
                .filter_map(|j| entries.get(j))
            {
                let d = e.ts_ns.abs_diff(at_ns);
                if best.as_ref().is_none_or(|b| d < b.0) {
                    best = Some((d, *e, seg));
                }
            }
        }
        match best {
            Some((d, e, seg)) if d <= NEAREST_WITHIN_NS => {
                let file = File::open(&seg.path)?;
                Ok(Some((e.ts_ns, read_jpeg(&file, &e)?)))
            }
            _ => Ok(None),
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The frames of `name` captured in `[from_ns, to_ns)`, with the segment file each is in.
fn frames_between(
    store: &Store,
    name: &str,
    from_ns: u64,
    to_ns: u64,
) -> std::io::Result<Vec<(Arc<File>, Entry)>> {
    let mut out = Vec::new();
    for seg in store.segments_from(name, from_ns).unwrap_or_default() {
        if seg.first_ns().is_some_and(|f| f >= to_ns) {
            break;
        }
        let entries = seg.load_entries()?;
        let file = Arc::new(File::open(&seg.path)?);
        out.extend(
            entries
                .iter()
                .filter(|e| e.ts_ns >= from_ns && e.ts_ns < to_ns)
                .map(|e| (file.clone(), *e)),
        );
    }
    Ok(out)
}

/// Sends a paced MJPEG stream (parts as the gateway sends them) of `name`
/// from the first frame at or after `from_ns`, at the recorded pace times
/// `speed`, until the recording ends, the client goes or shutdown.
pub async fn stream(
    store: Arc<Store>,
    name: String,
    from_ns: u64,
    speed: f64,
    tx: mpsc::Sender<Bytes>,
    shutdown: CancellationToken,
) {
    if tx
        .send(Bytes::from_static(stream_common::multipart::PREAMBLE))
        .await
        .is_err()
    {
        return;
    }
    let mut cursor = from_ns;
    // (capture time, wall time) of the first frame sent: the pace's origin.
    let mut origin: Option<(u64, Instant)> = None;
    let mut idle_since: Option<Instant> = None;
    loop {
        // The next batch: up to 3 s of recording after the cursor.
        let batch = {
            let store = store.clone();
            let name = name.clone();
            tokio::task::spawn_blocking(move || {
                frames_between(&store, &name, cursor, cursor.saturating_add(3_000_000_000)).map(
                    |frames| {
                        if frames.is_empty() {
                            // Skip a gap: the next recorded frame, whenever it is.
                            let next = store
                                .segments_from(&name, cursor)
                                .unwrap_or_default()
                                .into_iter()
                                .find_map(|s| s.spans.iter().map(|s| s.0).find(|&a| a >= cursor));
                            return (frames, next);
                        }
                        (frames, None)
                    },
                )
            })
            .await
        };
        let (frames, next) = match batch {
            Ok(Ok(b)) => b,
            _ => return,
        };
        if frames.is_empty() {
            match next {
                Some(n) => {
                    cursor = n;
                    // A gap is skipped, not waited out.
                    origin = None;
                    continue;
                }
                None => {
                    // At the end: the segment being written grows every
                    // second, so wait a little for more before ending.
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(2500) {
                        return;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                    continue;
                }
            }
        }
        idle_since = None;
        for (file, e) in frames {
            let (t0, w0) = *origin.get_or_insert((e.ts_ns, Instant::now()));
            let due = w0 + Duration::from_secs_f64((e.ts_ns - t0) as f64 / 1e9 / speed);
            let now = Instant::now();
            if due > now {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
            } else if now - due > Duration::from_secs(1) {
                // A slow client: carry on from here instead of rushing.
                origin = Some((e.ts_ns, now));
            }
            let jpeg = match tokio::task::spawn_blocking(move || read_jpeg(&file, &e)).await {
                Ok(Ok(j)) => j,
                _ => return,
            };
            let (part, _) = stream_common::multipart::build_part(&jpeg, e.ts_ns, true);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tx.send(part) => if r.is_err() { return },
            }
            cursor = e.ts_ns + 1;
        }
    }
}

/// What a clip request found: the frames, and the clip's Duration.
pub struct Clip {
    frames: Vec<(Arc<File>, Entry)>,
    pub duration_ms: f64,
    header: mkv::Header,
}

impl Clip {
    /// The frames of `[from_ns, to_ns)`; `None` when there are none.
    pub async fn find(
        store: Arc<Store>,
        name: String,
        from_ns: u64,
        to_ns: u64,
    ) -> std::io::Result<Option<Clip>> {
        tokio::task::spawn_blocking(move || {
            let frames = frames_between(&store, &name, from_ns, to_ns)?;
            let Some(first) = frames.first() else {
                return Ok(None);
            };
            let (width, height) = store
                .segments_around(&name, first.1.ts_ns)
                .unwrap_or_default()
                .into_iter()
                .find(|s| s.first_ns().is_some_and(|f| f <= first.1.ts_ns))
                .map_or((0, 0), |s| (s.width, s.height));
            let entries: Vec<Entry> = frames.iter().map(|f| f.1).collect();
            Ok(Some(Clip {
                duration_ms: duration_ms(&entries),
                header: mkv::Header {
                    start_ms: first.1.ts_ns / 1_000_000,
                    width,
                    height,
                },
                frames,
            }))
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Sends the clip: header, then clusters of about a second.
    pub async fn send(self, tx: mpsc::Sender<Bytes>) {
        let (head, _) = mkv::header(&self.header, self.duration_ms);
        if tx.send(Bytes::from(head)).await.is_err() {
            return;
        }
        let start_ms = self.header.start_ms;
        let mut rest = self.frames.as_slice();
        while let Some(first) = rest.first() {
            let first_ts = first.1.ts_ns;
            let n = rest
                .iter()
                .take_while(|f| f.1.ts_ns - first_ts < 1_000_000_000)
                .count()
                .max(1);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let chunk = chunk.to_vec();
            let cluster = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                let jpegs = chunk
                    .iter()
                    .map(|(f, e)| read_jpeg(f, e))
                    .collect::<std::io::Result<Vec<Bytes>>>()?;
                let frames: Vec<(u64, &[u8])> = chunk
                    .iter()
                    .zip(&jpegs)
                    .map(|((_, e), j)| ((e.ts_ns / 1_000_000).saturating_sub(start_ms), &j[..]))
                    .collect();
                Ok(mkv::cluster(&frames).0)
            })
            .await;
            match cluster {
                Ok(Ok(c)) => {
                    if tx.send(Bytes::from(c)).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }
}
