//! HTTPS served by the gateway itself: real producer and gateway processes,
//! a rustls client trusting a test CA made by scripts/make-cert.sh, every
//! MJPEG part parsed strictly, and bad input on the TLS port.

use std::time::Duration;

use test_support::tls::{HttpsGateway, connect};
use test_support::wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(extra: &[&str]) -> HttpsGateway {
    let producer = ["--fps", "20", "--size", "320x240", "--stream", "cam0"];
    HttpsGateway::start(&producer, extra).await
}

/// The next part's JPEG size; the part checked strictly.
async fn next(v: &mut test_support::http::MjpegReader) -> usize {
    v.next_frame().await.expect("a whole part").jpeg.len()
}

#[tokio::test]
async fn streams_over_https_and_rotates_its_certificate() {
    let h = start(&["--threads", "2"]).await;
    let tls = h.tls.clone();

    // The certificate the gateway presents is the file's.
    let s = connect(&tls, h.addr()).await.expect("handshake");
    let (_, session) = s.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    let first = h.ca.server_cert();
    assert_eq!(session.peer_certificates().expect("certs")[0], first);
    drop(s);

    // Many TLS viewers, every part whole, through the fan-out writer.
    let mut viewers = Vec::new();
    for _ in 0..40 {
        viewers.push(h.viewer("/stream/cam0").await);
    }
    for v in viewers.iter_mut() {
        for _ in 0..5 {
            assert!(next(v).await > 100);
        }
    }

    // Rotation: a new pair for new connections, open streams go on.
    h.ca.issue();
    let second = h.ca.server_cert();
    assert_ne!(first, second);
    wait_for("the new certificate", Duration::from_secs(10), || {
        let (tls, second, addr) = (tls.clone(), second.clone(), h.addr());
        async move {
            let s = connect(&tls, addr).await.ok()?;
            (s.get_ref().1.peer_certificates()?[0] == second).then_some(())
        }
    })
    .await;
    for v in viewers.iter_mut() {
        next(v).await;
    }
    // A garbage file keeps the pair in use, with one log line.
    let tmp = h.ca.dir.join("garbage.tmp");
    std::fs::write(&tmp, b"not a certificate").expect("write");
    std::fs::rename(&tmp, h.ca.cert()).expect("rename");
    let gateway = &h.gateway.proc;
    wait_for(
        "the refusal logged",
        Duration::from_secs(10),
        || async move { gateway.log().contains("does not load").then_some(()) },
    )
    .await;
    let s = connect(&tls, h.addr()).await.expect("still served");
    assert_eq!(s.get_ref().1.peer_certificates().expect("certs")[0], second);
    for v in viewers.iter_mut() {
        next(v).await;
    }
    assert_eq!(h.gateway.proc.log().matches("does not load").count(), 1);
}

#[tokio::test]
async fn bad_input_on_the_tls_port_is_refused_and_counted() {
    let h = start(&["--threads", "1", "--header-timeout", "1"]).await;
    let mut viewer = h.viewer("/stream/cam0").await;

    // Plain HTTP gets one line saying what to use.
    let mut plain = TcpStream::connect(h.addr()).await.expect("connect");
    plain
        .write_all(b"GET /stream/cam0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    let _ = plain.read_to_string(&mut out).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("https://localhost/stream/cam0"), "{out}");

    // A truncated ClientHello, and a handshake that stalls forever.
    let mut cut = TcpStream::connect(h.addr()).await.expect("connect");
    cut.write_all(&[0x16, 0x03, 0x01, 0x00, 0xF0, 0x01])
        .await
        .expect("write");
    drop(cut);
    let stalled = TcpStream::connect(h.addr()).await.expect("connect");
    let mut stalled2 = TcpStream::connect(h.addr()).await.expect("connect");
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
        .arg(h.addr().to_string())
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
                (hh.metric("gateway_tls_handshake_failures_total", &[label.as_str()])
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
        next(&mut viewer).await;
    }
}
