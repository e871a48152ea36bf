//! Home Assistant through MQTT: discovery configs (retained) so each camera
//! appears with an occupancy binary sensor and a count sensor per label and
//! a camera entity showing the latest snapshot; availability with a last
//! will; per camera and label `ON`/`OFF`, the count and the snapshot
//! (retained); every event change as JSON on `<prefix>/events`.
//!
//! Delivery is one message at a time at QoS 1, each waited for until the
//! broker acknowledges it: a message the connection lost is sent again after
//! the reconnect (rumqttc's clean session forgets what it had in flight), so
//! an end whose start went out is never lost, only late. The queue in front
//! (`outbox.rs`) is what bounds a broker that is down or slow; the stage
//! never waits for this task. After every (re)connect the retained state is
//! published again, since a restarted broker may have forgotten it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frame_wire::Phase;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde_json::json;
use stream_common::ratelimit::LogEvery;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::EventMetrics;
use crate::notice::Shared;
use crate::outbox::Outbox;

/// Largest MQTT packet sent (a full-size snapshot) or accepted.
const MAX_PACKET: usize = frame_wire::event::MAX_SNAPSHOT_BYTES + 64 * 1024;
/// Wait this long for an acknowledgement before sending again.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub prefix: String,
    pub discovery_prefix: String,
    pub client_id: String,
    /// Labels every camera gets sensors for from the start.
    pub labels: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("--mqtt {0:?}: expected mqtt://host[:port]")]
pub struct BadUrl(String);

