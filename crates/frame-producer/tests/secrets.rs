//! Secrets never reach a log: a producer whose HTTP camera URL carries a
//! password logs the camera and its failures with the password redacted.

use std::time::Duration;

use test_support::producer::Producer;
use test_support::{free_port, wait_for};

const PLANTED: &str = "Planted-Pw-93xq";

#[tokio::test]
async fn an_http_camera_password_is_never_logged() {
    // Nothing listens on this port, so the source fails and says so.
    let url = format!(
        "http://admin:{PLANTED}@127.0.0.1:{}/video.mjpg?token={PLANTED}",
        free_port()
    );
    let p = Producer::start(&["--source", &url, "--stream", "door"]);
    let log = wait_for(
        "the producer to log the failing MJPEG source",
        Duration::from_secs(20),
        || {
            let log = p.proc.log();
            async move { log.contains("MJPEG source failed").then_some(log) }
        },
    )
    .await;
    assert!(log.contains("***@127.0.0.1"), "redacted URL logged: {log}");
    assert!(
        !log.contains(PLANTED),
        "the planted password reached the log:\n{log}"
    );
}
