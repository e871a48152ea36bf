//! The page's WebSocket (docs/websocket.md) against the real gateway, read
//! by an independent client (tungstenite): every watched camera over one
//! connection, one viewer per page, per-stream rate caps, changes of what is
//! watched, NO SIGNAL from the stream itself, release on close, and no
//! WebSocket from another site.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use test_support::metrics::metric;
use test_support::process::Proc;
use test_support::producer::Producer;
use test_support::stack::wait_viewers;
use test_support::{free_port, http, wait_for};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One frame as the page receives it.
#[derive(Debug)]
struct WsFrame {
    stream: String,
    live: bool,
    seq: u64,
    jpeg: Vec<u8>,
}

fn parse(msg: &[u8]) -> WsFrame {
    assert_eq!(msg[0], 1, "version");
    let n = usize::from(msg[2]);
    let stream = String::from_utf8(msg[3..3 + n].to_vec()).expect("utf-8 name");
    let at = 3 + n;
    let seq = u64::from_le_bytes(msg[at + 8..at + 16].try_into().expect("8 bytes"));
    let jpeg = msg[at + 16..].to_vec();
    assert!(frame_wire::looks_like_jpeg(&jpeg), "a whole JPEG");
    WsFrame {
        stream,
        live: msg[1] & 1 == 1,
        seq,
        jpeg,
    }
}

async fn next_frame(ws: &mut Ws, within: Duration) -> WsFrame {
    loop {
        let msg = tokio::time::timeout(within, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("valid");
        if let Message::Binary(b) = msg {
            return parse(&b);
        }
    }
}

async fn watch(ws: &mut Ws, json: &str) {
    ws.send(Message::text(json)).await.expect("send");
}

async fn open(
    addr: SocketAddr,
    origin: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("request");
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("origin"));
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn one_connection_carries_every_watched_camera() {
    let cams: Vec<Producer> = (0..3)
        .map(|i| {
            let name = format!("cam{i}");
            Producer::start(&["--stream", &name, "--size", "160x120", "--fps", "10"])
        })
        .collect();
    let listen = format!("127.0.0.1:{}", free_port());
    let addr: SocketAddr = listen.parse().expect("addr");
    let mut args = vec![
        "--listen",
        listen.as_str(),
        "--stale-after",
        "1",
        "--threads",
        "2",
    ];
    for p in &cams {
        args.extend(["--producer", p.endpoint.as_str()]);
    }
    let _gateway = Proc::start("stream-gateway", &args, &[]);
    wait_for("three streams", Duration::from_secs(20), || async {
        let r = http::get(addr, "/api/streams").await.ok()?;
        (r.text().matches("\"name\"").count() == 3).then_some(())
    })
    .await;

    // Another site cannot open it.
    assert!(open(addr, Some("https://evil.example")).await.is_err());

    let mut ws = open(addr, Some(&format!("http://{addr}")))
        .await
        .expect("same origin");
    watch(&mut ws, r#"{"watch":["cam0","cam1","cam2"]}"#).await;
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut count: HashMap<String, u32> = HashMap::new();
    let start = Instant::now();
    while count.len() < 3 || count.values().any(|&n| n < 10) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "frames so far: {count:?}"
        );
        let f = next_frame(&mut ws, Duration::from_secs(3)).await;
        assert!(f.live);
        assert!(stream_common::jpeg::dimensions(&f.jpeg) == Some((160, 120)));
        if let Some(prev) = last.insert(f.stream.clone(), f.seq) {
            assert!(f.seq > prev, "{}: seq {} after {prev}", f.stream, f.seq);
        }
        *count.entry(f.stream).or_default() += 1;
    }
    // One viewer for the page, and one of each stream it watches.
    assert_eq!(metric(addr, "gateway_viewers_total", &[]).await, 1.0);
    for cam in ["cam0", "cam1", "cam2"] {
        let label = format!("stream=\"{cam}\"");
        assert_eq!(
            metric(addr, "gateway_viewers", &[&label]).await,
            1.0,
            "{cam}"
        );
    }

    // Watch one camera at 2 fps: the others stop, the rate is capped.
    watch(&mut ws, r#"{"watch":["cam1"],"fps":2}"#).await;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(600) {
        next_frame(&mut ws, Duration::from_secs(3)).await;
    }
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(3) {
        let f = next_frame(&mut ws, Duration::from_secs(3)).await;
        assert_eq!(f.stream, "cam1");
        n += 1;
    }
    let rate = f64::from(n) / t.elapsed().as_secs_f64();
    assert!((1.0..=3.2).contains(&rate), "capped rate {rate:.1} fps");
    wait_for("cam0 unwatched", Duration::from_secs(3), || async {
        (metric(addr, "gateway_viewers", &["stream=\"cam0\""]).await == 0.0).then_some(())
    })
    .await;

    // NO SIGNAL comes down the same connection, from the stream itself.
    watch(&mut ws, r#"{"watch":["cam2"]}"#).await;
    let mut cams = cams;
    let mut dead = cams.remove(2);
    dead.proc.kill();
    let killed = Instant::now();
    loop {
        let f = next_frame(&mut ws, Duration::from_secs(3)).await;
        if f.stream == "cam2" && !f.live {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(4),
            "no placeholder yet"
        );
    }

    // Closing releases the viewer at once.
    ws.close(None).await.expect("close");
    drop(ws);
    wait_viewers(addr, 0, Duration::from_secs(1)).await;
}
