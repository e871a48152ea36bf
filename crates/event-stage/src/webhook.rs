//! Webhooks: every event's start and end POSTed as JSON to each `--webhook`
//! URL. Each hook has its own queue (`outbox.rs`) and its own task, so a
//! hook that hangs or fails delays nobody else: a try that takes longer
//! than the timeout fails, a failed try is repeated with a doubling back-off
//! up to the number of tries, and every failure is counted and logged at a
//! bounded rate. URLs are never logged whole (they often carry a token);
//! hooks are named by their place in the list and their host.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stream_common::ratelimit::LogEvery;
use tokio_util::sync::CancellationToken;

use crate::metrics::EventMetrics;
use crate::notice::Shared;
use crate::outbox::Outbox;

/// The first back-off; each next one is twice as long (up to 30 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct Settings {
    pub timeout: Duration,
    pub tries: u32,
}

/// `scheme://host[:port]` of a URL: enough to tell hooks apart in a log.
pub fn shown(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("?", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}")
}

/// Checks a `--webhook` value: an http:// URL with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("webhook {}: only http:// URLs are supported", shown(url)))?;
    if rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(format!("webhook {}: no host", shown(url)));
    }
    Ok(())
}

/// POSTs what `outbox` holds to `url` until it is closed and drained, or
/// until `stop`.
pub async fn run(
    index: usize,
    url: String,
    settings: Settings,
    outbox: Arc<Outbox<Shared>>,
    metrics: EventMetrics,
    stop: CancellationToken,
) {
    let hook = index.to_string();
    let host = shown(&url);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(settings.timeout))
        .http_status_as_error(true)
        .build()
        .into();
    let mut log = LogEvery::new(Duration::from_secs(10));
    loop {
        let entry = tokio::select! {
            _ = stop.cancelled() => return,
            e = outbox.pop() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let mut backoff = FIRST_BACKOFF;
        let mut delivered = false;
        for attempt in 1..=settings.tries {
            let (agent, url, body) = (agent.clone(), url.clone(), entry.item.json.clone());
            let tried = tokio::task::spawn_blocking(move || {
                agent
                    .post(&url)
                    .header("content-type", "application/json")
                    .send(body)
                    .map(|_| ())
            });
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = tried => r,
            };
            match result {
                Ok(Ok(())) => {
                    delivered = true;
                    break;
                }
                Ok(Err(e)) => {
                    metrics.webhook_failure(&hook);
                    if let Some(folded) = log.check(Instant::now()) {
                        tracing::warn!(hook = index, url = %host, attempt, error = %e, repeats = folded, "webhook failed");
                    }
                }
                Err(e) => {
                    metrics.webhook_failure(&hook);
                    tracing::error!(hook = index, error = %e, "webhook task failed");
                }
            }
            if attempt < settings.tries {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        if delivered {
            metrics.webhook_delivered(&hook);
        } else {
            metrics.webhook_dropped(&hook, "failed", 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_paths_or_credentials() {
        assert_eq!(
            shown("http://u:secret@hooks.local:8123/api/webhook/TOKEN?x=1"),
            "http://hooks.local:8123"
        );
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("https://x/").is_err());
        assert!(check_url("http:///path").is_err());
    }
}
