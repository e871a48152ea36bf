//! What the deployment tests share for HTTPS: certificates made by the
//! project's own `scripts/make-cert.sh` for the names a deployment needs,
//! and a request over TLS that trusts only their CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use test_support::http;
use test_support::process::workspace_root;

/// A new directory with `ca.pem`, `cert.pem` and `key.pem` for `names`. The
/// key is made readable to all: the containers run as uid 10001 (the docs
/// `chown 10001` it instead; a test may not be root).
pub fn make_certs(prefix: &str, names: &[&str]) -> PathBuf {
    let dir = test_support::media::temp_dir(prefix);
    let made = Command::new("bash")
        .arg(workspace_root().join("scripts/make-cert.sh"))
        .arg(&dir)
        .args(names)
        .output()
        .expect("make-cert.sh runs");
    assert!(made.status.success(), "make-cert.sh: {made:?}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("key.pem"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod key");
    dir
}

/// A whole reply to `GET path` over TLS, trusting only `ca`; `None` when
/// there is none within 10 s.
pub async fn https_get(ca: &Path, addr: SocketAddr, path: &str) -> Option<http::Response> {
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        let s = https_connect(ca, addr).await?;
        http::Connection::request_on(s, addr, "GET", path, &[("Connection", "close")], b"")
            .await
            .ok()?
            .body()
            .await
            .ok()
    });
    reply.await.ok().flatten()
}

/// A TLS session with `addr` (checked as its IP address), trusting only `ca`.
pub async fn https_connect(ca: &Path, addr: SocketAddr) -> Option<impl http::Io + 'static> {
    let tls = test_support::tls::connector(ca, None);
    test_support::tls::connect(&tls, addr).await.ok()
}
