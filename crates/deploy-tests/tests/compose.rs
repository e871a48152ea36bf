//! `docker-compose.yml` on a real Docker engine: images built by
//! `scripts/docker-images.sh` around the binaries the other tests ran, three
//! gateways behind nginx and stream-director (streams redirected to each
//! gateway's own port, followed as a browser does), and the failures users
//! meet: a gateway killed, the producer restarted; then the same project
//! switched to HTTPS (deploy/compose.tls.yml, certificates from files made
//! by scripts/make-cert.sh): the page through nginx over TLS, a stream
//! redirected to an https:// gateway and read over TLS, the gateways healthy
//! by their TLS health check; and the image's producer playing a video file.
//!
//! Without a Docker engine it skips with a loud message, unless `CI` is set.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::http::{self, MjpegReader};
use test_support::process::workspace_root;
use test_support::{free_port, wait_for};

mod common;

const FPS: f64 = 15.0;

/// A compose project, taken down (with its volumes) on drop.
struct Project {
    compose: Vec<String>,
    name: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.compose[0]);
        c.args(&self.compose[1..])
            .args(["-p", &self.name])
            .args(args)
            .current_dir(workspace_root());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("compose runs");
        assert!(
            out.status.success(),
            "compose {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Running containers of one service.
    fn containers(&self, service: &str) -> Vec<String> {
        self.ps(&[
            "-q",
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
    }

    /// Every container of the project, running or not.
    fn all_containers(&self) -> Vec<String> {
        self.ps(&["-aq"])
    }

    fn ps(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("docker")
            .arg("ps")
            .args(args)
            .args([
                "--filter",
                &format!("label=com.docker.compose.project={}", self.name),
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(out) = self.cmd(&["logs", "--tail", "40"]).output()
        {
            eprintln!(
                "----- compose logs -----\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let _ = self
            .cmd(&["down", "-v", "--remove-orphans", "-t", "2"])
            .output();
    }
}

fn docker_available() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `docker compose` (v2 plugin) or `docker-compose` (v1), whichever exists.
fn compose_command() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

async fn stream_rate(addr: SocketAddr, window: Duration) -> (f64, String) {
    let (mut r, _) = MjpegReader::open_following(addr, "/video_feed", 1)
        .await
        .expect("stream through the load balancer");
    let instance = r
        .head()
        .header("x-gateway-instance")
        .unwrap_or_default()
        .to_string();
    r.next_frame_within(Duration::from_secs(10))
        .await
        .expect("first frame");
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < window {
        r.next_frame_within(Duration::from_secs(3))
            .await
            .expect("frame");
        n += 1;
    }
    (n as f64 / start.elapsed().as_secs_f64(), instance)
}

/// The running project again with deploy/compose.tls.yml: only the
/// gateways, the director and nginx are recreated.
async fn https_on_the_same_project(
    project: &Project,
    gateway_ports: &std::ops::RangeInclusive<u16>,
) {
    let certs = common::make_certs(
        "compose-certs",
        &["localhost", "127.0.0.1", "host.docker.internal"],
    );
    let ca = certs.join("ca.pem");
    let https_port = free_port();
    let t = Instant::now();
    let out = project
        .cmd(&[
            "-f",
            "docker-compose.yml",
            "-f",
            "deploy/compose.tls.yml",
            "up",
            "-d",
            "--no-build",
            "--scale",
            "stream-gateway=3",
        ])
        .env("TLS_CERTS", &certs)
        .env("HTTPS_PORT", https_port.to_string())
        .output()
        .expect("compose runs");
    assert!(
        out.status.success(),
        "compose up with TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lb: SocketAddr = format!("127.0.0.1:{https_port}").parse().expect("addr");
    wait_for(
        "the page over HTTPS through nginx",
        Duration::from_secs(60),
        || {
            let ca = ca.clone();
            async move {
                let r = common::https_get(&ca, lb, "/").await?;
                (r.head.status == 200 && r.text().contains("<html")).then_some(())
            }
        },
    )
    .await;
    eprintln!(
        "the project served HTTPS {:?} after `up` with compose.tls.yml",
        t.elapsed()
    );
    // Each gateway is healthy by `stream-gateway --healthcheck`, over TLS.
    let gateways = project.containers("stream-gateway");
    assert_eq!(gateways.len(), 3);
    wait_for(
        "three healthy HTTPS gateways",
        Duration::from_secs(30),
        || async {
            let healthy = gateways.iter().all(|id| {
                Command::new("docker")
                    .args(["inspect", "-f", "{{.State.Health.Status}}", id])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "healthy")
            });
            healthy.then_some(())
        },
    )
    .await;
    // A stream: redirected (the director checked the gateways over TLS)
    // to an https:// gateway, and read from it over TLS.
    let (location, gateway) = wait_for(
        "a redirect to an https:// gateway",
        Duration::from_secs(30),
        || {
            let ca = ca.clone();
            async move {
                let r = common::https_get(&ca, lb, "/stream/cam0").await?;
                let location = r.head.header("location")?.to_string();
                let port = gateway_ports
                    .clone()
                    .find(|p| location == format!("https://127.0.0.1:{p}/stream/cam0"))?;
                (r.head.status == 307).then_some((location, port))
            }
        },
    )
    .await;
    let addr: SocketAddr = format!("127.0.0.1:{gateway}").parse().expect("addr");
    let s = common::https_connect(&ca, addr)
        .await
        .expect("TLS to the gateway");
    let conn = http::Connection::request_on(s, addr, "GET", "/stream/cam0", &[], b"")
        .await
        .expect("stream over TLS");
    let mut r = MjpegReader::from_connection(conn, "/stream/cam0").expect("MJPEG over TLS");
    for _ in 0..5 {
        r.next_frame_within(Duration::from_secs(5))
            .await
            .expect("a frame over TLS");
    }
    eprintln!("{location}: 5 frames over TLS");
    // Plain HTTP on nginx's TLS port is sent to https://.
    let plain = http::Connection::request(lb, "GET", "/", &[])
        .await
        .expect("plain request");
    assert_eq!(plain.head.status, 308, "plain HTTP on the TLS port");
    assert_eq!(
        plain.head.header("location"),
        Some(format!("https://{lb}/").as_str())
    );
    let _ = std::fs::remove_dir_all(&certs);
}

/// A container removed (forcefully) on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(out) = Command::new("docker").args(["logs", &self.0]).output()
        {
            eprintln!(
                "----- {} logs -----\n{}{}",
                self.0,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// The image's producer decodes an H.264 file: FFmpeg's libraries are in the
/// image and the `cameras` feature is built in.
async fn image_plays_a_video_file() {
    let dir = test_support::media::temp_dir("mjpeg-video");
    test_support::media::test_video(
        &dir.join("clip.mp4"),
        "640x360",
        15,
        2,
        &["-c:v", "libx264"],
    );
    let metrics_port = free_port();
    let name = format!("mjpegtest-video-{}", std::process::id());
    let run = Command::new("docker")
        .args(["run", "-d", "--read-only", "--name", &name])
        .args(["-p", &format!("127.0.0.1:{metrics_port}:9100")])
        .args(["-v", &format!("{}:/videos:ro", dir.display())])
        .args([
            "mjpeg-fanout:local",
            "frame-producer",
            "--source",
            "/videos/clip.mp4",
        ])
        .args(["--size", "320x240"])
        .output()
        .expect("docker run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let _container = Container(name);
    let addr: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().expect("addr");
    // Nobody subscribes to its full rate, so the producer decodes only the
    // file's keyframes (encode on demand) and publishes previews of them:
    // both need the image's FFmpeg libraries.
    let (captured, previews) = wait_for(
        "frames decoded from the video file",
        Duration::from_secs(30),
        || async move {
            let text = http::get(addr, "/metrics").await.ok()?.text();
            let metric = |name| test_support::metrics::metric_value(&text, name, &[]);
            let captured = metric("producer_frames_captured_total");
            let previews = metric("producer_previews_published_total");
            (captured >= 3.0 && previews >= 2.0).then_some((captured, previews))
        },
    )
    .await;
    eprintln!(
        "the image's producer decoded {captured} frames of an H.264 file and published {previews} previews"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn compose_with_three_gateways_behind_nginx() {
    if !docker_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no Docker engine answers `docker info`"
        );
        eprintln!(
            "\n!!!!! SKIPPED: no Docker engine here; the compose deployment was NOT tested !!!!!\n"
        );
        return;
    }
    // The image carries the same binaries as every other test ran (the test
    // command builds them with all features, so the image reads video too).
    let bins = test_support::process::bin_path("frame-producer");
    let bins = bins.parent().expect("target dir");
    let images = Command::new("bash")
        .arg(workspace_root().join("scripts/docker-images.sh"))
        .arg("--bins")
        .arg(bins)
        .status()
        .expect("scripts/docker-images.sh runs");
    assert!(images.success(), "building images failed");

    let port = free_port();
    let gateway_ports = test_support::free_port_range(3);
    let project = Project {
        compose: compose_command(),
        name: format!("mjpegtest{}", std::process::id()),
        env: vec![
            ("APP_IMAGE".into(), "mjpeg-fanout:local".into()),
            (
                "NGINX_IMAGE".into(),
                "mjpeg-fanout/debian-base:bookworm-ffmpeg".into(),
            ),
            ("HTTP_PORT".into(), port.to_string()),
            (
                "GATEWAY_PORTS".into(),
                format!("{}-{}", gateway_ports.start(), gateway_ports.end()),
            ),
            ("PRODUCER_FPS".into(), FPS.to_string()),
        ],
    };
    // The overrides are valid compose on top of the main file.
    for extra in [
        "deploy/compose.cameras.yml",
        "deploy/compose.webcam.yml",
        "deploy/compose.many-cameras.yml",
        "deploy/compose.mqtt.yml",
    ] {
        project.run(&["-f", "docker-compose.yml", "-f", extra, "config", "-q"]);
    }
    project.run(&["up", "-d", "--no-build", "--scale", "stream-gateway=3"]);
    let lb: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_for(
        "stream through the load balancer",
        Duration::from_secs(60),
        || async move {
            let r = http::get(lb, "/snapshot").await.ok()?;
            (r.head.status == 200).then_some(())
        },
    )
    .await;
    assert_eq!(project.containers("stream-gateway").len(), 3);
    // The demo camera, the detector and the event stage come up with a
    // plain `up`: the page has boxes on `demo` within a minute or two.
    for service in ["demo-camera", "object-detector", "event-stage"] {
        assert_eq!(project.containers(service).len(), 1, "{service} runs");
    }
    let person = wait_for(
        "a person detected on the demo camera",
        Duration::from_secs(150),
        || async move {
            let r = http::get(lb, "/api/streams/demo/detections").await.ok()?;
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            let boxes = v["boxes"].as_array()?;
            boxes
                .iter()
                .any(|b| b["label"] == "person")
                .then(|| v.to_string())
        },
    )
    .await;
    eprintln!("demo detections through the load balancer: {person}");
    // The event stage made it an event, and the recorder (behind nginx's
    // /api/events) keeps it with its snapshot.
    let event = wait_for(
        "the demo's person event in the recorder's history",
        Duration::from_secs(120),
        || async move {
            let r = http::get(lb, "/api/events?stream=demo").await.ok()?;
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            let e = v["events"].as_array()?.first()?.clone();
            (e["label"] == "person").then_some(e)
        },
    )
    .await;
    let id = event["id"].as_str().expect("event id");
    let snapshot = http::get(lb, &format!("/api/events/{id}/snapshot.jpg"))
        .await
        .expect("snapshot");
    assert_eq!(snapshot.head.status, 200, "the event's snapshot");
    assert!(
        snapshot.body.starts_with(&[0xff, 0xd8]),
        "the snapshot is a JPEG"
    );

    // 30 clients for 10 s, spread over all three gateways.
    let tasks: Vec<_> = (0..30)
        .map(|_| tokio::spawn(stream_rate(lb, Duration::from_secs(10))))
        .collect();
    let mut instances = HashSet::new();
    for t in tasks {
        let (rate, instance) = t.await.expect("client");
        assert!(
            rate > FPS * 0.85,
            "a client got {rate:.1} fps through the load balancer"
        );
        instances.insert(instance);
    }
    assert_eq!(instances.len(), 3, "clients reached {instances:?}");
    // No video passes nginx: a stream request is answered with a redirect
    // to one gateway's own published port.
    let redirect = http::Connection::request(lb, "GET", "/stream/cam0", &[])
        .await
        .expect("stream request");
    assert_eq!(redirect.head.status, 307, "streams are redirected");
    let location = redirect.head.header("location").unwrap_or_default();
    assert!(
        gateway_ports
            .clone()
            .any(|p| location == format!("http://127.0.0.1:{p}/stream/cam0")),
        "Location {location}"
    );

    // Kill one gateway: its clients reconnect, new connections stream within 2 s.
    let (mut victim_reader, _) = MjpegReader::open_following(lb, "/video_feed", 1)
        .await
        .expect("open");
    let victim_instance = victim_reader
        .head()
        .header("x-gateway-instance")
        .unwrap_or_default()
        .to_string();
    victim_reader
        .next_frame_within(Duration::from_secs(5))
        .await
        .expect("frame");
    let victim = project
        .containers("stream-gateway")
        .into_iter()
        .find(|id| victim_instance.starts_with(id.as_str()) || id.starts_with(&victim_instance))
        .expect("the container behind the instance id");
    let killed = Command::new("docker")
        .args(["kill", &victim])
        .output()
        .expect("docker kill");
    assert!(killed.status.success());
    let t = Instant::now();
    // The director checks twice a second: a viewer sent to the dead
    // gateway in between retries, as the page's watchdog does.
    let mut r = wait_for(
        "a new connection streaming after a gateway died",
        Duration::from_secs(2),
        || async {
            let (r, _) = MjpegReader::open_following(lb, "/video_feed", 1)
                .await
                .ok()?;
            Some(r)
        },
    )
    .await;
    r.next_frame_within(Duration::from_secs(2))
        .await
        .expect("new connection streams");
    eprintln!(
        "new connection streaming {:?} after a gateway was killed",
        t.elapsed()
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    // Frames already received may still be read; then the stream ends.
    let mut drained = 0;
    while victim_reader
        .next_frame_within(Duration::from_secs(5))
        .await
        .is_ok()
    {
        drained += 1;
        assert!(drained < 30, "the killed gateway's stream goes on");
    }
    let (rate, instance) = stream_rate(lb, Duration::from_secs(2)).await;
    assert!(
        rate > FPS * 0.8 && instance != victim_instance,
        "reconnected viewer: {rate:.1} fps via {instance}"
    );

    // Stop the producer: viewers get the placeholder; start it: live again.
    project.run(&["stop", "-t", "1", "frame-producer"]);
    r.wait_online(false, Duration::from_secs(6), Duration::from_secs(5))
        .await
        .expect("placeholder after the producer stopped");
    project.run(&["start", "frame-producer"]);
    let took = r
        .wait_online(true, Duration::from_secs(8), Duration::from_secs(5))
        .await
        .expect("live frames resume");
    eprintln!("live again {took:?} after `start frame-producer`");

    https_on_the_same_project(&project, &gateway_ports).await;
    image_plays_a_video_file().await;

    let name = project.name.clone();
    drop(project);
    let left = Project {
        compose: compose_command(),
        name,
        env: vec![],
    };
    assert!(
        left.all_containers().is_empty(),
        "containers left after down"
    );
}
