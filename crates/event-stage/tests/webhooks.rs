//! Webhooks that fail, with the real stack (producer, real detector, event
//! stage): one hook hangs (reads each request, never answers), one answers
//! 500, one is healthy. The healthy one gets each start and end as promptly
//! as if it were alone, measured against the event's own times, while the
//! failing ones are each tried a bounded number of times with a growing
//! back-off (counted at the receivers), their failures counted in the
//! stage's metrics and logged at a bounded rate.

use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::detector::{Detector, darknet_scene_dir};
use test_support::events::EventStage;
use test_support::metrics::wait_metric;
use test_support::producer::Producer;
use test_support::webhook::{Hooked, WebhookReceiver};

const FIRST_EVENT: Duration = Duration::from_secs(90);
/// The stage's times: an event after 0.5 s seen, ended after 1 s gone.
const MIN_SECONDS: f64 = 0.5;
const END_AFTER: f64 = 1.0;
/// Each webhook try may take this long; tries per message.
const TIMEOUT: f64 = 4.0;
const TRIES: usize = 3;
/// What detection and delivery may add on a busy 2-core machine. Far less
/// than what a hook waiting on the hanging one would add (TIMEOUT × TRIES
/// plus back-offs, 13.5 s).
const SLACK: f64 = 3.0;

