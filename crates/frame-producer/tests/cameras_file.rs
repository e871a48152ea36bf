//! End-to-end for many cameras in one producer process: the real binary
//! given a cameras file (`--cameras`) or repeated `--camera` flags, read by a
//! ZeroMQ subscriber on its one PUB socket. All cameras stream with their own
//! topic and seq under one producer_id; a camera whose source is missing is
//! retried and counted while the others stream; a malformed file stops
//! start-up with exit code 2 and an error naming the line and field.
//!
//! With the `ffmpeg` feature the fourth camera is a video file made by the
//! ffmpeg tool, and an unreachable RTSP camera joins the failing one;
//! without it, an image directory stands in for the video.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use test_support::media;
use test_support::producer::Producer;
use test_support::wait_for;
use test_support::zmq::Subscriber;

/// A source for the fourth camera that is not a test pattern, and its
/// published size.
fn fourth_source(dir: &Path) -> (String, (u32, u32)) {
    #[cfg(feature = "ffmpeg")]
    {
        let clip = media::test_video(
            &dir.join("clip.mp4"),
            "320x240",
            25,
            2,
            &["-c:v", "libx264"],
        );
        (clip.to_string_lossy().into_owned(), (320, 240))
    }
    #[cfg(not(feature = "ffmpeg"))]
    {
        let images = dir.join("images");
        std::fs::create_dir_all(&images).expect("images dir");
        std::fs::write(
            images.join("a.jpg"),
            media::solid_jpeg(160, 120, [200, 30, 30]),
        )
        .expect("write jpeg");
        (images.to_string_lossy().into_owned(), (160, 120))
    }
}

/// Reads frames until every stream of `want` has at least `each` frames;
/// returns them by stream.
async fn frames_by_stream(
    sub: &mut Subscriber,
    want: &[&str],
    each: usize,
    timeout: Duration,
) -> BTreeMap<String, Vec<frame_wire::Frame>> {
    let mut got: BTreeMap<String, Vec<frame_wire::Frame>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !want
        .iter()
        .all(|s| got.get(*s).is_some_and(|f| f.len() >= each))
    {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let counts: Vec<_> = got.iter().map(|(k, v)| (k.clone(), v.len())).collect();
        let frame = sub
            .next_frame(left)
            .await
            .unwrap_or_else(|e| panic!("frames so far {counts:?}: {e}"));
        got.entry(frame.header.stream.clone())
            .or_default()
            .push(frame);
    }
    got
}

