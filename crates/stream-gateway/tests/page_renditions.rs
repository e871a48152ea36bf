//! The page asks each tile's picture by its size (docs/renditions.md): 16
//! real producers of 1280x720 cameras at 15 fps (pictures of about 60 KB,
//! renditions 640 and 320), a real gateway, the page in Chromium at
//! 1280x800 showing the grid. The page receives at most an eighth of what
//! the full pictures would take (measured against the cameras' own full
//! pictures in the same run), every tile still gets the camera rate, and
//! enlarging one camera switches it, and only it, to the full picture
//! within a second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::wait_for;
use test_support::wall::Wall;
use test_support::webdriver::{Browser, BrowserKind};

const CAMERAS: usize = 16;
const FPS: f64 = 15.0;

/// What the page received so far: bytes, and frames and last picture
/// width per camera (`window.viewer`, page.html).
const RECEIVED: &str = "const v = window.viewer; if (!v) return null;
    const cams = {};
    for (const [n, c] of v.cams) cams[n] = { frames: c.frames, drawn: c.drawn, width: c.width };
    return { mode: v.mode, bytes: v.bytes, widths: v.widths || {}, watched: v.watched, cams };";

async fn received(b: &Browser) -> Option<Value> {
    b.eval(RECEIVED).await.ok().filter(|v| !v.is_null())
}

fn frames(v: &Value) -> HashMap<String, f64> {
    v["cams"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, c)| (k.clone(), c["frames"].as_f64().unwrap_or(0.0)))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_16_tiles_gets_renditions_and_the_enlarged_camera_alone_the_full_picture() {
    let flags = test_support::media::camera_flags("page-renditions");
    let wall = Wall::start(
        CAMERAS,
        &flags.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
    )
    .await;
    // What the full pictures would take: each camera's full picture (a
    // snapshot is the full size, docs/renditions.md) at the camera rate.
    let mut full_bytes_per_s = 0.0;
    for name in &wall.names {
        let r = test_support::http::get(wall.http, &format!("/snapshot/{name}"))
            .await
            .expect("snapshot");
        let dims = stream_common::jpeg::dimensions(&r.body);
        assert_eq!(dims, Some((1280, 720)), "{name}'s full picture");
        full_bytes_per_s += r.body.len() as f64 * FPS;
    }

    let b = Browser::launch_kind(BrowserKind::Chromium)
        .await
        .expect("browser");
    b.set_window_size(1280, 800).await.expect("window size");
    b.goto(&format!("http://{}/", wall.http))
        .await
        .expect("open page");
    // Every tile drawn, each asked at its own width (a quarter of the window).
    let asked = wait_for(
        "16 tiles drawn, each asked by its width",
        Duration::from_secs(30),
        || async {
            let v = received(&b).await?;
            let drawn = v["cams"]
                .as_object()?
                .values()
                .filter(|c| c["drawn"].as_u64() > Some(0))
                .count();
            let widths = v["widths"].as_object()?.clone();
            (v["mode"] == "ws" && drawn == CAMERAS && widths.len() == CAMERAS).then_some(widths)
        },
    )
    .await;
    eprintln!("tile widths asked: {asked:?}");
    assert!(
        asked.values().all(|w| w.as_u64().is_some_and(|w| w < 640)),
        "a tile of a 1280-pixel window asks less than 640: {asked:?}"
    );
    // The gateway serves every tile a rendition, none the full picture.
    wait_for(
        "16 rendition viewers and no full one",
        Duration::from_secs(10),
        || async {
            let full = wall
                .metric("gateway_rendition_viewers", &["rendition=\"full\""])
                .await;
            let all = wall.metric("gateway_rendition_viewers", &[]).await;
            (full == 0.0 && all == CAMERAS as f64).then_some(())
        },
    )
    .await;
    // Every tile's picture is a rendition now.
    wait_for(
        "every tile drawing a rendition",
        Duration::from_secs(10),
        || async {
            let v = received(&b).await?;
            v["cams"]
                .as_object()?
                .values()
                .all(|c| c["width"].as_u64().is_some_and(|w| w < 1280))
                .then_some(())
        },
    )
    .await;

    // What the page receives over a few seconds: the duration under measurement.
    let window = Duration::from_secs(6);
    let before = received(&b).await.expect("page state");
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let after = received(&b).await.expect("page state");
    let secs = t0.elapsed().as_secs_f64();
    let bytes_per_s =
        (after["bytes"].as_f64().unwrap_or(0.0) - before["bytes"].as_f64().unwrap_or(0.0)) / secs;
    eprintln!(
        "page receives {:.2} MB/s; the full pictures would take {:.2} MB/s ({:.1}x less)",
        bytes_per_s / 1e6,
        full_bytes_per_s / 1e6,
        full_bytes_per_s / bytes_per_s
    );
    assert!(
        bytes_per_s * 8.0 <= full_bytes_per_s,
        "the page receives {bytes_per_s:.0} B/s, more than an eighth of the full pictures' {full_bytes_per_s:.0}"
    );
    let (f0, f1) = (frames(&before), frames(&after));
    let rates: Vec<(String, f64)> = wall
        .names
        .iter()
        .map(|n| {
            let got = f1.get(n).copied().unwrap_or(0.0) - f0.get(n).copied().unwrap_or(0.0);
            (n.clone(), got / secs)
        })
        .collect();
    eprintln!("tile rates (fps): {rates:?}");
    for (name, rate) in &rates {
        assert!(
            *rate >= 0.8 * FPS,
            "{name}'s tile got {rate:.1} fps of a {FPS} fps camera"
        );
    }

    // Enlarge one camera: it (alone) gets the full picture within a second.
    let cam = wall.names[5].clone();
    b.eval(&format!("location.hash = 'stream={cam}'; return true;"))
        .await
        .expect("enlarge");
    let clicked = Instant::now();
    let took = wait_for(
        "the enlarged camera's full picture",
        Duration::from_secs(5),
        || async {
            let v = received(&b).await?;
            (v["cams"][&cam]["width"].as_u64() == Some(1280)).then(|| clicked.elapsed())
        },
    )
    .await;
    eprintln!("enlarged {cam}: full picture after {took:?}");
    assert!(took < Duration::from_secs(1), "full picture after {took:?}");
    let full_cam = format!("stream=\"{cam}\"");
    wait_for(
        "the enlarged camera alone served full",
        Duration::from_secs(5),
        || async {
            let full = wall
                .metric("gateway_rendition_viewers", &["rendition=\"full\""])
                .await;
            let this = wall
                .metric(
                    "gateway_rendition_viewers",
                    &["rendition=\"full\"", &full_cam],
                )
                .await;
            (full == 1.0 && this == 1.0).then_some(())
        },
    )
    .await;
}
