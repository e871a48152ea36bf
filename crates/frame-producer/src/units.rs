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

fn parse_fps(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
    if (0.1..=240.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("fps must be between 0.1 and 240, got {v}"))
    }
}