#[tokio::test]
async fn four_cameras_from_one_file_stream_on_one_socket() {
    let dir = media::temp_dir("cameras-file-four");
    let (fourth, fourth_size) = fourth_source(&dir);
    let file = dir.join("cameras.toml");
    std::fs::write(
        &file,
        format!(
            r#"# four cameras, one process
[[camera]]
name = "lobby"
source = "test-pattern"
size = "320x240"
fps = 20

[[camera]]
name = "garage"
source = "test-pattern"
size = "640x360"
fps = 10
quality = 60

[[camera]]
name = "yard"
source = "test-pattern"
size = "160x120"

[[camera]]
name = "clip"
source = "{fourth}"
"#
        ),
    )
    .expect("write cameras file");
    let file_s = file.to_string_lossy().into_owned();
    // --source/--stream are ignored when cameras are listed.
    let p = Producer::start(&["--cameras", &file_s, "--stream", "ignored", "--fps", "15"]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");
    let names = ["lobby", "garage", "yard", "clip"];
    let got = frames_by_stream(&mut sub, &names, 12, Duration::from_secs(20)).await;
    assert!(!got.contains_key("ignored"), "{:?}", got.keys());

    let producer_id = got["lobby"][0].header.producer_id;
    let sizes = [
        ("lobby", (320, 240)),
        ("garage", (640, 360)),
        ("yard", (160, 120)),
        ("clip", fourth_size),
    ];
    for (name, size) in sizes {
        let frames = &got[name];
        for f in frames {
            assert_eq!(f.header.producer_id, producer_id, "one producer_id");
            assert_eq!((f.header.width, f.header.height), size, "{name}");
        }
        // Each stream has its own seq, without gaps.
        for pair in frames.windows(2) {
            assert_eq!(pair[1].header.seq, pair[0].header.seq + 1, "{name}");
        }
        let (_, w, h) = stream_common::jpeg::decode_rgb(&frames[frames.len() - 1].jpeg)
            .unwrap_or_else(|e| panic!("{name} decodable: {e}"));
        assert_eq!((w, h), size, "{name}");
    }

    // Per-camera metrics carry the stream label. The counter may lag the
    // frames already on the wire, so wait for it rather than read it once.
    for name in names {
        let label = format!("stream=\"{name}\"");
        let p = &p;
        wait_for(
            &format!("{name} published >= 12"),
            Duration::from_secs(10),
            || {
                let label = label.clone();
                async move {
                    let n = p.metric("producer_frames_published_total", &[&label]).await;
                    (n >= 12.0).then_some(())
                }
            },
        )
        .await;
        assert_eq!(
            p.metric("producer_source_errors_total", &[&label]).await,
            0.0,
            "{name}"
        );
    }
    // Rates follow each camera's own fps: lobby 20, garage 10 (yard takes
    // --fps 15), read from the capture times of the frames received (their
    // seq has no gaps, checked above), so a busy test machine delays the
    // reading but does not change it.
    let rate = |name: &str| {
        let frames = &got[name];
        let first = frames[0].header.capture_ts_ns;
        let last = frames[frames.len() - 1].header.capture_ts_ns;
        (frames.len() - 1) as f64 / ((last - first) as f64 / 1e9)
    };
    let (lr, gr, yr) = (rate("lobby"), rate("garage"), rate("yard"));
    assert!((16.0..=24.0).contains(&lr), "lobby {lr:.1} fps, wants 20");
    assert!((7.5..=12.5).contains(&gr), "garage {gr:.1} fps, wants 10");
    assert!((12.0..=18.0).contains(&yr), "yard {yr:.1} fps, wants 15");

    let health = test_support::http::get(p.metrics, "/healthz")
        .await
        .expect("healthz");
    assert_eq!(health.head.status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_camera_is_retried_and_counted_while_the_others_stream() {
    let dir = media::temp_dir("cameras-file-missing");
    let missing = dir.join("not-there");
    let mut text = String::new();
    for name in ["a", "b", "c"] {
        text.push_str(&format!(
            "[[camera]]\nname = \"{name}\"\nsource = \"test-pattern\"\nsize = \"160x120\"\nfps = 15\n\n"
        ));
    }
    text.push_str(&format!(
        "[[camera]]\nname = \"gone\"\nsource = \"{}\"\n\n",
        missing.display()
    ));
    let mut failing = vec!["gone"];
    if cfg!(feature = "ffmpeg") {
        // A video file that is not there and an RTSP camera nobody serves.
        let port = test_support::free_port();
        text.push_str(&format!(
            "[[camera]]\nname = \"gone-video\"\nsource = \"{}/clip.mp4\"\n\n[[camera]]\nname = \"door\"\nsource = \"rtsp://127.0.0.1:{port}/stream1\"\n",
            missing.display()
        ));
        failing.extend(["gone-video", "door"]);
    }
    let file = dir.join("cameras.toml");
    std::fs::write(&file, text).expect("write cameras file");
    let file_s = file.to_string_lossy().into_owned();
    let mut p = Producer::start(&["--cameras", &file_s]);
    let mut sub = Subscriber::connect(&p.endpoint, "")
        .await
        .expect("subscribe");

    // The failing cameras are retried (the backoff starts at 200 ms), and
    // counted under their own name.
    for name in &failing {
        let label = format!("stream=\"{name}\"");
        let p = &p;
        let errors = wait_for(&format!("{name} retried"), Duration::from_secs(20), || {
            let label = label.clone();
            async move {
                let n = p.metric("producer_source_errors_total", &[&label]).await;
                (n >= 3.0).then_some(n)
            }
        })
        .await;
        assert!(errors >= 3.0, "{name}: {errors}");
    }
    // Meanwhile the other three stream, and keep streaming.
    let got = frames_by_stream(&mut sub, &["a", "b", "c"], 20, Duration::from_secs(15)).await;
    for failed in &failing {
        assert!(!got.contains_key(*failed), "{failed} published a frame");
        let label = format!("stream=\"{failed}\"");
        assert_eq!(
            p.metric("producer_frames_published_total", &[&label]).await,
            0.0
        );
    }
    for name in ["a", "b", "c"] {
        let label = format!("stream=\"{name}\"");
        assert_eq!(
            p.metric("producer_source_errors_total", &[&label]).await,
            0.0,
            "{name}"
        );
    }
    assert!(p.proc.try_wait().is_none(), "still running");
    let health = test_support::http::get(p.metrics, "/healthz")
        .await
        .expect("healthz");
    assert_eq!(
        health.head.status, 200,
        "healthy while some cameras publish"
    );

    // The missing file appears: that camera comes up without a restart.
    std::fs::create_dir_all(&missing).expect("mkdir");
    std::fs::write(missing.join("x.jpg"), media::solid_jpeg(64, 48, [0, 90, 0]))
        .expect("write jpeg");
    let got = frames_by_stream(&mut sub, &["gone"], 3, Duration::from_secs(15)).await;
    assert_eq!(
        (got["gone"][0].header.width, got["gone"][0].header.height),
        (64, 48)
    );
    let log = p.proc.log();
    assert!(log.contains("source unavailable"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn repeated_camera_flags_carry_several_cameras() {
    let p = Producer::start(&[
        "--camera",
        "name=left,source=test-pattern,size=160x120,fps=20",
        "--camera",
        "name=right,source=test-pattern,size=320x240,fps=20,quality=50",
    ]);
    let mut sub = Subscriber::frames_of(&p.endpoint, "right")
        .await
        .expect("subscribe");
    // The subscription filters by topic at the producer: only `right`.
    let got = frames_by_stream(&mut sub, &["right"], 10, Duration::from_secs(15)).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["right"]);
    assert_eq!(
        (got["right"][0].header.width, got["right"][0].header.height),
        (320, 240)
    );
    let left = wait_for("left captured", Duration::from_secs(10), || async {
        let n = p
            .metric("producer_frames_captured_total", &["stream=\"left\""])
            .await;
        (n > 5.0).then_some(n)
    })
    .await;
    assert!(left > 5.0);
    // Nobody subscribes to left's full rate, so none of it was encoded.
    let left = ["stream=\"left\""];
    assert_eq!(p.metric("producer_frames_encoded_total", &left).await, 0.0);
    assert_eq!(
        p.metric("producer_frames_published_total", &left).await,
        0.0
    );
}

/// Runs the binary to its exit with `args`; (exit code, stderr).
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(test_support::process::bin_path("frame-producer"))
        .args(args)
        .args([
            "--bind",
            "tcp://127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_malformed_cameras_file_is_refused_naming_the_line_and_field() {
    let dir = media::temp_dir("cameras-file-bad");
    let cases: [(&str, &[&str]); 5] = [
        (
            "[[camera]]\nname = \"lobby\"\nsource = \"test-pattern\"\n\n[[camera]]\nname = \"yard\"\nsource = \"test-pattern\"\nsize = \"641x480\"\n",
            &["line 8", "camera #2 (yard)", "size:", "641"],
        ),
        (
            "[[camera]]\nname = \"lobby\"\nsource = \"test-pattern\"\nfsp = 10\n",
            &["line 4", "unknown field `fsp`"],
        ),
        (
            "[[camera]]\nname = \"lobby\"\nsource = test-pattern\n",
            &["line 3 (source = test-pattern)"],
        ),
        (
            "[[camera]]\nname = \"lobby\"\nsource = \"gopher://cam\"\n",
            &["line 3", "source:", "unsupported source scheme"],
        ),
        (
            "[[camera]]\nname = \"a\"\nsource = \"test-pattern\"\n\n[[camera]]\nname = \"a\"\nsource = \"test-pattern\"\n",
            &["listed twice", "line 2", "line 6"],
        ),
    ];
    for (i, (text, wants)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad{i}.toml"));
        std::fs::write(&file, text).expect("write");
        let file_s = file.to_string_lossy().into_owned();
        let (code, stderr) = run_to_exit(&["--cameras", &file_s]);
        assert_eq!(code, Some(2), "{text}\n{stderr}");
        assert!(stderr.contains(&format!("bad{i}.toml")), "{stderr}");
        for want in *wants {
            assert!(stderr.contains(want), "{want:?} not in {stderr:?}");
        }
    }
    // A file that is not there, an empty one, and a bad --camera flag.
    let (code, stderr) = run_to_exit(&["--cameras", "/nonexistent/cameras.toml"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/cameras.toml"), "{stderr}");
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "# nothing yet\n").expect("write");
    let (code, stderr) = run_to_exit(&["--cameras", &empty.to_string_lossy()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no cameras listed"), "{stderr}");
    let (code, stderr) = run_to_exit(&["--camera", "name=a,source=test-pattern,fps=fast"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--camera") && stderr.contains("fps:"),
        "{stderr}"
    );
    // The plain build refuses camera sources naming the feature, at start.
    if cfg!(not(feature = "ffmpeg")) {
        let (code, stderr) = run_to_exit(&["--source", "rtmp://live/app"]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("`ffmpeg` build feature"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
