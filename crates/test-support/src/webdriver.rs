//! Drives headless Chromium through chromedriver's W3C WebDriver HTTP API:
//! a few JSON requests are all the tests need, so no client library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::process::workspace_root;
use crate::{free_port, wait_for};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process with one browser session, both ended on drop.
pub struct Browser {
    driver: std::process::Child,
    addr: SocketAddr,
    session: String,
    profile: PathBuf,
}

impl Browser {
    pub async fn launch() -> anyhow::Result<Browser> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !std::path::Path::new(bin).exists() {
                bail!(
                    "{bin} missing: run scripts/setup.sh (installs chromium and chromium-driver)"
                );
            }
        }
        let port = free_port();
        let driver = std::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        wait_for("chromedriver", Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        let profile =
            std::env::temp_dir().join(format!("chromium-profile-{}-{port}", std::process::id()));
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.display()), "--window-size=1024,768"]
        }}}});
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        let v = b.call("POST", "/session", Some(caps)).await?;
        b.session = v["sessionId"]
            .as_str()
            .context("no session id")?
            .to_string();
        Ok(b)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let len = body.len().to_string();
        let resp = tokio::time::timeout(Duration::from_secs(60), async {
            let mut conn = crate::http::Connection::request_with_body(
                self.addr,
                method,
                path,
                &[
                    ("Content-Type", "application/json"),
                    ("Content-Length", &len),
                    ("Connection", "close"),
                ],
                body.as_bytes(),
            )
            .await?;
            let mut out = bytes::BytesMut::new();
            while conn.read_body(&mut out).await? > 0 {}
            anyhow::Ok((conn.head.status, out))
        })
        .await
        .context("webdriver call timed out")??;
        let v: Value = serde_json::from_slice(&resp.1).context("webdriver reply is not JSON")?;
        if resp.0 != 200 {
            bail!(
                "webdriver {method} {path}: {} {}",
                resp.0,
                v["value"]["message"]
            );
        }
        Ok(v["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            &format!("/session/{}/url", self.session),
            Some(json!({ "url": url })),
        )
        .await
        .map(|_| ())
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// A PNG screenshot of the page.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let v = self
            .call(
                "GET",
                &format!("/session/{}/screenshot", self.session),
                None,
            )
            .await?;
        use base64::Engine;
        Ok(base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot is not a string")?)?)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Where screenshots go.
pub fn screenshot_path(name: &str) -> PathBuf {
    let _ = workspace_root();
    crate::artifact_dir().join(name)
}
