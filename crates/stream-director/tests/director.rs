//! The director in front of real gateways on loopback: stream requests are
//! redirected (307) to a healthy gateway and the video then flows from that
//! gateway itself; small requests are relayed; a killed gateway drops out
//! and its viewers, reconnecting through the director as the page's
//! watchdog does, stream from another within 5 s while the others' viewers
//! never notice; a returning gateway rejoins.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use test_support::http::{self, MjpegReader};
use test_support::process::Proc;
use test_support::producer::Producer;
use test_support::{free_port, wait_for};

struct Gateway {
    proc: Proc,
    addr: SocketAddr,
    instance: String,
    zmq: String,
}

impl Gateway {
    fn start(zmq: &str, instance: &str) -> Gateway {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Gateway {
            proc: spawn_gateway(zmq, addr, instance),
            addr,
            instance: instance.into(),
            zmq: zmq.into(),
        }
    }

    fn respawn(&mut self) {
        self.proc = spawn_gateway(&self.zmq, self.addr, &self.instance);
    }
}

fn spawn_gateway(zmq: &str, addr: SocketAddr, instance: &str) -> Proc {
    let listen = addr.to_string();
    Proc::start(
        "stream-gateway",
        &[
            "--producer",
            zmq,
            "--listen",
            &listen,
            "--instance-id",
            instance,
        ],
        &[],
    )
}

/// A director over `gateways` (comma list); `extra` flags appended.
fn start_director(gateways: &str, extra: &[&str]) -> (SocketAddr, Proc) {
    let d = test_support::director::Director::start(gateways, extra);
    (d.addr, d.proc)
}

/// The director's view: instance of every live gateway, and how many are ready.
async fn director_view(director: SocketAddr) -> Option<(Vec<String>, usize)> {
    let r = http::get(director, "/director/gateways").await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.text()).ok()?;
    let gws = v["gateways"].as_array()?;
    let instances = gws
        .iter()
        .filter_map(|g| g["instance"].as_str().map(String::from))
        .collect();
    let ready = gws.iter().filter(|g| g["ready"] == true).count();
    Some((instances, ready))
}

async fn wait_gateways(director: SocketAddr, want: &[&str], within: Duration) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    wait_for(
        &format!("the director to see exactly {want:?}, all ready"),
        within,
        || {
            let want = want.clone();
            async move {
                let (mut seen, ready) = director_view(director).await?;
                seen.sort();
                (seen == want && ready == want.len()).then_some(())
            }
        },
    )
    .await;
}

/// A viewer through the director: the instance that serves it and the reader.
async fn view(director: SocketAddr) -> anyhow::Result<(String, SocketAddr, MjpegReader)> {
    let (mut r, from) = MjpegReader::open_following(director, "/stream/cam0", 1).await?;
    r.next_frame_within(Duration::from_secs(5)).await?;
    let instance = r.head().header("x-gateway-instance").unwrap_or("").into();
    Ok((instance, from, r))
}

