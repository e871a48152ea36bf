//! The list of renditions a stream has, as a producer announces it on
//! `i/<stream>/` (about once a second, with the preview), so that gateways
//! can list and choose renditions without any configuration of their own.
//!
//! The payload is short ASCII, `WxH` per rendition separated by one space,
//! widths strictly ascending: `320x180 640x360`; empty when the stream has
//! none. It is small and strictly checked: at most [`MAX_RENDITIONS`]
//! entries, sizes within [`MAX_DIMENSION`], nothing else allowed.

use crate::{MAX_DIMENSION, WireError};

/// Most renditions one stream may announce.
pub const MAX_RENDITIONS: usize = 8;
/// Longest payload accepted (8 entries of `16384x16384` and spaces fit).
const MAX_PAYLOAD: usize = MAX_RENDITIONS * 12;

/// A stream's renditions, `(width, height)` in ascending width.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renditions(Vec<(u32, u32)>);

impl Renditions {
    /// The list, checked: sizes in range, widths strictly ascending, at
    /// most [`MAX_RENDITIONS`].
    pub fn new(sizes: Vec<(u32, u32)>) -> Result<Self, WireError> {
        let bad = |why: &str| Err(WireError::MalformedRenditions(why.to_string()));
        if sizes.len() > MAX_RENDITIONS {
            return bad("too many");
        }
        let dims_ok = |d: u32| (1..=MAX_DIMENSION).contains(&d);
        if !sizes.iter().all(|&(w, h)| dims_ok(w) && dims_ok(h)) {
            return bad("size out of range");
        }
        if !sizes.windows(2).all(|p| p[0].0 < p[1].0) {
            return bad("widths not strictly ascending");
        }
        Ok(Renditions(sizes))
    }

    pub fn sizes(&self) -> &[(u32, u32)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let text: Vec<String> = self.0.iter().map(|(w, h)| format!("{w}x{h}")).collect();
        text.join(" ").into_bytes()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let bad = |why: &str| WireError::MalformedRenditions(why.to_string());
        if payload.len() > MAX_PAYLOAD {
            return Err(bad("too long"));
        }
        let text = std::str::from_utf8(payload).map_err(|_| bad("not ASCII"))?;
        if text.is_empty() {
            return Ok(Renditions::default());
        }
        let number = |s: &str| {
            let plain = !s.is_empty()
                && s.len() <= 5
                && !s.starts_with('0')
                && s.bytes().all(|b| b.is_ascii_digit());
            plain
                .then(|| s.parse::<u32>().ok())
                .flatten()
                .ok_or_else(|| bad("not a size"))
        };
        let sizes = text
            .split(' ')
            .map(|entry| {
                let (w, h) = entry.split_once('x').ok_or_else(|| bad("not WxH"))?;
                Ok((number(w)?, number(h)?))
            })
            .collect::<Result<Vec<_>, WireError>>()?;
        Renditions::new(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_golden_bytes() {
        let r = Renditions::new(vec![(320, 180), (640, 360)]).expect("valid");
        assert_eq!(r.encode(), b"320x180 640x360");
        assert_eq!(Renditions::decode(b"320x180 640x360"), Ok(r));
        assert_eq!(Renditions::decode(b""), Ok(Renditions::default()));
        assert!(Renditions::default().encode().is_empty());
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b"640x360 320x180"[..],
            b"320x180 320x180",
            b"320x180  640x360",
            b" 320x180",
            b"320x180 ",
            b"320",
            b"320x",
            b"x180",
            b"0x180",
            b"0320x180",
            b"+320x180",
            b"320x180x2",
            b"99999x180",
            b"16385x180",
            b"320X180",
            b"\xFF\xFEx1",
            b"1x1 2x1 3x1 4x1 5x1 6x1 7x1 8x1 9x1",
            &[b'1'; 200],
        ] {
            assert!(
                matches!(
                    Renditions::decode(bad),
                    Err(WireError::MalformedRenditions(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(Renditions::new(vec![(0, 1)]).is_err());
        assert!(Renditions::new(vec![(2, 1), (1, 1)]).is_err());
        assert!(Renditions::new(vec![(16_384, 16_384); 1]).is_ok());
        let most: Vec<_> = (1..=8).map(|w| (16_376 + w, 16_384)).collect();
        let r = Renditions::new(most).expect("8 of the largest");
        assert_eq!(Renditions::decode(&r.encode()), Ok(r));
    }
}
