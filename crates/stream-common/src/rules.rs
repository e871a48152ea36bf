//! The cameras file's rules (`--cameras FILE`, TOML), shared by the
//! services that judge boxes by where they stand: the object detector drops
//! boxes standing in a mask before it publishes them (masks take areas out
//! of detection entirely: no box on the page, no event), and the event stage
//! also applies zones, the zones an event requires, and the least score and
//! box area per label. One parser, so the same file means the same thing to
//! both. Everything is checked at start; an error names the file, the line
//! and the field, and the binary exits. A camera the file does not list gets
//! no zones, no masks, no minimums. Positions are fractions of the frame
//! (`geometry`), judged at the bottom centre of a box: where an object stands.
//!
//! ```toml
//! [[camera]]
//! name = "door"                       # stream name
//! required_zones = ["porch"]          # optional: events only once in one of these
//! labels = ["person"]                 # optional: only these labels make events
//!
//! [[camera.zone]]
//! name = "porch"
//! polygon = [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]   # fractions of the frame
//!
//! [[camera.mask]]                     # boxes standing in here are dropped
//! polygon = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3]]
//!
//! [camera.filters.person]
//! min_score = 0.6                     # 0..1
//! min_area = 0.01                     # of the frame, 0..1
//! ```

pub mod geometry;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use geometry::{Polygon, Rect};

/// Most zones or masks one camera may have.
pub const MAX_POLYGONS: usize = 32;
/// Most points in one polygon.
pub const MAX_POINTS: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub name: String,
    pub area: Polygon,
}

/// The least a box must be to count, for one label.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Filter {
    pub min_score: f32,
    pub min_area: f32,
}

/// One camera's rules, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CameraRules {
    pub zones: Vec<Zone>,
    pub masks: Vec<Polygon>,
    pub required_zones: Vec<String>,
    /// Only these labels make events; every label when `None`.
    pub labels: Option<Vec<String>>,
    pub filters: HashMap<String, Filter>,
}

impl CameraRules {
    /// True when a box of `label` with `score` counts at all: its label is
    /// wanted, it passes the label's minimums, and it does not stand in a mask.
    pub fn admits(&self, label: &str, score: f32, rect: &Rect) -> bool {
        if let Some(labels) = &self.labels
            && !labels.iter().any(|l| l == label)
        {
            return false;
        }
        if let Some(f) = self.filters.get(label)
            && (score < f.min_score || rect.area() < f.min_area)
        {
            return false;
        }
        !self.masked(rect)
    }

    /// True when a box stands (its bottom centre) in one of the masks.
    pub fn masked(&self, rect: &Rect) -> bool {
        let foot = rect.bottom_centre();
        self.masks.iter().any(|m| m.contains(foot))
    }

    /// True when the camera has masks at all.
    pub fn has_masks(&self) -> bool {
        !self.masks.is_empty()
    }

    /// The zones a box stands in, in the file's order.
    pub fn zones_of<'a>(&'a self, rect: &Rect) -> impl Iterator<Item = &'a str> + 'a {
        let foot = rect.bottom_centre();
        self.zones
            .iter()
            .filter(move |z| z.area.contains(foot))
            .map(|z| z.name.as_str())
    }
}

/// Every camera's rules.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    cameras: HashMap<String, CameraRules>,
    none: CameraRules,
}

impl Rules {
    pub fn new(cameras: HashMap<String, CameraRules>) -> Rules {
        Rules {
            cameras,
            none: CameraRules::default(),
        }
    }

    pub fn of(&self, stream: &str) -> &CameraRules {
        self.cameras.get(stream).unwrap_or(&self.none)
    }

    /// True when some camera has a mask (the detector then checks its boxes).
    pub fn any_masks(&self) -> bool {
        self.cameras.values().any(CameraRules::has_masks)
    }

