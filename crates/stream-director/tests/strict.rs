//! The director reads request heads strictly: a bare LF, a lone CR or a
//! control character in a head is refused with 400, so nothing can be
//! injected into a redirect or smuggled past it to a gateway; and a
//! redirect's `{host}` comes only from the configured names, never from
//! whatever `Host` a client sends.

use std::net::SocketAddr;
use std::time::Duration;

use test_support::director::Director;
use test_support::gateway::Gateway;
use test_support::producer::Producer;
use test_support::{http, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `raw` and reads the whole answer (the director closes after it).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    try_exchange(addr, raw).await.expect("connect and write")
}

/// [`exchange`], `None` while nothing listens yet.
async fn try_exchange(addr: SocketAddr, raw: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(raw).await.ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn bare_lf_and_control_characters_are_refused() {
    let producer = Producer::start(&["--fps", "5", "--size", "160x120"]);
    let gw = Gateway::start(&[&producer.endpoint], &[], &[]);
    let gateways = gw.addr.to_string();
    let director = Director::start(&gateways, &["--public-hosts", "cams.local,other.local"]);
    let addr = director.addr;
    wait_for(
        "the director to relay to its gateway",
        Duration::from_secs(20),
        || async move {
            let r = http::get(addr, "/api/streams").await.ok()?;
            (r.head.status == 200).then_some(())
        },
    )
    .await;

    for (what, raw) in [
        (
            "bare LF in the target (header injection)",
            &b"GET /stream/cam0?x\nSet-Cookie:pwn=1 HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        ),
        (
            "bare LF in a relayed header (request smuggling)",
            &b"GET /api/streams HTTP/1.1\r\nHost: a\r\nX: y\nGET /stream/cam0 HTTP/1.1\r\n\r\n"[..],
        ),
        (
            "lone CR in a header",
            &b"GET /api/streams HTTP/1.1\r\nHost: a\rSet-Cookie: pwn=1\r\n\r\n"[..],
        ),
        (
            "NUL in a header",
            &b"GET /api/streams HTTP/1.1\r\nHost: a\x00b\r\n\r\n"[..],
        ),
        (
            "space before the colon",
            &b"GET /api/streams HTTP/1.1\r\nHost : a\r\n\r\n"[..],
        ),
    ] {
        let answer = exchange(addr, raw).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{what}: refused, got {answer:?}"
        );
        assert!(
            !answer.to_ascii_lowercase().contains("set-cookie"),
            "{what}"
        );
        assert!(!answer.contains("multipart"), "{what}: no stream relayed");
    }
    // `{host}` only from the list: a listed Host is kept, any other is
    // replaced by the first listed name.
    let location = |answer: String| {
        answer
            .lines()
            .find_map(|l| l.strip_prefix("Location: ").map(str::to_string))
            .unwrap_or_else(|| panic!("a redirect: {answer:?}"))
    };
    let evil = exchange(
        addr,
        b"GET /stream/cam0?token=t HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    )
    .await;
    assert!(evil.starts_with("HTTP/1.1 307"), "{evil:?}");
    let to = location(evil);
    assert!(to.starts_with("http://cams.local:"), "{to}");
    let listed = exchange(
        addr,
        b"GET /stream/cam0 HTTP/1.1\r\nHost: OTHER.local:80\r\n\r\n",
    )
    .await;
    assert!(location(listed).starts_with("http://other.local:"));
    // A clean request still passes.
    let ok = exchange(
        addr,
        b"GET /api/streams HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok:?}");
}

/// `/director/*` names the gateways' addresses: with credentials set it
/// asks for them as the gateways' API does (a token in `Authorization` or
/// `?token=`), counts refusals, and leaves health checks open. Streams are
/// redirected by the gateway's own route table, events included.
#[tokio::test]
async fn director_answers_need_the_credentials() {
    let producer = Producer::start(&["--fps", "5", "--size", "160x120"]);
    let gw = Gateway::start(&[&producer.endpoint], &["--auth-token", "s3cret"], &[]);
    let gateways = gw.addr.to_string();
    let director = Director::start(&gateways, &["--auth-token", "s3cret"]);
    let addr = director.addr;
    wait_for(
        "the director to find its gateway",
        Duration::from_secs(20),
        || async move {
            let r = try_exchange(
                addr,
                b"GET /director/gateways HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n",
            )
            .await?;
            r.contains("\"ready\":true").then_some(())
        },
    )
    .await;
    for refused in [
        &b"GET /director/gateways HTTP/1.1\r\n\r\n"[..],
        b"GET /director/gateways HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n",
        b"GET /director/pick?stream=cam0 HTTP/1.1\r\n\r\n",
        b"GET /director/pick?stream=cam0&token=wrong HTTP/1.1\r\n\r\n",
    ] {
        let answer = exchange(addr, refused).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
        assert!(answer.contains("WWW-Authenticate: Bearer"), "{answer:?}");
        assert!(
            !answer.contains("127.0.0.1"),
            "no address leaks: {answer:?}"
        );
    }
    let picked = exchange(
        addr,
        b"GET /director/pick?stream=cam0&token=s3cret HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(picked.starts_with("HTTP/1.1 200"), "{picked:?}");
    assert!(picked.contains("\"url\":\"http://127.0.0.1:"), "{picked:?}");
    let state = exchange(
        addr,
        b"GET /director/gateways HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n",
    )
    .await;
    assert!(state.contains("\"unauthorized\":4"), "{state:?}");
    let health = exchange(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health:?}");
    for endless in ["/stream/cam0", "/events/cam0", "/video_feed"] {
        let raw = format!("GET {endless} HTTP/1.1\r\n\r\n");
        let answer = exchange(addr, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 307"), "{endless}: {answer:?}");
    }
    // Relayed requests are the gateway's to judge.
    let relayed = exchange(addr, b"GET /api/streams HTTP/1.1\r\n\r\n").await;
    assert!(relayed.starts_with("HTTP/1.1 401"), "{relayed:?}");
    let relayed = exchange(addr, b"GET /api/streams?token=s3cret HTTP/1.1\r\n\r\n").await;
    assert!(relayed.starts_with("HTTP/1.1 200"), "{relayed:?}");
}
