//! A Server-Sent Events reader for tests: opens `GET path` like a browser's
//! `EventSource` and parses the `text/event-stream` body strictly, event by
//! event (comment lines are counted, not returned).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;

use crate::http::{Connection, Head};

/// One event: its `event:` name and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
}

pub struct EventReader {
    conn: Connection,
    buf: BytesMut,
    /// Comment lines (`:` heartbeats) seen so far.
    pub comments: usize,
}

impl EventReader {
    /// Opens `path`; fails unless the answer is `200 text/event-stream`.
    pub async fn open(addr: SocketAddr, path: &str) -> anyhow::Result<EventReader> {
        let conn =
            Connection::request(addr, "GET", path, &[("Accept", "text/event-stream")]).await?;
        if conn.head.status != 200 {
            bail!("GET {path}: status {}", conn.head.status);
        }
        let ct = conn.head.header("content-type").unwrap_or_default();
        if !ct.starts_with("text/event-stream") {
            bail!("GET {path}: content type {ct:?}");
        }
        Ok(EventReader {
            conn,
            buf: BytesMut::new(),
            comments: 0,
        })
    }

    pub fn head(&self) -> &Head {
        &self.conn.head
    }

    /// The next event within `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> anyhow::Result<Event> {
        tokio::time::timeout(timeout, self.next())
            .await
            .context("no event in time")?
    }

    /// The next event (fields other than `event` and `data`, such as
    /// `retry`, are skipped; comment-only blocks too).
    pub async fn next(&mut self) -> anyhow::Result<Event> {
        loop {
            if let Some(e) = self.next_block().await? {
                return Ok(e);
            }
        }
    }

    /// The next block within `timeout`: an event, or `None` for a block of
    /// comment lines only (a heartbeat).
    pub async fn next_block_within(&mut self, timeout: Duration) -> anyhow::Result<Option<Event>> {
        tokio::time::timeout(timeout, self.next_block())
            .await
            .context("nothing in time")?
    }

    async fn next_block(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = self.buf.split_to(at + 2);
                let text = std::str::from_utf8(&block[..at]).context("event is not UTF-8")?;
                let mut event = Event {
                    event: "message".into(),
                    data: String::new(),
                };
                let (mut has_data, mut comment) = (false, false);
                for line in text.split('\n') {
                    if line.starts_with(':') {
                        self.comments += 1;
                        comment = true;
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => event.event = value.into(),
                        "data" => {
                            if has_data {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                            has_data = true;
                        }
                        _ => {}
                    }
                }
                if has_data {
                    return Ok(Some(event));
                }
                if comment {
                    return Ok(None);
                }
                continue;
            }
            if self.conn.read_body(&mut self.buf).await? == 0 {
                bail!("event stream ended");
            }
        }
    }
}
