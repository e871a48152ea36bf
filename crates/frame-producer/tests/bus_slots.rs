//! The producer's PUB server under a hostile peer, with a bus key: a flood
//! of connections that never prove the key cannot keep a real keyed gateway
//! out (slots are counted at accept and the oldest unproven ones give way),
//! and a subscription token works on one connection only (its bytes are
//! remembered for the skew window). Real binaries on loopback.

use std::time::Duration;

use frame_wire::auth::{KeyRing, unix_secs};
use test_support::gateway::Gateway;
use test_support::metrics::wait_metric;
use test_support::producer::Producer;
use test_support::zmq::Subscriber;
use test_support::{media, wait_for};

const KEY: &str = "6b1e0c3f9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

fn keyed_producer(name: &str) -> (Producer, std::path::PathBuf) {
    let dir = media::temp_dir(name);
    let key = dir.join("bus.key");
    std::fs::write(&key, KEY).expect("key file");
    let producer = Producer::start(&["--fps", "20", "--bus-key-file", &key.to_string_lossy()]);
    (producer, key)
}

#[tokio::test]
async fn a_flood_of_unproven_connections_cannot_keep_a_keyed_gateway_out() {
    let (p, key) = keyed_producer("bus-slots-flood");
    let addr = p.endpoint.trim_start_matches("tcp://").to_string();
    wait_for("the producer listens", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(&addr).await.ok()
    })
    .await;
    // More raw connections than the producer has subscriber slots, held
    // open without a handshake.
    let mut flood = Vec::new();
    for _ in 0..1100 {
        if let Ok(s) = tokio::net::TcpStream::connect(&addr).await {
            flood.push(s);
        }
    }
    assert!(flood.len() > 1024, "only {} connections", flood.len());
    let g = Gateway::start(
        &[&p.endpoint],
        &["--subscribe", "all"],
        &[("GATEWAY_BUS_KEY_FILE", &key.to_string_lossy())],
    );
    // Well inside the 5 s the flood's connections may wait for a token.
    wait_metric(
        g.addr,
        "gateway_frames_in_total",
        &[],
        1.0,
        Duration::from_secs(4),
    )
    .await;
    // All but the newest 128 unproven connections gave way.
    wait_metric(
        p.metrics,
        "producer_subscribers_refused_total",
        &["evicted"],
        1100.0 - 128.0,
        Duration::from_secs(5),
    )
    .await;
    let evicted = p
        .metric("producer_subscribers_refused_total", &["evicted"])
        .await;
    eprintln!(
        "1100 idle connections, then a keyed gateway: receiving; {evicted} unproven connections evicted"
    );
    drop(flood);
}

#[tokio::test]
async fn the_same_token_bytes_are_refused_on_a_second_connection() {
    let (p, _key) = keyed_producer("bus-slots-replay");
    let ring = KeyRing::parse(KEY).expect("key");
    let token = ring.signing().subscription_token(unix_secs(), [42; 16]);
    let mut first = wait_for("a first subscriber", Duration::from_secs(20), || async {
        Subscriber::connect(&p.endpoint, "f/").await.ok()
    })
    .await;
    first.subscribe(&token).await.expect("token");
    first
        .next_message_with(Duration::from_secs(10), Some(&ring))
        .await
        .expect("the token's first use is accepted");

    // A sniffer replays the same bytes from another connection.
    let mut replay = Subscriber::connect(&p.endpoint, "f/")
        .await
        .expect("connect");
    replay.subscribe(&token).await.expect("token");
    wait_metric(
        p.metrics,
        "producer_subscribers_refused_total",
        &["replayed_token"],
        1.0,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        replay
            .next_message_with(Duration::from_secs(2), Some(&ring))
            .await
            .is_err(),
        "a replayed token got frames"
    );
    // The first connection keeps receiving.
    first
        .next_message_with(Duration::from_secs(5), Some(&ring))
        .await
        .expect("the first subscriber still receives");
}
