//! Drives real browsers for the page tests, with no client library: headless
//! Chromium through chromedriver and WebKitGTK's MiniBrowser through
//! `WebKitWebDriver` (both the W3C WebDriver HTTP API: a few JSON requests),
//! and headless Firefox through its own Marionette port (Debian 12 has no
//! geckodriver; `marionette.rs` speaks that protocol). One [`Browser`] type
//! hides which, so a test runs the same steps in each. A browser can be made
//! to trust a test CA ([`Browser::launch_trusting`]) the way each takes one,
//! never by ignoring certificate errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::marionette::Marionette;
use crate::process::workspace_root;
use crate::tls::TestCa;
use crate::{free_port, wait_for};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const FIREFOX: &str = "/usr/bin/firefox-esr";
pub const WEBKIT_DRIVER: &str = "/usr/bin/WebKitWebDriver";
pub const MINIBROWSER: &str = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser";
pub const XVFB_RUN: &str = "/usr/bin/xvfb-run";
/// NSS's certificate tool (Debian package libnss3-tools).
pub const CERTUTIL: &str = "/usr/bin/certutil";

/// Window size every browser gets, so screenshots and layouts compare.
pub const WINDOW: (u32, u32) = (1280, 800);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserKind {
    Chromium,
    Firefox,
    WebKit,
}

impl BrowserKind {
    pub const ALL: [BrowserKind; 3] = [
        BrowserKind::Chromium,
        BrowserKind::Firefox,
        BrowserKind::WebKit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BrowserKind::Chromium => "chromium",
            BrowserKind::Firefox => "firefox",
            BrowserKind::WebKit => "webkit",
        }
    }

    fn needs(self) -> &'static [&'static str] {
        match self {
            BrowserKind::Chromium => &[CHROMIUM, CHROMEDRIVER],
            BrowserKind::Firefox => &[FIREFOX],
            BrowserKind::WebKit => &[WEBKIT_DRIVER, MINIBROWSER, XVFB_RUN],
        }
    }
}

enum Session {
    /// A W3C WebDriver server and the id of our session on it.
    W3c {
        addr: SocketAddr,
        id: String,
    },
    Marionette(tokio::sync::Mutex<Marionette>),
}

/// A browser with one session; the browser, its driver and its profile are
/// gone when this is dropped.
pub struct Browser {
    pub kind: BrowserKind,
    /// The driver (or Firefox itself), leader of its own process group so
    /// that the browser processes it starts end with it.
    child: std::process::Child,
    session: Session,
    profile: PathBuf,
}

impl Browser {
    /// Headless Chromium.
    pub async fn launch() -> anyhow::Result<Browser> {
        Self::launch_kind(BrowserKind::Chromium).await
    }

    pub async fn launch_kind(kind: BrowserKind) -> anyhow::Result<Browser> {
        Self::launch_with(kind, None).await
    }

    /// `kind` trusting the CA of `ca` for HTTPS: Chromium and Firefox get it
    /// in an NSS database (Chromium's in `$HOME/.pki/nssdb` of a private
    /// HOME, Firefox's in its profile); WebKitGTK's WebDriver takes no CA,
    /// only certificates to accept for a host (`webkitgtk:browserOptions`
    /// `certificates`), so it gets the CA's server certificate for
    /// `127.0.0.1` and `localhost`, and any other certificate still fails.
    pub async fn launch_trusting(kind: BrowserKind, ca: &TestCa) -> anyhow::Result<Browser> {
        Self::launch_with(kind, Some(ca)).await
    }

