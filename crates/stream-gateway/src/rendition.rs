//! TEMP stub of D's rendition.rs (contract in RENDITIONS.md), dropped at the merge of rend.

/// What a viewer asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    Full,
    AtLeast(u32),
    Auto { max: Option<u32> },
}

/// The smallest rendition at least `want` wide; `None` = the full picture.
pub fn choose(available: &[u32], full_width: u32, want: u32) -> Option<u32> {
    if want >= full_width && full_width > 0 {
        return None;
    }
    available.iter().copied().find(|w| *w >= want)
}
