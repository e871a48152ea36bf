//! Kernel TLS (`--tls-kernel`): where the kernel offers TLS, streaming
//! viewers' records are made by the kernel, and they must read exactly as
//! the user-space ones do, whatever suite and version the client chose;
//! where it does not (this project's build machine), the gateway says so
//! and encrypts in user space. Either way every part is parsed strictly.

use test_support::tls::{HttpsGateway, connector, open_stream};
use tokio_rustls::rustls::crypto::ring::cipher_suite;

/// Whether this kernel offers TLS now (the gateway's own probe may just
/// have loaded it).
fn kernel_offers_tls() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .is_ok_and(|u| u.split_whitespace().any(|m| m == "tls"))
}

const CAMERA: &[&str] = &["--fps", "25", "--size", "640x480", "--stream", "cam0"];

#[tokio::test]
async fn streams_read_the_same_with_kernel_tls_or_without() {
    let h = HttpsGateway::start(CAMERA, &[]).await;
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
        let pinned = connector(&h.ca.ca(), Some(suite));
        let mut viewer = open_stream(&pinned, h.addr(), "127.0.0.1", "/stream/cam0")
            .await
            .unwrap_or_else(|e| panic!("{suite:?}: {e:#}"));
        for _ in 0..20 {
            let frame = viewer.next_frame().await.expect("a whole part");
            assert!(frame.jpeg.len() > 1000, "{suite:?}");
        }
    }

    let offloaded = h
        .metric(
            "gateway_tls_kernel_sessions_total",
            &["result=\"offloaded\""],
        )
        .await;
    let metrics = h.get("/metrics").await.expect("metrics").text();
    let log = h.gateway.proc.log();
    if kernel {
        assert_eq!(offloaded, suites.len() as f64, "{metrics}");
        assert!(log.contains("encrypted by the kernel"), "{log}");
    } else {
        assert!(
            !metrics.contains("gateway_tls_kernel_sessions_total"),
            "no kernel TLS, no counter"
        );
        assert!(log.contains("the kernel does not offer TLS"), "{log}");
    }
    // Snapshots (finite replies) never leave user space, and still work.
    let snapshot = h.get("/snapshot/cam0").await.expect("snapshot");
    assert_eq!(snapshot.head.status, 200);
}

#[tokio::test]
async fn tls_kernel_off_stays_in_user_space() {
    let h = HttpsGateway::start(CAMERA, &["--tls-kernel", "off"]).await;
    let mut viewer = h.viewer("/stream/cam0").await;
    for _ in 0..10 {
        viewer.next_frame().await.expect("a whole part");
    }
    let metrics = h.get("/metrics").await.expect("metrics").text();
    assert!(!metrics.contains("gateway_tls_kernel_sessions_total"));
    assert!(h.gateway.proc.log().contains("--tls-kernel off"));
}
