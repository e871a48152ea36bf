//! What a receive task's SUB socket subscribes to, and keeping it so.
//!
//! On demand (the default) a gateway takes every stream's preview (`p/`,
//! about one small JPEG a second each) and list of renditions (`i/`, with
//! the preview), detections (`d/`, small) and
//! events (`e/`, a few per event, from the event stage), and the
//! full-rate frames (`f/<name>/`) or renditions (`r/<name>/<width>/`)
//! only of the streams its viewers watch at that picture (`interest.rs`). ZeroMQ filters at the publisher, so frames nobody here
//! watches never cross the network. `--subscribe all` takes everything, as
//! before version 3: for publishers that send no previews (version 1/2
//! topics are bare names, which no `x/` subscription matches). The bus
//! client (`frame_bus::Client`) keeps its socket holding these.

use std::collections::BTreeSet;

use frame_wire::{Kind, rendition_topic, subscription};

use crate::rendition::Feed;

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
pub fn topics(mode: Mode, only: &[String], wanted: &BTreeSet<Feed>) -> BTreeSet<String> {
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
                    [
                        Kind::Frame,
                        Kind::Preview,
                        Kind::Detections,
                        Kind::Event,
                        Kind::Info,
                    ]
                    .map(|k| sub(k, Some(name))),
                );
                // Every width of it: `r/<name>/` is a prefix of them all.
                out.insert(format!("r/{name}/"));
            }
        }
        (Mode::OnDemand, true) => {
            out.insert(sub(Kind::Preview, None));
            out.insert(sub(Kind::Info, None));
            out.insert(sub(Kind::Detections, None));
            out.insert(sub(Kind::Event, None));
        }
        (Mode::OnDemand, false) => {
            for name in only {
                out.insert(sub(Kind::Preview, Some(name)));
                out.insert(sub(Kind::Info, Some(name)));
                out.insert(sub(Kind::Detections, Some(name)));
                out.insert(sub(Kind::Event, Some(name)));
            }
        }
    }
    if mode == Mode::OnDemand {
        let allowed = |name: &String| only.is_empty() || only.contains(name);
        for (name, choice) in wanted.iter().filter(|(n, _)| allowed(n)) {
            out.insert(match choice {
                None => sub(Kind::Frame, Some(name)),
                Some(w) => String::from_utf8_lossy(&rendition_topic(name, *w)).into_owned(),
            });
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

    /// `cam1` for the full picture, `cam1@320` for a rendition.
    fn feeds(v: &[&str]) -> BTreeSet<Feed> {
        v.iter()
            .map(|s| match s.split_once('@') {
                Some((n, w)) => (n.to_string(), Some(w.parse().expect("width"))),
                None => (s.to_string(), None),
            })
            .collect()
    }

    #[test]
    fn on_demand_takes_previews_and_the_watched_streams() {
        let none = BTreeSet::new();
        assert_eq!(
            topics(Mode::OnDemand, &[], &none),
            set(&["d/", "e/", "i/", "p/"])
        );
        assert_eq!(
            topics(Mode::OnDemand, &[], &feeds(&["cam1", "cam10", "cam10@320"])),
            set(&[
                "d/",
                "e/",
                "f/cam1/",
                "f/cam10/",
                "i/",
                "p/",
                "r/cam10/320/"
            ])
        );
        let only = ["cam1".to_string()];
        assert_eq!(
            topics(Mode::OnDemand, &only, &feeds(&["cam1", "cam2", "cam2@640"])),
            set(&["d/cam1/", "e/cam1/", "f/cam1/", "i/cam1/", "p/cam1/"])
        );
    }

    #[test]
    fn all_takes_everything_whatever_is_watched() {
        assert_eq!(topics(Mode::All, &[], &feeds(&["cam1"])), set(&[""]));
        assert_eq!(
            topics(Mode::All, &["cam1".into()], &BTreeSet::new()),
            set(&[
                "cam1", "d/cam1/", "e/cam1/", "f/cam1/", "i/cam1/", "p/cam1/", "r/cam1/"
            ])
        );
    }
}
