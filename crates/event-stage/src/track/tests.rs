//! The tracker fed recorded detections: the box the real model reports for
//! the woman in darknet's person.jpg (640x424), five times a second.

use super::*;
use stream_common::rules::parse;

/// The model's box for the person in person.jpg, as fractions: (183, 104)
/// to (273, 382) pixels. Her feet (the bottom centre) are at (0.356, 0.901).
const PERSON: Rect = Rect {
    x: 183.0 / 640.0,
    y: 104.0 / 424.0,
    w: 90.0 / 640.0,
    h: 278.0 / 424.0,
};
const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn settings() -> Settings {
    Settings {
        min_ns: SEC,
        end_after_ns: 5 * SEC,
        min_iou: 0.3,
        update_every_ns: SEC,
    }
}

fn person(score: f32, rect: Rect) -> Sighting {
    Sighting {
        label: "person".into(),
        score,
        rect,
    }
}

/// `seconds` of analysed frames at 5 fps from `from`, `boxes(i)` in each,
/// then nothing for 6 s (a sweep every 200 ms), gathering the changes.
fn run(
    tracker: &mut Tracker,
    rules: &CameraRules,
    from: u64,
    seconds: u64,
    boxes: impl Fn(u64) -> Vec<Sighting>,
) -> Vec<Change> {
    let mut out = Vec::new();
    let frames = seconds * 5;
    for i in 0..frames {
        out.extend(tracker.observe(from + i * SEC / 5, &boxes(i), rules));
    }
    for i in 0..30 {
        out.extend(tracker.observe(from + (frames + i) * SEC / 5, &[], rules));
    }
    out
}

fn phases(changes: &[Change]) -> Vec<Phase> {
    changes.iter().map(|c| c.phase).collect()
}

#[test]
fn a_person_for_10_s_is_one_event_of_10_s() {
    let rules = CameraRules::default();
    let mut t = Tracker::new("cam0", settings());
    // Scores wobble as a real model's do; the best is frame 17.
    let changes = run(&mut t, &rules, T0, 10, |i| {
        vec![person(if i == 17 { 0.99 } else { 0.9 }, PERSON)]
    });
    let starts: Vec<_> = changes.iter().filter(|c| c.phase == Phase::Start).collect();
    let ends: Vec<_> = changes.iter().filter(|c| c.phase == Phase::End).collect();
    assert_eq!((starts.len(), ends.len()), (1, 1), "{:?}", phases(&changes));
    assert_eq!(changes.first().map(|c| c.phase), Some(Phase::Start));
    assert_eq!(changes.last().map(|c| c.phase), Some(Phase::End));
    let start = &starts[0].event;
    assert_eq!(start.start_ts_ns, T0);
    // Started after one second seen (frame 5), not at the first sighting.
    assert_eq!(start.end_ts_ns, T0 + SEC);
    let end = &ends[0].event;
    assert_eq!(end.id, start.id);
    assert_eq!(end.start_ts_ns, T0);
    assert_eq!(end.end_ts_ns, T0 + 49 * SEC / 5, "the last sighting");
    assert_eq!(end.best_score, 0.99);
    assert_eq!(ends[0].best_frame_ts_ns, T0 + 17 * SEC / 5);
    assert_eq!((end.x, end.w), (PERSON.x, PERSON.w));
    assert!(!t.is_following());
}

#[test]
fn a_flicker_shorter_than_min_seconds_is_no_event() {
    let rules = CameraRules::default();
    let mut t = Tracker::new("cam0", settings());
    let changes = run(&mut t, &rules, T0, 10, |i| {
        if i < 4 {
            vec![person(0.9, PERSON)]
        } else {
            vec![]
        }
    });
    assert!(changes.is_empty(), "{:?}", phases(&changes));
}

#[test]
fn a_moving_person_stays_one_track_and_two_people_are_two() {
    let rules = CameraRules::default();
    let mut t = Tracker::new("cam0", settings());
    let walking = |i: u64| Rect {
        x: (PERSON.x + i as f32 * 0.004).min(1.0 - PERSON.w),
        ..PERSON
    };
    let far = Rect { x: 0.8, ..PERSON };
    let changes = run(&mut t, &rules, T0, 6, |i| {
        vec![person(0.9, walking(i)), person(0.8, far)]
    });
    let starts = changes.iter().filter(|c| c.phase == Phase::Start).count();
    let ends = changes.iter().filter(|c| c.phase == Phase::End).count();
    assert_eq!((starts, ends), (2, 2), "{:?}", phases(&changes));
}

