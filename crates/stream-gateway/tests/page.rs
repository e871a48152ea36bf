//! The viewer page in real browsers (Chromium, Firefox through Marionette,
//! WebKitGTK through WebKitWebDriver), against real producers and a real
//! gateway on loopback: a wall of 16 cameras all moving over one WebSocket,
//! NO SIGNAL from the stream itself within a second, a stall watchdog that
//! leaves a live page alone and restarts a stalled one, deep links (unknown
//! camera, `hashchange`), and a token carried from the page's address.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use test_support::stack::Stack;
use test_support::wait_for;
use test_support::wall::Wall;
use test_support::webdriver::{Browser, BrowserKind, screenshot_path};

const CAMERAS: usize = 16;

/// What the page knows of each camera (`window.viewer`, see page.html).
const STATE: &str = "const v = window.viewer; if (!v) return null;
    const cams = {};
    for (const [n, c] of v.cams) cams[n] = { live: c.live, drawn: c.drawn, offlineSince: c.offlineSince,
        liveSince: c.liveSince, nosignal: !c.nosignal.hidden && getComputedStyle(c.nosignal).display !== 'none' };
    return { mode: v.mode, restarts: v.restarts, opens: v.opens, watched: v.watched, cams };";

/// A hash of each tile's pixels, by camera name.
const TILE_HASHES: &str = "const out = {};
    for (const el of document.querySelectorAll('.tile')) {
      const c = el.querySelector('canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let h = 0; for (let k = 0; k < d.length; k += 5) h = (h * 31 + d[k]) >>> 0;
      out[el.dataset.name] = h;
    }
    return out;";

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

async fn state(b: &Browser) -> Option<Value> {
    b.eval(STATE).await.ok().filter(|v| !v.is_null())
}

async fn hashes(b: &Browser) -> HashMap<String, u64> {
    let v = b.eval(TILE_HASHES).await.unwrap_or_default();
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every tile's picture differs from the one it showed when
/// this was called, within `limit`.
async fn every_tile_changes(b: &Browser, names: &[String], limit: Duration, what: &str) {
    let first = hashes(b).await;
    let start = Instant::now();
    let changed = loop {
        let now = hashes(b).await;
        let changed: Vec<&String> = names
            .iter()
            .filter(|n| now.get(*n).is_some_and(|h| first.get(*n) != Some(h)))
            .collect();
        if changed.len() == names.len() {
            eprintln!(
                "{}: every tile changed within {:?} ({what})",
                b.kind.name(),
                start.elapsed()
            );
            return;
        }
        if start.elapsed() > limit {
            break changed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let still: Vec<&String> = names.iter().filter(|n| !changed.contains(n)).collect();
    panic!(
        "{}: tiles {still:?} did not change within {limit:?} ({what})",
        b.kind.name()
    );
}

async fn viewers(wall: &Wall) -> f64 {
    wall.metric("gateway_viewers_total", &[]).await
}

/// The whole wall scenario in one browser.
async fn wall_in(kind: BrowserKind) {
    let mut wall = Wall::start(
        CAMERAS,
        &["--fps", "10", "--size", "160x120", "--quality", "60"],
        &["--stale-after", "2"],
    )
    .await;
    let b = Browser::launch_kind(kind).await.expect("browser");
    let name = kind.name();
    b.goto(&format!("http://{}/", wall.http))
        .await
        .expect("open page");
    let loaded = Instant::now();

    // Every tile has drawn a frame, over the WebSocket.
    wait_for(
        "16 tiles drawn over the WebSocket",
        Duration::from_secs(20),
        || async {
            let s = state(&b).await?;
            let drawn = s["cams"]
                .as_object()?
                .values()
                .filter(|c| c["drawn"].as_u64() > Some(0))
                .count();
            (s["mode"] == "ws" && drawn == CAMERAS).then_some(())
        },
    )
    .await;
    // A wall: 4 columns for 16 cameras on a 1280-pixel window.
    let cols = b
        .eval("return getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length;")
        .await
        .expect("columns");
    assert_eq!(cols, 4, "{name}: grid columns");

    every_tile_changes(
        &b,
        &wall.names,
        Duration::from_secs(3),
        "16 cameras at 10 fps",
    )
    .await;
    // One page is one connection, not 16.
    wait_for("one viewer", Duration::from_secs(5), || async {
        (viewers(&wall).await == 1.0).then_some(())
    })
    .await;

    // A camera goes offline: NO SIGNAL in its tile within 1 s of the
    // gateway marking it offline, live again within 1 s of its return.
    let i = 5;
    let cam = wall.names[i].clone();
    wall.kill(i);
    let mut last_online = now_ms();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = now_ms();
        if !wall.online().await.expect("api").contains(&cam) {
            break;
        }
        last_online = t;
        assert!(Instant::now() < deadline, "{cam} never went offline");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shown = wait_for("NO SIGNAL in the tile", Duration::from_secs(3), || async {
        let c = &state(&b).await?["cams"][&cam];
        (c["nosignal"] == true && c["live"] == false).then(|| c["offlineSince"].as_f64())?
    })
    .await;
    eprintln!(
        "{name}: NO SIGNAL {:.0} ms after the gateway's last 'online' answer",
        shown - last_online
    );
    assert!(
        shown - last_online < 1000.0,
        "{name}: NO SIGNAL came {:.0} ms after the gateway marked {cam} offline",
        shown - last_online
    );
    if kind == BrowserKind::Chromium {
        // The wall as people see it, one camera offline (README, docs/).
        let png = b.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(screenshot_path("wall-chromium-offline.png"), &png)
            .expect("save screenshot");
        if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
            let docs = test_support::process::workspace_root().join("docs/wall.png");
            std::fs::write(&docs, &png).expect("save docs/wall.png");
        }
    }
    // Offline for longer than the page's stall limit (4 s): the gateway's
    // placeholder keeps the socket alive, so the watchdog must not restart
    // it (checked with the 30 s below). The wait is the duration under test.
    tokio::time::sleep(Duration::from_secs(5)).await;
    wall.restart(i);
    let mut last_offline = now_ms();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let t = now_ms();
        if wall.online().await.expect("api").contains(&cam) {
            break;
        }
        last_offline = t;
        assert!(Instant::now() < deadline, "{cam} never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = wait_for("the tile live again", Duration::from_secs(3), || async {
        let c = &state(&b).await?["cams"][&cam];
        (c["nosignal"] == false && c["live"] == true).then(|| c["liveSince"].as_f64())?
    })
    .await;
    eprintln!(
        "{name}: live again {:.0} ms after the gateway's last 'offline' answer",
        back - last_offline
    );
    assert!(
        back - last_offline < 1000.0,
        "{name}: the tile went live {:.0} ms after {cam} returned",
        back - last_offline
    );

    // 30 s of a live page: the watchdog restarts nothing.
    while loaded.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = state(&b).await.expect("page state");
        assert_eq!(
            s["restarts"], 0,
            "{name}: the watchdog restarted a live page: {s}"
        );
    }
    let s = state(&b).await.expect("page state");
    assert_eq!(
        (s["restarts"].as_u64(), s["opens"].as_u64()),
        (Some(0), Some(1)),
        "{name}: one WebSocket for 30 s, never restarted"
    );
    every_tile_changes(&b, &wall.names, Duration::from_secs(3), "after 30 s").await;
    // Each tile's rate is its camera's (10 fps), as the page measures it.
    let rates = b
        .eval("return [...window.viewer.cams.keys()].map((n) => window.viewer.fps(n));")
        .await
        .expect("rates");
    let rates: Vec<f64> = rates
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    assert!(
        rates.len() == CAMERAS && rates.iter().all(|r| (6.0..=14.0).contains(r)),
        "{name}: tile rates {rates:?}, cameras send 10 fps"
    );

    // A really stalled stream: the gateway stops (SIGSTOP) with the socket
    // open. The watchdog notices from the missing frames and reconnects;
    // once the gateway runs again, every tile moves.
    wall.gateway.signal(19);
    let stalled = Instant::now();
    let restarted = tokio::time::timeout(
        Duration::from_secs(8),
        wait_for("watchdog restart", Duration::from_secs(8), || async {
            (state(&b).await?["restarts"].as_u64()? >= 1).then_some(())
        }),
    )
    .await;
    let took = stalled.elapsed();
    wall.gateway.signal(18);
    restarted.unwrap_or_else(|_| panic!("{name}: the watchdog did not restart a stalled stream"));
    eprintln!("{name}: watchdog restarted the stalled socket after {took:?}");
    every_tile_changes(&b, &wall.names, Duration::from_secs(10), "after the stall").await;
    wait_for(
        "one viewer after the restart",
        Duration::from_secs(10),
        || async { (viewers(&wall).await == 1.0).then_some(()) },
    )
    .await;

    // An old bookmark to a camera that does not exist: a clear message, no
    // requests for it. Then editing the link (hashchange) shows a camera.
    b.goto(&format!("http://{}/?reload#stream=nosuchcam", wall.http))
        .await
        .expect("deep link");
    wait_for("unknown-camera message", Duration::from_secs(10), || async {
        let v = b
            .eval("const u = document.getElementById('unknown'); return !u.hidden && u.textContent.includes('nosuchcam') && window.viewer.watched.length === 0;")
            .await
            .ok()?;
        (v == true).then_some(())
    })
    .await;
    let asked = b
        .eval("return performance.getEntriesByType('resource').filter(e => e.name.includes('nosuchcam')).length;")
        .await
        .expect("resources");
    assert_eq!(asked, 0, "{name}: the page requested the unknown camera");
    b.eval("location.hash = '#stream=cam02'; return 1;")
        .await
        .expect("hash");
    wait_for("cam02 enlarged", Duration::from_secs(10), || async {
        let v = b
            .eval("const c = document.getElementById('stream'); return !document.getElementById('single').hidden
                && document.getElementById('grid').hidden && window.viewer.watched.join() === 'cam02'
                && window.viewer.cams.get('cam02').drawn > 0 && c.width === 160;")
            .await
            .ok()?;
        (v == true).then_some(())
    })
    .await;
    // Escape goes back to the wall.
    b.eval("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'})); return 1;")
        .await
        .expect("escape");
    wait_for("back to the wall", Duration::from_secs(10), || async {
        let v = b
            .eval("return !document.getElementById('grid').hidden && window.viewer.watched.length === 16;")
            .await
            .ok()?;
        (v == true).then_some(())
    })
    .await;
    // Keyboard: arrows move between tiles, Enter enlarges.
    let keys = "const k = (key) => document.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
        document.querySelector('.tile[data-name=\"cam00\"]').focus();
        k('ArrowRight'); k('ArrowDown');
        const focused = document.activeElement.dataset.name;
        k('Enter');
        return focused;";
    let focused = b.eval(keys).await.expect("keys");
    assert_eq!(
        focused, "cam05",
        "{name}: right then down from cam00 on a 4-column grid"
    );
    wait_for("cam05 enlarged by Enter", Duration::from_secs(10), || async {
        let v = b
            .eval("return location.hash === '#stream=cam05' && window.viewer.cams.get('cam05').drawn > 0
                && !document.getElementById('single').hidden;")
            .await
            .ok()?;
        (v == true).then_some(())
    })
    .await;
    b.eval("location.hash = ''; return 1;").await.expect("hash");

    // A phone: one column.
    b.set_window_size(390, 800).await.expect("resize");
    wait_for("one column on a phone", Duration::from_secs(10), || async {
        let v = b
            .eval("return !document.getElementById('grid').hidden
                && getComputedStyle(document.getElementById('grid')).gridTemplateColumns.split(' ').length;")
            .await
            .ok()?;
        (v == 1).then_some(())
    })
    .await;
    let png = b.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_path(&format!("phone-{name}.png")), &png).expect("save");
}

#[tokio::test]
async fn chromium_shows_a_live_wall_of_16_cameras() {
    wall_in(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_shows_a_live_wall_of_16_cameras() {
    wall_in(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn webkit_shows_a_live_wall_of_16_cameras() {
    wall_in(BrowserKind::WebKit).await;
}

/// With token auth, a user who only has the token opens `/?token=…`: the
/// page carries it to `/api/streams` and `/ws`. With one camera, it is shown
/// once, and its bar says "1 viewer".
#[tokio::test]
async fn the_token_in_the_page_address_reaches_the_api_and_the_websocket() {
    let stack = Stack::start(
        &["--fps", "10", "--size", "160x120"],
        &["--auth-token", "s3cret-token"],
    )
    .await;
    assert_eq!(
        test_support::http::status(stack.http, "/api/streams").await,
        401,
        "auth is on"
    );
    let b = Browser::launch().await.expect("browser");
    b.goto(&format!("http://{}/?token=s3cret-token", stack.http))
        .await
        .expect("open");
    wait_for(
        "cam0 drawn with the token",
        Duration::from_secs(20),
        || async {
            let s = state(&b).await?;
            (s["mode"] == "ws" && s["cams"]["cam0"]["drawn"].as_u64()? > 2).then_some(())
        },
    )
    .await;
    // One camera appears once (the old page showed it live and as a tile).
    let shown = b
        .eval("return document.querySelectorAll('.tile').length + (document.getElementById('single').hidden ? 0 : 1);")
        .await
        .expect("tiles");
    assert_eq!(shown, 1, "one camera, shown once");
    // Enlarged: "1 viewer", not "1 viewers".
    b.eval("location.hash = '#stream=cam0'; return 1;")
        .await
        .expect("hash");
    let meta = wait_for(
        "the enlarged camera's bar",
        Duration::from_secs(10),
        || async {
            let t = b
                .eval("return document.getElementById('single-meta').textContent;")
                .await
                .ok()?;
            let t = t.as_str()?.to_string();
            t.contains("· 1 viewer").then_some(t)
        },
    )
    .await;
    assert!(
        meta.contains("· 1 viewer") && !meta.contains("viewers"),
        "status bar: {meta:?}"
    );
}

/// Behind stream-director (which does not relay WebSocket upgrades), the
/// page asks `/director/pick` for a gateway and opens its socket there.
#[tokio::test]
async fn behind_the_director_the_page_opens_its_socket_on_the_picked_gateway() {
    let stack = Stack::start(&["--fps", "10", "--size", "160x120"], &[]).await;
    let director = std::net::SocketAddr::from(([127, 0, 0, 1], test_support::free_port()));
    let _director = test_support::process::Proc::start(
        "stream-director",
        &[
            "--listen",
            &director.to_string(),
            "--gateways",
            &stack.http.to_string(),
            "--check-interval",
            "0.2",
            "--public-url",
            "http://{host}:{port}",
        ],
        &[],
    );
    wait_for("director ready", Duration::from_secs(20), || async {
        let r = test_support::http::get(director, "/readyz").await.ok()?;
        (r.head.status == 200).then_some(())
    })
    .await;
    let b = Browser::launch().await.expect("browser");
    b.goto(&format!("http://{director}/"))
        .await
        .expect("open page through the director");
    wait_for(
        "cam0 drawn over a WebSocket to the gateway",
        Duration::from_secs(20),
        || async {
            let s = state(&b).await?;
            (s["mode"] == "ws" && s["cams"]["cam0"]["drawn"].as_u64()? > 2).then_some(())
        },
    )
    .await;
    let url = b
        .eval("return window.viewer.url;")
        .await
        .expect("socket url");
    assert_eq!(
        url,
        format!("ws://{}/ws", stack.http),
        "the socket opened on the gateway, not the director"
    );
    test_support::stack::wait_viewers(stack.http, 1, Duration::from_secs(5)).await;
}

/// An older gateway without `/ws`, played by a relay in front of a real
/// gateway that answers 404 to `/ws` and passes everything else through.
/// Returns its address, how many `/ws` requests it has refused, and how
/// many times `/favicon.ico` was asked for.
async fn gateway_without_websocket(
    upstream: std::net::SocketAddr,
) -> (std::net::SocketAddr, Counter, Counter) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let addr = listener.local_addr().expect("relay addr");
    let refused = Counter::default();
    let favicon = Counter::default();
    let (count, favicon_count) = (refused.clone(), favicon.clone());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let count = count.clone();
            let favicons = favicon_count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                    if head.len() > 64 * 1024 {
                        return;
                    }
                }
                if head.starts_with(b"GET /favicon.ico") {
                    favicons.fetch_add(1, Ordering::Relaxed);
                }
                if head.starts_with(b"GET /ws") {
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = client
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
                // One request per connection, so each is seen here.
                let text = String::from_utf8_lossy(&head).to_string();
                let (h, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                let mut out: String = h
                    .split("\r\n")
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                out.push_str("Connection: close\r\n\r\n");
                out.push_str(rest);
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                if server.write_all(out.as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, refused, favicon)
}

type Counter = std::sync::Arc<std::sync::atomic::AtomicUsize>;

/// Against a gateway that has no WebSocket the page still shows pictures:
/// the enlarged camera as the MJPEG `<img>`, tiles as snapshots refreshed
/// once a second; and it retries the socket with backoff, not in a storm.
/// The relay sees every request, so it also checks the browser never asks
/// for `/favicon.ico`.
#[tokio::test]
async fn without_a_websocket_the_page_falls_back_to_mjpeg_and_snapshots() {
    let stack = Stack::start(&["--fps", "10", "--size", "160x120"], &[]).await;
    let (old, refused, favicons) = gateway_without_websocket(stack.http).await;
    let b = Browser::launch().await.expect("browser");
    b.goto(&format!("http://{old}/#stream=cam0"))
        .await
        .expect("open");
    wait_for("the MJPEG <img> playing", Duration::from_secs(20), || async {
        let v = b
            .eval("const i = document.getElementById('fallback'); return window.viewer.mode === 'mjpeg'
                && !i.hidden && i.src.includes('/stream/cam0') && i.complete && i.naturalWidth;")
            .await
            .ok()?;
        (v == 160).then_some(())
    })
    .await;
    b.eval("location.hash = ''; return 1;").await.expect("hash");
    let first = wait_for("a snapshot tile", Duration::from_secs(10), || async {
        let s = state(&b).await?;
        s["cams"]["cam0"]["drawn"].as_u64().filter(|d| *d > 0)
    })
    .await;
    wait_for("the tile refreshed", Duration::from_secs(5), || async {
        let s = state(&b).await?;
        s["cams"]["cam0"]["drawn"].as_u64().filter(|d| *d > first)
    })
    .await;
    let before = refused.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let retries = refused.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(before >= 1, "the page never tried its WebSocket");
    assert!(
        retries <= 2,
        "{retries} socket retries in 4 s: a retry storm"
    );
    // The icon is inline: no 404 for /favicon.ico on every load (headless
    // Chromium asks for it when the page names none).
    assert_eq!(
        favicons.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the browser asked for /favicon.ico"
    );
}
