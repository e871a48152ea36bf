//! What a plain-HTTP request is told when the service speaks HTTPS
//! (`--redirect-http`, or plain HTTP on the TLS port): a `308` to the same
//! path on `https://`, on the host the client asked for and the TLS port;
//! and the `Strict-Transport-Security` value of `--hsts`. The host comes
//! from the client's own `Host`, so it is checked to be a plain name or
//! address before it is put in a `Location`.

/// `https://HOST[:PORT]TARGET` for a request of `target` (starting with
/// `/`) that sent `Host: host`; `None` when the host is missing or not a
/// plain name or address (nothing to redirect to). Port 443 is left out.
pub fn https_location(host: Option<&str>, https_port: u16, target: &str) -> Option<String> {
    let name = host_name(host?)?;
    if !target.starts_with('/') {
        return None;
    }
    Some(match https_port {
        443 => format!("https://{name}{target}"),
        port => format!("https://{name}:{port}{target}"),
    })
}

/// The name part of a `Host` value (without its port), if it is a DNS name,
/// an IPv4 address or a bracketed IPv6 address.
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')? + 1;
        let inner = &host[1..end - 1];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return None;
        }
        (&host[..end], &host[end..])
    } else {
        let (name, port) = host.split_once(':').map_or((host, ""), |(n, p)| (n, p));
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return None;
        }
        (
            name,
            if port.is_empty() {
                ""
            } else {
                &host[name.len()..]
            },
        )
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    port_ok.then_some(name)
}

/// The `Strict-Transport-Security` value for `--hsts SECS`; `None` for 0 (off).
pub fn hsts(max_age_secs: u64) -> Option<String> {
    (max_age_secs > 0).then(|| format!("max-age={max_age_secs}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_keep_the_path_and_take_the_tls_port() {
        let at = |h, p| https_location(h, p, "/stream/cam0?fps=5");
        assert_eq!(
            at(Some("cams.example:8080"), 8443).as_deref(),
            Some("https://cams.example:8443/stream/cam0?fps=5")
        );
        assert_eq!(
            at(Some("cams.example"), 443).as_deref(),
            Some("https://cams.example/stream/cam0?fps=5")
        );
        assert_eq!(
            at(Some("[::1]:80"), 8443).as_deref(),
            Some("https://[::1]:8443/stream/cam0?fps=5")
        );
        assert_eq!(
            at(Some("127.0.0.1"), 8443).as_deref(),
            Some("https://127.0.0.1:8443/stream/cam0?fps=5")
        );
        for bad in [
            None,
            Some(""),
            Some("evil.example/x"),
            Some("a@b"),
            Some("[::1"),
            Some("[nothost]:1"),
            Some("h:80:80"),
            Some("h:x"),
            Some("h\r\nSet-Cookie: x"),
        ] {
            assert_eq!(at(bad, 8443), None, "{bad:?}");
        }
        assert_eq!(https_location(Some("h"), 1, "*"), None);
    }

    #[test]
    fn hsts_is_off_at_zero() {
        assert_eq!(hsts(0), None);
        assert_eq!(hsts(31536000).as_deref(), Some("max-age=31536000"));
    }
}