    async fn launch_with(kind: BrowserKind, ca: Option<&TestCa>) -> anyhow::Result<Browser> {
        for bin in kind.needs() {
            if !Path::new(bin).exists() {
                bail!(
                    "{bin} missing: run scripts/setup.sh (installs chromium, chromium-driver, firefox-esr, webkit2gtk-driver, xvfb)"
                );
            }
        }
        let port = free_port();
        let profile = std::env::temp_dir().join(format!(
            "{}-profile-{}-{port}",
            kind.name(),
            std::process::id()
        ));
        std::fs::create_dir_all(&profile)?;
        let log = std::fs::File::create(profile.with_extension("log"))?;
        let mut cmd = match kind {
            BrowserKind::Chromium => {
                let mut c = std::process::Command::new(CHROMEDRIVER);
                c.arg(format!("--port={port}"));
                if let Some(ca) = ca {
                    // Chromium on Linux reads the user's NSS database only.
                    let home = profile.join("home");
                    nss_trust(&home.join(".pki/nssdb"), &ca.ca())?;
                    c.env("HOME", &home);
                }
                c
            }
            BrowserKind::WebKit => {
                // GTK needs a display: a private Xvfb for this driver.
                let mut c = std::process::Command::new(XVFB_RUN);
                c.args([
                    "-a",
                    "-s",
                    &format!("-screen 0 {}x{}x24 -nolisten tcp", WINDOW.0, WINDOW.1 + 100),
                    WEBKIT_DRIVER,
                    &format!("--port={port}"),
                ]);
                c.env("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
                c
            }
            BrowserKind::Firefox => {
                std::fs::write(profile.join("user.js"), crate::marionette::prefs(port))?;
                if let Some(ca) = ca {
                    nss_trust(&profile, &ca.ca())?;
                }
                let mut c = std::process::Command::new(FIREFOX);
                c.args(["--headless", "--marionette", "--no-remote", "--profile"])
                    .arg(&profile)
                    .args(["--width", &WINDOW.0.to_string()])
                    .args(["--height", &WINDOW.1.to_string()]);
                c.env("MOZ_HEADLESS", "1");
                c
            }
        };
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut b = Browser {
            kind,
            child,
            session: Session::W3c {
                addr,
                id: String::new(),
            },
            profile,
        };
        wait_for(
            &format!("{} driver port", kind.name()),
            Duration::from_secs(60),
            || async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
        )
        .await;
        match kind {
            BrowserKind::Firefox => {
                let m = Marionette::connect(addr).await?;
                b.session = Session::Marionette(tokio::sync::Mutex::new(m));
            }
            BrowserKind::Chromium => {
                let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             format!("--user-data-dir={}", b.profile.display()),
                             format!("--window-size={},{}", WINDOW.0, WINDOW.1)]
                }}}});
                b.new_w3c_session(addr, caps).await?;
            }
            BrowserKind::WebKit => {
                let mut options = json!({"binary": MINIBROWSER, "args": ["--automation"]});
                if let Some(ca) = ca {
                    let file = ca.cert().display().to_string();
                    options["certificates"] = json!([
                        {"host": "127.0.0.1", "certificateFile": file},
                        {"host": "localhost", "certificateFile": file},
                    ]);
                }
                let caps = json!({"capabilities": {"alwaysMatch": {
                    "webkitgtk:browserOptions": options
                }}});
                b.new_w3c_session(addr, caps).await?;
                let path = format!("/session/{}/window/rect", b.w3c_id());
                let _ = w3c_call(
                    addr,
                    "POST",
                    &path,
                    Some(json!({"x": 0, "y": 0, "width": WINDOW.0, "height": WINDOW.1})),
                )
                .await;
            }
        }
        Ok(b)
    }

    async fn new_w3c_session(&mut self, addr: SocketAddr, caps: Value) -> anyhow::Result<()> {
        let v = w3c_call(addr, "POST", "/session", Some(caps)).await?;
        let id = v["sessionId"]
            .as_str()
            .context("no session id")?
            .to_string();
        self.session = Session::W3c { addr, id };
        Ok(())
    }

    fn w3c_id(&self) -> &str {
        match &self.session {
            Session::W3c { id, .. } => id,
            Session::Marionette(_) => "",
        }
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        match &self.session {
            Session::W3c { addr, id } => w3c_call(
                *addr,
                "POST",
                &format!("/session/{id}/url"),
                Some(json!({ "url": url })),
            )
            .await
            .map(|_| ()),
            Session::Marionette(m) => m
                .lock()
                .await
                .command("WebDriver:Navigate", json!({ "url": url }))
                .await
                .map(|_| ()),
        }
    }

    /// Runs `script` (a function body; `return` gives the result) in the
    /// page's own realm, so it sees the page's globals.
    pub async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        match &self.session {
            Session::W3c { addr, id } => {
                w3c_call(
                    *addr,
                    "POST",
                    &format!("/session/{id}/execute/sync"),
                    Some(json!({"script": script, "args": []})),
                )
                .await
            }
            Session::Marionette(m) => Ok(m
                .lock()
                .await
                .command(
                    "WebDriver:ExecuteScript",
                    json!({"script": script, "args": []}),
                )
                .await?["value"]
                .clone()),
        }
    }

    /// Resizes the browser window (CSS pixels, outer size).
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        let rect = json!({"width": width, "height": height});
        match &self.session {
            Session::W3c { addr, id } => w3c_call(
                *addr,
                "POST",
                &format!("/session/{id}/window/rect"),
                Some(rect),
            )
            .await
            .map(|_| ()),
            Session::Marionette(m) => m
                .lock()
                .await
                .command("WebDriver:SetWindowRect", rect)
                .await
                .map(|_| ()),
        }
    }

    /// A PNG screenshot of the page.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let v = match &self.session {
            Session::W3c { addr, id } => {
                w3c_call(*addr, "GET", &format!("/session/{id}/screenshot"), None).await?
            }
            Session::Marionette(m) => m
                .lock()
                .await
                .command(
                    "WebDriver:TakeScreenshot",
                    json!({"full": false, "hash": false}),
                )
                .await?["value"]
                .clone(),
        };
        use base64::Engine;
        Ok(base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot is not a string")?)?)
    }

    /// What the browser and its driver printed (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.with_extension("log")).unwrap_or_default()
    }
}

