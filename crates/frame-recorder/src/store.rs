//! What is on disk, and the one catalog of it every part reads: per stream,
//! its segments in time order (start, end, bytes, recorded spans), the
//! detection events, and where each frame of a segment is (the index).
//!
//! Layout under `--dir`: `<stream>/<start_ms>-<kind>.mkv` (the recording,
//! `kind` is `continuous` or `events`) and, once it is finished,
//! `<stream>/<start_ms>-<kind>.idx` beside it (frame time → byte offset,
//! written to a temporary name and renamed, so it is whole or absent), and
//! `<stream>/events.jsonl` (detections), and the event stage's events in
//! `<stream>/events/` (`history.rs`). A segment without its index is the one that was
//! being written when the recorder stopped: [`Store::open`] repairs it
//! (truncated at its last whole cluster, Duration written, index rebuilt).
//! Finished segments are never written again.
//!
//! Names only ever come from validated stream names (`frame_wire`'s rules:
//! `A-Z a-z 0-9 _ - .`, not `.` or `..`); a request's name is looked up in
//! the catalog, never joined into a path.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::Serialize;

use crate::history::{self, KeepError, Kept, Windows};
use crate::mkv;

/// A gap between frames longer than this splits a recorded span.
pub const GAP_NS: u64 = 2_000_000_000;
const INDEX_MAGIC: &[u8; 8] = b"MJREC01\n";
const ENTRY_BYTES: usize = 20;

/// Whether `name` may name a stream's directory: a valid stream name
/// (`frame_wire`'s rules) that does not start with a dot, so never `.`,
/// `..` or a hidden file. Every name from the bus or a request is checked
/// with this before anything is looked up or created.
pub fn safe_name(name: &str) -> bool {
    frame_wire::validate_stream_name(name).is_ok() && !name.starts_with('.')
}

/// How a camera is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Continuous,
    Events,
    Off,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Continuous => "continuous",
            Mode::Events => "events",
            Mode::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "continuous" => Some(Mode::Continuous),
            "events" => Some(Mode::Events),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }
}

/// Where one frame is: its capture time and its JPEG's bytes in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub ts_ns: u64,
    pub offset: u64,
    pub len: u32,
}

/// One segment as the catalog knows it.
#[derive(Debug, Clone)]
pub struct Segment {
    pub start_ms: u64,
    /// Recorded continuously or around an event.
    pub events: bool,
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    pub bytes: u64,
    /// Recorded spans (capture times, ns), gaps longer than [`GAP_NS`] apart.
    pub spans: Vec<(u64, u64)>,
    /// The frames, while they are in memory: the segment being written (or
    /// one whose index could not be written). Otherwise read from the index.
    pub entries: Option<Arc<RwLock<Vec<Entry>>>>,
    pub in_progress: bool,
}

impl Segment {
    pub fn first_ns(&self) -> Option<u64> {
        self.spans.first().map(|s| s.0)
    }
    pub fn last_ns(&self) -> Option<u64> {
        self.spans.last().map(|s| s.1)
    }
    fn index_path(&self) -> PathBuf {
        self.path.with_extension("idx")
    }

    /// Every frame of the segment, in time order.
    pub fn load_entries(&self) -> std::io::Result<Arc<Vec<Entry>>> {
        if let Some(e) = &self.entries {
            return Ok(Arc::new(
                e.read().unwrap_or_else(|p| p.into_inner()).clone(),
            ));
        }
        read_index(&self.index_path()).map(|(_, e)| Arc::new(e))
    }
}

/// A detection event: when the first box of a run of detections was seen.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Event {
    pub at_ms: u64,
    pub labels: Vec<String>,
}

#[derive(Debug, Default)]
pub struct StreamState {
    pub mode: Option<Mode>,
    pub segments: BTreeMap<u64, Segment>,
    pub events: Vec<Event>,
    /// The event stage's events, by id (`history.rs`).
    pub kept: BTreeMap<String, Kept>,
}

/// How the event history is bounded and what of a recording belongs to an
/// event: from `pre_ns` before its start to `post_ns` after its end.
#[derive(Debug, Clone, Copy)]
pub struct EventSettings {
    pub pre_ns: u64,
    pub post_ns: u64,
    /// Most events kept per stream; the oldest go first.
    pub max_per_stream: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            pre_ns: 5_000_000_000,
            post_ns: 10_000_000_000,
            max_per_stream: 10_000,
        }
    }
}

