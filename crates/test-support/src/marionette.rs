//! Firefox's own remote protocol, Marionette, spoken directly: Debian 12
//! ships Firefox ESR but no geckodriver, and the protocol is small. Each
//! message is `LENGTH:JSON`; a command is `[0, id, name, params]`, its
//! answer `[1, id, error, result]`. The commands are the WebDriver ones
//! (`WebDriver:Navigate`, `WebDriver:ExecuteScript`, …) that geckodriver
//! would send on our behalf.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// `user.js` for a throw-away profile: Marionette on `port`, and none of
/// the first-run, update and telemetry traffic.
pub fn prefs(port: u16) -> String {
    let prefs: &[(&str, &str)] = &[
        ("marionette.port", &port.to_string()),
        ("browser.shell.checkDefaultBrowser", "false"),
        ("browser.startup.homepage_override.mstone", "\"ignore\""),
        ("browser.startup.page", "0"),
        ("datareporting.policy.dataSubmissionEnabled", "false"),
        ("toolkit.telemetry.reportingpolicy.firstRun", "false"),
        ("app.update.disabledForTesting", "true"),
        ("browser.aboutwelcome.enabled", "false"),
        ("network.captive-portal-service.enabled", "false"),
        ("network.connectivity-service.enabled", "false"),
        ("extensions.update.enabled", "false"),
        ("browser.safebrowsing.malware.enabled", "false"),
        ("browser.safebrowsing.phishing.enabled", "false"),
        ("remote.prefs.recommended", "true"),
    ];
    prefs
        .iter()
        .map(|(k, v)| format!("user_pref(\"{k}\", {v});\n"))
        .collect()
}

/// One Marionette connection with a WebDriver session on it.
pub struct Marionette {
    stream: BufReader<TcpStream>,
    next_id: u64,
}

impl Marionette {
    /// Connects, reads the server's hello and starts a session.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Marionette> {
        let stream = TcpStream::connect(addr).await?;
        let mut m = Marionette {
            stream: BufReader::new(stream),
            next_id: 1,
        };
        let hello = tokio::time::timeout(Duration::from_secs(30), m.read_packet())
            .await
            .context("no Marionette hello")??;
        if hello["applicationType"] != "gecko" {
            bail!("not a Marionette server: {hello}");
        }
        m.command(
            "WebDriver:NewSession",
            json!({"pageLoadStrategy": "normal"}),
        )
        .await?;
        Ok(m)
    }

    /// Sends a command and returns its result (an error reply is an error).
    pub async fn command(&mut self, name: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!([0, id, name, params]).to_string();
        let packet = format!("{}:{}", body.len(), body);
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            self.stream.get_mut().write_all(packet.as_bytes()).await?;
            loop {
                let v = self.read_packet().await?;
                // Answers to earlier commands that timed out are skipped.
                if v[0] == 1 && v[1] == id {
                    return anyhow::Ok(v);
                }
            }
        })
        .await
        .with_context(|| format!("Marionette {name} timed out"))??;
        if !answer[2].is_null() {
            bail!(
                "Marionette {name}: {} {}",
                answer[2]["error"],
                answer[2]["message"]
            );
        }
        Ok(answer[3].clone())
    }

    async fn read_packet(&mut self) -> anyhow::Result<Value> {
        let mut len = 0usize;
        loop {
            let b = self.stream.read_u8().await?;
            match b {
                b':' => break,
                b'0'..=b'9' if len < 100_000_000 => len = len * 10 + usize::from(b - b'0'),
                _ => bail!("bad Marionette length prefix"),
            }
        }
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).await?;
        serde_json::from_slice(&buf).context("Marionette packet is not JSON")
    }
}
