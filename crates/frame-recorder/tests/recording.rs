//! The recorder end to end: a real producer with two test-pattern cameras
//! at 15 fps, a real recorder on loopback, read as a client would. One
//! recording of 20 s is checked several ways (coverage, frame?at=, the
//! paced stream at speed 1 and 4, a clip in ffprobe, path tricks), then
//! the recorder is killed with SIGKILL and restarted on the same directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::http::{self, MjpegReader};
use test_support::media::{decodes_cleanly, probe as ffprobe};
use test_support::producer::Producer;
use test_support::recorder::Recorder;
use test_support::wait_for;

const FPS: f64 = 15.0;

fn start_recorder(producer: &str, dir: &Path, extra: &[&str]) -> Recorder {
    Recorder::start(producer, dir, extra)
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "recorder-{tag}-{}-{}",
        std::process::id(),
        stream_common::unix_now_ns()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

async fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let r = http::get(addr, path).await.expect("request");
    assert_eq!(r.head.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).expect("json")
}

fn stream_of<'a>(list: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    list["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// Frames per second of the playback stream, from the capture times and
/// from the arrival times of `n` parts; and how long the first part took.
async fn playback(
    addr: SocketAddr,
    name: &str,
    from_ms: u64,
    speed: f64,
    n: usize,
) -> (Duration, f64, Vec<f64>) {
    let asked = Instant::now();
    let mut r = MjpegReader::open(
        addr,
        &format!("/recordings/{name}/stream?from={from_ms}&speed={speed}"),
    )
    .await
    .expect("open playback");
    assert_eq!(r.head().status, 200);
    let first = r
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("first part");
    let first_after = asked.elapsed();
    let start = Instant::now();
    let mut stamps = vec![first.timestamp().expect("X-Timestamp")];
    for _ in 1..n {
        let f = r
            .next_frame_within(Duration::from_secs(5))
            .await
            .expect("part");
        stamps.push(f.timestamp().expect("X-Timestamp"));
    }
    let wall_fps = (n - 1) as f64 / start.elapsed().as_secs_f64();
    (first_after, wall_fps, stamps)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "mkv"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_two_cameras_and_plays_them_back_and_survives_sigkill() {
    let producer = Producer::start(&[
        "--camera",
        "name=cam0,source=test-pattern,size=320x240,fps=15",
        "--camera",
        "name=cam1,source=test-pattern,size=320x240,fps=15",
    ]);
    let dir = temp_dir("main");
    let mut rec = start_recorder(&producer.endpoint, &dir, &["--segment-seconds", "8"]);

    // Record until both cameras have 20 s.
    let coverage = |list: &serde_json::Value, name: &str| {
        stream_of(list, name).map_or(0.0, |s| {
            (s["to_ms"].as_u64().unwrap_or(0) as f64 - s["from_ms"].as_u64().unwrap_or(0) as f64)
                / 1000.0
        })
    };
    let list = wait_for(
        "20 s recorded of both cameras",
        Duration::from_secs(40),
        || async {
            let list = match http::get(rec.addr, "/api/recordings").await {
                Ok(r) if r.head.status == 200 => {
                    serde_json::from_slice::<serde_json::Value>(&r.body).ok()?
                }
                _ => return None,
            };
            (coverage(&list, "cam0") >= 20.0 && coverage(&list, "cam1") >= 20.0).then_some(list)
        },
    )
    .await;
    for name in ["cam0", "cam1"] {
        let c = coverage(&list, name);
        assert!((19.0..=21.5).contains(&c), "{name}: {c} s covered: {list}");
        let s = stream_of(&list, name).expect("listed");
        assert_eq!(s["mode"], "continuous");
        assert!(s["bytes"].as_u64().unwrap_or(0) > 0);
    }
    let s0 = stream_of(&list, "cam0").expect("cam0");
    let (from_ms, to_ms) = (
        s0["from_ms"].as_u64().expect("from"),
        s0["to_ms"].as_u64().expect("to"),
    );

    // Spans: one, no gaps, in the window asked.
    let spans = json(
        rec.addr,
        &format!("/api/recordings/cam0?from={from_ms}&to={to_ms}"),
    )
    .await;
    let spans = spans["spans"].as_array().expect("spans").clone();
    assert_eq!(spans.len(), 1, "{spans:?}");

    // frame?at=: the frame captured within one frame interval of the time asked.
    for k in [1u64, 7, 13, 18] {
        let at = from_ms + k * 1000 + 37;
        let r = http::get(rec.addr, &format!("/recordings/cam0/frame?at={at}"))
            .await
            .expect("frame");
        assert_eq!(r.head.status, 200);
        assert!(frame_wire::looks_like_jpeg(&r.body));
        let ts: f64 = r
            .head
            .header("x-timestamp")
            .expect("X-Timestamp")
            .parse()
            .expect("seconds");
        let off = (ts * 1000.0 - at as f64).abs();
        assert!(off <= 1000.0 / FPS, "frame at {at} is {off} ms away");
    }
    assert_eq!(
        http::status(
            rec.addr,
            &format!("/recordings/cam0/frame?at={}", from_ms - 60_000)
        )
        .await,
        404
    );

    // stream?from=: first part soon, the recorded pace at speed 1 and 4x it at 4.
    let (first, fps1, stamps) = playback(rec.addr, "cam0", from_ms + 2000, 1.0, 31).await;
    assert!(
        first < Duration::from_millis(300),
        "first part after {first:?}"
    );
    assert!((14.0..=16.0).contains(&fps1), "speed 1: {fps1} fps");
    assert!(stamps[0] * 1000.0 >= (from_ms + 2000) as f64);
    assert!(stamps.windows(2).all(|w| w[1] > w[0]));
    let (_, fps4, stamps4) = playback(rec.addr, "cam0", from_ms + 2000, 4.0, 121).await;
    assert!((54.0..=66.0).contains(&fps4), "speed 4: {fps4} fps");
    let recorded_fps = 120.0 / (stamps4[120] - stamps4[0]);
    assert!((14.0..=16.0).contains(&recorded_fps), "{recorded_fps}");

    // A 10 s clip: duration and frames in ffprobe.
    let clip_from = from_ms + 5000;
    let r = http::get(
        rec.addr,
        &format!(
            "/recordings/cam1/clip?from={clip_from}&to={}",
            clip_from + 10_000
        ),
    )
    .await
    .expect("clip");
    assert_eq!(r.head.status, 200);
    assert!(
        r.head
            .header("content-disposition")
            .is_some_and(|v| v.starts_with("attachment"))
    );
    let clip = dir.join("clip.mkv.download");
    std::fs::write(&clip, &r.body).expect("write clip");
    let (duration, frames) = ffprobe(&clip);
    assert!((9.8..=10.2).contains(&duration), "clip duration {duration}");
    assert!((147..=153).contains(&frames), "clip frames {frames}");
    decodes_cleanly(&clip).expect("clip decodes");
    let _ = std::fs::remove_file(&clip);

    // Bad input: one-line reasons, nothing outside --dir.
    let secret = dir
        .parent()
        .expect("tmp")
        .join(format!("secret-{}", std::process::id()));
    std::fs::write(&secret, "secret").expect("secret");
    for (path, want) in [
        ("/recordings/..%2f..%2fetc/frame?at=1".to_string(), 400),
        ("/recordings/%2e%2e/frame?at=1".to_string(), 400),
        ("/recordings/../frame?at=1".to_string(), 400),
        ("/recordings/cam0%00/frame?at=1".to_string(), 400),
        ("/api/recordings/%2Fetc%2Fpasswd".to_string(), 400),
        ("/recordings/nope/frame?at=1".to_string(), 404),
        ("/recordings/cam0/frame?at=yesterday".to_string(), 400),
        (
            format!("/recordings/cam0/clip?from={to_ms}&to={from_ms}"),
            400,
        ),
        (
            format!("/recordings/cam0/clip?from=1&to={}", 1 + 3_600_001),
            400,
        ),
        ("/recordings/cam0/stream?from=1&speed=100".to_string(), 400),
        ("/recordings/cam0/frame?at=1&at=2".to_string(), 400),
    ] {
        let r = http::get(rec.addr, &path).await.expect("request");
        assert_eq!(r.head.status, want, "{path}: {}", r.text());
        assert!(!r.text().contains("secret"));
        assert_eq!(r.text().trim().lines().count(), 1, "{path}");
    }
    let _ = std::fs::remove_file(&secret);

    // SIGKILL mid-segment, then a restart on the same directory.
    tokio::time::sleep(Duration::from_millis(500)).await; // into a cluster, not on its edge
    let killed_at_ms = stream_common::unix_now_ns() / 1_000_000;
    rec.proc.signal(9);
    wait_for("the recorder to die", Duration::from_secs(5), || {
        let gone = rec.proc.try_wait().is_some();
        async move { gone.then_some(()) }
    })
    .await;
    let mut rec2 = start_recorder(&producer.endpoint, &dir, &["--segment-seconds", "8"]);
    let list = wait_for(
        "the restarted recorder records on",
        Duration::from_secs(20),
        || async {
            let list = match http::get(rec2.addr, "/api/recordings").await {
                Ok(r) if r.head.status == 200 => {
                    serde_json::from_slice::<serde_json::Value>(&r.body).ok()?
                }
                _ => return None,
            };
            let to = stream_of(&list, "cam0")?["to_ms"].as_u64()?;
            (to > killed_at_ms + 2000).then_some(list)
        },
    )
    .await;
    // Everything up to a second before the kill is there.
    let spans = json(
        rec2.addr,
        &format!("/api/recordings/cam0?from={from_ms}&to={killed_at_ms}"),
    )
    .await;
    let last_before_kill = spans["spans"][0]["to_ms"].as_u64().expect("span");
    assert!(
        last_before_kill + 1000 + (1000.0 / FPS) as u64 >= killed_at_ms,
        "recorded up to {last_before_kill}, killed at {killed_at_ms}: {spans}"
    );
    let r = http::get(
        rec2.addr,
        &format!("/recordings/cam0/frame?at={}", killed_at_ms - 1000),
    )
    .await
    .expect("frame");
    assert_eq!(r.head.status, 200, "{list}");
    // Every file decodes without error: the killed one as repaired, and the
    // one being written once the recorder has stopped (read while it is
    // being appended to, ffmpeg may meet a cluster half written).
    rec2.proc.signal(15);
    wait_for("the recorder to stop", Duration::from_secs(10), || {
        let exited = rec2.proc.try_wait().is_some();
        async move { exited.then_some(()) }
    })
    .await;
    let files = segment_files(&dir);
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        if let Err(e) = decodes_cleanly(f) {
            panic!("{} does not decode: {e}", f.display());
        }
    }
    drop(rec2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tmpfs mount of its own, unmounted when the test ends.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(size: &str) -> Option<Mount> {
        let dir = temp_dir("tmpfs");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Mount(dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn metric(addr: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    test_support::metrics::metric(addr, name, labels).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_drops_and_counts_and_recording_resumes_when_space_returns() {
    let Some(mount) = Mount::tmpfs("3m") else {
        panic!("this test mounts a tmpfs: run it as root (scripts/test.sh does)");
    };
    let producer = Producer::start(&[
        "--camera",
        "name=cam0,source=test-pattern,size=640x480,fps=15",
        "--camera",
        "name=cam1,source=test-pattern,size=320x240,fps=15",
    ]);
    let rec = start_recorder(&producer.endpoint, &mount.0, &["--segment-seconds", "4"]);
    // A live viewer of cam1 straight off the bus (a gateway), watched throughout.
    let gateway = test_support::gateway::Gateway::start(&[producer.endpoint.as_str()], &[], &[]);
    gateway.wait_stream("cam1", Duration::from_secs(20)).await;
    let mut live = MjpegReader::open(gateway.addr, "/stream/cam1")
        .await
        .expect("live viewer");

    // The disk fills: drops are counted, the recorder keeps running.
    let full = test_support::metrics::wait_metric(
        rec.addr,
        "recorder_dropped_frames_total",
        &["reason=\"disk_full\""],
        30.0,
        Duration::from_secs(60),
    )
    .await;
    assert!(full >= 30.0);
    // The live viewer is untouched: frames keep coming at the camera's rate.
    let start = Instant::now();
    for _ in 0..30 {
        live.next_frame_within(Duration::from_secs(2))
            .await
            .expect("live frame while the disk is full");
    }
    let live_fps = 29.0 / start.elapsed().as_secs_f64();
    assert!(
        live_fps > 12.0,
        "live viewer at {live_fps} fps while the disk is full"
    );
    assert_eq!(http::status(rec.addr, "/healthz").await, 200);
    let log = rec.proc.log();
    let warnings = log.matches("cannot write the recording").count();
    assert!(
        warnings <= 2 + (start.elapsed().as_secs() as usize / 5) * 2 + 8,
        "{warnings} warnings: at most one per camera every 5 s"
    );

    // Space returns: recording resumes by itself.
    let written_before = metric(
        rec.addr,
        "recorder_frames_written_total",
        &["stream=\"cam1\""],
    )
    .await;
    for f in segment_files(&mount.0).iter().take(4) {
        let _ = std::fs::remove_file(f);
        let _ = std::fs::remove_file(f.with_extension("idx"));
    }
    test_support::metrics::wait_metric(
        rec.addr,
        "recorder_frames_written_total",
        &["stream=\"cam1\""],
        written_before + 30.0,
        Duration::from_secs(20),
    )
    .await;
    drop(rec);
    drop(mount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_bounds_the_directory_to_one_segment_per_camera_more() {
    let producer = Producer::start(&[
        "--camera",
        "name=cam0,source=test-pattern,size=640x480,fps=15",
        "--camera",
        "name=cam1,source=test-pattern,size=640x480,fps=15",
    ]);
    let dir = temp_dir("bytes");
    let max: u64 = 2 << 20;
    let rec = start_recorder(
        &producer.endpoint,
        &dir,
        &["--segment-seconds", "2", "--max-bytes", "2M"],
    );
    let used = || -> u64 {
        segment_files(&dir)
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    };
    let mut largest_segment = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for f in segment_files(&dir) {
            largest_segment = largest_segment.max(std::fs::metadata(&f).map_or(0, |m| m.len()));
        }
        let now = used();
        assert!(
            now <= max + 2 * largest_segment + 256 * 1024,
            "{now} bytes with --max-bytes {max}"
        );
        if metric(
            rec.addr,
            "recorder_retention_deleted_segments_total",
            &["reason=\"bytes\""],
        )
        .await
            >= 3.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never deleted by bytes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(rec);
    let _ = std::fs::remove_dir_all(&dir);
}
