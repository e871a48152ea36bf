//! The `auto` rule (docs/renditions.md, "auto"): when a viewer that asked
//! for `auto` moves down one rendition because its link cannot take the one
//! it has, and when it moves back up. Pure bookkeeping on what its writer
//! already sees (a frame went to it, or passed it by while its socket was
//! still full), no clock of its own and no I/O, so it is tested here alone;
//! the writer (`serve/writer.rs`) feeds it and carries out the moves.
//!
//! - **Down** (`skipping`): over a window of [`Rule::window`] holding at
//!   least [`Rule::min_frames`] of the source's frames, more than
//!   [`Rule::skip_ratio`] of them passed the viewer by (its socket still
//!   held an older part). The window restarts after any move and only once
//!   the viewer has taken its first part of the new rendition, so the
//!   backlog of the bigger picture never counts against the smaller one
//!   (or two windows after the move when it takes none).
//! - **Up** (`headroom`): for [`Rule::calm`] it took every frame and its
//!   socket never filled (every part went in whole at once): the link has
//!   room it does not use. Only what fills the socket tells a link's rate,
//!   so going up is a probe: when it fails (a move down within
//!   [`Rule::probe`] of moving up) that same move up waits
//!   [`Rule::calm_after_failure`] instead, for [`Rule::failure_memory`].
//!
//! A viewer whose socket fills now and then but who loses no more than the
//! skip ratio stays where it is: its link carries about that rendition.

use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts, Registry};

/// A rendition a viewer can be on: `None` = the full picture, `Some(w)` =
/// the rendition `w` pixels wide.
pub type Level = Option<u32>;

/// The thresholds of the rule (see the module comment).
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub window: Duration,
    pub min_frames: u32,
    pub skip_ratio: f64,
    pub calm: Duration,
    pub probe: Duration,
    pub calm_after_failure: Duration,
    pub failure_memory: Duration,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            window: Duration::from_secs(2),
            min_frames: 8,
            skip_ratio: 0.2,
            calm: Duration::from_secs(3),
            probe: Duration::from_secs(10),
            calm_after_failure: Duration::from_secs(8),
            failure_memory: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Down,
    Up,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It skipped more than the skip ratio of the source's frames.
    Skipping,
    /// It kept up without ever filling its socket.
    Headroom,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Direction::Down => "down",
            Direction::Up => "up",
        }
    }
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Skipping => "skipping",
            Reason::Headroom => "headroom",
        }
    }
}

/// A move the rule decided: to `to`, which way and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub to: Level,
    pub direction: Direction,
    pub reason: Reason,
}

/// The levels an `auto` viewer moves between, smallest first: the
/// renditions (`widths`, ascending) and the full picture, capped at the
/// level `max` asks for (the smallest at least `max` wide) when given.
pub fn ladder(widths: &[u32], max: Option<u32>) -> Vec<Level> {
    let mut levels: Vec<Level> = widths.iter().copied().map(Some).collect();
    levels.push(None);
    if let Some(max) = max
        && let Some(top) = levels.iter().position(|l| l.is_none_or(|w| w >= max))
    {
        levels.truncate(top + 1);
    }
    levels
}

/// One `auto` viewer's state under the rule.
#[derive(Debug, Clone)]
pub struct Adapt {
    rule: Rule,
    /// Start of the current window; `None` until the viewer took its
    /// first part since it joined or moved.
    window_start: Option<Instant>,
    /// When it joined or last moved.
    moved_at: Instant,
    frames: u32,
    skipped: u32,
    /// Last time it skipped a frame or its socket filled (or it moved).
    last_trouble: Instant,
    /// The last move up: when, and from which level.
    last_up: Option<(Instant, Level)>,
    /// A move up that failed: to which level, and when.
    failed: Option<(Level, Instant)>,
}

impl Adapt {
    pub fn new(rule: Rule, now: Instant) -> Self {
        Adapt {
            rule,
            window_start: None,
            moved_at: now,
            frames: 0,
            skipped: 0,
            last_trouble: now,
            last_up: None,
            failed: None,
        }
    }

    /// A frame of the source passed: the viewer took it (`skipped` false)
    /// or its socket was still full (`skipped` true).
    pub fn frame(&mut self, now: Instant, skipped: bool) {
        let Some(_) = self.window_start else {
            // Counting starts with its first part, or after two windows
            // without one (a socket that never drains moves down too).
            if !skipped || now.saturating_duration_since(self.moved_at) >= 2 * self.rule.window {
                self.window_start = Some(now);
                self.last_trouble = now;
            }
            return;
        };
        self.frames += 1;
        if skipped {
            self.skipped += 1;
            self.last_trouble = now;
        }
    }

