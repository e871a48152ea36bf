//! Which picture of a stream a viewer asked for: the full picture, the
//! smallest rendition at least `W` wide (`?width=W`), or one that adapts
//! to the viewer's link (`?width=auto`, `?width=W&auto=1`; adaptation is
//! `serve/` work, this only names the request). A stream's renditions are
//! what its producer announced (`i/<stream>/`, `streams.rs`); a choice is
//! `None` for the full picture or `Some(width)` of a rendition, and every
//! slot, writer and subscription of a rendition is named by that width.

use stream_common::query::Query;

/// The picture a viewer asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Width {
    /// No width asked: the full picture.
    #[default]
    Full,
    /// `?width=W`: the smallest rendition at least `W` wide, else the full
    /// picture.
    AtLeast(u32),
    /// `?width=auto` (no cap) or `?width=W&auto=1` (at most the rendition
    /// for `W`): adapt to the link, starting at the cap.
    Auto { max: Option<u32> },
}

/// A rendition's width, or `None` for the full picture.
pub type Choice = Option<u32>;

/// A stream's full picture or one of its renditions, as subscribed on
/// demand (`interest.rs`, `receive/subscriptions.rs`).
pub type Feed = (String, Choice);

/// Largest width a request may name (bigger ones mean "the full picture").
const MAX_WIDTH: u32 = 1 << 20;

impl Width {
    /// From a request's query: `width` and `auto`; a bad value is an error
    /// to answer with 400.
    pub fn from_query(q: &Query) -> Result<Width, String> {
        let auto = match q.get("auto").map(String::as_str) {
            None | Some("0" | "false" | "") => false,
            Some("1" | "true") => true,
            Some(other) => return Err(format!("auto must be 1 or 0, got {other:?}")),
        };
        match q.get("width").map(String::as_str) {
            None | Some("") if auto => Ok(Width::Auto { max: None }),
            None | Some("") => Ok(Width::Full),
            Some("auto") => Ok(Width::Auto { max: None }),
            Some("full") => Ok(Width::Full),
            Some(v) => {
                let w = parse_width(v)?;
                Ok(if auto {
                    Width::Auto { max: Some(w) }
                } else {
                    Width::AtLeast(w)
                })
            }
        }
    }

    /// The picture to serve first among a stream's renditions (widths
    /// ascending) when its full picture is `full_width` wide.
    pub fn initial(self, available: &[u32], full_width: u32) -> Choice {
        match self {
            Width::Full | Width::Auto { max: None } => None,
            Width::AtLeast(w) | Width::Auto { max: Some(w) } => choose(available, full_width, w),
        }
    }
}

/// A positive decimal width; larger than any picture is fine (the full one).
fn parse_width(v: &str) -> Result<u32, String> {
    let bad = || format!("width must be a positive number of pixels or auto, got {v:?}");
    if v.is_empty() || v.len() > 7 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match v.parse::<u32>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(w) => Ok(w.min(MAX_WIDTH)),
    }
}

/// The smallest rendition at least `want` wide among `available` (widths
/// ascending), or `None`: the full picture (`full_width` wide), when none
/// is that wide or none is smaller than the full picture.
pub fn choose(available: &[u32], full_width: u32, want: u32) -> Choice {
    available
        .iter()
        .copied()
        .filter(|&w| full_width == 0 || w < full_width)
        .find(|&w| w >= want)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        stream_common::query::parse_query(s).expect("query")
    }

    #[test]
    fn the_smallest_rendition_at_least_as_wide_else_the_full_picture() {
        let have = [320, 640];
        assert_eq!(choose(&have, 1280, 1), Some(320));
        assert_eq!(choose(&have, 1280, 320), Some(320));
        assert_eq!(choose(&have, 1280, 321), Some(640));
        assert_eq!(choose(&have, 1280, 500), Some(640));
        assert_eq!(choose(&have, 1280, 641), None);
        assert_eq!(choose(&have, 1280, 5000), None);
        assert_eq!(choose(&[], 1280, 320), None);
        // A rendition not smaller than the picture is never chosen.
        assert_eq!(choose(&have, 640, 500), None);
    }

    #[test]
    fn queries_name_a_width_auto_or_nothing() {
        assert_eq!(Width::from_query(&q("")), Ok(Width::Full));
        assert_eq!(Width::from_query(&q("fps=5")), Ok(Width::Full));
        assert_eq!(Width::from_query(&q("width=320")), Ok(Width::AtLeast(320)));
        assert_eq!(
            Width::from_query(&q("width=auto")),
            Ok(Width::Auto { max: None })
        );
        assert_eq!(
            Width::from_query(&q("width=640&auto=1")),
            Ok(Width::Auto { max: Some(640) })
        );
        assert_eq!(
            Width::from_query(&q("width=99999999")),
            Err("width must be a positive number of pixels or auto, got \"99999999\"".into())
        );
        assert_eq!(
            Width::from_query(&q("width=4000000")),
            Ok(Width::AtLeast(MAX_WIDTH))
        );
        for bad in ["width=0", "width=-1", "width=3.5", "width=x", "auto=yes"] {
            assert!(Width::from_query(&q(bad)).is_err(), "{bad}");
        }
        assert_eq!(Width::AtLeast(500).initial(&[320, 640], 1280), Some(640));
        assert_eq!(Width::Auto { max: None }.initial(&[320, 640], 1280), None);
    }
}