#[tokio::test]
async fn director_sends_viewers_to_healthy_gateways_directly() {
    let producer = Producer::start(&["--size", "320x240", "--fps", "15"]);
    let mut a = Gateway::start(&producer.endpoint, "gw-a");
    let b = Gateway::start(&producer.endpoint, "gw-b");
    let gateways = format!("127.0.0.1:{},127.0.0.1:{}", a.addr.port(), b.addr.port());
    let (director, _director) = start_director(&gateways, &[]);
    wait_gateways(director, &["gw-a", "gw-b"], Duration::from_secs(20)).await;

    // The redirect itself: 307, no body, a gateway's own address.
    let conn = http::Connection::request(director, "GET", "/stream/cam0?fps=5", &[])
        .await
        .expect("request");
    assert_eq!(conn.head.status, 307);
    let location = conn.head.header("location").expect("Location").to_string();
    assert!(
        location == format!("http://127.0.0.1:{}/stream/cam0?fps=5", a.addr.port())
            || location == format!("http://127.0.0.1:{}/stream/cam0?fps=5", b.addr.port()),
        "Location {location}"
    );

    // Where a WebSocket (which cannot follow a redirect) should connect.
    let pick = http::get(director, "/director/pick?stream=cam0")
        .await
        .expect("pick");
    assert_eq!(pick.head.status, 200);
    let v: serde_json::Value = serde_json::from_str(&pick.text()).expect("JSON");
    let url = v["url"].as_str().unwrap_or_default();
    assert!(
        [a.addr, b.addr]
            .iter()
            .any(|g| url == format!("http://127.0.0.1:{}", g.port())),
        "{v}"
    );

    // Viewers alternate between the gateways and stream from them directly.
    let mut viewers = Vec::new();
    let mut spread = BTreeMap::new();
    for _ in 0..6 {
        let (instance, from, r) = view(director).await.expect("viewer through the director");
        assert!(from == a.addr || from == b.addr, "streamed from {from}");
        *spread.entry(instance.clone()).or_insert(0) += 1;
        viewers.push((instance, r));
    }
    assert_eq!(
        spread,
        BTreeMap::from([("gw-a".to_string(), 3), ("gw-b".to_string(), 3)])
    );

    // Small requests are relayed as they are.
    let api = http::get(director, "/api/streams").await.expect("api");
    assert_eq!(api.head.status, 200);
    assert!(api.text().contains("cam0"), "{}", api.text());
    let snap = http::get(director, "/snapshot/cam0")
        .await
        .expect("snapshot");
    assert_eq!(snap.head.status, 200);
    assert!(snap.body.starts_with(&[0xFF, 0xD8]), "a JPEG");

    // kill -9 one gateway: its viewers' streams end; reconnecting through
    // the director (the page's watchdog) they stream from the other within 5 s.
    a.proc.kill();
    let killed = Instant::now();
    let (mut orphans, mut others): (Vec<_>, Vec<_>) =
        viewers.into_iter().partition(|(i, _)| i == "gw-a");
    for (_, r) in &mut orphans {
        // Frames already received may still be read; then the stream ends.
        let mut drained = 0;
        while r.next_frame_within(Duration::from_secs(3)).await.is_ok() {
            drained += 1;
            assert!(drained < 30, "the killed gateway's stream goes on");
        }
    }
    for _ in &orphans {
        let (instance, _, _) = wait_for(
            "an orphaned viewer streaming again through the director",
            Duration::from_secs(5),
            || async { view(director).await.ok() },
        )
        .await;
        assert_eq!(instance, "gw-b");
    }
    let back = killed.elapsed();
    eprintln!("viewers of the killed gateway streaming again after {back:?}");
    assert!(back < Duration::from_secs(5), "took {back:?}");
    // The other gateway's viewers never noticed.
    for (_, r) in &mut others {
        for _ in 0..5 {
            r.next_frame_within(Duration::from_secs(1))
                .await
                .expect("viewers of the surviving gateway keep their stream");
        }
    }
    wait_gateways(director, &["gw-b"], Duration::from_secs(2)).await;

    // The gateway comes back on its address and gets new viewers again.
    a.respawn();
    wait_gateways(director, &["gw-a", "gw-b"], Duration::from_secs(20)).await;
    let mut seen = BTreeMap::new();
    for _ in 0..4 {
        let (instance, _, _) = view(director).await.expect("viewer");
        *seen.entry(instance).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "new viewers go to both again: {seen:?}");

    // No gateway at all: not ready, and viewers are told to retry.
    drop(a);
    drop(b);
    wait_for("director not ready", Duration::from_secs(5), || async {
        (http::status(director, "/readyz").await == 503).then_some(())
    })
    .await;
    let r = http::get(director, "/stream/cam0").await.expect("answer");
    assert_eq!(r.head.status, 503);
    assert_eq!(r.head.header("retry-after"), Some("1"));
    assert_eq!(http::status(director, "/healthz").await, 200);
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    let director = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _director = Proc::start(
        "stream-director",
        &[
            "--listen",
            &director.to_string(),
            "--gateways",
            "127.0.0.1:9",
        ],
        &[],
    );
    wait_for("director up", Duration::from_secs(10), || async {
        let r = http::get(director, "/healthz").await.ok()?;
        (r.head.status == 200).then_some(())
    })
    .await;
    let r = http::Connection::request(director, "GET", "no-slash", &[])
        .await
        .expect("answer")
        .body()
        .await
        .expect("body");
    assert_eq!(r.head.status, 400);
    let big = "x".repeat(40 * 1024);
    let r = http::Connection::request(director, "GET", "/", &[("X-Big", &big)])
        .await
        .expect("answer");
    assert_eq!(r.head.status, 431);
}

