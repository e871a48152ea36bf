//! The real Docker engine for deployment tests: is there one, build the
//! project's images around the binaries the other tests ran, run commands
//! and fail with their output.

use std::path::Path;
use std::process::Command;

use crate::process::workspace_root;

/// The image `scripts/docker-images.sh` builds for tests.
pub const APP_IMAGE: &str = "mjpeg-fanout:local";
/// The offline Debian base (nginx included).
pub const BASE_IMAGE: &str = "mjpeg-fanout/debian-base:bookworm-ffmpeg";

/// True when `docker info` answers. Without an engine a test should skip
/// loudly, except under CI, where it must fail ([`require`]).
pub fn available() -> bool {
    Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `Some(())` when the engine is there; otherwise panics under `CI` and
/// prints a loud skip message naming `what` elsewhere.
pub fn require(what: &str) -> Option<()> {
    if available() {
        return Some(());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but no Docker engine answers `docker info`"
    );
    eprintln!("\n!!!!! SKIPPED: no Docker engine here; {what} was NOT tested !!!!!\n");
    None
}

/// Builds [`APP_IMAGE`] from the binaries next to this test's
/// `frame-producer` (the ones every other test ran).
pub fn build_images() {
    let bins = crate::process::bin_path("frame-producer");
    let bins = bins.parent().unwrap_or(Path::new("target/debug"));
    let status = Command::new("bash")
        .arg(workspace_root().join("scripts/docker-images.sh"))
        .arg("--bins")
        .arg(bins)
        .env("APP_IMAGE", APP_IMAGE)
        .status()
        .expect("scripts/docker-images.sh runs");
    assert!(status.success(), "building images failed");
}

/// Runs `docker args…` from the workspace root; panics with its output on failure.
pub fn docker(args: &[&str]) -> String {
    docker_env(args, &[])
}

/// [`docker`] with extra environment (stack files read variables).
pub fn docker_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = try_docker(args, env);
    match out {
        Ok(s) => s,
        Err(e) => panic!("docker {args:?} failed:\n{e}"),
    }
}

/// Runs `docker args…`; stdout, or stdout and stderr as the error.
pub fn try_docker(args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let mut c = Command::new("docker");
    c.args(args).current_dir(workspace_root());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().map_err(|e| format!("running docker: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
