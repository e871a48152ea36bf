//! The detector's `--cameras` file is the event stage's (parsed by
//! `stream_common::rules`), checked before the model loads: a mistake in it
//! stops the binary at once with an error naming the file, the line and the
//! field, rather than a detector that quietly publishes masked boxes.
//! (That masked boxes are never published, with the real model:
//! crates/event-stage/tests/scenes.rs.)

use std::time::Duration;

use test_support::process::Proc;
use test_support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cameras_file_stops_it_naming_file_line_and_field() {
    let path = std::env::temp_dir().join(format!(
        "detector-bad-cameras-{}-{}.toml",
        std::process::id(),
        stream_common::unix_now_ns()
    ));
    std::fs::write(
        &path,
        "[[camera]]\nname = \"cam0\"\n\n[[camera.mask]]\npolygon = [[0.1, 0.1], [0.9, 0.1]]\n",
    )
    .expect("write");
    let file = path.to_str().expect("UTF-8 temp path");
    // No model is given: the file is checked first, so the error is its.
    let mut proc = Proc::start(
        "object-detector",
        &[
            "--cameras",
            file,
            "--model",
            "/nonexistent/model.onnx",
            "--metrics-listen",
            "127.0.0.1:0",
            "--bind",
            "tcp://127.0.0.1:0",
        ],
        &[],
    );
    let status = wait_for("the detector to exit", Duration::from_secs(30), || {
        let status = proc.try_wait();
        async move { status }
    })
    .await;
    let log = proc.log();
    let _ = std::fs::remove_file(&path);
    assert!(!status.success(), "exited {status}: {log}");
    for want in [file, "line 5", "mask.polygon", "at least 3"] {
        assert!(log.contains(want), "{want:?} is not in the log: {log}");
    }
    assert!(
        !log.contains("model.sh"),
        "the model was looked at first: {log}"
    );
}
