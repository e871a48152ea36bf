//! From the model's 1917 anchor boxes to the few that are reported: keep
//! those scoring at least the threshold, remove overlapping duplicates with
//! non-maximum suppression (IoU above 0.45: the box with the lower score
//! goes), and turn `ymin, xmin, ymax, xmax` into the wire format's
//! `x, y, w, h`, clipped to the picture.

use frame_wire::Detection;

use crate::model::RawOutput;

/// Overlap above which the weaker of two boxes is dropped.
pub const NMS_IOU: f32 = 0.45;
/// Most boxes reported for one frame (the wire format allows more).
pub const MAX_REPORTED: usize = 100;

/// A box in fractions of the picture: `x, y` top-left, `w, h` size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Rect {
    /// From the model's `ymin, xmin, ymax, xmax`, clipped to 0..1; `None`
    /// when nothing of it is left (or a coordinate is not a number).
    pub fn from_corners([ymin, xmin, ymax, xmax]: [f32; 4]) -> Option<Rect> {
        if ![ymin, xmin, ymax, xmax].iter().all(|v| v.is_finite()) {
            return None;
        }
        let (x0, y0) = (xmin.clamp(0.0, 1.0), ymin.clamp(0.0, 1.0));
        let (x1, y1) = (xmax.clamp(0.0, 1.0), ymax.clamp(0.0, 1.0));
        (x1 > x0 && y1 > y0).then_some(Rect {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        })
    }

    pub fn area(&self) -> f32 {
        self.w * self.h
    }

    /// Intersection over union, 0..1.
    pub fn iou(&self, other: &Rect) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        inter / (self.area() + other.area() - inter)
    }
}

/// A candidate: a box with its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub rect: Rect,
    pub score: f32,
}

/// Greedy non-maximum suppression: best first, each box kept unless it
/// overlaps a kept one by more than `iou`. Returns at most `max`, best first.
pub fn nms(mut candidates: Vec<Scored>, iou: f32, max: usize) -> Vec<Scored> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Scored> = Vec::new();
    for c in candidates {
        if kept.len() == max {
            break;
        }
        if kept.iter().all(|k| k.rect.iou(&c.rect) <= iou) {
            kept.push(c);
        }
    }
    kept
}

/// The people in one model output scoring at least `threshold`.
pub fn people(raw: &RawOutput, threshold: f32) -> Vec<Detection> {
    let candidates = raw
        .boxes
        .iter()
        .zip(&raw.person)
        .filter(|(_, s)| **s >= threshold && **s <= 1.0)
        .filter_map(|(b, &score)| Rect::from_corners(*b).map(|rect| Scored { rect, score }))
        .collect();
    nms(candidates, NMS_IOU, MAX_REPORTED)
        .into_iter()
        .map(|s| Detection {
            label: "person".to_string(),
            score: s.score,
            x: s.rect.x,
            y: s.rect.y,
            w: s.rect.w,
            h: s.rect.h,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: f32, y: f32, w: f32, h: f32) -> Rect {
        Rect { x, y, w, h }
    }

    #[test]
    fn corners_become_xywh_clipped() {
        let b = Rect::from_corners([0.1, 0.2, 0.5, 0.6]).expect("box");
        assert!((b.x - 0.2).abs() < 1e-6 && (b.y - 0.1).abs() < 1e-6);
        assert!((b.w - 0.4).abs() < 1e-6 && (b.h - 0.4).abs() < 1e-6);
        // Anchors near the edge decode slightly outside the picture.
        let e = Rect::from_corners([-0.05, 0.9, 0.5, 1.2]).expect("box");
        assert_eq!((e.x, e.y), (0.9, 0.0));
        assert!((e.x + e.w - 1.0).abs() < 1e-6 && (e.h - 0.5).abs() < 1e-6);
        assert_eq!(Rect::from_corners([0.5, 0.5, 0.4, 0.6]), None, "inverted");
        assert_eq!(Rect::from_corners([1.1, 0.0, 1.5, 0.5]), None, "outside");
        assert_eq!(Rect::from_corners([f32::NAN, 0.0, 0.5, 0.5]), None);
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = r(0.0, 0.0, 0.5, 0.5);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.iou(&r(0.5, 0.5, 0.5, 0.5)), 0.0, "touching corners");
        // Half overlapping: intersection 0.125, union 0.375.
        assert!((a.iou(&r(0.25, 0.0, 0.5, 0.5)) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_separate_ones() {
        let person = |x: f32, score: f32| Scored {
            rect: r(x, 0.1, 0.2, 0.6),
            score,
        };
        let kept = nms(
            vec![
                person(0.10, 0.7),
                person(0.11, 0.9), // same person, better score
                person(0.12, 0.8), // same person
                person(0.60, 0.6), // someone else
            ],
            NMS_IOU,
            10,
        );
        let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();
        assert_eq!(scores, [0.9, 0.6]);
        // Overlap at exactly the limit is kept; above it is not.
        let a = Scored {
            rect: r(0.0, 0.0, 0.5, 0.5),
            score: 0.9,
        };
        let b = Scored {
            rect: r(0.25, 0.0, 0.5, 0.5),
            score: 0.8,
        };
        assert_eq!(nms(vec![a, b], 0.34, 10).len(), 2);
        assert_eq!(nms(vec![a, b], 0.33, 10).len(), 1);
        assert_eq!(nms(vec![a, b], 0.34, 1).len(), 1, "capped");
    }

    #[test]
    fn people_applies_threshold_and_labels() {
        let raw = RawOutput {
            boxes: vec![
                [0.1, 0.1, 0.9, 0.4],
                [0.1, 0.1, 0.9, 0.41],
                [0.2, 0.6, 0.8, 0.9],
            ],
            person: vec![0.95, 0.9, 0.3],
        };
        let found = people(&raw, 0.5);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].label, "person");
        assert_eq!(found[0].score, 0.95);
        assert!((found[0].x - 0.1).abs() < 1e-6 && (found[0].h - 0.8).abs() < 1e-6);
        assert_eq!(people(&raw, 0.25).len(), 2);
        assert!(people(&raw, 0.99).is_empty());
    }
}
