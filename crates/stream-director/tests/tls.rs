//! The director over HTTPS in front of two HTTPS gateways, all real
//! processes with a test CA from scripts/make-cert.sh: a stream request is
//! redirected to an `https://` gateway URL and following it streams MJPEG
//! parts over TLS, parsed strictly; the page and API are relayed over TLS
//! both ways; HSTS on its HTTPS answers; `--redirect-http` and plain HTTP
//! on the TLS port get a `308`; the certificate rotates under the running
//! director; bad input on its TLS port is refused and counted by reason.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use test_support::director::Director;
use test_support::gateway::Gateway;
use test_support::http::{self, Connection, MjpegReader, Response};
use test_support::metrics::metric_value;
use test_support::producer::Producer;
use test_support::tls::{TestCa, connect};
use test_support::{free_port, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` over HTTPS to `addr`, trusting `ca`, the whole reply.
async fn https(ca: &TestCa, addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    test_support::tls::get(&ca.connector(), addr, path).await
}

fn tls_flags(ca: &TestCa) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        ca.cert().display().to_string(),
        "--tls-key".into(),
        ca.key().display().to_string(),
        "--tls-reload-every".into(),
        "0.2".into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn an_https_director_sends_viewers_to_https_gateways() {
    let ca = TestCa::new();
    let producer = Producer::start(&["--fps", "20", "--size", "320x240", "--stream", "cam0"]);
    let mut gateways = Vec::new();
    for name in ["gw-a", "gw-b"] {
        let mut flags = tls_flags(&ca);
        flags.extend(["--instance-id".into(), name.into()]);
        gateways.push(Gateway::start(
            &[producer.endpoint.as_str()],
            &strs(&flags),
            &[],
        ));
    }
    let list = gateways
        .iter()
        .map(|g| g.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (plain_arg, ca_arg) = (plain.to_string(), ca.ca().display().to_string());
    let mut flags = tls_flags(&ca);
    flags.extend(
        [
            "--gateway-ca",
            &ca_arg,
            "--public-url",
            "https://{ip}:{port}",
            "--hsts",
            "600",
            "--redirect-http",
            &plain_arg,
            "--check-timeout",
            "3",
        ]
        .map(String::from),
    );
    let director = Director::start(&list, &strs(&flags));
    let d = director.addr;

    // Both gateways pass their health checks, which are made over TLS.
    wait_for(
        "both HTTPS gateways ready behind the director",
        Duration::from_secs(30),
        || async {
            let r = https(&ca, d, "/director/gateways").await.ok()?;
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            let ready = v["gateways"]
                .as_array()?
                .iter()
                .filter(|g| g["ready"] == true);
            (ready.count() == 2).then_some(())
        },
    )
    .await;

    // Stream requests are redirected to https:// gateway URLs, in turn.
    let ports: BTreeSet<u16> = gateways.iter().map(|g| g.addr.port()).collect();
    let mut seen = BTreeSet::new();
    let mut location = String::new();
    for _ in 0..4 {
        let r = https(&ca, d, "/stream/cam0?fps=10")
            .await
            .expect("redirect");
        assert_eq!(r.head.status, 307, "{}", r.text());
        assert_eq!(
            r.head.header("strict-transport-security"),
            Some("max-age=600")
        );
        location = r.head.header("location").expect("Location").to_string();
        let port = location
            .strip_prefix("https://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix("/stream/cam0?fps=10"))
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("not an https gateway URL: {location}"));
        assert!(ports.contains(&port), "{location}");
        seen.insert(port);
    }
    assert_eq!(seen, ports, "both gateways were chosen");

    // Following the redirect streams MJPEG over TLS from the gateway.
    let (gw, path) = http::resolve_location(d, &location)
        .await
        .expect("location");
    let session = connect(&ca.connector(), gw)
        .await
        .expect("gateway handshake");
    let conn = Connection::request_on(session, gw, "GET", &path, &[], b"")
        .await
        .expect("stream head");
    let mut viewer = MjpegReader::from_connection(conn, &path).expect("a stream");
    for _ in 0..5 {
        let frame = viewer
            .next_frame_within(Duration::from_secs(10))
            .await
            .expect("a part over TLS");
        assert!(frame.jpeg.starts_with(&[0xFF, 0xD8]) && frame.jpeg.ends_with(&[0xFF, 0xD9]));
    }

    // Page and API are relayed over TLS on both sides, HSTS added.
    let api = https(&ca, d, "/api/streams").await.expect("API");
    assert_eq!(api.head.status, 200, "{}", api.text());
    assert!(api.text().contains("\"cam0\""), "{}", api.text());
    assert!(matches!(
        api.head.header("x-gateway-instance"),
        Some("gw-a" | "gw-b")
    ));
    assert_eq!(
        api.head.header("strict-transport-security"),
        Some("max-age=600")
    );
    let page = https(&ca, d, "/").await.expect("page");
    assert_eq!(page.head.status, 200);
    assert!(page.text().contains("<html"), "not the page");
    let pick = https(&ca, d, "/director/pick?stream=cam0")
        .await
        .expect("pick");
    let v: serde_json::Value = serde_json::from_slice(&pick.body).expect("JSON");
    assert!(
        v["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://127.0.0.1:")),
        "{v}"
    );

    // Plain HTTP, on the redirect port or the TLS port, gets a 308 to HTTPS.
    for at in [plain, d] {
        let r = http::get(at, "/stream/cam0?fps=5").await.expect("plain");
        assert_eq!(r.head.status, 308, "{}", r.text());
        assert_eq!(
            r.head.header("location"),
            Some(format!("https://127.0.0.1:{}/stream/cam0?fps=5", d.port()).as_str())
        );
        assert_eq!(r.head.header("strict-transport-security"), None);
    }
    // The viewer streamed on throughout.
    viewer
        .next_frame_within(Duration::from_secs(10))
        .await
        .expect("still streaming");
}

#[tokio::test]
async fn the_director_rotates_its_certificate_and_counts_bad_input() {
    let ca = TestCa::new();
    let mut flags = tls_flags(&ca);
    flags.extend(["--header-timeout".into(), "1".into()]);
    let nowhere = format!("127.0.0.1:{}", free_port());
    let director = Director::start(&nowhere, &strs(&flags));
    let d = director.addr;
    let tls = ca.connector();
    wait_for(
        "the director over HTTPS",
        Duration::from_secs(20),
        || async {
            let r = https(&ca, d, "/healthz").await.ok()?;
            (r.head.status == 200).then_some(())
        },
    )
    .await;

    // Rotation: the new pair for new connections; a garbage file after it
    // keeps that pair, with one log line.
    let first = ca.server_cert();
    let s = connect(&tls, d).await.expect("handshake");
    assert_eq!(s.get_ref().1.peer_certificates().expect("certs")[0], first);
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    ca.issue();
    let second = ca.server_cert();
    assert_ne!(first, second);
    wait_for("the new certificate", Duration::from_secs(10), || {
        let (tls, second) = (tls.clone(), second.clone());
        async move {
            let s = connect(&tls, d).await.ok()?;
            (s.get_ref().1.peer_certificates()?[0] == second).then_some(())
        }
    })
    .await;
    let tmp = ca.dir.join("garbage.tmp");
    std::fs::write(&tmp, b"not a certificate").expect("write");
    std::fs::rename(&tmp, ca.cert()).expect("rename");
    let proc = &director.proc;
    wait_for(
        "the refusal logged",
        Duration::from_secs(10),
        || async move { proc.log().contains("does not load").then_some(()) },
    )
    .await;
    let s = connect(&tls, d).await.expect("still served");
    assert_eq!(s.get_ref().1.peer_certificates().expect("certs")[0], second);
    assert_eq!(director.proc.log().matches("does not load").count(), 1);

    // Plain HTTP on the TLS port: one line naming the https:// URL.
    let r = http::get(d, "/healthz").await.expect("plain");
    assert_eq!(r.head.status, 400);
    assert!(
        r.text()
            .contains(&format!("https://127.0.0.1:{}/healthz", d.port())),
        "{}",
        r.text()
    );
    // A truncated ClientHello, a garbage record, two stalled handshakes.
    let mut cut = TcpStream::connect(d).await.expect("connect");
    cut.write_all(&[0x16, 0x03, 0x01, 0x00, 0xF0, 0x01])
        .await
        .expect("write");
    drop(cut);
    let mut junk = TcpStream::connect(d).await.expect("connect");
    junk.write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef])
        .await
        .expect("write");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), junk.read_to_end(&mut sink)).await;
    let stalled = TcpStream::connect(d).await.expect("connect");
    let mut stalled2 = TcpStream::connect(d).await.expect("connect");
    stalled2
        .write_all(&[0x16, 0x03, 0x01])
        .await
        .expect("write");

    wait_failures(&ca, d, "plain_http", 1.0).await;
    wait_failures(&ca, d, "closed", 1.0).await;
    wait_failures(&ca, d, "bad_message", 1.0).await;
    wait_failures(&ca, d, "timeout", 2.0).await;
    drop((stalled, stalled2));
    // And it serves on; its --healthcheck speaks TLS to it.
    let r = https(&ca, d, "/healthz").await.expect("healthz");
    assert_eq!(r.head.status, 200);
    let listen = d.to_string();
    let check = |listen: &str| {
        std::process::Command::new(test_support::process::bin_path("stream-director"))
            .args(["--healthcheck", "--listen", listen])
            .args(["--tls-cert", "unused.pem", "--tls-key", "unused.pem"])
            .status()
            .expect("stream-director --healthcheck")
    };
    assert!(check(&listen).success());
    assert!(!check(&format!("127.0.0.1:{}", free_port())).success());
}

#[tokio::test]
async fn handshakes_beyond_the_limit_are_refused_at_once() {
    let ca = TestCa::new();
    let mut flags = tls_flags(&ca);
    flags.extend(["--max-pending-handshakes".into(), "2".into()]);
    let nowhere = format!("127.0.0.1:{}", free_port());
    let director = Director::start(&nowhere, &strs(&flags));
    let d = director.addr;
    wait_for(
        "the director over HTTPS",
        Duration::from_secs(20),
        || async {
            let r = https(&ca, d, "/healthz").await.ok()?;
            (r.head.status == 200).then_some(())
        },
    )
    .await;
    let started = || async move {
        let mut s = TcpStream::connect(d).await.expect("connect");
        s.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
        s
    };
    // Two handshakes left unfinished hold both places (for the default
    // ten-second header timeout); a third is closed at once.
    let held = (started().await, started().await);
    wait_for(
        "a third handshake closed at once",
        Duration::from_secs(20),
        || async {
            let mut third = started().await;
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte));
            matches!(read.await, Ok(Ok(0) | Err(_))).then_some(())
        },
    )
    .await;
    drop(held);
    wait_failures(&ca, d, "busy", 1.0).await;
}

/// Waits until the director has counted `at_least` handshake failures for `reason`.
async fn wait_failures(ca: &TestCa, d: SocketAddr, reason: &str, at_least: f64) {
    let label = format!("reason=\"{reason}\"");
    let label = label.as_str();
    wait_for(
        &format!("{at_least} handshake failures for {reason}"),
        Duration::from_secs(10),
        || async move {
            let text = https(ca, d, "/director/metrics").await.ok()?.text();
            let n = metric_value(&text, "director_tls_handshake_failures_total", &[label]);
            (n >= at_least).then_some(())
        },
    )
    .await;
}
