//! What a receive task's SUB socket subscribes to, and keeping it so.
//!
//! On demand (the default) a gateway takes every stream's preview (`p/`,
//! about one small JPEG a second each), detections (`d/`, small) and
//! events (`e/`, a few per event, from the event stage), and the
//! full-rate frames (`f/<name>/`) only of the streams its viewers watch
//! (`interest.rs`). ZeroMQ filters at the publisher, so frames nobody here
//! watches never cross the network. `--subscribe all` takes everything, as
//! before version 3: for publishers that send no previews (version 1/2
//! topics are bare names, which no `x/` subscription matches). The bus
//! client (`frame_bus::Client`) keeps its socket holding these.

use std::collections::BTreeSet;

use frame_wire::{Kind, subscription};

/// `--subscribe`: which frames a gateway asks its producers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Every message of every stream (`--streams` still restricts).
    All,
    /// Previews, detections and events of every stream, full-rate frames of the
    /// streams watched here.
    OnDemand,
}

/// The subscriptions a socket should hold: for `mode`, restricted to `only`
/// when it is not empty, with full-rate frames of `wanted`.
pub fn topics(mode: Mode, only: &[String], wanted: &BTreeSet<String>) -> BTreeSet<String> {
    let sub = |kind, name: Option<&str>| {
        // Stream names and tags are ASCII (frame_wire::validate_stream_name).
        String::from_utf8_lossy(&subscription(kind, name)).into_owned()
    };
    let mut out = BTreeSet::new();
    match (mode, only.is_empty()) {
        (Mode::All, true) => {
            out.insert(String::new());
        }
        (Mode::All, false) => {
            for name in only {
                // Version 1/2 (a prefix, checked exactly on receipt) and 3.
                out.insert(name.clone());
                // Every kind a gateway keeps.
                out.extend(
                    [Kind::Frame, Kind::Preview, Kind::Detections, Kind::Event]
                        .map(|k| sub(k, Some(name))),
                );
            }
        }
        (Mode::OnDemand, true) => {
            out.insert(sub(Kind::Preview, None));
            out.insert(sub(Kind::Detections, None));
            out.insert(sub(Kind::Event, None));
        }
        (Mode::OnDemand, false) => {
            for name in only {
                out.insert(sub(Kind::Preview, Some(name)));
                out.insert(sub(Kind::Detections, Some(name)));
                out.insert(sub(Kind::Event, Some(name)));
            }
        }
    }
    if mode == Mode::OnDemand {
        let allowed = |name: &String| only.is_empty() || only.contains(name);
        for name in wanted.iter().filter(|n| allowed(n)) {
            out.insert(sub(Kind::Frame, Some(name)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn on_demand_takes_previews_and_the_watched_streams() {
        let none = BTreeSet::new();
        assert_eq!(topics(Mode::OnDemand, &[], &none), set(&["d/", "e/", "p/"]));
        assert_eq!(
            topics(Mode::OnDemand, &[], &set(&["cam1", "cam10"])),
            set(&["d/", "e/", "f/cam1/", "f/cam10/", "p/"])
        );
        let only = ["cam1".to_string()];
        assert_eq!(
            topics(Mode::OnDemand, &only, &set(&["cam1", "cam2"])),
            set(&["d/cam1/", "e/cam1/", "f/cam1/", "p/cam1/"])
        );
    }

    #[test]
    fn all_takes_everything_whatever_is_watched() {
        assert_eq!(topics(Mode::All, &[], &set(&["cam1"])), set(&[""]));
        assert_eq!(
            topics(Mode::All, &["cam1".into()], &BTreeSet::new()),
            set(&["cam1", "d/cam1/", "e/cam1/", "f/cam1/", "p/cam1/"])
        );
    }
}