    /// Its socket filled: a part did not go in whole.
    pub fn filled(&mut self, now: Instant) {
        self.last_trouble = now;
    }

    /// The move to make now, if any, for a viewer on `current` among
    /// `levels` (from [`ladder`]); once returned, it counts as made.
    pub fn decide(&mut self, now: Instant, levels: &[Level], current: Level) -> Option<Switch> {
        let at = levels.iter().position(|l| *l == current)?;
        let start = self.window_start?;
        if now.saturating_duration_since(start) >= self.rule.window {
            let (frames, skipped) = (self.frames, self.skipped);
            self.frames = 0;
            self.skipped = 0;
            self.window_start = Some(now);
            if at > 0
                && frames >= self.rule.min_frames
                && f64::from(skipped) > self.rule.skip_ratio * f64::from(frames)
            {
                if let Some((when, from)) = self.last_up
                    && now.saturating_duration_since(when) < self.rule.probe
                    && from == levels[at - 1]
                {
                    self.failed = Some((current, now));
                }
                return Some(self.moved(now, levels[at - 1], Direction::Down, Reason::Skipping));
            }
        }
        let up = *levels.get(at + 1)?;
        let calm = match self.failed {
            Some((level, when))
                if level == up
                    && now.saturating_duration_since(when) < self.rule.failure_memory =>
            {
                self.rule.calm_after_failure
            }
            _ => self.rule.calm,
        };
        if now.saturating_duration_since(self.last_trouble) >= calm {
            self.last_up = Some((now, current));
            return Some(self.moved(now, up, Direction::Up, Reason::Headroom));
        }
        None
    }

    fn moved(&mut self, now: Instant, to: Level, direction: Direction, reason: Reason) -> Switch {
        self.window_start = None;
        self.moved_at = now;
        self.frames = 0;
        self.skipped = 0;
        self.last_trouble = now;
        Switch {
            to,
            direction,
            reason,
        }
    }
}

/// `gateway_rendition_switches_total{direction,reason}`: the moves the
/// rule made, for every viewer together.
#[derive(Clone)]
pub struct Switches(IntCounterVec);

impl Switches {
    /// The counter, registered in `registry` (counted all the same, and
    /// said in the log, if registering fails).
    pub fn new(registry: &Registry) -> Self {
        let c = IntCounterVec::new(
            Opts::new(
                "rendition_switches_total",
                "Moves of `auto` viewers to a smaller (down) or larger (up) rendition, and why",
            ),
            &["direction", "reason"],
        )
        .expect("a valid metric");
        if let Err(e) = registry.register(Box::new(c.clone())) {
            tracing::warn!(error = %e, "cannot register gateway_rendition_switches_total");
        }
        Switches(c)
    }

