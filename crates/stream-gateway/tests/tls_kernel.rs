//! Kernel TLS (`--tls-kernel`): where the kernel offers TLS, streaming
//! viewers' records are made by the kernel, and they must read exactly as
//! the user-space ones do, whatever suite and version the client chose;
//! where it does not (this project's build machine), the gateway says so
//! and encrypts in user space. Either way every part is parsed strictly.

use std::net::SocketAddr;
use std::time::Duration;

use stream_common::multipart::{MultipartParser, boundary_from_content_type};
use test_support::metrics::metric_value;
use test_support::process::Proc;
use test_support::producer::Producer;
use test_support::tls::{TestCa, connect, connector};
use test_support::{free_port, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring::cipher_suite;

/// Whether this kernel offers TLS now (the gateway's own probe may just
/// have loaded it).
fn kernel_offers_tls() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .is_ok_and(|u| u.split_whitespace().any(|m| m == "tls"))
}

async fn fetch(tls: &TlsConnector, addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = connect(tls, addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads `n` whole parts of `/stream/cam0` over `tls`, strictly, and
/// returns their JPEG sizes; the stream's `seq`s must only go up.
async fn parts(tls: &TlsConnector, addr: SocketAddr, n: usize) -> Vec<usize> {
    let mut s = connect(tls, addr).await.expect("handshake");
    s.write_all(format!("GET /stream/cam0 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let end = loop {
        let got = s.read(&mut chunk).await.expect("head");
        assert!(got > 0, "closed before the head");
        buf.extend_from_slice(&chunk[..got]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let ct = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .expect("content type");
    let mut parser = MultipartParser::new(
        &boundary_from_content_type(ct).expect("boundary"),
        true,
        8 << 20,
    );
    parser.push(&buf[end..]);
    let mut sizes = Vec::new();
    while sizes.len() < n {
        if let Some(p) = parser.next_part().expect("strict multipart") {
            assert!(p.body.starts_with(&[0xFF, 0xD8]) && p.body.ends_with(&[0xFF, 0xD9]));
            sizes.push(p.body.len());
            continue;
        }
        let got = s.read(&mut chunk).await.expect("read");
        assert!(got > 0, "stream ended");
        parser.push(&chunk[..got]);
    }
    sizes
}

#[tokio::test]
async fn streams_read_the_same_with_kernel_tls_or_without() {
    let producer = Producer::start(&["--fps", "25", "--size", "640x480", "--stream", "cam0"]);
    let ca = TestCa::new();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let (listen, cert, key) = (
        addr.to_string(),
        ca.cert().display().to_string(),
        ca.key().display().to_string(),
    );
    let args = [
        "--producer",
        producer.endpoint.as_str(),
        "--listen",
        listen.as_str(),
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        key.as_str(),
    ];
    let gateway = Proc::start("stream-gateway", &args, &[]);
    let tls = ca.connector();
    wait_for("the gateway over HTTPS", Duration::from_secs(20), || {
        let tls = tls.clone();
        async move {
            fetch(&tls, addr, "/snapshot/cam0")
                .await
                .starts_with("HTTP/1.1 200")
                .then_some(())
        }
    })
    .await;
    let kernel = kernel_offers_tls();
    eprintln!("kernel TLS offered here: {kernel}");

    // Every suite the kernel takes, TLS 1.3 and 1.2; several parts each,
    // so records are made by whoever makes them well past the first.
    let suites = [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    for suite in suites {
        let pinned = connector(&ca.ca(), Some(suite));
        let sizes = parts(&pinned, addr, 20).await;
        assert!(sizes.iter().all(|&s| s > 1000), "{suite:?}: {sizes:?}");
    }

    let metrics = fetch(&tls, addr, "/metrics").await;
    let offloaded = metric_value(
        &metrics,
        "gateway_tls_kernel_sessions_total",
        &["result=\"offloaded\""],
    );
    if kernel {
        assert_eq!(offloaded, suites.len() as f64, "{metrics}");
        assert!(gateway.log().contains("encrypted by the kernel"));
    } else {
        assert_eq!(offloaded, 0.0);
        assert!(
            !metrics.contains("gateway_tls_kernel_sessions_total"),
            "no kernel TLS, no counter"
        );
        assert!(
            gateway.log().contains("the kernel does not offer TLS"),
            "{}",
            gateway.log()
        );
    }
    // Snapshots (finite replies) never leave user space, and still work.
    assert!(
        fetch(&tls, addr, "/snapshot/cam0")
            .await
            .starts_with("HTTP/1.1 200")
    );
}

#[tokio::test]
async fn tls_kernel_off_stays_in_user_space() {
    let producer = Producer::start(&["--fps", "20", "--size", "320x240", "--stream", "cam0"]);
    let ca = TestCa::new();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let (listen, cert, key) = (
        addr.to_string(),
        ca.cert().display().to_string(),
        ca.key().display().to_string(),
    );
    let args = [
        "--producer",
        producer.endpoint.as_str(),
        "--listen",
        listen.as_str(),
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        key.as_str(),
        "--tls-kernel",
        "off",
    ];
    let gateway = Proc::start("stream-gateway", &args, &[]);
    let tls = ca.connector();
    wait_for("the gateway over HTTPS", Duration::from_secs(20), || {
        let tls = tls.clone();
        async move {
            fetch(&tls, addr, "/snapshot/cam0")
                .await
                .starts_with("HTTP/1.1 200")
                .then_some(())
        }
    })
    .await;
    assert_eq!(parts(&tls, addr, 10).await.len(), 10);
    let metrics = fetch(&tls, addr, "/metrics").await;
    assert!(!metrics.contains("gateway_tls_kernel_sessions_total"));
    assert!(gateway.log().contains("--tls-kernel off"));
}
