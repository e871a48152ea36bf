//! Value parsers for command-line flags that several binaries take, so a
//! flag means and refuses the same thing in every one of them.

/// A fraction from 0 to 1 (a score threshold, an overlap).
pub fn parse_unit(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn units_are_fractions() {
        assert_eq!(super::parse_unit("0.5"), Ok(0.5));
        assert!(super::parse_unit("1.5").is_err());
        assert!(super::parse_unit("x").is_err());
    }
}
