//! Secrets out of logs: every URL a service logs goes through [`url`] first,
//! so a camera's password or a token in a query string never reaches a log.

/// Query parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &[
    "token", "password", "passwd", "pass", "key", "secret", "auth",
];

/// `scheme://user:pass@host/path?token=t` → `scheme://***@host/path?token=***`.
///
/// The user part is dropped only when it sits in the authority (before the
/// first `/`, `?` or `#` after `://`), so an `@` later in the path is kept.
/// Anything that is not a URL is returned unchanged.
pub fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    format!("{}://{}{}", &url[..scheme_end], host, query(tail))
}

/// `path?token=t&fps=5#x` → `path?token=***&fps=5#x`.
pub fn query(path_and_query: &str) -> String {
    let Some(q) = path_and_query.find('?') else {
        return path_and_query.to_string();
    };
    let (path, after) = path_and_query.split_at(q);
    let after = &after[1..];
    let (params, fragment) = match after.find('#') {
        Some(h) => after.split_at(h),
        None => (after, ""),
    };
    let params: Vec<String> = params
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(k)) => {
                format!("{k}=***")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_password_go() {
        assert_eq!(
            url("http://admin:secret@10.0.0.5:8080/video.mjpg"),
            "http://***@10.0.0.5:8080/video.mjpg"
        );
        assert_eq!(url("rtsp://u:p@cam/live"), "rtsp://***@cam/live");
        assert_eq!(url("rtsp://u:p%40x@cam/live"), "rtsp://***@cam/live");
    }

    #[test]
    fn at_in_path_stays_and_plain_urls_are_unchanged() {
        assert_eq!(url("http://cam/a@b"), "http://cam/a@b");
        assert_eq!(url("http://cam:80/video"), "http://cam:80/video");
        assert_eq!(url("/a/b.mp4"), "/a/b.mp4");
        assert_eq!(url("test-pattern"), "test-pattern");
    }

    #[test]
    fn secret_query_values_go() {
        assert_eq!(
            url("http://gw:80/stream/cam0?fps=5&token=abc#x"),
            "http://gw:80/stream/cam0?fps=5&token=***#x"
        );
        assert_eq!(query("/stream/c?Password=x&a"), "/stream/c?Password=***&a");
        assert_eq!(query("/stream/c"), "/stream/c");
    }
}
