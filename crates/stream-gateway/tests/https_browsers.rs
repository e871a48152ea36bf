//! The page over HTTPS in real browsers (Chromium, Firefox, WebKitGTK),
//! served by the gateway itself with a certificate from a test CA that each
//! browser is made to trust the way it takes one (an NSS database for
//! Chromium and Firefox, WebKit's accepted certificates), never by ignoring
//! certificate errors: the wall runs live over `wss:`, and `/stream/cam0`
//! plays in an `<img>`. Each browser without that trust refuses the
//! certificate (the handshake fails, no page runs). Through an HTTPS
//! director, Chromium is sent on to the gateway's `https://` address.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use test_support::director::Director;
use test_support::gateway::Gateway;
use test_support::metrics::metric_value;
use test_support::producer::Producer;
use test_support::tls::{TestCa, connect};
use test_support::wait_for;
use test_support::webdriver::{Browser, BrowserKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A producer and a gateway serving only HTTPS, with the CA that signed it.
struct Site {
    _producer: Producer,
    gateway: Gateway,
    ca: TestCa,
}

impl Site {
    /// With `extra` gateway flags.
    async fn start(extra: &[&str]) -> Site {
        let producer = Producer::start(&["--fps", "10", "--size", "320x240", "--stream", "cam0"]);
        let ca = TestCa::new();
        let (cert, key) = (
            ca.cert().display().to_string(),
            ca.key().display().to_string(),
        );
        let mut args = vec!["--tls-cert", &cert, "--tls-key", &key, "--stale-after", "2"];
        args.extend_from_slice(extra);
        let gateway = Gateway::start(&[producer.endpoint.as_str()], &args, &[]);
        let site = Site {
            _producer: producer,
            gateway,
            ca,
        };
        wait_for("cam0 over HTTPS", Duration::from_secs(30), || async {
            let r = site.get("/snapshot/cam0").await.ok()?;
            r.starts_with("HTTP/1.1 200").then_some(())
        })
        .await;
        site
    }

    fn addr(&self) -> SocketAddr {
        self.gateway.addr
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr())
    }

    /// A whole reply to `GET path` from the gateway over HTTPS, as text.
    async fn get(&self, path: &str) -> anyhow::Result<String> {
        https_get(&self.ca, self.addr(), path).await
    }

    /// The sum of a gateway metric's samples whose labels contain `labels`.
    async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        match self.get("/metrics").await {
            Ok(text) => metric_value(&text, name, labels),
            Err(_) => f64::NAN,
        }
    }
}

