//! The event history: what the event stage said about each event (`e/NAME/`
//! messages), kept per stream so `/api/events` can list it, show its
//! snapshot and cut its clip after the stage, the bus or the recorder
//! restarted.
//!
//! On disk, beside the stream's recordings: `DIR/NAME/events/ID.json` (the
//! last state of the event, [`Kept`]) and `DIR/NAME/events/ID.jpg` (its
//! latest snapshot, the stage's JPEG byte for byte). Each is written to
//! `….tmp`, synced and renamed, so a file is whole or absent; leftovers are
//! removed at start. An id touches a path only once [`safe_id`] passed it.
//!
//! Writing is done by one thread of its own fed through a bounded queue
//! (`keeper.rs`), so a slow disk costs event messages (counted), never the
//! bus or a camera's frames.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use frame_wire::Phase;
use serde::{Deserialize, Serialize};

/// The directory of a stream's events, under the stream's own.
pub const DIR: &str = "events";

/// Whether an event id may name files: 1 to 128 of `A-Z a-z 0-9 _ - .`,
/// not starting with a dot (the stage's ids are `<stream>-<ms>-<n>`).
pub fn safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= frame_wire::event::MAX_EVENT_ID
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// One event as the history keeps it (and as `ID.json` holds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// The last phase heard: `End` once it ended (an end is never undone).
    pub phase: Phase,
    /// Whether `ID.jpg` holds its snapshot.
    pub snapshot: bool,
    pub event: frame_wire::Event,
}

/// Paths of an event's two files.
pub fn files(stream_dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    let d = stream_dir.join(DIR);
    (d.join(format!("{id}.json")), d.join(format!("{id}.jpg")))
}

/// Writes `bytes` to `path` whole or not at all: a temporary name, synced, renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a stream's events (`stream_dir/events`), dropping leftovers:
/// temporary files, snapshots without their event, files that are not a
/// valid event of this stream under its own id.
pub fn load(stream: &str, stream_dir: &Path) -> BTreeMap<String, Kept> {
    let mut out = BTreeMap::new();
    let dir = stream_dir.join(DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    let names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    for name in &names {
        let path = dir.join(name);
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        let kept = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Kept>(&b).ok())
            .filter(|k| safe_id(id) && k.event.id == id && k.event.stream == stream);
        match kept {
            Some(mut k) => {
                k.snapshot = k.snapshot && dir.join(format!("{id}.jpg")).is_file();
                out.insert(id.to_string(), k);
            }
            None => {
                tracing::warn!(file = %path.display(), "not an event of this stream; ignored");
            }
        }
    }
    for name in &names {
        if let Some(id) = name.strip_suffix(".jpg")
            && !out.contains_key(id)
        {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    out
}

/// Time windows (ns), answering "does `[a, b]` overlap any of them?" in
/// O(log n): sorted by start, with the running maximum of the ends.
#[derive(Debug, Default, Clone)]
pub struct Windows {
    starts: Vec<u64>,
    max_end: Vec<u64>,
}

impl Windows {
    pub fn new(mut w: Vec<(u64, u64)>) -> Windows {
        w.sort_unstable();
        let mut max = 0;
        let max_end = w
            .iter()
            .map(|&(_, e)| {
                max = max.max(e);
                max
            })
            .collect();
        Windows {
            starts: w.into_iter().map(|(s, _)| s).collect(),
            max_end,
        }
    }

    pub fn overlaps(&self, a: u64, b: u64) -> bool {
        let n = self.starts.partition_point(|&s| s <= b);
        n > 0 && self.max_end[n - 1] >= a
    }
}

/// Why an event message was not kept.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    #[error("event id is not 1-128 of A-Z a-z 0-9 _ - . (not starting with a dot)")]
    BadId,
    #[error("not a stream name")]
    BadStream,
    #[error("the id is already another stream's event")]
    OtherStream,
    #[error("writing the event: {0}")]
    Io(#[from] std::io::Error),
}

impl KeepError {
    /// The `result` label of `recorder_event_messages_total`.
    pub fn result(&self) -> &'static str {
        match self {
            KeepError::Io(_) => "write_error",
            _ => "refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_safe() {
        for ok in ["cam0-1700000000000-0", "a.b_c-1"] {
            assert!(safe_id(ok), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "", ".", "..", ".x", "a/b", "../x", "a b", "a%2f", "a\0", "é", &long,
        ] {
            assert!(!safe_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn windows_overlap() {
        let w = Windows::new(vec![(10, 20), (0, 100), (200, 210)]);
        assert!(w.overlaps(50, 60));
        assert!(w.overlaps(205, 300));
        assert!(w.overlaps(100, 150));
        assert!(!w.overlaps(101, 199));
        assert!(!w.overlaps(211, 400));
        assert!(!Windows::default().overlaps(0, u64::MAX));
    }
}
