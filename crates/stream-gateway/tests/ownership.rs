//! Who may publish under a name, with a bus key, against the real binaries
//! on loopback: a stream name belongs to the producer that first published
//! it, so a second key holder on another endpoint sending `cam0` previews
//! changes nothing viewers see (refused, `reason="owner"`); a key limited to
//! detections (`scope=d`) cannot sign a camera's frames or previews
//! (`reason="scope"`); and the real detector holding such a key still has
//! its detections served.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use frame_wire::auth::KeyRing;
use serde_json::Value;
use test_support::detector::{Detector, darknet_picture_dir};
use test_support::gateway::Gateway;
use test_support::metrics::wait_metric;
use test_support::producer::Producer;
use test_support::publisher::{Publisher, header};
use test_support::zmq::Subscriber;
use test_support::{http, media, wait_for};

/// The producers' key.
const K: &str = "6b1e0c3f9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
/// The detector's key, limited to detections.
const KD: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn key_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("key file");
    path
}

/// A stand-in publisher on its own endpoint, signing with the first key
/// of `ring_text` as producer run `producer_id`.
async fn key_holder(ring_text: &str, producer_id: u64) -> Publisher {
    let mut p = Publisher::bind().await.expect("bind");
    p.sign_with(KeyRing::parse(ring_text).expect("key").signing().clone());
    p.set_producer_id(producer_id);
    p
}

/// Sends `stream`'s frame and preview (`jpeg`, 320x240) from `p` every
/// 100 ms, fresh and in order, until the returned sender is dropped.
fn keep_sending(
    mut p: Publisher,
    stream: &'static str,
    jpeg: Bytes,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut seq = 0;
        while matches!(
            stopped.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        ) {
            seq += 1;
            let h = header(stream, seq, stream_common::unix_now_ns(), (320, 240));
            let _ = p.frame(&h, &jpeg).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    stop
}

#[tokio::test]
async fn a_second_key_holder_cannot_take_a_cameras_name() {
    let dir = media::temp_dir("ownership");
    let p_key = key_file(&dir, "producer.key", K);
    let g_key = key_file(&dir, "gateway.key", &format!("{K}\n{KD} scope=d\n"));
    let producer = Producer::start(&["--fps", "10", "--bus-key-file", &p_key.to_string_lossy()]);
    let fake = key_holder(K, 0xBAD).await;
    let g = Gateway::start(
        &[&producer.endpoint, &fake.endpoint],
        &[],
        &[("GATEWAY_BUS_KEY_FILE", &g_key.to_string_lossy())],
    );
    g.wait_stream("cam0", Duration::from_secs(20)).await;
    // The same key, another endpoint, cam0's name: ten previews a second,
    // fresh and in order, against the producer's one.
    let red = media::solid_jpeg(320, 240, [255, 0, 0]);
    let _sending = keep_sending(fake, "cam0", red.clone());
    let refused = wait_metric(
        g.addr,
        "gateway_invalid_messages_total",
        &["owner"],
        10.0,
        Duration::from_secs(10),
    )
    .await;
    let mut real = 0;
    for _ in 0..10 {
        let r = http::get(g.addr, "/snapshot/cam0").await.expect("snapshot");
        assert_eq!(r.head.status, 200);
        assert!(r.body.starts_with(&[0xFF, 0xD8]), "not a JPEG");
        assert_ne!(
            &r.body[..],
            &red[..],
            "the second publisher's picture was shown"
        );
        real += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = g.metric("gateway_invalid_messages_total", &["owner"]).await;
    assert!(after > refused, "refusals stopped: {refused} -> {after}");
    eprintln!(
        "snapshot the producer's in {real} of 10 reads; {after} frames and previews refused as another producer's"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_detections_only_key_cannot_sign_a_cameras_pictures() {
    let dir = media::temp_dir("ownership-scope");
    let p_key = key_file(&dir, "producer.key", K);
    let g_key = key_file(&dir, "gateway.key", &format!("{K}\n{KD} scope=d\n"));
    let producer = Producer::start(&["--fps", "10", "--bus-key-file", &p_key.to_string_lossy()]);
    let detector_like = key_holder(&format!("{KD} scope=d"), 0xD00D).await;
    let g = Gateway::start(
        &[&producer.endpoint, &detector_like.endpoint],
        &[],
        &[("GATEWAY_BUS_KEY_FILE", &g_key.to_string_lossy())],
    );
    g.wait_stream("cam0", Duration::from_secs(20)).await;
    // A camera's name nobody owns yet: still refused, the key's scope is
    // checked before anything else.
    let _sending = keep_sending(
        detector_like,
        "cam1",
        media::solid_jpeg(320, 240, [255, 0, 0]),
    );
    let n = wait_metric(
        g.addr,
        "gateway_invalid_messages_total",
        &["scope"],
        10.0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(http::status(g.addr, "/snapshot/cam1").await, 404);
    eprintln!("{n} frames and previews signed with a scope=d key refused; cam1 never appeared");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The detector holds the producers' key to verify frames, and signs
/// what it publishes with its `scope=d` key (the first in its file).
#[tokio::test]
async fn a_detector_with_a_detections_only_key_still_has_its_detections_shown() {
    let dir = media::temp_dir("ownership-detector");
    let p_key = key_file(&dir, "producer.key", K);
    let d_key = key_file(&dir, "detector.key", &format!("{KD} scope=d\n{K}\n"));
    let g_key = key_file(&dir, "gateway.key", &format!("{K}\n{KD} scope=d\n"));
    let pictures = darknet_picture_dir("person.jpg");
    let producer = Producer::start(&[
        "--source",
        pictures.arg(),
        "--fps",
        "10",
        "--bus-key-file",
        &p_key.to_string_lossy(),
    ]);
    let detector = Detector::start(
        &[&producer.endpoint],
        &["--bus-key-file", &d_key.to_string_lossy()],
    );
    let g = Gateway::start(
        &[&producer.endpoint, &detector.endpoint],
        &[],
        &[("GATEWAY_BUS_KEY_FILE", &g_key.to_string_lossy())],
    );
    g.wait_stream("cam0", Duration::from_secs(20)).await;
    let person = wait_for(
        "a person in the detections",
        Duration::from_secs(30),
        || async {
            let r = http::get(g.addr, "/api/streams/cam0/detections")
                .await
                .ok()?;
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            let boxes = v["boxes"].as_array()?.clone();
            boxes.into_iter().find(|b| b["label"] == "person")
        },
    )
    .await;
    // Signed with the detections-only key: a ring holding only it verifies.
    let d_ring = KeyRing::parse(&format!("{KD} scope=d")).expect("key");
    let mut sub = Subscriber::connect_keyed(&detector.endpoint, "d/", &d_ring)
        .await
        .expect("subscribe");
    match sub
        .next_message_with(Duration::from_secs(10), Some(&d_ring))
        .await
    {
        Ok(frame_wire::Message::Detections { header, .. }) => assert_eq!(header.stream, "cam0"),
        other => panic!("not a detections message signed with the scope=d key: {other:?}"),
    }
    assert_eq!(
        g.metric("gateway_invalid_messages_total", &["scope"]).await,
        0.0
    );
    eprintln!("the detector's detections, signed with its scope=d key, shown: {person}");
    let _ = std::fs::remove_dir_all(&dir);
}