/// Makes an NSS database in `dir` (if there is none) that trusts the CA in
/// `ca_pem` to identify web sites.
fn nss_trust(dir: &Path, ca_pem: &Path) -> anyhow::Result<()> {
    if !Path::new(CERTUTIL).exists() {
        bail!("{CERTUTIL} missing: run scripts/setup.sh (installs libnss3-tools)");
    }
    std::fs::create_dir_all(dir)?;
    let db = format!("sql:{}", dir.display());
    let certutil = |args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new(CERTUTIL)
            .args(args)
            .output()
            .context("running certutil")?;
        if !out.status.success() {
            bail!(
                "certutil {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    if !dir.join("cert9.db").exists() {
        certutil(&["-N", "-d", &db, "--empty-password"])?;
    }
    let ca = ca_pem.display().to_string();
    certutil(&["-A", "-d", &db, "-n", "test CA", "-t", "C,,", "-i", &ca])
}

async fn w3c_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let len = body.len().to_string();
    let resp = tokio::time::timeout(Duration::from_secs(60), async {
        let mut conn = crate::http::Connection::request_with_body(
            addr,
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

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let group = format!("-{pgid}");
        if self.kind == BrowserKind::WebKit {
            // Only the driver and its browser: xvfb-run then sees its
            // command end and stops Xvfb itself, which removes the display's
            // lock file (a TERM to the whole group would leave it behind).
            for pid in group_members(pgid, &["WebKitWebDriver", "MiniBrowser"]) {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        } else {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &group])
                .status();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} -----\n{}\n----- end of log -----",
                self.kind.name(),
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(self.profile.with_extension("log"));
    }
}

/// Processes in process group `pgid` whose command name is one of `names`
/// (from /proc: exactly this browser's, never another test's).
fn group_members(pgid: u32, names: &[&str]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid pgrp ...
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let pgrp: u32 = rest.split_whitespace().nth(2)?.parse().ok()?;
        (pgrp == pgid
            && names
                .iter()
                .any(|n| n.starts_with(comm) || comm.starts_with(n)))
        .then_some(pid)
    })
    .collect()
}

/// Where screenshots go.
pub fn screenshot_path(name: &str) -> PathBuf {
    let _ = workspace_root();
    crate::artifact_dir().join(name)
}
