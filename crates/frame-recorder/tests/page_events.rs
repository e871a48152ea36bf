//! The page's events panel with the whole real stack, in Chromium: a
//! producer plays darknet's person.jpg and dog.jpg in turns, the real
//! detector finds the person, the event stage makes an event of each
//! appearance, the recorder keeps them (snapshots, recordings) and a
//! gateway serves the page, which reads the history from the recorder
//! (`?recorder=URL`). Three appearances: the list shows three events, newest
//! first, each with its snapshot as thumbnail; a click plays the event's
//! recording in the enlarged camera. With UPDATE_SCREENSHOTS=1 the page is
//! saved as docs/events.png (the README's picture).

use std::time::Duration;

use serde_json::Value;
use test_support::detector::{Detector, darknet_scene_dir};
use test_support::events::EventStage;
use test_support::gateway::Gateway;
use test_support::producer::Producer;
use test_support::recorder::Recorder;
use test_support::wait_for;
use test_support::webdriver::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_lists_three_events_with_thumbnails_and_a_click_plays_one() {
    // The person for 3 s, then the dog for 4 s, looped.
    let scene = darknet_scene_dir(&[("person.jpg", 30), ("dog.jpg", 40)]);
    let dir = std::env::temp_dir().join(format!(
        "recorder-page-events-{}-{}",
        std::process::id(),
        stream_common::unix_now_ns()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let producer = Producer::start(&["--source", scene.arg(), "--fps", "10"]);
    let detector = Detector::start(&[&producer.endpoint], &["--detect-fps", "5"]);
    let stage = EventStage::start(
        &[&detector.endpoint],
        &[&producer.endpoint],
        &["--event-min-seconds", "0.5", "--event-end-after", "1"],
    );
    let recorder = Recorder::start_on(
        &[&producer.endpoint, &stage.endpoint],
        &dir,
        &["--allow-origin", "*"],
    );
    let gateway = Gateway::start(
        &[&producer.endpoint, &detector.endpoint, &stage.endpoint],
        &[],
        &[],
    );
    gateway.wait_stream("cam0", Duration::from_secs(30)).await;

    // Three ended events in the recorder's history first, so the page's
    // one history load has them all.
    let rec = recorder.addr;
    let kept = wait_for(
        "three ended person events in the recorder",
        Duration::from_secs(150),
        || async move {
            let r = test_support::http::get(rec, "/api/events?label=person")
                .await
                .ok()?;
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            let ended: Vec<Value> = v["events"]
                .as_array()?
                .iter()
                .filter(|e| e["phase"] == "end" && e["recorded"] == true)
                .cloned()
                .collect();
            (ended.len() >= 3).then_some(ended)
        },
    )
    .await;

    let b = Browser::launch().await.expect("browser");
    b.goto(&format!(
        "http://{}/?recorder=http://{}#stream=cam0",
        gateway.addr, recorder.addr
    ))
    .await
    .expect("open page");
    let look = "const items = [...document.querySelectorAll('#events .ev')].map(li => { \
            const img = li.querySelector('img'); \
            return { id: li.dataset.id, text: li.textContent, thumb: img && img.complete ? img.naturalWidth : 0 }; }); \
        return items;";
    let items = wait_for(
        "three events with their thumbnails",
        Duration::from_secs(30),
        || async {
            let v = b.eval(look).await.ok()?;
            let items = v.as_array()?.clone();
            let with_thumbs = items
                .iter()
                .filter(|i| i["thumb"].as_u64().unwrap_or(0) > 0)
                .count();
            (with_thumbs >= 3).then_some(items)
        },
    )
    .await;
    // Newest first, as the recorder lists them; each names the camera and
    // the label; the thumbnail is the full-size snapshot (person.jpg's width).
    let shown: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
    let newest: Vec<&str> = kept.iter().filter_map(|e| e["id"].as_str()).collect();
    assert!(
        shown.starts_with(&newest[..3]) || newest.starts_with(&shown[..3.min(shown.len())]),
        "page {shown:?}, recorder {newest:?}"
    );
    for i in items.iter().take(3) {
        let text = i["text"].as_str().unwrap_or_default();
        assert!(text.contains("cam0") && text.contains("person"), "{i}");
        assert_eq!(i["thumb"], 640, "the thumbnail is the snapshot: {i}");
    }
    wait_for("a live frame drawn", Duration::from_secs(20), || async {
        let v = b
            .eval("const c = viewer.cams.get('cam0'); return [c ? c.drawn : 0, document.getElementById('status').textContent];")
            .await
            .ok()?;
        (v[0].as_u64()? > 0 && !v[1].as_str()?.contains("connecting")).then_some(())
    })
    .await;
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let png = b.screenshot().await.expect("screenshot");
        let docs = test_support::process::workspace_root().join("docs/events.png");
        std::fs::write(&docs, &png).expect("save docs/events.png");
    }

    // A click plays that event's recording, from 5 s before its start.
    let event = &kept[1];
    let (id, start_ms, end_ms) = (
        event["id"].as_str().expect("id").to_string(),
        event["start_ts_ns"].as_u64().expect("start") as f64 / 1e6,
        event["end_ts_ns"].as_u64().expect("end") as f64 / 1e6,
    );
    b.eval(&format!(
        "document.querySelector('#events .ev[data-id=\"{id}\"]').click(); return true;"
    ))
    .await
    .expect("click");
    let first = wait_for(
        "the event's recording playing",
        Duration::from_secs(20),
        || async {
            let v = b
                .eval("return [window.viewer.selected, window.recording.rec.shownTs];")
                .await
                .ok()?;
            let ts = v[1].as_f64()?;
            (v[0] == "cam0").then_some(ts)
        },
    )
    .await;
    let later = wait_for("playback moving on", Duration::from_secs(10), || async {
        let ts = b
            .eval("return window.recording.rec.shownTs;")
            .await
            .ok()?
            .as_f64()?;
        (ts > first).then_some(ts)
    })
    .await;
    assert!(
        first >= start_ms - 5000.0 - 1000.0 && first <= end_ms,
        "first shown {first}, event {start_ms}..{end_ms}"
    );
    assert!(later > first, "playback goes on: {first} then {later}");
    drop(b);
    drop((gateway, recorder, stage, detector, producer));
    let _ = std::fs::remove_dir_all(&dir);
}
