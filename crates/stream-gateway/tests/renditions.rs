//! Renditions against a real producer and gateway: `/api/streams` lists the
//! renditions the producer announced; `/stream/NAME?width=W`, the
//! WebSocket's `width` and `/snapshot/NAME?width=W` serve the smallest one
//! at least `W` wide, else the full picture, each rendition received (and
//! encoded by the producer) only while someone watches it; `/snapshot` of a
//! camera nobody watches is the full picture, not the preview, unless the
//! gateway may not wait (`--snapshot-wait 0`), and then it says so.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use test_support::gateway::Gateway;
use test_support::http::{self, MjpegReader};
use test_support::producer::Producer;
use test_support::wait_for;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FULL: (u32, u32) = (1280, 720);

fn producer() -> Producer {
    Producer::start(&["--stream", "cam0", "--size", "1280x720", "--fps", "10"])
}

/// The gateway's `/api/streams` entry of cam0, once it lists renditions.
async fn listed(addr: SocketAddr) -> serde_json::Value {
    wait_for("cam0 with renditions", Duration::from_secs(30), || async {
        let r = http::get(addr, "/api/streams").await.ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let cam = v["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "cam0")?;
        (!cam["renditions"].as_array()?.is_empty()).then(|| cam.clone())
    })
    .await
}

fn size(jpeg: &[u8]) -> (u32, u32) {
    stream_common::jpeg::dimensions(jpeg).expect("a JPEG with a size")
}

/// The sizes of the frames 2 to `n` of `path` (the first may be the
/// preview a new viewer is shown at once).
async fn sizes(addr: SocketAddr, path: &str, n: usize) -> Vec<(u32, u32)> {
    let mut r = MjpegReader::open(addr, path).await.expect("stream");
    let mut out = Vec::new();
    for i in 0..n {
        let f = r
            .next_frame_within(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{path}: frame {i}: {e}"));
        if i > 0 {
            out.push(size(&f.jpeg));
        }
    }
    out
}

fn rendition_label(w: &str) -> [String; 2] {
    ["stream=\"cam0\"".to_string(), format!("rendition=\"{w}\"")]
}

#[tokio::test]
async fn a_width_gets_the_smallest_rendition_at_least_as_wide() {
    let p = producer();
    let g = Gateway::start(&[&p.endpoint], &[], &[]);
    let cam = listed(g.addr).await;
    assert_eq!(
        cam["renditions"],
        serde_json::json!([{"width": 320, "height": 180}, {"width": 640, "height": 360}])
    );
    assert_eq!(
        (cam["width"].as_u64(), cam["height"].as_u64()),
        (Some(1280), Some(720))
    );

    let pmetric = |w: &'static str| {
        let p = &p;
        async move {
            let l = rendition_label(w);
            p.metric("producer_rendition_frames_total", &[&l[0], &l[1]])
                .await
        }
    };
    assert_eq!(pmetric("320").await, 0.0, "nobody watches yet");
    assert_eq!(pmetric("640").await, 0.0);

    for (path, want) in [
        ("/stream/cam0?width=320", (320, 180)),
        ("/stream/cam0?width=1", (320, 180)),
        ("/stream/cam0?width=500", (640, 360)),
        ("/stream/cam0?width=640", (640, 360)),
        ("/stream/cam0?width=5000", FULL),
        ("/stream/cam0", FULL),
    ] {
        let got = sizes(g.addr, path, 8).await;
        assert!(got.iter().all(|&s| s == want), "{path}: {got:?}");
    }
    // Each was made by the producer because it was watched.
    assert!(pmetric("320").await >= 7.0);
    assert!(pmetric("640").await >= 7.0);
    let bytes = |w: &'static str| {
        let g = &g;
        async move {
            let l = rendition_label(w);
            g.metric("gateway_bytes_out_total", &[&l[0], &l[1]]).await
        }
    };
    for w in ["320", "640", "full"] {
        assert!(bytes(w).await > 0.0, "bytes out of {w}");
    }
    // Full pictures are much larger than 320 px ones.
    assert!(bytes("full").await > 2.0 * bytes("320").await);

    // Viewers are counted by rendition while they watch.
    let _r = MjpegReader::open(g.addr, "/stream/cam0?width=300")
        .await
        .expect("stream");
    let l = rendition_label("320");
    wait_for("a 320 viewer", Duration::from_secs(10), || async {
        (g.metric("gateway_rendition_viewers", &[&l[0], &l[1]]).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(
        g.metric(
            "gateway_rendition_viewers",
            &["stream=\"cam0\"", "rendition=\"full\""]
        )
        .await,
        0.0
    );

    // Bad widths are refused.
    for bad in ["width=0", "width=abc", "width=-5", "auto=maybe"] {
        let path = format!("/stream/cam0?{bad}");
        assert_eq!(http::status(g.addr, &path).await, 400, "{path}");
        let path = format!("/snapshot/cam0?{bad}");
        assert_eq!(http::status(g.addr, &path).await, 400, "{path}");
    }
}

#[tokio::test]
async fn a_snapshot_of_an_unwatched_camera_is_the_full_picture() {
    let p = producer();
    let g = Gateway::start(&[&p.endpoint], &[], &[]);
    listed(g.addr).await;
    // Nobody watches: the gateway holds only the preview.
    assert_eq!(
        g.metric("gateway_stream_subscribed", &["stream=\"cam0\""])
            .await,
        0.0
    );
    let r = http::get(g.addr, "/snapshot/cam0").await.expect("snapshot");
    assert_eq!(r.head.status, 200);
    assert_eq!(r.head.header("x-snapshot"), Some("frame"));
    assert_eq!(size(&r.body), FULL);
    stream_common::jpeg::decode_rgb(&r.body).expect("decodes");
    // And of a rendition.
    let r = http::get(g.addr, "/snapshot/cam0?width=600")
        .await
        .expect("snapshot");
    assert_eq!(r.head.header("x-snapshot"), Some("frame"));
    assert_eq!(size(&r.body), (640, 360));
    let r = http::get(g.addr, "/snapshot?width=200")
        .await
        .expect("default stream");
    assert_eq!(size(&r.body), (320, 180));

    // A gateway that may not wait serves the preview, and says so.
    let hasty = Gateway::start(&[&p.endpoint], &["--snapshot-wait", "0"], &[]);
    listed(hasty.addr).await;
    let r = http::get(hasty.addr, "/snapshot/cam0")
        .await
        .expect("snapshot");
    assert_eq!(r.head.status, 200);
    assert_eq!(r.head.header("x-snapshot"), Some("preview"));
    assert_eq!(size(&r.body), (320, 180));
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The size of the next `n` frames the page gets, after the first.
async fn ws_sizes(ws: &mut Ws, n: usize) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("valid");
        if let Message::Binary(b) = msg {
            let name_len = usize::from(b[2]);
            out.push(size(&b[3 + name_len + 16..]));
        }
    }
    out
}

#[tokio::test]
async fn the_page_asks_for_a_width_per_stream() {
    let p = producer();
    let g = Gateway::start(&[&p.endpoint], &[], &[]);
    listed(g.addr).await;
    let mut req = format!("ws://{}/ws", g.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "origin",
        format!("http://{}", g.addr).parse().expect("origin"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws");
    ask(
        &mut ws,
        r#"{"watch":["cam0"],"width":{"cam0":320}}"#,
        (320, 180),
    )
    .await;
    ask(
        &mut ws,
        r#"{"watch":["cam0"],"width":{"cam0":600}}"#,
        (640, 360),
    )
    .await;
    ask(&mut ws, r#"{"watch":["cam0"]}"#, FULL).await;
    ask(
        &mut ws,
        r#"{"watch":["cam0"],"width":{"cam0":100,"other":5}}"#,
        (320, 180),
    )
    .await;
    let l = rendition_label("320");
    assert_eq!(
        g.metric("gateway_rendition_viewers", &[&l[0], &l[1]]).await,
        1.0
    );
}

/// Sends a watch message; frames of the picture before may still be on
/// their way, then every frame is `want` sized.
async fn ask(ws: &mut Ws, json: &str, want: (u32, u32)) {
    ws.send(Message::text(json)).await.expect("send");
    let mut before = 0;
    while ws_sizes(ws, 1).await[0] != want {
        before += 1;
        assert!(before < 30, "{json}: still not {want:?}");
    }
    let got = ws_sizes(ws, 6).await;
    assert!(got.iter().all(|&s| s == want), "{json}: {got:?}");
}

/// With a bus key every rendition is signed and checked like a frame; two
/// widths of one frame share its `seq` without either counting as a replay.
#[tokio::test]
async fn signed_renditions_of_every_width_are_shown() {
    const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let dir = test_support::media::temp_dir("renditions-signed");
    let key = test_support::keys::write_key_file(&dir, "bus.key", KEY);
    let key_s = key.to_string_lossy().into_owned();
    let p = Producer::start(&[
        "--stream",
        "cam0",
        "--size",
        "1280x720",
        "--fps",
        "10",
        "--bus-key-file",
        &key_s,
    ]);
    let g = Gateway::start(&[&p.endpoint], &[], &[("GATEWAY_BUS_KEY_FILE", &key_s)]);
    listed(g.addr).await;
    let mut small = MjpegReader::open(g.addr, "/stream/cam0?width=320")
        .await
        .expect("stream");
    let got = sizes(g.addr, "/stream/cam0?width=640", 6).await;
    assert!(got.iter().all(|&s| s == (640, 360)), "{got:?}");
    for _ in 0..6 {
        let f = small
            .next_frame_within(Duration::from_secs(10))
            .await
            .expect("frame");
        assert!(matches!(size(&f.jpeg), (320, 180)));
    }
    assert_eq!(
        g.metric("gateway_invalid_messages_total", &[]).await,
        0.0,
        "nothing refused (replay, bad_mac)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
