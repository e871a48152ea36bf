//! Following objects across one stream's detections messages, so a person
//! walking through is one event rather than one per analysed frame.
//!
//! Each box is matched to the track of the same label whose last box it
//! overlaps most (intersection over union, best scores first); a box that
//! matches none starts a new track. A track becomes an event once it has
//! been seen for `min_seconds` (and, if the camera requires zones, stood in
//! one), reports updates while it lasts (a higher score, a new zone), and
//! ends when it has not been seen for `end_after`. Times are the frames'
//! capture times, so a late or bursty detector does not stretch events.
//! Pure logic, no I/O: the tests feed it recorded detections.

use frame_wire::{Event, Phase};

use stream_common::rules::CameraRules;
use stream_common::rules::Rect;

/// Most tracks one stream may hold; boxes beyond it are ignored (a detector
/// reports at most 256 boxes per frame, most of them never become events).
pub const MAX_TRACKS: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Seen this long (first to last sighting) before it is an event.
    pub min_ns: u64,
    /// Unseen this long and it is over.
    pub end_after_ns: u64,
    /// Least overlap for a box to continue a track.
    pub min_iou: f32,
    /// Least time between two updates for a better score alone (a new zone
    /// is reported at once).
    pub update_every_ns: u64,
}

/// One box as the tracker sees it.
#[derive(Debug, Clone)]
pub struct Sighting {
    pub label: String,
    pub score: f32,
    pub rect: Rect,
}

/// What happened to an event, for the stage to publish.
#[derive(Debug, Clone)]
pub struct Change {
    pub phase: Phase,
    /// The track's key, stable for its life; the stage keys snapshots by it.
    pub key: u64,
    /// Capture time of the frame with the best score: the snapshot wanted.
    pub best_frame_ts_ns: u64,
    /// The event, with `snapshot_ts_ns` left for the stage to fill in.
    pub event: Event,
}

#[derive(Debug)]
struct Track {
    key: u64,
    /// Set once it is an event.
    id: Option<String>,
    label: String,
    last_rect: Rect,
    first_ts: u64,
    last_ts: u64,
    best_score: f32,
    best_rect: Rect,
    best_ts: u64,
    zones: Vec<String>,
    /// How many of `zones` were in the last report.
    reported_zones: usize,
    last_report_ts: u64,
    /// A better score not yet reported.
    improved: bool,
}

/// One stream's tracks.
#[derive(Debug)]
pub struct Tracker {
    stream: String,
    settings: Settings,
    tracks: Vec<Track>,
    next_key: u64,
    events_started: u64,
    /// Newest capture time seen, so a sweep can tell how long it was quiet.
    newest_ts: u64,
}

impl Tracker {
    pub fn new(stream: &str, settings: Settings) -> Tracker {
        Tracker {
            stream: stream.to_string(),
            settings,
            tracks: Vec::new(),
            next_key: 0,
            events_started: 0,
            newest_ts: 0,
        }
    }

    /// True while any object is followed (the stage then keeps frames).
    pub fn is_following(&self) -> bool {
        !self.tracks.is_empty()
    }

    /// Running events per label (for the count sensors).
    pub fn active(&self, label: &str) -> usize {
        self.tracks
            .iter()
            .filter(|t| t.id.is_some() && t.label == label)
            .count()
    }

    /// The newest capture time seen.
    pub fn newest_ts(&self) -> u64 {
        self.newest_ts
    }