#[test]
fn a_dropped_frame_or_two_does_not_split_an_event() {
    let rules = CameraRules::default();
    let mut t = Tracker::new("cam0", settings());
    let changes = run(&mut t, &rules, T0, 10, |i| {
        if i % 7 == 3 {
            vec![]
        } else {
            vec![person(0.9, PERSON)]
        }
    });
    assert_eq!(
        phases(&changes)
            .iter()
            .filter(|p| **p != Phase::Update)
            .count(),
        2
    );
}

const ZONES: &str = r#"
[[camera]]
name = "cam0"
required_zones = ["REQ"]

[[camera.zone]]
name = "body"        # everything above her feet
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.85], [0.0, 0.85]]

[[camera.zone]]
name = "floor"       # where she stands
polygon = [[0.0, 0.85], [1.0, 0.85], [1.0, 1.0], [0.0, 1.0]]
"#;

fn rules_requiring(zone: &str) -> CameraRules {
    parse(&ZONES.replace("REQ", zone))
        .expect("valid")
        .of("cam0")
        .clone()
}

#[test]
fn a_required_zone_without_her_feet_gives_no_event() {
    let rules = rules_requiring("body");
    let mut t = Tracker::new("cam0", settings());
    let changes = run(&mut t, &rules, T0, 10, |_| vec![person(0.9, PERSON)]);
    assert!(changes.is_empty(), "{:?}", phases(&changes));
}

#[test]
fn a_required_zone_with_her_feet_gives_events_naming_it() {
    let rules = rules_requiring("floor");
    let mut t = Tracker::new("cam0", settings());
    let changes = run(&mut t, &rules, T0, 10, |_| vec![person(0.9, PERSON)]);
    assert_eq!(phases(&changes).first(), Some(&Phase::Start));
    assert_eq!(phases(&changes).last(), Some(&Phase::End));
    assert!(changes.iter().all(|c| c.event.zones == ["floor"]));
}

#[test]
fn a_mask_over_the_person_gives_nothing() {
    let rules = parse(
        r#"
[[camera]]
name = "cam0"
[[camera.mask]]
polygon = [[0.2, 0.2], [0.5, 0.2], [0.5, 1.0], [0.2, 1.0]]
"#,
    )
    .expect("valid")
    .of("cam0")
    .clone();
    let mut t = Tracker::new("cam0", settings());
    let changes = run(&mut t, &rules, T0, 10, |_| vec![person(0.9, PERSON)]);
    assert!(changes.is_empty());
    assert!(!t.is_following(), "masked boxes are not even followed");
}

#[test]
fn the_labels_minimum_score_and_area_apply() {
    let rules = parse(
        r#"
[[camera]]
name = "cam0"
[camera.filters.person]
min_score = 0.95
"#,
    )
    .expect("valid")
    .of("cam0")
    .clone();
    let mut t = Tracker::new("cam0", settings());
    assert!(run(&mut t, &rules, T0, 5, |_| vec![person(0.9, PERSON)]).is_empty());
    let changes = run(&mut t, &rules, T0 + 60 * SEC, 5, |_| {
        vec![person(0.97, PERSON)]
    });
    assert_eq!(changes.first().map(|c| c.phase), Some(Phase::Start));
}

#[test]
fn an_entered_zone_is_reported_at_once_and_a_better_score_at_most_each_second() {
    let rules = parse(ZONES.replace("required_zones = [\"REQ\"]", "").as_str())
        .expect("valid")
        .of("cam0")
        .clone();
    let mut t = Tracker::new("cam0", settings());
    // Standing high (feet in "body") for 2 s, then lower (feet on "floor"),
    // the score rising every frame.
    let changes = run(&mut t, &rules, T0, 4, |i| {
        let rect = if i < 10 {
            Rect { h: 0.5, ..PERSON }
        } else {
            PERSON
        };
        vec![person(0.5 + i as f32 * 0.02, rect)]
    });
    let floor_at = changes
        .iter()
        .find(|c| c.event.zones.contains(&"floor".to_string()))
        .map(|c| c.event.end_ts_ns);
    assert_eq!(
        floor_at,
        Some(T0 + 2 * SEC),
        "reported in the frame it entered"
    );
    let updates: Vec<u64> = changes
        .iter()
        .filter(|c| c.phase == Phase::Update)
        .map(|c| c.event.end_ts_ns)
        .collect();
    assert!(updates.len() >= 2, "{updates:?}");
    assert!(
        updates.len() <= 4,
        "score updates are held to 1/s: {updates:?}"
    );
}

#[test]
fn finish_ends_every_running_event() {
    let rules = CameraRules::default();
    let mut t = Tracker::new("cam0", settings());
    for i in 0..10 {
        t.observe(T0 + i * SEC / 5, &[person(0.9, PERSON)], &rules);
    }
    assert_eq!(t.active("person"), 1);
    let end = t.finish();
    assert_eq!(phases(&end), [Phase::End]);
    assert_eq!(t.active("person"), 0);
}
