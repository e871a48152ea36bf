//! End-to-end for renditions: the real binary, read by ZeroMQ subscribers
//! as gateways read it. Each camera announces its renditions (`i/<name>/`,
//! with every preview), never one as wide as the picture; a rendition is
//! encoded only while someone subscribes to its topic (`r/<name>/<width>/`),
//! at its size, under the seq of the frame it is a copy of.

use std::time::Duration;

use frame_wire::Message;
use test_support::producer::Producer;
use test_support::wait_for;
use test_support::zmq::Subscriber;

fn start() -> Producer {
    Producer::start(&[
        "--camera",
        "name=cam0,source=test-pattern,size=1280x720,fps=15",
        "--camera",
        "name=small,source=test-pattern,size=320x240,fps=15",
        "--camera",
        "name=none,source=test-pattern,size=640x480,fps=15,renditions=0",
        "--camera",
        "name=own,source=test-pattern,size=640x480,fps=15,renditions=480:160",
    ])
}

/// The renditions each camera announces, once all four have.
async fn announced(
    p: &Producer,
) -> std::collections::BTreeMap<String, (u32, u32, Vec<(u32, u32)>)> {
    let mut info = Subscriber::connect(&p.endpoint, "i/")
        .await
        .expect("subscribe");
    let mut got = std::collections::BTreeMap::new();
    while got.len() < 4 {
        match info.next_message(Duration::from_secs(20)).await {
            Ok(Message::Info { header, renditions }) => {
                got.insert(
                    header.stream.clone(),
                    (header.width, header.height, renditions.sizes().to_vec()),
                );
            }
            Ok(other) => panic!("an i/ subscriber got a {:?}", other.kind()),
            Err(e) => panic!("announcements so far {got:?}: {e}"),
        }
    }
    got
}

#[tokio::test]
async fn cameras_announce_renditions_never_as_wide_as_the_picture() {
    let p = start();
    let got = announced(&p).await;
    assert_eq!(got["cam0"], (1280, 720, vec![(320, 180), (640, 360)]));
    assert_eq!(
        got["small"],
        (320, 240, vec![]),
        "320 is not smaller than 320"
    );
    assert_eq!(got["none"], (640, 480, vec![]), "renditions=0");
    assert_eq!(got["own"], (640, 480, vec![(160, 120), (480, 360)]));
}

#[tokio::test]
async fn a_rendition_is_encoded_only_while_subscribed() {
    let p = start();
    let metric = |name: &'static str, labels: Vec<String>| {
        let p = &p;
        async move {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            p.metric(name, &labels).await
        }
    };
    let rendition = |w: u32| vec!["stream=\"cam0\"".to_string(), format!("rendition=\"{w}\"")];
    let cam0 = || vec!["stream=\"cam0\"".to_string()];
    // Known sizes first (the first picture sets them).
    announced(&p).await;
    let captured = metric("producer_frames_captured_total", cam0()).await;
    wait_for(
        "cam0 captures 30 frames",
        Duration::from_secs(15),
        || async {
            (metric("producer_frames_captured_total", cam0()).await >= captured + 30.0)
                .then_some(())
        },
    )
    .await;
    for w in [320, 640] {
        assert_eq!(
            metric("producer_rendition_frames_total", rendition(w)).await,
            0.0,
            "{w} encoded with nobody subscribed"
        );
    }

    // One subscriber to the 320 rendition: 320x180 JPEGs, only that one made.
    let mut small = Subscriber::connect(&p.endpoint, "r/cam0/320/")
        .await
        .expect("subscribe");
    let mut frames = Vec::new();
    for _ in 0..10 {
        frames.push(
            small
                .next_rendition(Duration::from_secs(10))
                .await
                .expect("a rendition frame"),
        );
    }
    for f in &frames {
        assert_eq!(
            (f.header.stream.as_str(), f.header.width, f.header.height),
            ("cam0", 320, 180)
        );
        let (_, w, h) = stream_common::jpeg::decode_rgb(&f.jpeg).expect("decodes");
        assert_eq!((w, h), (320, 180));
    }
    for pair in frames.windows(2) {
        assert_eq!(pair[1].header.seq, pair[0].header.seq + 1, "every frame");
    }
    assert!(metric("producer_rendition_frames_total", rendition(320)).await >= 10.0);
    assert_eq!(
        metric("producer_rendition_subscribers", rendition(320)).await,
        1.0
    );
    assert_eq!(
        metric("producer_rendition_frames_total", rendition(640)).await,
        0.0
    );
    assert_eq!(
        metric("producer_frames_encoded_total", cam0()).await,
        0.0,
        "no full frame"
    );

    // A frame's renditions and full picture share its seq and capture time.
    let mut both = Subscriber::connect(&p.endpoint, "r/cam0/640/")
        .await
        .expect("subscribe");
    both.subscribe("f/cam0/").await.expect("subscribe");
    let mut by_seq = std::collections::HashMap::new();
    let matched = loop {
        match both
            .next_message(Duration::from_secs(10))
            .await
            .expect("message")
        {
            Message::Frame(f) | Message::Rendition(f) => {
                let key = f.header.seq;
                let me = (f.header.width, f.header.capture_ts_ns);
                match by_seq.insert(key, me) {
                    Some(other) if other.0 != me.0 => break (other, me),
                    _ => {}
                }
            }
            _ => {}
        }
    };
    assert_eq!(matched.0.1, matched.1.1, "same capture time: {matched:?}");
    let mut widths = [matched.0.0, matched.1.0];
    widths.sort();
    assert_eq!(widths, [640, 1280]);
    drop(both);

    // The last subscriber leaves: nothing more is encoded.
    drop(small);
    wait_for("unsubscribed", Duration::from_secs(10), || async {
        (metric("producer_rendition_subscribers", rendition(320)).await == 0.0).then_some(())
    })
    .await;
    // The capture loop saw none before the frame it counted at 0.
    let settled = metric("producer_rendition_frames_total", rendition(320)).await;
    let captured = metric("producer_frames_captured_total", cam0()).await;
    wait_for("cam0 captures 30 more", Duration::from_secs(15), || async {
        (metric("producer_frames_captured_total", cam0()).await >= captured + 30.0).then_some(())
    })
    .await;
    assert_eq!(
        metric("producer_rendition_frames_total", rendition(320)).await,
        settled,
        "encoded after the last subscriber left"
    );
}
