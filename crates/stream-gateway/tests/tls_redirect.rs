//! `--redirect-http` and `--hsts` on a real HTTPS gateway: the plain-HTTP
//! port answers every request with a `308` to the same path on `https://`
//! (the host asked for, the TLS port), reading heads with the usual limits;
//! plain HTTP on the TLS port is redirected too; HTTPS answers, streams
//! included, carry `Strict-Transport-Security`, plain ones never do.

use std::net::SocketAddr;
use std::time::Duration;

use test_support::gateway::Gateway;
use test_support::http::{self, Connection, MjpegReader, Response};
use test_support::producer::Producer;
use test_support::tls::{TestCa, connect};
use test_support::{free_port, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` over HTTPS to `addr`, trusting `ca`, the whole reply.
async fn https(ca: &TestCa, addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    test_support::tls::get(&ca.connector(), addr, path).await
}

/// Sends `raw` on a plain connection to `addr` and reads the answer.
async fn raw(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn plain_http_is_redirected_and_https_answers_carry_hsts() {
    let ca = TestCa::new();
    let producer = Producer::start(&["--fps", "20", "--size", "320x240", "--stream", "cam0"]);
    let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (cert, key, plain_arg) = (
        ca.cert().display().to_string(),
        ca.key().display().to_string(),
        plain.to_string(),
    );
    let gw = Gateway::start(
        &[producer.endpoint.as_str()],
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--redirect-http",
            &plain_arg,
            "--hsts",
            "300",
        ],
        &[],
    );
    let addr = gw.addr;
    wait_for("cam0 over HTTPS", Duration::from_secs(20), || async {
        let r = https(&ca, addr, "/snapshot/cam0").await.ok()?;
        (r.head.status == 200).then_some(())
    })
    .await;

    // HTTPS answers carry HSTS: replies and the stream's own head.
    let api = https(&ca, addr, "/api/streams").await.expect("API");
    assert_eq!(api.head.status, 200);
    assert_eq!(
        api.head.header("strict-transport-security"),
        Some("max-age=300")
    );
    let session = connect(&ca.connector(), addr).await.expect("handshake");
    let conn = Connection::request_on(session, addr, "GET", "/stream/cam0", &[], b"")
        .await
        .expect("stream");
    let mut viewer = MjpegReader::from_connection(conn, "/stream/cam0").expect("a stream");
    assert_eq!(
        viewer.head().header("strict-transport-security"),
        Some("max-age=300")
    );
    viewer
        .next_frame_within(Duration::from_secs(10))
        .await
        .expect("a part");

    // The plain port and plain HTTP on the TLS port: 308 to the same path.
    for at in [plain, addr] {
        let r = http::get(at, "/stream/cam0?fps=5").await.expect("plain");
        assert_eq!(r.head.status, 308, "{}", r.text());
        assert_eq!(
            r.head.header("location"),
            Some(format!("https://127.0.0.1:{}/stream/cam0?fps=5", addr.port()).as_str())
        );
        assert_eq!(r.head.header("strict-transport-security"), None);
    }
    // The host asked for is kept; one that is no host name is refused.
    let named = raw(
        plain,
        b"GET /api/streams HTTP/1.1\r\nHost: cams.example:80\r\n\r\n",
    )
    .await;
    assert!(named.starts_with("HTTP/1.1 308"), "{named}");
    assert!(
        named.contains(&format!(
            "location: https://cams.example:{}/api/streams\r\n",
            addr.port()
        )),
        "{named}"
    );
    let evil = raw(plain, b"GET / HTTP/1.1\r\nHost: evil.example/x?\r\n\r\n").await;
    assert!(evil.starts_with("HTTP/1.1 400"), "{evil}");
    assert!(!evil.contains("location:"), "{evil}");
    // Heads are read with the usual limits.
    let mut huge = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let big = raw(plain, &huge).await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    // The viewer streamed on throughout.
    viewer
        .next_frame_within(Duration::from_secs(10))
        .await
        .expect("still streaming");
    // --healthcheck speaks TLS to a gateway serving HTTPS.
    let listen = addr.to_string();
    let status = std::process::Command::new(test_support::process::bin_path("stream-gateway"))
        .args(["--healthcheck", "--listen", &listen, "--tls-cert", &cert])
        .args(["--tls-key", &key])
        .status()
        .expect("stream-gateway --healthcheck");
    assert!(status.success());
}

#[tokio::test]
async fn hsts_is_never_sent_over_plain_http() {
    let gw = Gateway::start(&[], &["--hsts", "300"], &[]);
    let addr = gw.addr;
    let r = wait_for("the gateway", Duration::from_secs(20), || async {
        http::get(addr, "/healthz").await.ok()
    })
    .await;
    assert_eq!(r.head.status, 200);
    assert_eq!(r.head.header("strict-transport-security"), None);
}
