//! The values a camera is described by, parsed from flags and the cameras
//! file alike: a picture size, a frame rate, and "native" (the source's own).
//! They live apart from the flags so that every stage (sources, scaling,
//! encoding, previews) can name them without importing the configuration.

use std::fmt;
use std::str::FromStr;

/// The test pattern's size and the image directory's rate when unset.
pub const DEFAULT_PATTERN_SIZE: Size = Size {
    width: 640,
    height: 480,
};
pub const DEFAULT_FPS: f64 = 15.0;

/// A setting that may be `native` (or empty, as compose files pass unset
/// variables): the source's own value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrNative<T>(pub Option<T>);

impl<T: FromStr<Err = String>> FromStr for OrNative<T> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "native" | "auto" => Ok(OrNative(None)),
            v => v.parse().map(|t| OrNative(Some(t))),
        }
    }
}

/// Frames per second, 0.1 to 240.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fps(pub f64);

impl FromStr for Fps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_fps(s).map(Fps)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (w, h) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("expected WIDTHxHEIGHT, got {s:?}"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("bad number {v:?} in {s:?}"))
        };
        let (width, height) = (parse(w)?, parse(h)?);
        // Even sizes keep 4:2:0 chroma exact; 16..=8192 keeps frames sane.
        for d in [width, height] {
            if !(16..=8192).contains(&d) || d % 2 != 0 {
                return Err(format!(
                    "{d} is not an even size between 16 and 8192 in {s:?}"
                ));
            }
        }
        Ok(Size { width, height })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// The widths of a camera's renditions (`--renditions 640,320`), largest
/// first, distinct, each an even 16 to 8192; `0`, `none` or empty: none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Widths(pub Vec<u32>);

impl Widths {
    /// The list from numbers (`0` alone: none), checked and sorted.
    pub fn from_list(list: &[i64]) -> Result<Self, String> {
        if list == [0] {
            return Ok(Widths::default());
        }
        if list.len() > frame_wire::MAX_RENDITIONS {
            return Err(format!(
                "at most {} renditions, got {}",
                frame_wire::MAX_RENDITIONS,
                list.len()
            ));
        }
        let mut out = Vec::with_capacity(list.len());
        for &w in list {
            match u32::try_from(w) {
                Ok(w) if (16..=8192).contains(&w) && w % 2 == 0 => out.push(w),
                _ => return Err(format!("{w} is not an even width between 16 and 8192")),
            }
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.dedup();
        Ok(Widths(out))
    }
}

impl FromStr for Widths {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(Widths::default());
        }
        let list = s
            .split([',', ':'])
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("bad width {v:?} in {s:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Widths::from_list(&list)
    }
}

fn parse_fps(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
    if (0.1..=240.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("fps must be between 0.1 and 240, got {v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendition_widths_parse_sorted_and_checked() {
        let w = |s: &str| s.parse::<Widths>().map(|w| w.0);
        assert_eq!(w("640,320"), Ok(vec![640, 320]));
        assert_eq!(w("320, 640,320"), Ok(vec![640, 320]));
        assert_eq!(w("640:320"), Ok(vec![640, 320]));
        for none in ["", " ", "0", "none"] {
            assert_eq!(w(none), Ok(vec![]), "{none:?}");
        }
        for bad in [
            "641",
            "8",
            "0,320",
            "-320",
            "x",
            "640,,320",
            "1,2,3,4,5,6,7,8,9",
        ] {
            assert!(w(bad).is_err(), "{bad:?}");
        }
    }
}
