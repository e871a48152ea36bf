//! The page draws the cameras' zones and masks when asked: the gateway
//! reads the same cameras file as the detector and the event stage
//! (`--cameras`), answers `/api/streams/{name}/zones`, and the page's
//! **Zones** toggle shades the masks and outlines the zones over the
//! picture, in a real Chromium. A bad file stops the gateway at start with
//! the line and field named.

use std::time::Duration;

use serde_json::Value;
use test_support::gateway::Gateway;
use test_support::media;
use test_support::producer::Producer;
use test_support::webdriver::Browser;
use test_support::{http, wait_for};

const CAMERAS: &str = r#"
[[camera]]
name = "cam0"
required_zones = ["porch"]

[[camera.zone]]
name = "porch"
polygon = [[0.0, 0.6], [1.0, 0.6], [1.0, 1.0], [0.0, 1.0]]

[[camera.mask]]
polygon = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.3], [0.0, 0.3]]
"#;

/// How much redder than green the enlarged camera is at (fx, fy).
const RED_AT: &str = "const c = document.getElementById('stream'); \
     const d = c.getContext('2d').getImageData(Math.floor(c.width * 0.1), Math.floor(c.height * 0.1), 1, 1).data; \
     return [d[0] - d[1], viewer.cams.get('cam0') ? viewer.cams.get('cam0').drawn : 0];";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_draws_the_cameras_zones_and_masks_when_asked() {
    let dir = media::temp_dir("gateway-zones");
    let file = dir.join("cameras.toml");
    std::fs::write(&file, CAMERAS).expect("cameras file");
    let producer = Producer::start(&[]);
    let gw = Gateway::start(
        &[&producer.endpoint],
        &["--cameras", file.to_str().expect("utf-8 path")],
        &[],
    );
    gw.wait_stream("cam0", Duration::from_secs(20)).await;

    let r = http::get(gw.addr, "/api/streams/cam0/zones")
        .await
        .expect("zones");
    assert_eq!(r.head.status, 200);
    let v: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["zones"][0]["name"], "porch", "{v}");
    assert_eq!(v["zones"][0]["polygon"][0][1], 0.6, "{v}");
    assert_eq!(v["masks"][0][2][0], 0.3, "{v}");
    assert_eq!(v["required_zones"][0], "porch", "{v}");
    let unknown = http::get(gw.addr, "/api/streams/nosuch/zones")
        .await
        .expect("unknown");
    assert_eq!(unknown.head.status, 404);

    let b = Browser::launch().await.expect("browser");
    b.goto(&format!("http://{}/#stream=cam0", gw.addr))
        .await
        .expect("open page");
    b.eval("localStorage.setItem('zones', '0'); return true;")
        .await
        .expect("zones off");
    // Off: the test pattern's gray, as red as it is green.
    let off = wait_for("live frames", Duration::from_secs(20), || async {
        let v = b.eval(RED_AT).await.ok()?;
        (v[1].as_u64()? > 2).then(|| v[0].as_i64())?
    })
    .await;
    assert!(off.abs() < 30, "without zones the corner is gray: {off}");
    // On: the mask over the top-left corner is shaded red.
    b.eval("document.getElementById('zones').click(); return true;")
        .await
        .expect("zones on");
    let on = wait_for("the mask drawn", Duration::from_secs(20), || async {
        let v = b.eval(RED_AT).await.ok()?;
        let red = v[0].as_i64()?;
        (red > 40).then_some(red)
    })
    .await;
    assert!(on > off + 40, "mask shading: {off} -> {on}");
    let pressed = b
        .eval("return document.getElementById('zones').getAttribute('aria-pressed');")
        .await
        .expect("pressed");
    assert_eq!(pressed, "true");
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_cameras_file_stops_the_gateway_naming_the_line() {
    let dir = media::temp_dir("gateway-zones-bad");
    let file = dir.join("cameras.toml");
    std::fs::write(
        &file,
        "[[camera]]\nname = \"cam0\"\n\n[[camera.zone]]\nname = \"porch\"\npolygon = [[0.0, 0.6], [2.0, 0.6], [1.0, 1.0]]\n",
    )
    .expect("cameras file");
    let endpoint = format!("tcp://127.0.0.1:{}", test_support::free_port());
    let mut gw = Gateway::start(
        &[&endpoint],
        &["--cameras", file.to_str().expect("utf-8 path")],
        &[],
    );
    let status = wait_for("the gateway exits", Duration::from_secs(20), || {
        let s = gw.proc.try_wait();
        async move { s }
    })
    .await;
    assert!(!status.success());
    let log = gw.proc.log();
    assert!(
        log.contains("cameras.toml") && log.contains("line 6"),
        "the error names the file and the line: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
