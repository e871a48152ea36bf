//! The director reads request heads strictly: a bare LF, a lone CR or a
//! control character in a head is refused with 400, so nothing can be
//! injected into a redirect or smuggled past it to a gateway; and a
//! redirect's `{host}` comes only from the configured names, never from
//! whatever `Host` a client sends.

use std::net::SocketAddr;
use std::time::Duration;

use test_support::gateway::Gateway;
use test_support::process::Proc;
use test_support::producer::Producer;
use test_support::{free_port, http, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `raw` and reads the whole answer (the director closes after it).
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn bare_lf_and_control_characters_are_refused() {
    let producer = Producer::start(&["--fps", "5", "--size", "160x120"]);
    let gw = Gateway::start(&[&producer.endpoint], &[], &[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listen = addr.to_string();
    let gateways = gw.addr.to_string();
    let _director = Proc::start(
        "stream-director",
        &[
            "--listen",
            &listen,
            "--gateways",
            &gateways,
            "--check-interval",
            "0.2",
            "--public-url",
            "http://{host}:{port}",
            "--public-hosts",
            "cams.local,other.local",
        ],
        &[],
    );
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