    /// Takes one analysed frame's boxes (captured at `ts`), returns what
    /// started, changed or ended.
    pub fn observe(&mut self, ts: u64, boxes: &[Sighting], rules: &CameraRules) -> Vec<Change> {
        if ts < self.newest_ts {
            // An older frame after a newer one (a detector restarted, a
            // producer's clock stepped back): ignored rather than untangled.
            return Vec::new();
        }
        self.newest_ts = ts;
        let mut order: Vec<&Sighting> = boxes
            .iter()
            .filter(|b| rules.admits(&b.label, b.score, &b.rect))
            .collect();
        order.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut matched = vec![false; self.tracks.len()];
        for b in order {
            let best = self
                .tracks
                .iter()
                .enumerate()
                .filter(|(i, t)| !matched[*i] && t.label == b.label)
                .map(|(i, t)| (i, t.last_rect.iou(&b.rect)))
                .filter(|(_, iou)| *iou >= self.settings.min_iou)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let index = match best {
                Some((i, _)) => i,
                None if self.tracks.len() < MAX_TRACKS => {
                    self.tracks.push(Track {
                        key: self.next_key,
                        id: None,
                        label: b.label.clone(),
                        last_rect: b.rect,
                        first_ts: ts,
                        last_ts: ts,
                        best_score: 0.0,
                        best_rect: b.rect,
                        best_ts: ts,
                        zones: Vec::new(),
                        reported_zones: 0,
                        last_report_ts: ts,
                        improved: false,
                    });
                    self.next_key += 1;
                    matched.push(false);
                    self.tracks.len() - 1
                }
                None => continue,
            };
            matched[index] = true;
            let t = &mut self.tracks[index];
            t.last_rect = b.rect;
            t.last_ts = ts;
            if b.score > t.best_score {
                t.best_score = b.score;
                t.best_rect = b.rect;
                t.best_ts = ts;
                t.improved = true;
            }
            for z in rules.zones_of(&b.rect) {
                if !t.zones.iter().any(|have| have == z)
                    && t.zones.len() < frame_wire::event::MAX_ZONES
                {
                    t.zones.push(z.to_string());
                }
            }
        }

        let mut changes = Vec::new();
        for i in 0..self.tracks.len() {
            let t = &self.tracks[i];
            if t.last_ts != ts {
                continue;
            }
            let phase = if t.id.is_none() {
                let long_enough = t.last_ts - t.first_ts >= self.settings.min_ns;
                let in_required = rules.required_zones.is_empty()
                    || t.zones.iter().any(|z| rules.required_zones.contains(z));
                if !(long_enough && in_required) {
                    continue;
                }
                self.events_started += 1;
                let id = format!(
                    "{}-{}-{}",
                    self.stream,
                    t.first_ts / 1_000_000,
                    self.events_started
                );
                self.tracks[i].id = Some(id);
                Phase::Start
            } else {
                let zones_new = t.zones.len() > t.reported_zones;
                let due = ts.saturating_sub(t.last_report_ts) >= self.settings.update_every_ns;
                if !(zones_new || t.improved && due) {
                    continue;
                }
                Phase::Update
            };
            let t = &mut self.tracks[i];
            t.improved = false;
            t.reported_zones = t.zones.len();
            t.last_report_ts = ts;
            changes.push(self.change(i, phase));
        }
        changes.extend(self.expire(ts));
        changes
    }

    /// Ends the tracks unseen for `end_after` as of capture time `now_ts`.
    pub fn expire(&mut self, now_ts: u64) -> Vec<Change> {
        let end_after = self.settings.end_after_ns;
        let mut changes = Vec::new();
        let mut i = 0;
        while i < self.tracks.len() {
            if now_ts.saturating_sub(self.tracks[i].last_ts) >= end_after {
                if self.tracks[i].id.is_some() {
                    changes.push(self.change(i, Phase::End));
                }
                self.tracks.remove(i);
            } else {
                i += 1;
            }
        }
        changes
    }

    /// Ends everything (shutdown): each running event gets its end.
    pub fn finish(&mut self) -> Vec<Change> {
        self.expire(u64::MAX)
    }

    fn change(&self, i: usize, phase: Phase) -> Change {
        let t = &self.tracks[i];
        Change {
            phase,
            key: t.key,
            best_frame_ts_ns: t.best_ts,
            event: Event {
                id: t.id.clone().unwrap_or_default(),
                stream: self.stream.clone(),
                label: t.label.clone(),
                zones: t.zones.clone(),
                start_ts_ns: t.first_ts,
                end_ts_ns: t.last_ts,
                best_score: t.best_score,
                x: t.best_rect.x,
                y: t.best_rect.y,
                w: t.best_rect.w,
                h: t.best_rect.h,
                snapshot_ts_ns: 0,
            },
        }
    }
}

#[cfg(test)]
#[path = "track/tests.rs"]
mod tests;
