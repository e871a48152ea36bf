//! The zones and masks of each camera, for the page's overlay: the same
//! cameras file the detector and the event stage read (`--cameras`,
//! `stream_common::rules`), so what the page draws is what decides events.
//! Each camera's JSON (`/api/streams/{name}/zones`) is made once at start;
//! a camera the file does not list has none.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Serialize;
use stream_common::rules::{CameraRules, Rules};

#[derive(Serialize)]
struct ZoneJson<'a> {
    name: &'a str,
    polygon: &'a [(f32, f32)],
}

#[derive(Serialize)]
struct Body<'a> {
    stream: &'a str,
    zones: Vec<ZoneJson<'a>>,
    masks: Vec<&'a [(f32, f32)]>,
    required_zones: &'a [String],
}

fn body(stream: &str, rules: &CameraRules) -> Bytes {
    let b = Body {
        stream,
        zones: rules
            .zones
            .iter()
            .map(|z| ZoneJson {
                name: &z.name,
                polygon: z.area.points(),
            })
            .collect(),
        masks: rules.masks.iter().map(|m| m.points()).collect(),
        required_zones: &rules.required_zones,
    };
    Bytes::from(serde_json::to_vec(&b).unwrap_or_default())
}

/// Every listed camera's zones JSON.
#[derive(Debug, Default)]
pub struct Zones {
    listed: HashMap<String, Bytes>,
}

impl Zones {
    pub fn new(rules: &Rules) -> Zones {
        let listed = rules
            .listed()
            .into_iter()
            .map(|name| (name.to_string(), body(name, rules.of(name))))
            .collect();
        Zones { listed }
    }

    /// `stream`'s zones JSON; an empty set for a camera the file does not list.
    pub fn of(&self, stream: &str) -> Bytes {
        self.listed
            .get(stream)
            .cloned()
            .unwrap_or_else(|| body(stream, &CameraRules::default()))
    }

    /// Whether the file lists `stream`.
    pub fn lists(&self, stream: &str) -> bool {
        self.listed.contains_key(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_camera_has_its_zones_and_masks_others_none() {
        let rules = stream_common::rules::parse(
            r#"
[[camera]]
name = "door"
required_zones = ["porch"]
[[camera.zone]]
name = "porch"
polygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]
[[camera.mask]]
polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.25]]
"#,
        )
        .expect("rules");
        let zones = Zones::new(&rules);
        let v: serde_json::Value = serde_json::from_slice(&zones.of("door")).expect("json");
        assert_eq!(v["zones"][0]["name"], "porch");
        assert_eq!(v["zones"][0]["polygon"][1][0], 1.0);
        assert_eq!(v["masks"][0][2][1], 0.25);
        assert_eq!(v["required_zones"][0], "porch");
        assert!(zones.lists("door") && !zones.lists("yard"));
        let none: serde_json::Value = serde_json::from_slice(&zones.of("yard")).expect("json");
        assert_eq!(none["zones"].as_array().map(Vec::len), Some(0));
        assert_eq!(none["stream"], "yard");
    }
}