fn event_id(v: &Value) -> String {
    v["event"]["id"].as_str().unwrap_or_default().to_string()
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn ts(h: &Hooked, field: &str) -> f64 {
    secs(h.json["event"][field].as_u64().unwrap_or(0))
}

/// The requests for `kind` of event `id`, in the order they came.
fn tries(all: &[Hooked], kind: &str, id: &str) -> Vec<Hooked> {
    all.iter()
        .filter(|h| h.json["type"] == kind && event_id(&h.json) == id)
        .cloned()
        .collect()
}

/// Seconds between consecutive tries.
fn gaps(tries: &[Hooked]) -> Vec<f64> {
    tries
        .windows(2)
        .map(|w| secs(w[1].at_ns.saturating_sub(w[0].at_ns)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_and_a_failing_hook_delay_neither_the_healthy_one_nor_each_other() {
    let hanging = WebhookReceiver::hanging().await;
    let failing = WebhookReceiver::start(500).await;
    let healthy = WebhookReceiver::start(200).await;
    let scene = darknet_scene_dir(&[("person.jpg", 30), ("dog.jpg", 40)]);
    let producer = Producer::start(&["--source", scene.arg(), "--fps", "10"]);
    let _detector = Detector::start(&[&producer.endpoint], &["--detect-fps", "5"]);
    let (timeout, tries_s) = (TIMEOUT.to_string(), TRIES.to_string());
    let (min_s, end_s) = (MIN_SECONDS.to_string(), END_AFTER.to_string());
    let (h0, h1, h2) = (
        hanging.url("/hang"),
        failing.url("/fail"),
        healthy.url("/ok"),
    );
    let started = Instant::now();
    let stage = EventStage::start(
        &[&_detector.endpoint],
        &[&producer.endpoint],
        &[
            "--event-min-seconds",
            &min_s,
            "--event-end-after",
            &end_s,
            "--webhook-timeout",
            &timeout,
            "--webhook-tries",
            &tries_s,
            "--webhook",
            &h0,
            "--webhook",
            &h1,
            "--webhook",
            &h2,
        ],
    );

    // The healthy hook: the start within MIN_SECONDS (+ slack) of the
    // person's first sighting, the end within END_AFTER (+ slack) of the
    // last, although the hanging hook holds each message for 13.5 s.
    let start = healthy
        .wait_for("the healthy hook's start", FIRST_EVENT, |h| {
            h.json["type"] == "start" && h.json["event"]["label"] == "person"
        })
        .await;
    let id = event_id(&start.json);
    let end = healthy
        .wait_for("the healthy hook's end", Duration::from_secs(30), |h| {
            h.json["type"] == "end" && event_id(&h.json) == id
        })
        .await;
    let start_late = secs(start.at_ns) - ts(&start, "start_ts_ns");
    let end_late = secs(end.at_ns) - ts(&end, "end_ts_ns");
    eprintln!(
        "healthy hook: start {start_late:.2} s after the first sighting, end {end_late:.2} s after the last"
    );
    assert!(
        start_late <= MIN_SECONDS + SLACK,
        "the start came {start_late:.2} s after the first sighting"
    );
    assert!(
        end_late <= END_AFTER + SLACK,
        "the end came {end_late:.2} s after the last sighting"
    );
    // The hanging hook is still on the start then: its tries of the end
    // come later, if at all yet.
    if let Some(first_end) = tries(&hanging.received(), "end", &id).first() {
        assert!(first_end.at_ns > end.at_ns, "the hanging hook went first");
    }

    // The failing hook: the start tried TRIES times, with a back-off of
    // 0.5 s then 1 s (doubling), before it moved on to the end.
    let failed = failing
        .wait_for(
            "the failing hook's first try of the end",
            Duration::from_secs(60),
            |h| h.json["type"] == "end" && event_id(&h.json) == id,
        )
        .await;
    let all = failing.received();
    let starts = tries(&all, "start", &id);
    assert_eq!(starts.len(), TRIES, "tries of the start at the 500 hook");
    let g = gaps(&starts);
    eprintln!("failing hook: gaps between tries {g:?}");
    assert!(g[0] >= 0.45 && g[0] < 0.5 + SLACK, "first back-off {g:?}");
    assert!(g[1] >= 0.95 && g[1] < 1.0 + SLACK, "second back-off {g:?}");
    assert!(failed.at_ns >= starts[TRIES - 1].at_ns);

    // The hanging hook: each try waited out the timeout, then the back-off.
    let hung = hanging
        .wait_for(
            "the hanging hook's first try of the end",
            Duration::from_secs(60),
            |h| h.json["type"] == "end" && event_id(&h.json) == id,
        )
        .await;
    let starts = tries(&hanging.received(), "start", &id);
    assert_eq!(
        starts.len(),
        TRIES,
        "tries of the start at the hanging hook"
    );
    let g = gaps(&starts);
    eprintln!("hanging hook: gaps between tries {g:?}");
    assert!(g[0] >= TIMEOUT + 0.45, "{g:?}");
    assert!(g[1] >= TIMEOUT + 0.95, "{g:?}");
    let last_try = secs(hung.at_ns) - secs(starts[TRIES - 1].at_ns);
    assert!(
        last_try >= TIMEOUT - 0.1,
        "the last try ended early: {last_try}"
    );

    // Counted: every failed try, and the messages given up.
    let m = stage.metrics;
    let fails = |hook: &str| format!("hook=\"{hook}\"");
    for hook in ["0", "1"] {
        wait_metric(
            m,
            "events_webhook_failures_total",
            &[&fails(hook)],
            TRIES as f64,
            Duration::from_secs(30),
        )
        .await;
        wait_metric(
            m,
            "events_webhook_dropped_total",
            &[&fails(hook), "why=\"failed\""],
            1.0,
            Duration::from_secs(30),
        )
        .await;
    }
    assert!(
        stage
            .metric("events_webhook_delivered_total", &["hook=\"2\""])
            .await
            >= 2.0
    );
    for what in [
        "events_webhook_failures_total",
        "events_webhook_dropped_total",
    ] {
        assert_eq!(stage.metric(what, &["hook=\"2\""]).await, 0.0, "{what}");
    }
    // Logged at a bounded rate: a warning per hook per 10 s at most, however
    // many tries fail.
    let failures = stage.metric("events_webhook_failures_total", &[]).await;
    let lines = stage
        .proc
        .log()
        .lines()
        .filter(|l| l.contains("webhook failed"))
        .count();
    let bound = 2 * (started.elapsed().as_secs() as usize / 10 + 1);
    eprintln!("{failures} failed tries, {lines} log lines (bound {bound})");
    assert!(
        lines >= 1 && lines <= bound,
        "{lines} warnings, bound {bound}"
    );
}
