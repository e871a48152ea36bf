//! One WebSocket client cannot keep the gateway busy: a watch list of
//! ~9,900 names (just under the 64 KiB message limit) is cut to the known
//! streams plus 16, and a flood of pings afterwards costs the gateway about
//! what it costs with a one-name list. CPU time is the gateway's own
//! (utime + stime from /proc), compared between the two floods with a
//! generous ratio, so a slow machine does not fail it but work per ping
//! that grows with the list does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use test_support::gateway::Gateway;
use test_support::metrics::metric;
use test_support::publisher::{Publisher, header};
use test_support::{http, media, wait_for};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Pings a second during each flood, and how long each lasts.
const PINGS_PER_S: u64 = 800;
const FLOOD: Duration = Duration::from_secs(3);

/// The gateway's CPU time so far (user + system), in clock ticks (1/100 s
/// on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The fields after the command name, which may hold spaces: state is
    // the 3rd field, utime the 14th, stime the 15th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// `n` distinct short names (base 62), so 9,900 of them fit in 64 KiB.
fn names(n: usize) -> Vec<String> {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..n)
        .map(|mut i| {
            let mut s = Vec::new();
            loop {
                s.push(DIGITS[i % 62]);
                i /= 62;
                if i == 0 {
                    break;
                }
            }
            String::from_utf8(s).expect("ascii")
        })
        .collect()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Pings for [`FLOOD`], each its own write; the gateway's CPU ticks
/// meanwhile, and the pongs that came back.
async fn flood(
    tx: &mut futures_util::stream::SplitSink<Ws, Message>,
    pid: u32,
    pongs: &AtomicU64,
) -> (u64, u64) {
    let (cpu0, pongs0) = (cpu_ticks(pid), pongs.load(Ordering::Relaxed));
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let per_tick = PINGS_PER_S / 200;
    let start = Instant::now();
    while start.elapsed() < FLOOD {
        tick.tick().await;
        for _ in 0..per_tick {
            tx.send(Message::Ping(b"p".to_vec().into()))
                .await
                .expect("ping");
        }
    }
    // The last pongs home, then the gateway's time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (
        cpu_ticks(pid) - cpu0,
        pongs.load(Ordering::Relaxed) - pongs0,
    )
}

async fn watched_names(addr: SocketAddr, want: f64) {
    wait_for(
        &format!("gateway_ws_watched_names = {want}"),
        Duration::from_secs(10),
        || async move { (metric(addr, "gateway_ws_watched_names", &[]).await == want).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_huge_watch_list_and_a_ping_flood_cost_what_a_small_one_does() {
    let mut p = Publisher::bind().await.expect("bind");
    let g = Gateway::start(&[&p.endpoint], &["--threads", "1"], &[]);
    // One known stream: a one-shot picture, sent until it is listed.
    let jpeg = media::solid_jpeg(32, 32, [20, 120, 200]);
    let deadline = Instant::now() + Duration::from_secs(20);
    for seq in 0.. {
        let h = header("cam0", seq, stream_common::unix_now_ns(), (32, 32));
        p.frame(&h, &jpeg).await.expect("publish");
        let r = http::get(g.addr, "/api/streams").await;
        if r.is_ok_and(|r| r.text().contains("\"cam0\"")) {
            break;
        }
        assert!(Instant::now() < deadline, "cam0 never listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut req = format!("ws://{}/ws", g.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "origin",
        format!("http://{}", g.addr).parse().expect("origin"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("WebSocket");
    let (mut tx, mut rx) = ws.split();
    let pongs = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let pongs = pongs.clone();
        async move {
            while let Some(Ok(m)) = rx.next().await {
                if matches!(m, Message::Pong(_)) {
                    pongs.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });

    let pid = g.proc.pid();

    tx.send(Message::text(r#"{"watch":["cam0"]}"#))
        .await
        .expect("watch");
    watched_names(g.addr, 1.0).await;
    let (small_cpu, small_pongs) = flood(&mut tx, pid, &pongs).await;

    let mut list = vec!["cam0".to_string()];
    list.extend(names(9_899).into_iter().map(|n| format!("x{n}")));
    let json = serde_json::json!({ "watch": list }).to_string();
    assert!(
        json.len() > 60_000 && json.len() <= 64 * 1024,
        "{} bytes",
        json.len()
    );
    tx.send(Message::text(json)).await.expect("watch");
    // Known streams (cam0) plus at most 16 not yet there.
    watched_names(g.addr, 17.0).await;
    let (big_cpu, big_pongs) = flood(&mut tx, pid, &pongs).await;
    assert_eq!(
        metric(g.addr, "gateway_ws_watched_names", &[]).await,
        17.0,
        "the list was cut to the known streams plus 16"
    );
    assert_eq!(metric(g.addr, "gateway_viewers", &["cam0"]).await, 1.0);

    eprintln!(
        "gateway CPU over {FLOOD:?} of {PINGS_PER_S} pings/s: one-name list {:.2} s ({small_pongs} pongs), \
         9,900-name list {:.2} s ({big_pongs} pongs)",
        small_cpu as f64 / 100.0,
        big_cpu as f64 / 100.0
    );
    assert!(
        small_pongs > 0 && big_pongs > 0,
        "the gateway answered the pings"
    );
    assert!(
        big_cpu < 3 * small_cpu + 30,
        "a long watch list makes pings cost more: {big_cpu} vs {small_cpu} ticks"
    );
    drop(tx);
    reader.abort();
}
