//! The page's timeline in real browsers (Chromium, Firefox, WebKit): a real
//! producer, gateway and recorder on loopback. The enlarged camera shows
//! what is recorded; a click on the timeline plays the recorded picture
//! from that time (its pixels change, the time shown is the frame's);
//! "Live" returns to the live picture. Without a recorder the page says so.

use std::time::Duration;

use test_support::gateway::Gateway;
use test_support::producer::Producer;
use test_support::recorder::Recorder;
use test_support::wait_for;
use test_support::webdriver::{Browser, BrowserKind};

const PIXELS: &str = "const c = document.getElementById('stream'); \
     const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
     let h = 0; for (let i = 0; i < d.length; i += 97) h = (h * 31 + d[i]) >>> 0; return h;";

async fn timeline_in(kind: BrowserKind) {
    let producer = Producer::start(&["--stream", "cam0", "--size", "320x240", "--fps", "15"]);
    let gateway = Gateway::start(&[producer.endpoint.as_str()], &[], &[]);
    let dir = std::env::temp_dir().join(format!(
        "recorder-page-{}-{}",
        kind.name(),
        stream_common::unix_now_ns()
    ));
    let rec = Recorder::start(&producer.endpoint, &dir, &["--allow-origin", "*"]);
    let addr = rec.addr;
    gateway.wait_stream("cam0", Duration::from_secs(20)).await;
    // A few seconds on disk before the page asks.
    wait_for("6 s recorded", Duration::from_secs(30), || async {
        let r = test_support::http::get(addr, "/api/recordings")
            .await
            .ok()?;
        let j: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let s = j["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "cam0")?
            .clone();
        (s["to_ms"].as_u64()? - s["from_ms"].as_u64()? >= 6000).then_some(())
    })
    .await;

    let b = Browser::launch_kind(kind).await.expect("browser");
    let name = kind.name();
    b.goto(&format!(
        "http://{}/?recorder=http://{addr}#stream=cam0",
        gateway.addr
    ))
    .await
    .expect("open page");
    let span = wait_for("the timeline's recorded span", Duration::from_secs(20), || async {
        let v = b.eval("return recording.rec.spans.length ? [recording.rec.spans[0].from_ms, recording.rec.from, recording.rec.to] : null;").await.ok()?;
        (!v.is_null()).then_some(v)
    })
    .await;
    let from_ms = span[0].as_f64().expect("from");
    assert_eq!(
        b.eval("return document.getElementById('rec-none').hidden;")
            .await
            .expect("eval"),
        true,
        "{name}"
    );
    // The live picture is drawn first.
    wait_for("a live frame", Duration::from_secs(10), || async {
        let v = b
            .eval("return viewer.cams.get('cam0') && viewer.cams.get('cam0').drawn;")
            .await
            .ok()?;
        (v.as_u64()? > 0).then_some(())
    })
    .await;
    let live_pixels = b.eval(PIXELS).await.expect("pixels");

    // A click 2 s into the recording.
    let at = from_ms + 2000.0;
    b.eval(&format!(
        "const cv = document.getElementById('timeline'); const r = cv.getBoundingClientRect(); \
         const x = r.left + ({at} - recording.rec.from) / (recording.rec.to - recording.rec.from) * r.width; const y = r.top + r.height / 2; \
         for (const t of ['pointerdown', 'pointerup']) cv.dispatchEvent(new PointerEvent(t, {{bubbles: true, clientX: x, clientY: y, pointerId: 1}})); \
         return true;"
    ))
    .await
    .expect("click");
    let shown = wait_for(
        "the recorded picture from the clicked time",
        Duration::from_secs(10),
        || async {
            let v = b.eval("return recording.rec.shownTs;").await.ok()?;
            v.as_f64()
        },
    )
    .await;
    // The first frame at or after the clicked time (the click maps to the
    // pixel's time, within a pixel's worth of the 24 h axis).
    let pixel_ms = 86_400_000.0 / 600.0;
    assert!(
        shown >= at - pixel_ms && shown <= at + pixel_ms + 1000.0,
        "{name}: clicked {at}, shown {shown}"
    );
    // The time shown is the picture's, read together (playback goes on).
    let pair = b
        .eval(
            "return [document.getElementById('rec-time').textContent, \
             recording.clock(recording.rec.shownTs)];",
        )
        .await
        .expect("time");
    let (text, want) = (pair[0].as_str(), pair[1].as_str());
    assert!(
        text.zip(want).is_some_and(|(t, w)| t.contains(w)),
        "{name}: {pair}"
    );
    wait_for(
        "the recorded picture playing (pixels change)",
        Duration::from_secs(10),
        || async {
            let p = b.eval(PIXELS).await.ok()?;
            let ts = b
                .eval("return recording.rec.shownTs;")
                .await
                .ok()?
                .as_f64()?;
            (p != live_pixels && ts > shown).then_some(())
        },
    )
    .await;

    // Live again.
    b.eval("document.getElementById('rec-live').click(); return true;")
        .await
        .expect("live");
    let drawn = b
        .eval("return viewer.cams.get('cam0').drawn;")
        .await
        .expect("drawn")
        .as_u64()
        .unwrap_or(0);
    wait_for(
        "live frames drawn again",
        Duration::from_secs(10),
        || async {
            let playing = b.eval("return recording.rec.playing;").await.ok()?;
            let now = b
                .eval("return viewer.cams.get('cam0').drawn;")
                .await
                .ok()?
                .as_u64()?;
            (playing.is_null() && now > drawn + 5).then_some(())
        },
    )
    .await;

    // The same page without a recorder says so.
    b.goto(&format!("http://{}/#stream=cam0", gateway.addr))
        .await
        .expect("open page");
    wait_for("\"no recorder\"", Duration::from_secs(10), || async {
        let v = b
            .eval("return !document.getElementById('rec-none').hidden;")
            .await
            .ok()?;
        (v == true).then_some(())
    })
    .await;
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn chromium_plays_a_recording_from_the_timeline() {
    timeline_in(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_plays_a_recording_from_the_timeline() {
    timeline_in(BrowserKind::Firefox).await;
}

/// WebKit's `fetch` fails on a `multipart/x-mixed-replace` body ("Load
/// failed"), so the page asks the recorder for `type=mixed`: this test is
/// what holds that.
#[tokio::test]
async fn webkit_plays_a_recording_from_the_timeline() {
    timeline_in(BrowserKind::WebKit).await;
}