    pub fn count(&self, s: &Switch) {
        self.0
            .with_label_values(&[s.direction.label(), s.reason.label()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(66);

    /// Feeds `n` frames 66 ms apart from `*t`, each skipped when
    /// `skip(i)`, asking for a move after each; the first move made.
    fn run(
        a: &mut Adapt,
        t: &mut Instant,
        n: u32,
        levels: &[Level],
        current: Level,
        skip: impl Fn(u32) -> bool,
    ) -> Option<(u32, Switch)> {
        for i in 0..n {
            *t += FRAME;
            a.frame(*t, skip(i));
            if let Some(s) = a.decide(*t, levels, current) {
                return Some((i, s));
            }
        }
        None
    }

    #[test]
    fn the_ladder_is_the_renditions_then_the_full_picture_up_to_the_cap() {
        assert_eq!(ladder(&[320, 640], None), [Some(320), Some(640), None]);
        assert_eq!(ladder(&[320, 640], Some(400)), [Some(320), Some(640)]);
        assert_eq!(ladder(&[320, 640], Some(320)), [Some(320)]);
        assert_eq!(
            ladder(&[320, 640], Some(5000)),
            [Some(320), Some(640), None]
        );
        assert_eq!(ladder(&[], None), [None]);
    }

    #[test]
    fn a_viewer_skipping_a_third_moves_down_one_after_a_window() {
        let levels = ladder(&[320, 640], None);
        let mut t = Instant::now();
        let mut a = Adapt::new(Rule::default(), t);
        let (i, s) = run(&mut a, &mut t, 100, &levels, None, |i| i % 3 == 1).expect("a move");
        assert_eq!(
            s,
            Switch {
                to: Some(640),
                direction: Direction::Down,
                reason: Reason::Skipping
            }
        );
        // One 2 s window: about 30 frames at 15 fps.
        assert!((28..=33).contains(&i), "moved after {i} frames");
    }

    #[test]
    fn skipping_a_tenth_or_nothing_at_the_bottom_stays() {
        let levels = ladder(&[320, 640], None);
        let mut t = Instant::now();
        let mut a = Adapt::new(Rule::default(), t);
        // 10 % skipped, and its socket fills: no move either way.
        for i in 0..300 {
            t += FRAME;
            a.frame(t, i % 10 == 0);
            a.filled(t);
            assert_eq!(a.decide(t, &levels, Some(640)), None, "frame {i}");
        }
        // At the bottom, skipping everything has nowhere to go.
        let mut a = Adapt::new(Rule::default(), t);
        assert!(run(&mut a, &mut t, 5, &levels, Some(320), |_| false).is_none());
        assert!(run(&mut a, &mut t, 100, &levels, Some(320), |_| true).is_none());
    }

    #[test]
    fn a_viewer_with_room_moves_up_after_the_calm_and_not_past_the_top() {
        let levels = ladder(&[320, 640], None);
        let mut t = Instant::now();
        let mut a = Adapt::new(Rule::default(), t);
        let (i, s) = run(&mut a, &mut t, 200, &levels, Some(320), |_| false).expect("up");
        assert_eq!(
            (s.to, s.direction, s.reason),
            (Some(640), Direction::Up, Reason::Headroom)
        );
        // 3 s after its first part: 45 frames at 15 fps.
        assert!((44..=47).contains(&i), "moved after {i} frames");
        let mut a = Adapt::new(Rule::default(), t);
        assert!(run(&mut a, &mut t, 200, &levels, None, |_| false).is_none());
    }

    #[test]
    fn a_socket_that_fills_is_no_headroom() {
        let levels = ladder(&[320, 640], None);
        let mut t = Instant::now();
        let mut a = Adapt::new(Rule::default(), t);
        for i in 0..200 {
            t += FRAME;
            a.frame(t, false);
            if i % 20 == 0 {
                a.filled(t);
            }
            assert_eq!(a.decide(t, &levels, Some(640)), None);
        }
    }

    #[test]
    fn the_backlog_before_the_first_part_after_a_move_does_not_count() {
        let levels = ladder(&[320, 640], None);
        let mut t = Instant::now();
        let mut a = Adapt::new(Rule::default(), t);
        // Draining the full picture's backlog: 3 s of frames passed by.
        assert!(run(&mut a, &mut t, 45, &levels, Some(640), |_| true).is_none());
        // Then it keeps up, but with a full socket now and then.
        for _ in 0..100 {
            t += FRAME;
            a.frame(t, false);
            a.filled(t);
            assert_eq!(a.decide(t, &levels, Some(640)), None);
        }
    }

    #[test]
    fn a_failed_move_up_waits_longer_before_the_same_move() {
        let levels = ladder(&[320, 640], None);
        let mut t = Instant::now();
        let mut a = Adapt::new(Rule::default(), t);
        let (_, up) = run(&mut a, &mut t, 100, &levels, Some(640), |_| false).expect("up");
        assert_eq!(up.to, None);
        let (_, down) = run(&mut a, &mut t, 100, &levels, None, |i| i % 2 == 0).expect("down");
        assert_eq!((down.to, down.reason), (Some(640), Reason::Skipping));
        // The next try waits 8 s of calm, not 3.
        let (i, again) = run(&mut a, &mut t, 300, &levels, Some(640), |_| false).expect("up");
        assert_eq!(again.to, None);
        assert!((118..=122).contains(&i), "tried again after {i} frames");
        // A minute later the failure is forgotten.
        // Even a socket that never drains again moves down.
        let (_, down) = run(&mut a, &mut t, 200, &levels, None, |_| true).expect("down");
        assert_eq!(down.to, Some(640));
        t += Duration::from_secs(61);
        let (i, _) = run(&mut a, &mut t, 300, &levels, Some(640), |_| false).expect("up");
        assert!(i < 50, "after a minute the calm is 3 s again ({i} frames)");
    }
}