impl EventSettings {
    /// The capture times (ns) of the recording that belongs to `e`.
    pub fn window(&self, e: &frame_wire::Event) -> (u64, u64) {
        (
            e.start_ts_ns.saturating_sub(self.pre_ns),
            e.end_ts_ns.saturating_add(self.post_ns),
        )
    }
}

/// What `/api/events` asks for: events overlapping `[from_ns, to_ns]`.
#[derive(Debug, Clone)]
pub struct EventQuery<'a> {
    pub stream: Option<&'a str>,
    pub from_ns: u64,
    pub to_ns: u64,
    pub label: Option<&'a str>,
    pub limit: usize,
}

/// One event found: what is kept, and whether any frame of its window is recorded.
#[derive(Debug, Clone)]
pub struct Found {
    pub kept: Kept,
    pub recorded: bool,
    /// Where its snapshot is, when it has one.
    pub snapshot: Option<PathBuf>,
}

/// The whole catalog.
pub struct Store {
    dir: PathBuf,
    streams: Mutex<BTreeMap<String, StreamState>>,
    events: EventSettings,
}

/// Recorded spans (ms) of a window, and the events in it.
pub type Window = (Vec<(u64, u64)>, Vec<Event>);

/// One line of `GET /api/recordings`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub name: String,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub bytes: u64,
    pub segments: usize,
    pub mode: &'static str,
}

/// Adds a frame's time to a list of spans.
pub fn extend_spans(spans: &mut Vec<(u64, u64)>, ts: u64) {
    match spans.last_mut() {
        Some(last) if ts >= last.1 && ts - last.1 <= GAP_NS => last.1 = ts,
        Some(last) if ts < last.1 => {}
        _ => spans.push((ts, ts)),
    }
}

fn segment_name(start_ms: u64, events: bool) -> String {
    format!(
        "{start_ms}-{}.mkv",
        if events { "events" } else { "continuous" }
    )
}

fn parse_segment_name(file: &str) -> Option<(u64, bool)> {
    let stem = file.strip_suffix(".mkv")?;
    let (ms, kind) = stem.split_once('-')?;
    let events = match kind {
        "events" => true,
        "continuous" => false,
        _ => return None,
    };
    Some((ms.parse().ok()?, events))
}