/// `mqtt://host[:port]` (or `tcp://`) into host and port (default 1883).
pub fn parse_url(url: &str) -> Result<(String, u16), BadUrl> {
    let bad = || BadUrl(url.to_string());
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(bad)?
        .trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (rest, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@']) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// A name safe in a topic level and a Home Assistant object id.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The topics of one camera and label.
struct Topics {
    state: String,
    count: String,
    snapshot: String,
}

impl Settings {
    fn available(&self) -> String {
        format!("{}/available", self.prefix)
    }

    fn events(&self) -> String {
        format!("{}/events", self.prefix)
    }

    fn topics(&self, camera: &str, label: &str) -> Topics {
        let base = format!("{}/{camera}/{}", self.prefix, slug(label));
        Topics {
            count: format!("{base}/count"),
            snapshot: format!("{base}/snapshot"),
            state: base,
        }
    }

    /// The retained discovery configs of one camera and label: topic, JSON.
    fn discovery(&self, camera: &str, label: &str) -> Vec<(String, String)> {
        let node = slug(&self.prefix);
        let object = format!("{}_{}", slug(camera), slug(label));
        let t = self.topics(camera, label);
        let availability = json!([{
            "topic": self.available(),
            "payload_available": "online",
            "payload_not_available": "offline",
        }]);
        let device = json!({
            "identifiers": [format!("{node}_{}", slug(camera))],
            "name": camera,
            "manufacturer": "mjpeg-fanout",
            "model": "camera",
        });
        let d = &self.discovery_prefix;
        vec![
            (
                format!("{d}/binary_sensor/{node}/{object}/config"),
                json!({
                    "name": format!("{label} occupancy"),
                    "unique_id": format!("{node}_{object}_occupancy"),
                    "state_topic": t.state,
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "device_class": "occupancy",
                    "availability": availability,
                    "device": device,
                })
                .to_string(),
            ),
            (
                format!("{d}/sensor/{node}/{object}_count/config"),
                json!({
                    "name": format!("{label} count"),
                    "unique_id": format!("{node}_{object}_count"),
                    "state_topic": t.count,
                    "state_class": "measurement",
                    "availability": availability,
                    "device": device,
                })
                .to_string(),
            ),
            (
                format!("{d}/camera/{node}/{object}/config"),
                json!({
                    "name": format!("{label} snapshot"),
                    "unique_id": format!("{node}_{object}_snapshot"),
                    "topic": t.snapshot,
                    "availability": availability,
                    "device": device,
                })
                .to_string(),
            ),
        ]
    }
}

/// What the connection is doing, as the event loop task sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Link {
    connected: bool,
    /// Connections made so far.
    session: u64,
    /// Acknowledgements received so far.
    acks: u64,
    /// Publishes written to the connection so far (all sessions).
    sent: u64,
    /// Which of those the latest acknowledgement was for (its `sent` count
    /// when it went out), so that a late acknowledgement of an earlier try
    /// is never taken for the next message's.
    acked_sent: u64,
}

/// Whether `now` shows an acknowledgement, in the session of `before`, of a
/// publish written after `before`: the message sent since (one at a time;
/// a try left in the request channel from before a reconnect is the same
/// message).
fn mine(now: &Link, before: &Link) -> bool {
    now.session == before.session && now.acks > before.acks && now.acked_sent > before.sent
}

/// Stopped before a message got through.
struct Stopped;

/// The per camera and label state Home Assistant is shown.
#[derive(Default)]
struct Known {
    /// Camera and label pairs with sensors.
    pairs: BTreeSet<(String, String)>,
    count: HashMap<(String, String), usize>,
    snapshot: HashMap<(String, String), Bytes>,
}

struct Publisher {
    client: AsyncClient,
    link: watch::Receiver<Link>,
    settings: Settings,
    metrics: EventMetrics,
    stop: CancellationToken,
}

impl Publisher {
    /// Publishes one message and waits until the broker has it, sending it
    /// again after every lost connection, until `stop`.
    async fn publish(
        &mut self,
        topic: &str,
        retain: bool,
        payload: Bytes,
        what: &str,
    ) -> Result<(), Stopped> {
        loop {
            let before = {
                let stop = self.stop.clone();
                let waited = tokio::select! {
                    _ = stop.cancelled() => return Err(Stopped),
                    r = self.link.wait_for(|l| l.connected) => r.map(|l| *l),
                };
                waited.map_err(|_| Stopped)?
            };
            if self
                .client
                .publish_bytes(topic, QoS::AtLeastOnce, retain, payload.clone())
                .await
                .is_err()
            {
                return Err(Stopped);
            }
            let stop = self.stop.clone();
            let outcome = tokio::select! {
                _ = stop.cancelled() => return Err(Stopped),
                r = tokio::time::timeout(ACK_TIMEOUT, self.link.wait_for(|l| {
                    mine(l, &before) || l.session != before.session || !l.connected
                })) => r,
            };
            match outcome {
                Ok(Ok(l)) if mine(&l, &before) => {
                    self.metrics.mqtt_published(what);
                    return Ok(());
                }
                Ok(Err(_)) => return Err(Stopped),
                // Lost connection or no answer: again.
                _ => {}
            }
        }
    }

    async fn publish_text(
        &mut self,
        topic: &str,
        retain: bool,
        text: String,
        what: &str,
    ) -> Result<(), Stopped> {
        self.publish(topic, retain, Bytes::from(text), what).await
    }

    /// Everything retained, again: availability, discovery, states, counts,
    /// snapshots.
    async fn resync(&mut self, known: &Known) -> Result<(), Stopped> {
        let available = self.settings.available();
        self.publish_text(&available, true, "online".into(), "availability")
            .await?;
        for (camera, label) in &known.pairs {
            self.announce(camera, label, known).await?;
        }
        Ok(())
    }

    /// One camera and label's discovery configs and current state.
    async fn announce(&mut self, camera: &str, label: &str, known: &Known) -> Result<(), Stopped> {
        for (topic, config) in self.settings.discovery(camera, label) {
            self.publish_text(&topic, true, config, "discovery").await?;
        }
        let key = (camera.to_string(), label.to_string());
        let count = known.count.get(&key).copied().unwrap_or(0);
        self.state(camera, label, count).await?;
        if let Some(jpeg) = known.snapshot.get(&key) {
            let topic = self.settings.topics(camera, label).snapshot;
            self.publish(&topic, true, jpeg.clone(), "snapshot").await?;
        }
        Ok(())
    }

    async fn state(&mut self, camera: &str, label: &str, count: usize) -> Result<(), Stopped> {
        let t = self.settings.topics(camera, label);
        let on = if count > 0 { "ON" } else { "OFF" };
        self.publish_text(&t.state, true, on.into(), "state")
            .await?;
        self.publish_text(&t.count, true, count.to_string(), "count")
            .await
    }
}

/// Connects and publishes until the outbox is closed and drained, or until
/// `stop`. Reconnects by itself (every second while the broker is away).
pub async fn run(
    settings: Settings,
    outbox: Arc<Outbox<Shared>>,
    mut cameras: watch::Receiver<BTreeSet<String>>,
    metrics: EventMetrics,
    stop: CancellationToken,
) {
    let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    options
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(8)
        .set_last_will(LastWill::new(
            settings.available(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(user) = &settings.user {
        options.set_credentials(user, settings.password.clone().unwrap_or_default());
    }
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let (link_tx, link) = watch::channel(Link::default());
    let poller = {
        let (metrics, stop, host) = (metrics.clone(), stop.clone(), settings.host.clone());
        tokio::spawn(async move {
            let mut log = LogEvery::new(Duration::from_secs(30));
            // Packet id -> its `sent` count, for the publishes not yet acknowledged.
            let mut sent_as: HashMap<u16, u64> = HashMap::new();
            loop {
                let polled = tokio::select! {
                    _ = stop.cancelled() => return,
                    p = eventloop.poll() => p,
                };
                match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // A clean session: what was in flight is forgotten.
                        sent_as.clear();
                        tracing::info!(broker = %host, "MQTT connected");
                        metrics.mqtt_connect(true);
                        metrics.mqtt_connected.set(1);
                        link_tx.send_modify(|l| {
                            l.connected = true;
                            l.session += 1;
                        });
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => link_tx.send_modify(|l| {
                        l.sent += 1;
                        sent_as.insert(pkid, l.sent);
                    }),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => link_tx.send_modify(|l| {
                        l.acks += 1;
                        l.acked_sent = sent_as.remove(&ack.pkid).unwrap_or(0);
                    }),
                    Ok(_) => {}
                    Err(e) => {
                        let was = link_tx.borrow().connected;
                        link_tx.send_modify(|l| l.connected = false);
                        metrics.mqtt_connected.set(0);
                        metrics.mqtt_connect(false);
                        if let Some(folded) = log.check(Instant::now()) {
                            tracing::warn!(broker = %host, error = %e, repeats = folded, was_connected = was, "MQTT broker unreachable; retrying every second");
                        }
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        })
    };

    let mut p = Publisher {
        client,
        link,
        settings,
        metrics,
        stop: stop.clone(),
    };
    let mut known = Known::default();
    let mut synced_session = 0;
    let _ = publish_all(
        &mut p,
        &outbox,
        &mut cameras,
        &mut known,
        &mut synced_session,
    )
    .await;
    // Gone offline on purpose: say so (the will covers the other cases).
    if p.link.borrow().connected {
        let topic = p.settings.available();
        let quick = tokio::time::timeout(
            Duration::from_secs(1),
            p.publish_text(&topic, true, "offline".into(), "availability"),
        );
        let _ = quick.await;
        let _ = p.client.disconnect().await;
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(500), poller).await;
}

async fn publish_all(
    p: &mut Publisher,
    outbox: &Outbox<Shared>,
    cameras: &mut watch::Receiver<BTreeSet<String>>,
    known: &mut Known,
    synced_session: &mut u64,
) -> Result<(), Stopped> {
    let mut cameras_open = true;
    loop {
        // New cameras get their sensors.
        let new: Vec<String> = cameras
            .borrow_and_update()
            .iter()
            .filter(|c| !known.pairs.iter().any(|(k, _)| k == *c))
            .cloned()
            .collect();
        for camera in new {
            for label in p.settings.labels.clone() {
                known.pairs.insert((camera.clone(), label.clone()));
                if *synced_session != 0 {
                    p.announce(&camera, &label, known).await?;
                }
            }
        }
        let session = p.link.borrow().session;
        if session != *synced_session && p.link.borrow().connected {
            p.resync(known).await?;
            *synced_session = session;
            continue;
        }
        let link_changed = async {
            let mut link = p.link.clone();
            let _ = link
                .wait_for(|l| l.connected && l.session != *synced_session)
                .await;
        };
        let entry = tokio::select! {
            _ = p.stop.cancelled() => return Err(Stopped),
            _ = link_changed => continue,
            r = cameras.changed(), if cameras_open => {
                // Closed: the stage is gone; what is queued still goes out.
                cameras_open = r.is_ok();
                continue;
            }
            e = outbox.pop() => match e {
                Some(e) => e,
                None => return Ok(()),
            },
        };
        p.metrics
            .mqtt_queued
            .set(i64::try_from(outbox.len()).unwrap_or(i64::MAX));
        let notice = entry.item.clone();
        let (camera, label) = (notice.event.stream.clone(), notice.event.label.clone());
        let key = (camera.clone(), label.clone());
        if known.pairs.insert(key.clone()) && *synced_session != 0 {
            p.announce(&camera, &label, known).await?;
        }
        let sent = async {
            let events = p.settings.events();
            p.publish_text(&events, false, notice.json.clone(), "event")
                .await?;
            if let Some(jpeg) = &notice.snapshot {
                let topic = p.settings.topics(&camera, &label).snapshot;
                p.publish(&topic, true, jpeg.clone(), "snapshot").await?;
            }
            if notice.phase != Phase::Update {
                p.state(&camera, &label, notice.active).await?;
            }
            Ok::<(), Stopped>(())
        };
        if let Some(jpeg) = &notice.snapshot {
            known.snapshot.insert(key.clone(), jpeg.clone());
        }
        known.count.insert(key, notice.active);
        if sent.await.is_err() {
            outbox.unpop(entry);
            return Err(Stopped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_topics() {
        assert_eq!(
            parse_url("mqtt://broker.local:1884").expect("ok"),
            ("broker.local".into(), 1884)
        );
        assert_eq!(
            parse_url("mqtt://10.0.0.2").expect("ok"),
            ("10.0.0.2".into(), 1883)
        );
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("mqtt://:1").is_err());
        assert!(parse_url("mqtt://user:pw@host:1").is_err());
        let s = Settings {
            host: "h".into(),
            port: 1,
            user: None,
            password: None,
            prefix: "mjpeg-fanout".into(),
            discovery_prefix: "homeassistant".into(),
            client_id: "c".into(),
            labels: vec!["person".into()],
        };
        assert_eq!(s.topics("door", "person").state, "mjpeg-fanout/door/person");
        assert_eq!(
            s.topics("door", "a b/c").count,
            "mjpeg-fanout/door/a_b_c/count"
        );
        let d = s.discovery("door.1", "person");
        assert_eq!(
            d[0].0,
            "homeassistant/binary_sensor/mjpeg-fanout/door_1_person/config"
        );
        for (_, config) in &d {
            let v: serde_json::Value = serde_json::from_str(config).expect("json");
            assert!(v["unique_id"].is_string());
            assert!(v["device"]["identifiers"][0].is_string());
            assert_eq!(v["availability"][0]["topic"], "mjpeg-fanout/available");
        }
    }
}