/// A whole reply to `GET path` from `addr` over HTTPS trusting `ca`, as text.
async fn https_get(ca: &TestCa, addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = connect(&ca.connector(), addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// What the page shows of cam0 (`window.viewer`, see page.html).
const CAM0: &str = "const v = window.viewer; if (!v || !v.cams.get('cam0')) return null;
    return { mode: v.mode, url: v.url || '', drawn: v.cams.get('cam0').drawn, live: v.cams.get('cam0').live };";

/// Adds `<img id=probe src=/stream/cam0>` to the page (asking for CORS, so
/// that its pixels can be read when a director sends it to a gateway).
const ADD_IMG: &str = "const i = document.createElement('img'); i.id = 'probe';
    i.crossOrigin = 'anonymous'; i.src = '/stream/cam0?probe=1'; document.body.appendChild(i); return true;";

/// The probe's natural size and a hash of its pixels as drawn now.
const IMG_STATE: &str = "const i = document.getElementById('probe');
    if (!i || !i.naturalWidth) return null;
    const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(i, 0, 0); const d = g.getImageData(0, 0, c.width, c.height).data;
    let h = 0; for (let k = 0; k < d.length; k += 7) h = (h * 31 + d[k]) >>> 0;
    return { w: i.naturalWidth, h: i.naturalHeight, hash: h };";

async fn eval(b: &Browser, script: &str) -> Option<Value> {
    b.eval(script).await.ok().filter(|v| !v.is_null())
}

/// The whole scenario in one browser that trusts the site's CA.
async fn page_over_https(kind: BrowserKind) {
    let site = Site::start(&[]).await;
    let b = Browser::launch_trusting(kind, &site.ca)
        .await
        .expect("browser");
    b.goto(&site.url("/"))
        .await
        .expect("open the page over HTTPS");
    page_plays(&b, &site).await;
    // Every connection the browser made was a full handshake.
    let failures = site
        .metric("gateway_tls_handshake_failures_total", &[])
        .await;
    assert_eq!(failures, 0.0, "{}: a handshake failed", kind.name());
}

/// The page open in `b` (from the gateway or through a director) shows
/// cam0 live over `wss:` from the gateway, and `/stream/cam0` plays in an
/// `<img>`.
async fn page_plays(b: &Browser, site: &Site) {
    let name = b.kind.name();
    let scheme = eval(b, "return location.protocol;").await;
    assert_eq!(scheme, Some(Value::from("https:")), "{name}: page scheme");

    // The wall, live over wss:.
    let first = wait_for(
        &format!("{name}: cam0 drawn over wss:"),
        Duration::from_secs(30),
        || async {
            let s = eval(b, CAM0).await?;
            (s["mode"] == "ws" && s["drawn"].as_u64() > Some(0)).then_some(s)
        },
    )
    .await;
    let url = first["url"].as_str().unwrap_or_default();
    assert!(
        url.starts_with(&format!("wss://{}/ws", site.addr())),
        "{name}: WebSocket at {url}"
    );
    let drawn = first["drawn"].as_u64().unwrap_or_default();
    wait_for(
        &format!("{name}: frames advance over wss:"),
        Duration::from_secs(20),
        || async {
            let s = eval(b, CAM0).await?;
            (s["live"] == true && s["drawn"].as_u64()? >= drawn + 10).then_some(())
        },
    )
    .await;
    // The page is one viewer of cam0, over TLS (the port speaks nothing else).
    wait_for(
        &format!("{name}: one viewer of cam0"),
        Duration::from_secs(10),
        || async {
            (site.metric("gateway_viewers", &["stream=\"cam0\""]).await == 1.0).then_some(())
        },
    )
    .await;

    // /stream/cam0 in an <img>, and the picture changes.
    assert!(eval(b, ADD_IMG).await.is_some(), "{name}: adding the img");
    let shown = wait_for(
        &format!("{name}: /stream/cam0 shown in an <img>"),
        Duration::from_secs(20),
        || async { eval(b, IMG_STATE).await },
    )
    .await;
    assert_eq!(
        (shown["w"].as_u64(), shown["h"].as_u64()),
        (Some(320), Some(240)),
        "{name}: img size"
    );
    wait_for(
        &format!("{name}: the <img> picture changes"),
        Duration::from_secs(20),
        || async {
            let now = eval(b, IMG_STATE).await?;
            (now["hash"] != shown["hash"]).then_some(())
        },
    )
    .await;
    wait_for(
        &format!("{name}: two viewers of cam0 (wss: and the img)"),
        Duration::from_secs(10),
        || async {
            (site.metric("gateway_viewers", &["stream=\"cam0\""]).await == 2.0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn chromium_loads_the_page_over_https_from_a_trusted_ca() {
    page_over_https(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_loads_the_page_over_https_from_a_trusted_ca() {
    page_over_https(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn webkit_loads_the_page_over_https_from_a_trusted_certificate() {
    page_over_https(BrowserKind::WebKit).await;
}

/// Through an HTTPS director: the page relayed, its socket and its
/// `/stream/cam0` sent on to the gateway's own `https://` address.
#[tokio::test]
async fn chromium_follows_an_https_director_to_the_gateway() {
    // Any origin may read the gateway's pictures: the page is the director's.
    let site = Site::start(&["--allow-origin", "*"]).await;
    let (cert, key, ca) = (
        site.ca.cert().display().to_string(),
        site.ca.key().display().to_string(),
        site.ca.ca().display().to_string(),
    );
    let director = Director::start(
        &site.addr().to_string(),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--gateway-ca",
            &ca,
            "--public-url",
            "https://{ip}:{port}",
            "--check-timeout",
            "3",
        ],
    );
    let d = director.addr;
    let location = wait_for(
        "the director sending cam0 to the HTTPS gateway",
        Duration::from_secs(30),
        || async {
            let r = https_get(&site.ca, d, "/stream/cam0").await.ok()?;
            r.starts_with("HTTP/1.1 307").then_some(r)
        },
    )
    .await;
    let want = format!("location: {}", site.url("/stream/cam0"));
    assert!(
        location.to_ascii_lowercase().contains(&want),
        "redirect: {location}"
    );
    let b = Browser::launch_trusting(BrowserKind::Chromium, &site.ca)
        .await
        .expect("browser");
    b.goto(&format!("https://{d}/"))
        .await
        .expect("open the page through the director");
    page_plays(&b, &site).await;
}

/// The same browser without the trust: the handshake fails (the browser
/// rejects the certificate), no page, no viewer. So the trust installed
/// above is what makes the other tests work.
async fn refused_without_trust(kind: BrowserKind) {
    let site = Site::start(&[]).await;
    let b = Browser::launch_kind(kind).await.expect("browser");
    let name = kind.name();
    // Drivers answer with an error page or an "insecure certificate" error;
    // either way the page must not run.
    let _ = b.goto(&site.url("/")).await;
    wait_for(
        &format!("{name}: the browser's handshake to fail"),
        Duration::from_secs(20),
        || async {
            (site
                .metric("gateway_tls_handshake_failures_total", &[])
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let viewer = b.eval("return typeof window.viewer;").await.ok();
    assert_ne!(viewer, Some(Value::from("object")), "{name}: the page ran");
    assert_eq!(
        site.metric("gateway_viewers_total", &[]).await,
        0.0,
        "{name}: a viewer without trust"
    );
}

#[tokio::test]
async fn chromium_without_the_ca_refuses_the_certificate() {
    refused_without_trust(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_without_the_ca_refuses_the_certificate() {
    refused_without_trust(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn webkit_without_the_certificate_refuses_it() {
    refused_without_trust(BrowserKind::WebKit).await;
}
