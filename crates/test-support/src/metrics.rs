//! Reading a service's Prometheus `/metrics` the way every test does, in one
//! place: scrape, sum the samples of one metric that carry given labels, and
//! wait until a metric reaches a value (a counter read once races the work
//! it counts on a busy machine).

use std::net::SocketAddr;
use std::time::Duration;

use crate::{http, wait_for};

/// The `/metrics` text at `addr`, or `None` while it cannot be read.
pub async fn scrape(addr: SocketAddr) -> Option<String> {
    http::get(addr, "/metrics").await.ok().map(|r| r.text())
}

/// Sums the samples of `name` (exactly that metric, any labels) whose label
/// set contains every string in `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let metric = l.split(['{', ' ']).next().unwrap_or_default();
            metric == name && labels.iter().all(|want| l.contains(want))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of `name`'s samples at `addr` whose labels contain all of
/// `labels`; 0 while `/metrics` cannot be read.
pub async fn metric(addr: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    match scrape(addr).await {
        Some(text) => metric_value(&text, name, labels),
        None => 0.0,
    }
}

/// Waits until `name{labels}` at `addr` is at least `at_least`; its value.
pub async fn wait_metric(
    addr: SocketAddr,
    name: &str,
    labels: &[&str],
    at_least: f64,
    timeout: Duration,
) -> f64 {
    let what = format!("{name}{labels:?} >= {at_least} at {addr}");
    wait_for(&what, timeout, || async move {
        let v = metric(addr, name, labels).await;
        (v >= at_least).then_some(v)
    })
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_value_sums_matching_lines() {
        let text = "# HELP x\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3\nx_totals 9\n";
        assert_eq!(super::metric_value(text, "x_total", &[]), 5.0);
        assert_eq!(super::metric_value(text, "x_total", &["a=\"2\""]), 3.0);
    }
}
