//! Where a redirect points: the `--public-url` template filled in for the
//! chosen gateway, then the request's own path and query. `{host}` is taken
//! only from the names `--public-hosts` lists, never from whatever `Host`
//! a client sends.

use std::net::SocketAddr;

use crate::pool::Gateway;
use crate::request::Request;

/// The `Location` for sending `req` to `gw`: `template` filled in, then the
/// request's own path and query. `{host}` is the viewer's `Host` only when
/// `hosts` lists it, else the first of `hosts`, else the gateway's IP.
pub fn location(template: &str, hosts: &[String], gw: &Gateway, req: &Request) -> String {
    let ip = match gw.addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let base = template
        .replace("{ip}", &ip)
        .replace("{port}", &gw.addr.port().to_string())
        .replace("{host}", public_host(hosts, req).unwrap_or(&ip))
        .replace("{instance}", gw.instance.as_deref().unwrap_or(&ip));
    format!("{}{}", base.trim_end_matches('/'), req.target)
}

/// The name `{host}` takes for `req`: its `Host` if `hosts` lists it
/// (case-insensitively), else the first listed name.
fn public_host<'a>(hosts: &'a [String], req: &'a Request) -> Option<&'a str> {
    let asked = req.host_name();
    hosts
        .iter()
        .find(|h| asked.is_some_and(|a| a.eq_ignore_ascii_case(h)))
        .or_else(|| hosts.first())
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, host: Option<&str>) -> Request {
        Request::get(target, host)
    }

    #[test]
    fn locations_fill_the_template() {
        let gw = Gateway {
            addr: ([172, 18, 0, 5], 8080).into(),
            host: "stream-gateway".into(),
            instance: Some("node-2".into()),
            ready: true,
        };
        let r = req("/stream/cam0?token=abc", Some("cams.example:8080"));
        assert_eq!(
            location("http://{ip}:{port}", &[], &gw, &r),
            "http://172.18.0.5:8080/stream/cam0?token=abc"
        );
        let hosts = ["other.example".to_string(), "cams.example".to_string()];
        assert_eq!(
            location("http://{host}:{port}/", &hosts, &gw, &r),
            "http://cams.example:8080/stream/cam0?token=abc"
        );
        let evil = req("/stream/cam0?token=abc", Some("evil.example"));
        assert_eq!(
            location("http://{host}:{port}/", &hosts, &gw, &evil),
            "http://other.example:8080/stream/cam0?token=abc"
        );
        assert_eq!(
            location("http://{host}:{port}/", &[], &gw, &evil),
            "http://172.18.0.5:8080/stream/cam0?token=abc"
        );
        assert_eq!(
            location("https://{instance}.cams.example", &[], &gw, &r),
            "https://node-2.cams.example/stream/cam0?token=abc"
        );
        let v6 = req("/video_feed", Some("[::1]:8080"));
        assert_eq!(v6.host_name(), Some("[::1]"));
        assert_eq!(req("/", Some("plain")).host_name(), Some("plain"));
    }
}
