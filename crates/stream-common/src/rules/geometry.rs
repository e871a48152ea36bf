//! Boxes and polygons in fractions of the frame (0..1 from the top-left
//! corner, as detections carry them), so one zone fits a camera at any size.

/// A detected object's box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl From<&frame_wire::Detection> for Rect {
    fn from(b: &frame_wire::Detection) -> Rect {
        Rect {
            x: b.x,
            y: b.y,
            w: b.w,
            h: b.h,
        }
    }
}

impl Rect {
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Where an object stands: the middle of its box's bottom edge. Zones and
    /// masks are judged here, so a person's head over a zone's edge does not
    /// put them in it.
    pub fn bottom_centre(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h)
    }

    /// Intersection over union, 0..=1.
    pub fn iou(&self, other: &Rect) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// A closed polygon of at least three points.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    points: Vec<(f32, f32)>,
}

impl Polygon {
    /// `None` with fewer than three points.
    pub fn new(points: Vec<(f32, f32)>) -> Option<Polygon> {
        (points.len() >= 3).then_some(Polygon { points })
    }

    /// Its corners, in fractions of the frame (for drawing it).
    pub fn points(&self) -> &[(f32, f32)] {
        &self.points
    }

    /// Even-odd rule; a point on an edge may fall either way.
    pub fn contains(&self, (px, py): (f32, f32)) -> bool {
        let mut inside = false;
        let n = self.points.len();
        for i in 0..n {
            let (xi, yi) = self.points[i];
            let (xj, yj) = self.points[(i + n - 1) % n];
            if (yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi {
                inside = !inside;
            }
        }
        inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_equal_disjoint_and_half_overlapping_boxes() {
        let a = Rect {
            x: 0.0,
            y: 0.0,
            w: 0.5,
            h: 0.5,
        };
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        let far = Rect { x: 0.6, ..a };
        assert_eq!(a.iou(&far), 0.0);
        let half = Rect { x: 0.25, ..a };
        assert!((a.iou(&half) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn points_in_a_triangle_and_a_concave_polygon() {
        let t = Polygon::new(vec![(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]).expect("3 points");
        assert!(t.contains((0.2, 0.2)));
        assert!(!t.contains((0.8, 0.8)));
        // A U shape: the notch is outside.
        let u = Polygon::new(vec![
            (0.0, 0.0),
            (0.3, 0.0),
            (0.3, 0.7),
            (0.7, 0.7),
            (0.7, 0.0),
            (1.0, 0.0),
            (1.0, 1.0),
            (0.0, 1.0),
        ])
        .expect("polygon");
        assert!(!u.contains((0.5, 0.3)));
        assert!(u.contains((0.5, 0.9)));
        assert!(u.contains((0.1, 0.1)));
        assert!(Polygon::new(vec![(0.0, 0.0), (1.0, 1.0)]).is_none());
        let r = Rect {
            x: 0.2,
            y: 0.1,
            w: 0.2,
            h: 0.5,
        };
        assert_eq!(r.bottom_centre(), (0.3, 0.6));
    }
}