impl Store {
    /// Reads `dir` (made if missing), repairing the segments a stopped
    /// recorder left unfinished.
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        let mut streams = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !safe_name(&name) || !entry.file_type()?.is_dir() {
                continue;
            }
            let mut state = load_stream(&entry.path())?;
            state.kept = history::load(&name, &entry.path());
            streams.insert(name, state);
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            streams: Mutex::new(streams),
            events: EventSettings::default(),
        })
    }

    /// The store with these event settings.
    pub fn with_events(mut self, events: EventSettings) -> Store {
        self.events = events;
        self
    }

    pub fn event_settings(&self) -> EventSettings {
        self.events
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, StreamState>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_mode(&self, name: &str, mode: Mode) {
        self.lock().entry(name.to_string()).or_default().mode = Some(mode);
    }

    pub fn list(&self) -> Vec<Summary> {
        self.lock()
            .iter()
            .map(|(name, s)| Summary {
                name: name.clone(),
                from_ms: s.segments.values().find_map(Segment::first_ns).map(ms),
                to_ms: s.segments.values().rev().find_map(Segment::last_ns).map(ms),
                bytes: s.segments.values().map(|g| g.bytes).sum(),
                segments: s.segments.len(),
                mode: s.mode.map_or("off", Mode::name),
            })
            .collect()
    }

    /// Whether a stream is known (recorded now or before).
    pub fn has(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// Recorded spans (ms) overlapping `[from, to]` (ms), clipped to it,
    /// adjacent segments joined; and the events in it.
    pub fn spans(&self, name: &str, from: u64, to: u64) -> Option<Window> {
        let streams = self.lock();
        let s = streams.get(name)?;
        let mut out: Vec<(u64, u64)> = Vec::new();
        for seg in s.segments.values() {
            for &(a, b) in &seg.spans {
                let (a, b) = (ms(a), ms(b));
                if b < from || a > to {
                    continue;
                }
                let (a, b) = (a.max(from), b.min(to));
                match out.last_mut() {
                    Some(last) if a <= last.1 + GAP_NS / 1_000_000 => last.1 = last.1.max(b),
                    _ => out.push((a, b)),
                }
            }
        }
        let events = s
            .events
            .iter()
            .filter(|e| e.at_ms >= from && e.at_ms <= to)
            .cloned()
            .collect();
        Some((out, events))
    }

    /// The segments of a stream that hold frames at or after `from_ns`, in order.
    pub fn segments_from(&self, name: &str, from_ns: u64) -> Option<Vec<Segment>> {
        let streams = self.lock();
        let s = streams.get(name)?;
        Some(
            s.segments
                .values()
                .filter(|g| g.last_ns().is_some_and(|l| l >= from_ns))
                .cloned()
                .collect(),
        )
    }

    /// The segments nearest to `at_ns`: the one holding it, or those either side.
    pub fn segments_around(&self, name: &str, at_ns: u64) -> Option<Vec<Segment>> {
        let streams = self.lock();
        let s = streams.get(name)?;
        let at_ms = at_ns / 1_000_000;
        let before = s
            .segments
            .range(..=at_ms)
            .next_back()
            .map(|(_, g)| g.clone());
        let after = s.segments.range(at_ms + 1..).next().map(|(_, g)| g.clone());
        Some(before.into_iter().chain(after).collect())
    }

    /// A new segment file for `name`, registered as in progress.
    pub fn begin(
        &self,
        name: &str,
        start_ms: u64,
        events: bool,
        width: u32,
        height: u32,
    ) -> std::io::Result<(File, Segment)> {
        if !safe_name(name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a stream name",
            ));
        }
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let mut start_ms = start_ms;
        let (file, path) = loop {
            let path = dir.join(segment_name(start_ms, events));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => start_ms += 1,
                Err(e) => return Err(e),
            }
        };
        let seg = Segment {
            start_ms,
            events,
            path,
            width,
            height,
            frames: 0,
            bytes: 0,
            spans: Vec::new(),
            entries: Some(Arc::new(RwLock::new(Vec::new()))),
            in_progress: true,
        };
        self.lock()
            .entry(name.to_string())
            .or_default()
            .segments
            .insert(start_ms, seg.clone());
        Ok((file, seg))
    }

    /// Frames of a segment in progress reached the file.
    pub fn appended(&self, name: &str, start_ms: u64, new: &[Entry], bytes: u64) {
        let mut streams = self.lock();
        let Some(seg) = streams
            .get_mut(name)
            .and_then(|s| s.segments.get_mut(&start_ms))
        else {
            return;
        };
        for e in new {
            extend_spans(&mut seg.spans, e.ts_ns);
        }
        seg.frames += new.len() as u64;
        seg.bytes = bytes;
        if let Some(entries) = &seg.entries {
            entries
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(new);
        }
    }

    /// A segment is finished: `indexed` when its index file was written (its
    /// frames then leave memory). One without any frame is removed.
    pub fn finished(&self, name: &str, start_ms: u64, indexed: bool) {
        let mut streams = self.lock();
        let Some(s) = streams.get_mut(name) else {
            return;
        };
        let Some(seg) = s.segments.get_mut(&start_ms) else {
            return;
        };
        seg.in_progress = false;
        if seg.frames == 0 {
            let seg = s.segments.remove(&start_ms);
            drop(streams);
            if let Some(seg) = seg {
                let _ = std::fs::remove_file(&seg.path);
            }
            return;
        }
        if indexed {
            seg.entries = None;
        }
    }

    pub fn add_event(&self, name: &str, event: Event) {
        let path = self.dir.join(name).join("events.jsonl");
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = std::fs::create_dir_all(self.dir.join(name)).and_then(|_| {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .and_then(|mut f| writeln!(f, "{line}"))
            });
        }
        self.lock()
            .entry(name.to_string())
            .or_default()
            .events
            .push(event);
    }

    /// Upserts an event from the bus by id: its files first (snapshot when
    /// the message carries one, then the event), then the catalog, which
    /// then drops the stream's oldest events beyond the bound. Blocking.
    pub fn keep_event(&self, m: &frame_wire::EventMessage) -> Result<(), KeepError> {
        let e = &m.event;
        if !safe_name(&e.stream) {
            return Err(KeepError::BadStream);
        }
        if !history::safe_id(&e.id) {
            return Err(KeepError::BadId);
        }
        let prior = {
            let streams = self.lock();
            if streams
                .iter()
                .any(|(n, s)| n != &e.stream && s.kept.contains_key(&e.id))
            {
                return Err(KeepError::OtherStream);
            }
            streams
                .get(&e.stream)
                .and_then(|s| s.kept.get(&e.id))
                .map(|k| (k.phase, k.snapshot))
        };
        let ended = prior.is_some_and(|(p, _)| p == frame_wire::Phase::End);
        let kept = Kept {
            phase: if ended {
                frame_wire::Phase::End
            } else {
                m.phase
            },
            snapshot: prior.is_some_and(|(_, s)| s) || !m.snapshot.is_empty(),
            event: e.clone(),
        };
        let stream_dir = self.dir.join(&e.stream);
        let (json_path, jpg_path) = history::files(&stream_dir, &e.id);
        std::fs::create_dir_all(stream_dir.join(history::DIR))?;
        if !m.snapshot.is_empty() {
            history::write_atomic(&jpg_path, &m.snapshot)?;
        }
        let json = serde_json::to_vec(&kept).map_err(std::io::Error::other)?;
        history::write_atomic(&json_path, &json)?;
        let evicted: Vec<String> = {
            let mut streams = self.lock();
            let s = streams.entry(e.stream.clone()).or_default();
            s.kept.insert(e.id.clone(), kept);
            let mut evicted = Vec::new();
            while s.kept.len() > self.events.max_per_stream.max(1) {
                let Some(oldest) = s
                    .kept
                    .values()
                    .min_by_key(|k| (k.event.start_ts_ns, k.event.id.clone()))
                    .map(|k| k.event.id.clone())
                else {
                    break;
                };
                s.kept.remove(&oldest);
                evicted.push(oldest);
            }
            evicted
        };
        for id in evicted {
            let (a, b) = history::files(&stream_dir, &id);
            let _ = std::fs::remove_file(a);
            let _ = std::fs::remove_file(b);
        }
        Ok(())
    }

    fn found(&self, name: &str, s: &StreamState, k: &Kept) -> Found {
        let (a, b) = self.events.window(&k.event);
        let b_ms = ms(b);
        // Segments follow each other: the few starting last before the
        // window's end are the only ones that can reach into it.
        let recorded = s
            .segments
            .range(..=b_ms)
            .rev()
            .take(3)
            .any(|(_, g)| g.spans.iter().any(|&(x, y)| y >= a && x <= b));
        Found {
            kept: k.clone(),
            recorded,
            snapshot: k
                .snapshot
                .then(|| history::files(&self.dir.join(name), &k.event.id).1),
        }
    }

    /// Events matching `q`, newest (latest start) first, at most `q.limit`.
    pub fn find_events(&self, q: &EventQuery<'_>) -> Vec<Found> {
        let streams = self.lock();
        let mut hits: Vec<(&String, &StreamState, &Kept)> = streams
            .iter()
            .filter(|(n, _)| q.stream.is_none_or(|want| want == n.as_str()))
            .flat_map(|(n, s)| s.kept.values().map(move |k| (n, s, k)))
            .filter(|(_, _, k)| {
                k.event.end_ts_ns >= q.from_ns
                    && k.event.start_ts_ns <= q.to_ns
                    && q.label.is_none_or(|l| l == k.event.label)
            })
            .collect();
        hits.sort_by(|x, y| {
            (y.2.event.start_ts_ns, &y.2.event.id).cmp(&(x.2.event.start_ts_ns, &x.2.event.id))
        });
        hits.into_iter()
            .take(q.limit)
            .map(|(n, s, k)| self.found(n, s, k))
            .collect()
    }

    /// One event by id.
    pub fn find_event(&self, id: &str) -> Option<Found> {
        let streams = self.lock();
        streams
            .iter()
            .find_map(|(n, s)| s.kept.get(id).map(|k| self.found(n, s, k)))
    }

    /// Takes the events retention removes out of the catalog, returning
    /// their files: those that ended more than `keep_events_ms` ago.
    pub fn expire_events(&self, now_ms: u64, keep_events_ms: u64) -> Vec<PathBuf> {
        let mut streams = self.lock();
        let mut out = Vec::new();
        for (name, s) in streams.iter_mut() {
            let old: Vec<String> = s
                .kept
                .values()
                .filter(|k| ms(k.event.end_ts_ns).saturating_add(keep_events_ms) < now_ms)
                .map(|k| k.event.id.clone())
                .collect();
            for id in old {
                s.kept.remove(&id);
                let (a, b) = history::files(&self.dir.join(name), &id);
                out.extend([a, b]);
            }
        }
        out
    }

    /// Total bytes of every segment.
    pub fn total_bytes(&self) -> u64 {
        self.lock()
            .values()
            .flat_map(|s| s.segments.values())
            .map(|g| g.bytes)
            .sum()
    }

    /// Per stream: (name, oldest frame in ms, bytes).
    pub fn per_stream(&self) -> Vec<(String, Option<u64>, u64)> {
        self.lock()
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    s.segments.values().find_map(Segment::first_ns).map(ms),
                    s.segments.values().map(|g| g.bytes).sum(),
                )
            })
            .collect()
    }

    /// Takes the segments retention removes out of the catalog (the caller
    /// deletes their files): continuous ones older than `keep_ms`, event
    /// ones older than `keep_events_ms`, then the oldest finished ones
    /// (continuous before events) while the total exceeds `max_bytes`.
    /// Never a segment in progress.
    pub fn expire(
        &self,
        now_ms: u64,
        keep_ms: u64,
        keep_events_ms: u64,
        max_bytes: Option<u64>,
    ) -> Vec<(String, Segment, &'static str)> {
        let mut streams = self.lock();
        let mut out = Vec::new();
        // A segment reaching into a kept event's window counts as an event recording.
        let windows: BTreeMap<String, Windows> = streams
            .iter()
            .map(|(n, s)| {
                let w = s.kept.values().map(|k| self.events.window(&k.event));
                (n.clone(), Windows::new(w.collect()))
            })
            .collect();
        let is_event = |name: &str, g: &Segment| {
            g.events
                || windows.get(name).is_some_and(|w| {
                    g.spans
                        .first()
                        .zip(g.spans.last())
                        .is_some_and(|(a, b)| w.overlaps(a.0, b.1))
                })
        };
        for (name, s) in streams.iter_mut() {
            let old: Vec<u64> = s
                .segments
                .values()
                .filter(|g| {
                    let keep = if is_event(name, g) {
                        keep_events_ms
                    } else {
                        keep_ms
                    };
                    !g.in_progress && g.last_ns().map_or(0, ms).saturating_add(keep) < now_ms
                })
                .map(|g| g.start_ms)
                .collect();
            for k in old {
                if let Some(g) = s.segments.remove(&k) {
                    out.push((name.clone(), g, "age"));
                }
            }
            let oldest_kept = s.segments.values().find_map(Segment::first_ns).map(ms);
            s.events.retain(|e| {
                e.at_ms.saturating_add(keep_events_ms) >= now_ms
                    || oldest_kept.is_some_and(|o| e.at_ms >= o)
            });
        }
        if let Some(max) = max_bytes {
            let mut total: u64 = streams
                .values()
                .flat_map(|s| s.segments.values())
                .map(|g| g.bytes)
                .sum();
            while total > max {
                // Oldest finished continuous segment of any stream, else the oldest event one.
                let pick = [false, true].into_iter().find_map(|events| {
                    streams
                        .iter()
                        .flat_map(|(n, s)| s.segments.values().map(move |g| (n, g)))
                        .filter(|(n, g)| !g.in_progress && is_event(n, g) == events)
                        .min_by_key(|(_, g)| g.start_ms)
                        .map(|(n, g)| (n.clone(), g.start_ms))
                });
                let Some((name, start)) = pick else { break };
                let Some(g) = streams
                    .get_mut(&name)
                    .and_then(|s| s.segments.remove(&start))
                else {
                    break;
                };
                total = total.saturating_sub(g.bytes);
                out.push((name, g, "bytes"));
            }
        }
        out
    }
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