    /// The cameras the file lists, sorted.
    pub fn listed(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.cameras.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CamerasError {
    #[error("cannot read the cameras file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    camera: Vec<Spanned<FileCamera>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCamera {
    name: Option<Spanned<String>>,
    #[serde(default)]
    required_zones: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    labels: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    zone: Vec<Spanned<FileZone>>,
    #[serde(default)]
    mask: Vec<Spanned<FileMask>>,
    #[serde(default)]
    filters: HashMap<String, Spanned<FileFilter>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileZone {
    name: Option<Spanned<String>>,
    polygon: Option<Spanned<Vec<Vec<f64>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMask {
    polygon: Option<Spanned<Vec<Vec<f64>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFilter {
    min_score: Option<Spanned<f64>>,
    min_area: Option<Spanned<f64>>,
}

/// Line number (1-based) of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Reads and checks the cameras file; no file, no rules.
pub fn load(path: Option<&Path>) -> Result<Rules, CamerasError> {
    let Some(path) = path else {
        return Ok(Rules::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| CamerasError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|problem| CamerasError::File {
        path: path.to_path_buf(),
        problem,
    })
}

/// A label or zone name: 1 to 64 printable ASCII characters (they go into
/// MQTT topics, JSON and metric labels), no `/`, `+` or `#`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= frame_wire::event::MAX_NAME
        && s.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !matches!(b, b'/' | b'+' | b'#'))
}

/// Parses and checks a cameras file's text; the error names line and field.
pub fn parse(text: &str) -> Result<Rules, String> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| {
        let place = e
            .span()
            .map(|s| format!("line {}: ", line_of(text, s.start)))
            .unwrap_or_default();
        format!(
            "{place}{} (camera fields: name, required_zones, labels, zone, mask, filters)",
            e.message().trim_end().replace('\n', " ")
        )
    })?;
    let at = |span: Range<usize>, field: &str, problem: String| {
        format!("line {}: {field}: {problem}", line_of(text, span.start))
    };
    let mut cameras = HashMap::new();
    for table in &doc.camera {
        let c = table.get_ref();
        let name = c.name.as_ref().ok_or_else(|| {
            at(
                table.span(),
                "name",
                "missing (every camera needs one)".into(),
            )
        })?;
        frame_wire::validate_stream_name(name.get_ref())
            .map_err(|e| at(name.span(), "name", e.to_string()))?;
        let cam = name.get_ref().clone();
        if cameras.contains_key(&cam) {
            return Err(at(
                name.span(),
                "name",
                format!("camera {cam:?} is listed twice"),
            ));
        }
        let mut rules = CameraRules::default();
        if c.zone.len() > MAX_POLYGONS || c.mask.len() > MAX_POLYGONS {
            return Err(at(
                table.span(),
                "zone",
                format!("camera {cam:?}: more than {MAX_POLYGONS} zones or masks"),
            ));
        }
        for z in &c.zone {
            let zr = z.get_ref();
            let zname = zr.name.as_ref().ok_or_else(|| {
                at(
                    z.span(),
                    "zone.name",
                    format!("camera {cam:?}: a zone needs a name"),
                )
            })?;
            if !valid_name(zname.get_ref()) {
                return Err(at(
                    zname.span(),
                    "zone.name",
                    format!(
                        "{:?} is not 1-64 printable characters without spaces, '/', '+' or '#'",
                        zname.get_ref()
                    ),
                ));
            }
            if rules
                .zones
                .iter()
                .any(|o: &Zone| &o.name == zname.get_ref())
            {
                return Err(at(
                    zname.span(),
                    "zone.name",
                    format!("camera {cam:?} has two zones named {:?}", zname.get_ref()),
                ));
            }
            let area = polygon(zr.polygon.as_ref(), z.span(), "zone.polygon", &at)?;
            rules.zones.push(Zone {
                name: zname.get_ref().clone(),
                area,
            });
        }
        for m in &c.mask {
            rules.masks.push(polygon(
                m.get_ref().polygon.as_ref(),
                m.span(),
                "mask.polygon",
                &at,
            )?);
        }
        if let Some(req) = &c.required_zones {
            for z in req.get_ref() {
                if !rules.zones.iter().any(|o| &o.name == z) {
                    return Err(at(
                        req.span(),
                        "required_zones",
                        format!("camera {cam:?} has no zone named {z:?}"),
                    ));
                }
            }
            rules.required_zones = req.get_ref().clone();
        }
        if let Some(labels) = &c.labels {
            if let Some(bad) = labels.get_ref().iter().find(|l| !valid_name(l)) {
                return Err(at(
                    labels.span(),
                    "labels",
                    format!("{bad:?} is not a label"),
                ));
            }
            rules.labels = Some(labels.get_ref().clone());
        }
        for (label, f) in &c.filters {
            if !valid_name(label) {
                return Err(at(f.span(), "filters", format!("{label:?} is not a label")));
            }
            let unit = |v: Option<&Spanned<f64>>, field: &str| -> Result<f32, String> {
                match v {
                    None => Ok(0.0),
                    Some(v) if (0.0..=1.0).contains(v.get_ref()) => Ok(*v.get_ref() as f32),
                    Some(v) => Err(at(
                        v.span(),
                        field,
                        format!("{} is not between 0 and 1", v.get_ref()),
                    )),
                }
            };
            let fr = f.get_ref();
            rules.filters.insert(
                label.clone(),
                Filter {
                    min_score: unit(fr.min_score.as_ref(), "min_score")?,
                    min_area: unit(fr.min_area.as_ref(), "min_area")?,
                },
            );
        }
        cameras.insert(cam, rules);
    }
    Ok(Rules::new(cameras))
}

fn polygon(
    points: Option<&Spanned<Vec<Vec<f64>>>>,
    table: Range<usize>,
    field: &str,
    at: &impl Fn(Range<usize>, &str, String) -> String,
) -> Result<Polygon, String> {
    let points = points.ok_or_else(|| at(table, field, "missing".into()))?;
    let span = points.span();
    let list = points.get_ref();
    if list.len() > MAX_POINTS {
        return Err(at(
            span,
            field,
            format!("{} points, more than {MAX_POINTS}", list.len()),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        match p.as_slice() {
            [x, y] if (0.0..=1.0).contains(x) && (0.0..=1.0).contains(y) => {
                out.push((*x as f32, *y as f32))
            }
            _ => {
                return Err(at(
                    span,
                    field,
                    format!(
                        "point {} is {p:?}: each point is [x, y], fractions of the frame from 0 to 1",
                        i + 1
                    ),
                ));
            }
        }
    }
    Polygon::new(out).ok_or_else(|| {
        at(
            span,
            field,
            format!("{} points; a polygon needs at least 3", list.len()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[camera]]
name = "door"
required_zones = ["porch"]

[[camera.zone]]
name = "porch"
polygon = [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]

[[camera.mask]]
polygon = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3]]

[camera.filters.person]
min_score = 0.6
min_area = 0.01
"#;

    #[test]
    fn reads_zones_masks_and_filters() {
        let rules = parse(GOOD).expect("valid");
        let door = rules.of("door");
        assert_eq!(door.zones.len(), 1);
        assert_eq!(door.required_zones, ["porch"]);
        let standing = Rect {
            x: 0.4,
            y: 0.3,
            w: 0.2,
            h: 0.5,
        };
        assert_eq!(door.zones_of(&standing).collect::<Vec<_>>(), ["porch"]);
        let head_only = Rect { h: 0.2, ..standing };
        assert_eq!(door.zones_of(&head_only).count(), 0);
        assert!(door.admits("person", 0.7, &standing));
        assert!(!door.admits("person", 0.5, &standing), "min_score");
        let tiny = Rect {
            w: 0.01,
            h: 0.01,
            ..standing
        };
        assert!(!door.admits("person", 0.9, &tiny), "min_area");
        let in_mask = Rect {
            x: 0.9,
            y: 0.0,
            w: 0.08,
            h: 0.1,
        };
        assert!(!door.admits("dog", 0.9, &in_mask), "masked");
        assert!(door.masked(&in_mask) && !door.masked(&standing));
        assert!(rules.any_masks() && door.has_masks());
        assert!(!rules.of("elsewhere").has_masks());
        assert!(rules.of("elsewhere").admits("person", 0.01, &tiny));
    }

    #[test]
    fn errors_name_line_and_field() {
        let cases = [
            (
                GOOD.replace("[1.0, 1.0], [0.0, 1.0]]", "[1.5, 1.0]]"),
                "line 8: zone.polygon",
            ),
            (
                GOOD.replace("min_area = 0.01", "min_area = 2.0"),
                "line 15: min_area",
            ),
            (
                GOOD.replace("[\"porch\"]", "[\"garden\"]"),
                "line 4: required_zones",
            ),
            (
                GOOD.replace("name = \"porch\"", "name = \"a/b\""),
                "line 7: zone.name",
            ),
            (
                GOOD.replace("name = \"door\"", "name = \"no spaces\""),
                "line 3: name",
            ),
            (
                GOOD.replace("min_score", "min_scor"),
                "line 14: unknown field",
            ),
            (
                GOOD.replace(
                    "[[camera.mask]]\npolygon = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.3]]",
                    "[[camera.mask]]\npolygon = [[0.8, 0.0], [1.0, 0.0]]",
                ),
                "line 11: mask.polygon",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).expect_err(want);
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }
}
