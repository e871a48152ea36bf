//! Relays an MJPEG stream from an IP camera or another server without
//! re-encoding. A reader thread keeps the newest frame in a one-slot mailbox
//! and reconnects with backoff when the stream drops.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stream_common::multipart::{MultipartParser, boundary_from_content_type};

use super::{Captured, OpenError, Picture, Source, SourceError, Unavailable};

struct Latest {
    frame: Option<(Bytes, u32, u32, u64)>,
}

pub struct HttpRelay {
    url: String,
    slot: Arc<(Mutex<Latest>, Condvar)>,
}

impl HttpRelay {
    pub fn start(url: &str) -> Result<Self, OpenError> {
        let slot = Arc::new((Mutex::new(Latest { frame: None }), Condvar::new()));
        let (u, s) = (url.to_string(), slot.clone());
        std::thread::Builder::new()
            .name("http-relay".into())
            .spawn(move || reader_loop(&u, &s))
            .map_err(|source| OpenError::Thread {
                what: "http-relay",
                source,
            })?;
        Ok(HttpRelay {
            url: url.to_string(),
            slot,
        })
    }
}

fn reader_loop(url: &str, slot: &(Mutex<Latest>, Condvar)) {
    let shown = stream_common::redact::url(url);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(3)))
        .timeout_per_read(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = Instant::now();
        match relay_once(&agent, url, slot) {
            Ok(()) => tracing::warn!(url = %shown, "MJPEG source ended; reconnecting"),
            Err(e) => {
                tracing::warn!(url = %shown, error = %e, retry_in_ms = backoff.as_millis() as u64, "MJPEG source failed")
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(250);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn relay_once(
    agent: &ureq::Agent,
    url: &str,
    slot: &(Mutex<Latest>, Condvar),
) -> anyhow::Result<()> {
    let response = agent.get(url).call()?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let boundary = boundary_from_content_type(&content_type)
        .ok_or_else(|| anyhow::anyhow!("not a multipart stream: Content-Type {content_type:?}"))?;
    tracing::info!(url = %stream_common::redact::url(url), boundary, "relaying MJPEG stream");
    let mut reader = response.into_body().into_reader();
    let mut parser = MultipartParser::new(&boundary, false, frame_wire::DEFAULT_MAX_JPEG_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        parser.push(&buf[..n]);
        while let Some(part) = parser.next_part()? {
            let jpeg = trim_jpeg(part.body);
            let Some((w, h)) = frame_wire::looks_like_jpeg(&jpeg)
                .then(|| stream_common::jpeg::dimensions(&jpeg))
                .flatten()
            else {
                tracing::debug!("skipping a part that is not a complete JPEG");
                continue;
            };
            let (lock, cv) = slot;
            if let Ok(mut latest) = lock.lock() {
                latest.frame = Some((jpeg, w, h, stream_common::unix_now_ns()));
                cv.notify_one();
            }
        }
    }
}

/// Some cameras pad parts after the EOI marker; cut the padding off.
fn trim_jpeg(body: Bytes) -> Bytes {
    let end = body
        .windows(2)
        .rposition(|w| w == [0xFF, 0xD9])
        .map_or(body.len(), |i| i + 2);
    body.slice(..end)
}

impl Source for HttpRelay {
    fn describe(&self) -> String {
        format!("http relay {}", stream_common::redact::url(&self.url))
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Captured<'_>>, SourceError> {
        let (lock, cv) = &*self.slot;
        let guard = lock
            .lock()
            .map_err(|_| SourceError::from(Unavailable::ThreadGone("http-relay")))?;
        let (mut guard, _) = cv
            .wait_timeout_while(guard, timeout, |l| l.frame.is_none())
            .map_err(|_| SourceError::from(Unavailable::ThreadGone("http-relay")))?;
        Ok(guard
            .frame
            .take()
            .map(|(data, width, height, capture_ts_ns)| Captured {
                picture: Picture::Jpeg {
                    data,
                    width,
                    height,
                },
                capture_ts_ns,
            }))
    }
}