fn load_stream(dir: &Path) -> std::io::Result<StreamState> {
    let mut state = StreamState::default();
    let mut files: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(n) = entry?.file_name().to_str() {
            files.push(n.to_string());
        }
    }
    for file in &files {
        let path = dir.join(file);
        if file.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if let Some(stem) = file.strip_suffix(".idx")
            && !files.iter().any(|f| f.strip_suffix(".mkv") == Some(stem))
        {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some((start_ms, events)) = parse_segment_name(file) else {
            continue;
        };
        let index = path.with_extension("idx");
        let seg = if index.exists() {
            match read_index(&index) {
                Ok((meta, entries)) => Some(segment_from(start_ms, events, &path, meta, &entries)),
                Err(e) => {
                    tracing::warn!(file = %index.display(), error = %e, "unreadable index; rebuilding it");
                    let _ = std::fs::remove_file(&index);
                    repair(&path, start_ms, events)?
                }
            }
        } else {
            repair(&path, start_ms, events)?
        };
        if let Some(seg) = seg {
            state.segments.insert(start_ms, seg);
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("events.jsonl")) {
        state.events = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
    }
    Ok(state)
}

/// What an index file's head says.
#[derive(Debug, Clone, Copy)]
pub struct IndexMeta {
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

fn segment_from(
    start_ms: u64,
    events: bool,
    path: &Path,
    meta: IndexMeta,
    entries: &[Entry],
) -> Segment {
    let mut spans = Vec::new();
    for e in entries {
        extend_spans(&mut spans, e.ts_ns);
    }
    Segment {
        start_ms,
        events,
        path: path.to_path_buf(),
        width: meta.width,
        height: meta.height,
        frames: entries.len() as u64,
        bytes: meta.bytes,
        spans,
        entries: None,
        in_progress: false,
    }
}

/// Makes an unfinished segment whole: cut after its last whole cluster,
/// Duration written, index built. `None` (file removed) when it holds no frame.
pub fn repair(path: &Path, start_ms: u64, events: bool) -> std::io::Result<Option<Segment>> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let scan = match mkv::scan(&file) {
        Ok(s) => s,
        Err(mkv::ScanError::NotMatroska) => {
            tracing::warn!(file = %path.display(), "not a recording; removed");
            drop(file);
            std::fs::remove_file(path)?;
            return Ok(None);
        }
        Err(mkv::ScanError::Io(e)) => return Err(e),
    };
    let Some(header) = scan.header.filter(|_| !scan.blocks.is_empty()) else {
        drop(file);
        std::fs::remove_file(path)?;
        return Ok(None);
    };
    let old_len = file.metadata()?.len();
    if old_len != scan.good_len {
        file.set_len(scan.good_len)?;
    }
    let entries: Vec<Entry> = scan
        .blocks
        .iter()
        .map(|b| Entry {
            ts_ns: (header.start_ms + b.ms) * 1_000_000,
            offset: b.offset,
            len: b.len,
        })
        .collect();
    if let Some(at) = scan.duration_at {
        mkv::patch_duration(&file, at, duration_ms(&entries))?;
    }
    file.sync_data()?;
    let meta = IndexMeta {
        width: header.width,
        height: header.height,
        bytes: scan.good_len,
    };
    write_index(&path.with_extension("idx"), meta, &entries)?;
    tracing::info!(
        file = %path.display(),
        frames = entries.len(),
        cut_bytes = old_len - scan.good_len,
        "repaired the segment a stopped recorder left unfinished"
    );
    Ok(Some(segment_from(start_ms, events, path, meta, &entries)))
}

/// A recording's length: first to last frame plus one frame interval (the
/// median gap), in ms, as Matroska's Duration and players count it.
pub fn duration_ms(entries: &[Entry]) -> f64 {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return 0.0;
    };
    let mut gaps: Vec<u64> = entries
        .windows(2)
        .map(|w| w[1].ts_ns.saturating_sub(w[0].ts_ns))
        .collect();
    gaps.sort_unstable();
    let interval = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    (last.ts_ns - first.ts_ns + interval) as f64 / 1e6
}

