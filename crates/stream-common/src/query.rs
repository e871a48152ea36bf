//! A request's query string, read one way by every service: pairs
//! percent-decoded as the page's `encodeURIComponent` writes them (`+`
//! stays a plus, so tokens with `+ / % &` survive), and a key given twice
//! refused, so no two readers of one request can disagree about it.

use std::collections::HashMap;

/// The query string as pairs.
pub type Query = HashMap<String, String>;

pub fn parse_query(q: &str) -> Result<Query, String> {
    let mut out = Query::new();
    for kv in q.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("query parameter {k:?} given twice"));
        }
    }
    Ok(out)
}

/// RFC 3986 percent-decoding of one query key or value. A bad `%` escape
/// or bytes that are not UTF-8 are refused rather than guessed at.
pub fn percent_decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in query: {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("query is not UTF-8 once decoded: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_refuse_duplicates() {
        let q = parse_query("fps=5&token=a&flag").expect("ok");
        assert_eq!(q.get("fps").map(String::as_str), Some("5"));
        assert_eq!(q.get("flag").map(String::as_str), Some(""));
        assert!(parse_query("token=a&token=b").is_err());
        let q = parse_query("token=a%2Bb%2Fc%25d%26e+f").expect("ok");
        assert_eq!(q.get("token").map(String::as_str), Some("a+b/c%d&e+f"));
        assert!(parse_query("token=%zz").is_err());
        assert!(parse_query("token=%2").is_err());
        assert!(parse_query("token=%ff").is_err());
        assert!(parse_query("token=a&%74oken=b").is_err());
    }
}