/// The stream a viewer of `path` is served, and by which gateway.
async fn view_stream(director: SocketAddr, cam: &str) -> anyhow::Result<(String, MjpegReader)> {
    let (mut r, _) = MjpegReader::open_following(director, &format!("/stream/{cam}"), 1).await?;
    r.next_frame_within(Duration::from_secs(5)).await?;
    let instance = r.head().header("x-gateway-instance").unwrap_or("").into();
    Ok((instance, r))
}

#[tokio::test]
async fn camera_affinity_keeps_each_camera_on_its_gateway() {
    // Eight cameras from one producer process, three gateways, affinity 1:
    // every viewer of a camera lands on that camera's one gateway.
    let cameras: Vec<String> = (0..8)
        .map(|i| format!("name=cam{i},source=test-pattern,size=160x120,fps=10"))
        .collect();
    let mut args = Vec::new();
    for c in &cameras {
        args.extend(["--camera", c.as_str()]);
    }
    let producer = Producer::start(&args);
    let mut gws: Vec<Gateway> = ["gw-a", "gw-b", "gw-c"]
        .iter()
        .map(|name| Gateway::start(&producer.endpoint, name))
        .collect();
    let list = gws
        .iter()
        .map(|g| g.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let (director, _director) = start_director(&list, &["--affinity", "1"]);
    wait_gateways(director, &["gw-a", "gw-b", "gw-c"], Duration::from_secs(20)).await;
    wait_for(
        "all 8 cameras at every gateway",
        Duration::from_secs(20),
        || async {
            for g in &gws {
                let r = http::get(g.addr, "/api/streams").await.ok()?;
                (r.text().matches("\"name\"").count() == 8).then_some(())?;
            }
            Some(())
        },
    )
    .await;

    let mut home: BTreeMap<String, String> = BTreeMap::new();
    let mut readers = Vec::new();
    for round in 0..3 {
        for i in 0..8 {
            let cam = format!("cam{i}");
            let (instance, r) = view_stream(director, &cam).await.expect("view");
            let first = home.entry(cam.clone()).or_insert_with(|| instance.clone());
            assert_eq!(
                *first, instance,
                "{cam}, viewer {round}: always its own gateway"
            );
            readers.push((cam, instance, r));
        }
    }
    let used: std::collections::BTreeSet<&String> = home.values().collect();
    assert!(used.len() >= 2, "8 cameras all on one gateway: {home:?}");

    // Kill the gateway of cam0: its viewers come back, through the
    // director, on another gateway within 5 s; other gateways' viewers
    // keep streaming.
    let victim = home["cam0"].clone();
    let idx = gws
        .iter()
        .position(|g| g.instance == victim)
        .expect("victim");
    gws[idx].proc.kill();
    let t = Instant::now();
    let back = wait_for(
        "cam0 back on another gateway",
        Duration::from_secs(5),
        || async {
            let (instance, r) = view_stream(director, "cam0").await.ok()?;
            (instance != victim).then_some((instance, r))
        },
    )
    .await;
    eprintln!("cam0 back on {} after {:?}", back.0, t.elapsed());
    for (cam, instance, r) in readers.iter_mut().filter(|(_, i, _)| *i != victim) {
        for _ in 0..3 {
            r.next_frame_within(Duration::from_secs(2))
                .await
                .unwrap_or_else(|e| panic!("{cam} on {instance} interrupted: {e:#}"));
        }
    }
    // And it stays there: cam0's new home is stable too.
    for _ in 0..3 {
        let (instance, _r) = view_stream(director, "cam0").await.expect("view");
        assert_eq!(instance, back.0);
    }
}