/// Writes an index: to a temporary name first, then renamed into place.
pub fn write_index(path: &Path, meta: IndexMeta, entries: &[Entry]) -> std::io::Result<()> {
    let tmp = path.with_extension("idx.tmp");
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        w.write_all(INDEX_MAGIC)?;
        w.write_all(&meta.width.to_le_bytes())?;
        w.write_all(&meta.height.to_le_bytes())?;
        w.write_all(&meta.bytes.to_le_bytes())?;
        w.write_all(&(entries.len() as u64).to_le_bytes())?;
        for e in entries {
            w.write_all(&e.ts_ns.to_le_bytes())?;
            w.write_all(&e.offset.to_le_bytes())?;
            w.write_all(&e.len.to_le_bytes())?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn read_index(path: &Path) -> std::io::Result<(IndexMeta, Vec<Entry>)> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed index");
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    if data.len() < 32 || &data[..8] != INDEX_MAGIC {
        return Err(bad());
    }
    let u32_at = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().unwrap_or([0; 8]));
    let meta = IndexMeta {
        width: u32_at(8),
        height: u32_at(12),
        bytes: u64_at(16),
    };
    let n = u64_at(24) as usize;
    if data.len() != 32 + n.checked_mul(ENTRY_BYTES).ok_or_else(bad)? {
        return Err(bad());
    }
    let entries = (0..n)
        .map(|i| {
            let at = 32 + i * ENTRY_BYTES;
            Entry {
                ts_ns: u64_at(at),
                offset: u64_at(at + 8),
                len: u32_at(at + 16),
            }
        })
        .collect();
    Ok((meta, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_safe() {
        for ok in ["cam0", "lobby-1", "a.b", "x_y"] {
            assert!(safe_name(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", ".hidden", "a/b", "../etc", "%2e%2e", "a\0b", "/abs", "a\u{0}",
        ] {
            assert!(!safe_name(bad), "{bad}");
        }
    }

    #[test]
    fn spans_split_at_gaps() {
        let mut s = Vec::new();
        for t in [
            0,
            1_000_000_000,
            2_500_000_000,
            10_000_000_000,
            10_100_000_000,
        ] {
            extend_spans(&mut s, t);
        }
        assert_eq!(s, [(0, 2_500_000_000), (10_000_000_000, 10_100_000_000)]);
    }

    #[test]
    fn segment_names_round_trip_and_nothing_else_parses() {
        assert_eq!(parse_segment_name("17-continuous.mkv"), Some((17, false)));
        assert_eq!(parse_segment_name("17-events.mkv"), Some((17, true)));
        assert_eq!(parse_segment_name(&segment_name(5, true)), Some((5, true)));
        for bad in [
            "17-continuous.idx",
            "x-events.mkv",
            "17.mkv",
            "17-other.mkv",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    fn message(
        id: &str,
        stream: &str,
        start_s: u64,
        end_s: u64,
        snapshot: &[u8],
    ) -> frame_wire::EventMessage {
        frame_wire::EventMessage {
            phase: frame_wire::Phase::Update,
            event: frame_wire::Event {
                id: id.into(),
                stream: stream.into(),
                label: "person".into(),
                zones: vec![],
                start_ts_ns: start_s * 1_000_000_000,
                end_ts_ns: end_s * 1_000_000_000,
                best_score: 0.9,
                x: 0.1,
                y: 0.1,
                w: 0.5,
                h: 0.5,
                snapshot_ts_ns: start_s * 1_000_000_000,
            },
            snapshot: snapshot.to_vec(),
        }
    }

    /// A finished continuous segment of `name` with a frame every 100 ms
    /// from `from_s` to `to_s` (seconds).
    fn segment(store: &Store, name: &str, from_s: u64, to_s: u64) {
        let (_file, seg) = store
            .begin(name, from_s * 1000, false, 8, 8)
            .expect("begin");
        let entries: Vec<Entry> = (from_s * 10..=to_s * 10)
            .map(|t| Entry {
                ts_ns: t * 100_000_000,
                offset: 0,
                len: 1,
            })
            .collect();
        store.appended(name, seg.start_ms, &entries, 100);
        store.finished(name, seg.start_ms, false);
    }

    #[test]
    fn events_are_kept_bounded_reloaded_and_expired_and_keep_their_recordings() {
        let dir = std::env::temp_dir().join(format!(
            "store-events-{}-{}",
            std::process::id(),
            stream_common::unix_now_ns()
        ));
        let settings = EventSettings {
            pre_ns: 1_000_000_000,
            post_ns: 1_000_000_000,
            max_per_stream: 2,
        };
        let store = Store::open(&dir).expect("open").with_events(settings);
        store
            .keep_event(&message(
                "cam0-1-0",
                "cam0",
                100,
                102,
                b"\xff\xd8jpeg-a\xff\xd9",
            ))
            .expect("kept");
        // An update without a snapshot keeps the one before; the end sticks.
        let mut end = message("cam0-1-0", "cam0", 100, 103, b"");
        end.phase = frame_wire::Phase::End;
        store.keep_event(&end).expect("end");
        let mut late = message("cam0-1-0", "cam0", 100, 103, b"");
        late.phase = frame_wire::Phase::Update;
        store.keep_event(&late).expect("update after the end");
        let found = store.find_event("cam0-1-0").expect("found");
        assert_eq!(found.kept.phase, frame_wire::Phase::End);
        assert_eq!(found.kept.event.end_ts_ns, 103_000_000_000);
        let snap = found.snapshot.expect("a snapshot");
        assert_eq!(
            std::fs::read(&snap).expect("jpg"),
            b"\xff\xd8jpeg-a\xff\xd9"
        );
        assert!(!found.recorded);

        // Refused: ids that could reach outside, and another stream's id.
        for bad in ["../x", ".x", "a/b", ""] {
            assert!(matches!(
                store.keep_event(&message(bad, "cam0", 1, 2, b"")),
                Err(KeepError::BadId)
            ));
        }
        assert!(matches!(
            store.keep_event(&message("cam0-1-0", "cam1", 1, 2, b"")),
            Err(KeepError::OtherStream)
        ));

        // Continuous segments: one reaching into the event's window
        // (99..104 s), one far from it.
        segment(&store, "cam0", 95, 99);
        segment(&store, "cam0", 200, 205);
        assert!(store.find_event("cam0-1-0").expect("found").recorded);
        // Past --keep, before --keep-events: only the far segment goes.
        let now_ms = 300_000;
        let gone = store.expire(now_ms, 10_000, 1_000_000, None);
        assert_eq!(
            gone.iter().map(|(_, g, _)| g.start_ms).collect::<Vec<_>>(),
            [200_000]
        );

        // The bound: a third event pushes out the oldest, files and all.
        store
            .keep_event(&message("cam0-2-0", "cam0", 110, 111, b"\xff\xd8b\xff\xd9"))
            .expect("kept");
        store
            .keep_event(&message("cam0-3-0", "cam0", 120, 121, b""))
            .expect("kept");
        assert!(store.find_event("cam0-1-0").is_none());
        assert!(!snap.exists() && !snap.with_extension("json").exists());
        let all = store.find_events(&EventQuery {
            stream: Some("cam0"),
            from_ns: 0,
            to_ns: u64::MAX,
            label: Some("person"),
            limit: 10,
        });
        let ids: Vec<&str> = all.iter().map(|f| f.kept.event.id.as_str()).collect();
        assert_eq!(ids, ["cam0-3-0", "cam0-2-0"], "newest first");

        // Reloaded from disk, leftovers removed.
        let events_dir = dir.join("cam0").join(history::DIR);
        std::fs::write(events_dir.join("x.json.tmp"), b"half").expect("tmp");
        std::fs::write(events_dir.join("orphan.jpg"), b"x").expect("orphan");
        drop(store);
        let store = Store::open(&dir).expect("reopen").with_events(settings);
        let again = store.find_event("cam0-2-0").expect("reloaded");
        assert!(again.snapshot.is_some());
        assert!(
            store
                .find_event("cam0-3-0")
                .expect("reloaded")
                .snapshot
                .is_none()
        );
        assert!(!events_dir.join("x.json.tmp").exists());
        assert!(!events_dir.join("orphan.jpg").exists());

        // --keep-events: events that ended long enough ago go, with their files.
        let files = store.expire_events(121_000 + 3_000, 4_000);
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(store.find_event("cam0-2-0").is_none());
        assert!(store.find_event("cam0-3-0").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn index_round_trip() {
        let path = std::env::temp_dir().join(format!("idx-test-{}.idx", std::process::id()));
        let entries = [
            Entry {
                ts_ns: 1,
                offset: 100,
                len: 5,
            },
            Entry {
                ts_ns: 66_000_001,
                offset: 200,
                len: 7,
            },
        ];
        let meta = IndexMeta {
            width: 320,
            height: 240,
            bytes: 999,
        };
        write_index(&path, meta, &entries).expect("write");
        let (m, e) = read_index(&path).expect("read");
        assert_eq!((m.width, m.height, m.bytes), (320, 240, 999));
        assert_eq!(e, entries);
        assert!((duration_ms(&e) - 132.0).abs() < 0.01);
        let _ = std::fs::remove_file(path);
    }
}
