//! A webhook receiver for tests: a tiny HTTP/1.1 server on a free loopback
//! port that keeps every POSTed JSON body and answers with a chosen status,
//! so a test can see exactly what a service's `--webhook` delivered. A
//! receiver can also hang (read each request, never answer), as a hook
//! whose server is stuck does; every request is kept with the time it came,
//! so a test can count a sender's tries and measure its back-off.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::wait_for;

/// Largest request body kept.
const MAX_BODY: usize = 1 << 20;

/// One request the receiver answered.
#[derive(Debug, Clone)]
pub struct Hooked {
    pub path: String,
    pub content_type: String,
    /// The body as JSON (`Null` when it was not JSON).
    pub json: serde_json::Value,
    /// When the whole request had been read (Unix ns).
    pub at_ns: u64,
}

/// How a receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This HTTP status, at once.
    Status(u16),
    /// Nothing, ever: the connection stays open until the sender gives up.
    Hang,
}

pub struct WebhookReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Hooked>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Listens on a free loopback port, answering every request `status`.
    pub async fn start(status: u16) -> WebhookReceiver {
        Self::answering(Answer::Status(status)).await
    }

    /// Listens on a free loopback port, never answering (requests are kept).
    pub async fn hanging() -> WebhookReceiver {
        Self::answering(Answer::Hang).await
    }

    /// Listens on a free loopback port, answering every request `answer`.
    pub async fn answering(answer: Answer) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, answer, kept.clone()));
            }
        });
        WebhookReceiver {
            addr,
            received,
            task,
        }
    }

    /// `http://127.0.0.1:PORT/PATH`, for `--webhook`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Hooked> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until a request matching `pick` has come; the first such.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pick: impl Fn(&Hooked) -> bool,
    ) -> Hooked {
        let pick = &pick;
        wait_for(what, timeout, || async move {
            self.received().into_iter().find(|h| pick(h))
        })
        .await
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers the requests of one connection (keep-alive) until it closes.
async fn serve(socket: TcpStream, answer: Answer, kept: Arc<Mutex<Vec<Hooked>>>) {
    let mut reader = BufReader::new(socket);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut length = 0usize;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0),
                    "content-type" => content_type = value.to_string(),
                    _ => {}
                }
            }
        }
        if length > MAX_BODY {
            return;
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        kept.lock().unwrap_or_else(|e| e.into_inner()).push(Hooked {
            path,
            content_type,
            json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            at_ns: stream_common::unix_now_ns(),
        });
        let status = match answer {
            Answer::Status(s) => s,
            Answer::Hang => {
                // Hold the connection until the sender closes it.
                let mut rest = [0u8; 1024];
                while matches!(reader.read(&mut rest).await, Ok(n) if n > 0) {}
                return;
            }
        };
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if reader.get_mut().write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}
