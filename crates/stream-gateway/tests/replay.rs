//! Signed frames cannot be replayed: frames captured off the bus (with the
//! key's token) and sent again from a plain PUB on the producer's port,
//! after the producer stopped, are refused and counted
//! (`reason="replay"`), never shown. Real binaries on loopback.

use std::time::{Duration, Instant};

use frame_wire::auth::KeyRing;
use test_support::gateway::Gateway;
use test_support::media;
use test_support::metrics::wait_metric;
use test_support::producer::Producer;
use zeromq::{Socket, SocketRecv, SocketSend};

const KEY: &str = "6b1e0c3f9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

#[tokio::test]
async fn replayed_signed_frames_are_refused_and_counted() {
    let dir = media::temp_dir("replay");
    let key = dir.join("bus.key");
    std::fs::write(&key, KEY).expect("key");
    let key_s = key.to_string_lossy().into_owned();
    let mut p = Producer::start(&["--fps", "20", "--bus-key-file", &key_s]);
    let g = Gateway::start(
        &[&p.endpoint],
        &["--subscribe", "all"],
        &[("GATEWAY_BUS_KEY_FILE", &key_s)],
    );
    // The sniffer: holds the key's token, records signed frames as they pass.
    let ring = KeyRing::parse(KEY).expect("key");
    let mut sniffer = zeromq::SubSocket::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sniffer.connect(&p.endpoint).await.is_err() {
        assert!(Instant::now() < deadline, "the producer never listened");
        sniffer = zeromq::SubSocket::new();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in ring.subscription_tokens() {
        sniffer.subscribe(&t).await.expect("token");
    }
    sniffer.subscribe("f/").await.expect("subscribe");
    let mut captured = Vec::new();
    while captured.len() < 10 {
        let m = tokio::time::timeout(Duration::from_secs(10), sniffer.recv())
            .await
            .expect("a frame in time")
            .expect("recv");
        captured.push(m);
    }
    // The gateway has received these (and later) frames live.
    wait_metric(
        g.addr,
        "gateway_frames_in_total",
        &[],
        20.0,
        Duration::from_secs(10),
    )
    .await;
    let endpoint = p.endpoint.clone();
    p.proc.kill();
    let before = g.metric("gateway_frames_in_total", &[]).await;

    // The attacker takes the producer's place and replays.
    let mut fake = zeromq::PubSocket::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.bind(&endpoint).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the producer's port stayed taken"
        );
        fake = zeromq::PubSocket::new();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let replayed = loop {
        for m in captured.clone() {
            let _ = fake.send(m).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = g
            .metric("gateway_invalid_messages_total", &["replay"])
            .await;
        if n >= 10.0 {
            break n;
        }
        assert!(Instant::now() < deadline, "only {n} replays counted");
    };
    assert_eq!(
        g.metric("gateway_frames_in_total", &[]).await,
        before,
        "a replayed frame was shown"
    );
    eprintln!("{replayed} replayed frames refused, none shown");
}
