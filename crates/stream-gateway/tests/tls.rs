//! HTTPS served by the gateway itself: real producer and gateway processes,
//! a rustls client trusting a test CA made by scripts/make-cert.sh, every
//! MJPEG part parsed strictly, and bad input on the TLS port.

use std::net::SocketAddr;
use std::time::Duration;

use stream_common::multipart::{MultipartParser, boundary_from_content_type};
use test_support::metrics::metric_value;
use test_support::process::Proc;
use test_support::producer::Producer;
use test_support::tls::{TestCa, connect};
use test_support::{free_port, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Https {
    _producer: Producer,
    gateway: Proc,
    addr: SocketAddr,
    ca: TestCa,
}

async fn start(extra: &[&str]) -> Https {
    let producer = Producer::start(&["--fps", "20", "--size", "320x240", "--stream", "cam0"]);
    let ca = TestCa::new();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let (listen, cert, key) = (
        addr.to_string(),
        ca.cert().display().to_string(),
        ca.key().display().to_string(),
    );
    let mut args = vec![
        "--producer",
        producer.endpoint.as_str(),
        "--listen",
        listen.as_str(),
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        key.as_str(),
        "--tls-reload-every",
        "0.2",
    ];
    args.extend_from_slice(extra);
    let gateway = Proc::start("stream-gateway", &args, &[]);
    let h = Https {
        _producer: producer,
        gateway,
        addr,
        ca,
    };
    let tls = h.ca.connector();
    wait_for(
        "gateway serving cam0 over HTTPS",
        Duration::from_secs(20),
        || {
            let tls = tls.clone();
            async move {
                let r = get(&tls, addr, "/snapshot/cam0").await.ok()?;
                r.starts_with("HTTP/1.1 200").then_some(())
            }
        },
    )
    .await;
    h
}

/// A whole reply to `GET path` over HTTPS, as text (the body may be cut).
async fn get(tls: &TlsConnector, addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = connect(tls, addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn metric(h: &Https, name: &str, labels: &[&str]) -> f64 {
    match get(&h.ca.connector(), h.addr, "/metrics").await {
        Ok(t) => metric_value(&t, name, labels),
        Err(_) => 0.0,
    }
}

/// An open MJPEG stream over HTTPS whose parts are parsed strictly.
struct Viewer {
    s: tokio_rustls::client::TlsStream<TcpStream>,
    parser: MultipartParser,
}

impl Viewer {
    async fn open(tls: &TlsConnector, addr: SocketAddr) -> Viewer {
        let mut s = connect(tls, addr).await.expect("handshake");
        s.write_all(format!("GET /stream/cam0 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut buf = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("head");
            assert!(n > 0, "closed before the head");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let ct = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("Content-Type: ")
                    .or(l.strip_prefix("content-type: "))
            })
            .expect("content type");
        let boundary = boundary_from_content_type(ct).expect("boundary");
        let mut parser = MultipartParser::new(&boundary, true, 8 << 20);
        parser.push(&buf[end..]);
        Viewer { s, parser }
    }

    /// The next whole part's JPEG size.
    async fn next(&mut self) -> usize {
        loop {
            if let Some(p) = self.parser.next_part().expect("strict multipart") {
                assert!(p.body.starts_with(&[0xFF, 0xD8]) && p.body.ends_with(&[0xFF, 0xD9]));
                return p.body.len();
            }
            let mut chunk = [0u8; 16384];
            let n = self.s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "stream ended");
            self.parser.push(&chunk[..n]);
        }
    }
}

#[tokio::test]
async fn streams_over_https_and_rotates_its_certificate() {
    let h = start(&["--threads", "2"]).await;
    let tls = h.ca.connector();

    // The certificate the gateway presents is the file's.
    let s = connect(&tls, h.addr).await.expect("handshake");
    let (_, session) = s.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    let first = h.ca.server_cert();
    assert_eq!(session.peer_certificates().expect("certs")[0], first);
    drop(s);

    // Many TLS viewers, every part whole, through the fan-out writer.
    let mut viewers = Vec::new();
    for _ in 0..40 {
        viewers.push(Viewer::open(&tls, h.addr).await);
    }
    for v in viewers.iter_mut() {
        for _ in 0..5 {
            assert!(v.next().await > 100);
        }
    }

    // Rotation: a new pair for new connections, open streams go on.
    h.ca.issue();
    let second = h.ca.server_cert();
    assert_ne!(first, second);
    wait_for("the new certificate", Duration::from_secs(10), || {
        let (tls, second, addr) = (tls.clone(), second.clone(), h.addr);
        async move {
            let s = connect(&tls, addr).await.ok()?;
            (s.get_ref().1.peer_certificates()?[0] == second).then_some(())
        }
    })
    .await;
    for v in viewers.iter_mut() {
        v.next().await;
    }
    // A garbage file keeps the pair in use, with one log line.
    let tmp = h.ca.dir.join("garbage.tmp");
    std::fs::write(&tmp, b"not a certificate").expect("write");
    std::fs::rename(&tmp, h.ca.cert()).expect("rename");
    let gateway = &h.gateway;
    wait_for(
        "the refusal logged",
        Duration::from_secs(10),
        || async move { gateway.log().contains("does not load").then_some(()) },
    )
    .await;
    let s = connect(&tls, h.addr).await.expect("still served");
    assert_eq!(s.get_ref().1.peer_certificates().expect("certs")[0], second);
    for v in viewers.iter_mut() {
        v.next().await;
    }
    assert_eq!(h.gateway.log().matches("does not load").count(), 1);
}

#[tokio::test]
async fn bad_input_on_the_tls_port_is_refused_and_counted() {
    let h = start(&["--threads", "1", "--header-timeout", "1"]).await;
    let tls = h.ca.connector();
    let mut viewer = Viewer::open(&tls, h.addr).await;

    // Plain HTTP gets one line saying what to use.
    let mut plain = TcpStream::connect(h.addr).await.expect("connect");
    plain
        .write_all(b"GET /stream/cam0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    let _ = plain.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("https://localhost/stream/cam0"), "{out}");

    // A truncated ClientHello, and a handshake that stalls forever.
    let mut cut = TcpStream::connect(h.addr).await.expect("connect");
    cut.write_all(&[0x16, 0x03, 0x01, 0x00, 0xF0, 0x01])
        .await
        .expect("write");
    drop(cut);
    let stalled = TcpStream::connect(h.addr).await.expect("connect");
    let mut stalled2 = TcpStream::connect(h.addr).await.expect("connect");
    stalled2
        .write_all(&[0x16, 0x03, 0x01])
        .await
        .expect("write");

    // A TLS 1.0-only client.
    let old = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-tls1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-connect",
        ])
        .arg(h.addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl");
    assert!(!String::from_utf8_lossy(&old.stdout).contains("BEGIN CERTIFICATE"));

    for (reason, at_least) in [
        ("plain_http", 1.0),
        ("closed", 1.0),
        ("timeout", 2.0),
        ("", 5.0),
    ] {
        // The TLS 1.0 client is the fifth failure, whatever rustls calls it.
        let label = if reason.is_empty() {
            String::new()
        } else {
            format!("reason=\"{reason}\"")
        };
        let hh = &h;
        wait_for(reason, Duration::from_secs(10), || {
            let label = label.clone();
            async move {
                (metric(
                    hh,
                    "gateway_tls_handshake_failures_total",
                    &[label.as_str()],
                )
                .await
                    >= at_least)
                    .then_some(())
            }
        })
        .await;
    }
    drop((stalled, stalled2));
    // The viewer streamed on through all of it.
    for _ in 0..5 {
        viewer.next().await;
    }
}
