//! The capture loop, one thread per camera: wait for the next tick, take a
//! frame from the source, JPEG-encode it if it is not JPEG already, publish
//! it. Nothing is queued: a frame that cannot be produced in time is skipped
//! and counted, and an unavailable source is retried with backoff, so one
//! camera's trouble never holds up another's thread.
//!
//! Encode on demand: before each frame the loop asks the bus whether any
//! subscriber wants this camera's full rate (`f/<name>/`). When none does,
//! the source keeps being read (the camera connection stays up, and a first
//! viewer waits at most for the camera's next frame, or keyframe) but the
//! frame is not scaled or encoded. Renditions (`renditions.rs`) are asked
//! about and made the same way, each on its own. Either way, about once a
//! second a frame also becomes the camera's preview (`preview.rs`), and the
//! camera says which renditions it has (`i/<name>/`).

use std::time::{Duration, Instant};

use stream_common::ratelimit::LogEvery;
use tokio_util::sync::CancellationToken;

use crate::cameras::Camera;
use crate::encode::{Encoded, FrameEncoder};
use crate::metrics::CameraMetrics;
use crate::pacing::{Pacer, RateCap};
use crate::preview::{PreviewSettings, Previews};
use crate::publish::{PublishError, StreamPublisher};
use crate::renditions::Renditions;
use crate::scale::fit;
use crate::source::{Demand, Source, SourceError};
use crate::units::{DEFAULT_FPS, Size};

pub struct Settings {
    /// The rate for on-demand sources.
    pub fps: f64,
    /// The cap for live sources, if any.
    pub live_cap: Option<f64>,
    pub max_size: Option<Size>,
    pub quality: u8,
    pub max_frame_bytes: usize,
    pub preview: PreviewSettings,
    /// Rendition widths, largest first (none: empty).
    pub renditions: Vec<u32>,
}

impl Settings {
    pub fn for_camera(c: &Camera, max_frame_bytes: usize, preview: PreviewSettings) -> Self {
        Settings {
            fps: c.fps.unwrap_or(DEFAULT_FPS),
            live_cap: c.fps,
            max_size: c.size,
            quality: c.quality,
            max_frame_bytes,
            preview,
            renditions: c.renditions.0.clone(),
        }
    }
}

/// Opens `camera`'s source and runs its capture loop until shutdown.
/// `opened` hears once whether the source could be set up (a description or
/// the error). With `retry_open`, a source that cannot be set up is counted
/// and tried again with backoff instead of ending the thread.
pub fn camera_thread(
    camera: Camera,
    publisher: StreamPublisher,
    settings: Settings,
    metrics: CameraMetrics,
    shutdown: CancellationToken,
    retry_open: bool,
    opened: std::sync::mpsc::SyncSender<Result<String, crate::source::OpenError>>,
) {
    let options = camera.source_options();
    let mut backoff = Duration::from_millis(200);
    let mut reported = false;
    let source = loop {
        match crate::source::open(&camera.source, &options) {
            Ok(source) => break source,
            Err(e) if retry_open && !shutdown.is_cancelled() => {
                metrics.source_errors.inc();
                tracing::error!(stream = %camera.name, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot set up the camera's source");
                if !reported {
                    let _ = opened.send(Err(e));
                    reported = true;
                }
                if !sleep_until(Instant::now() + backoff, &shutdown) {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                let _ = opened.send(Err(e));
                return;
            }
        }
    };
    if !reported {
        let _ = opened.send(Ok(source.describe()));
    }
    drop(opened);
    run(source, publisher, settings, metrics, shutdown);
}

pub fn run(
    mut source: Box<dyn Source>,
    mut publisher: StreamPublisher,
    settings: Settings,
    metrics: CameraMetrics,
    shutdown: CancellationToken,
) {
    publisher.set_max_frame_bytes(settings.max_frame_bytes);
    let encoders = FrameEncoder::new(settings.quality, settings.max_size)
        .map_err(crate::encode::EncodeError::from)
        .and_then(|e| {
            let renditions = Renditions::new(
                publisher.stream(),
                settings.renditions.clone(),
                settings.quality,
                (
                    metrics.rendition_frames.clone(),
                    metrics.rendition_subscribers.clone(),
                ),
            )?;
            Ok((
                e,
                Previews::new(settings.preview, settings.quality)?,
                renditions,
            ))
        });
    let (mut encoder, mut previews, mut renditions) = match encoders {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the JPEG encoder");
            shutdown.cancel();
            return;
        }
    };
    let interval = Duration::from_secs_f64(1.0 / settings.fps);
    let mut pacer = Pacer::new(Instant::now(), settings.fps);
    let mut cap = settings.live_cap.map(RateCap::new);
    let mut backoff = Duration::from_millis(200);
    let mut source_log = LogEvery::new(Duration::from_secs(10));
    let mut publish_log = LogEvery::new(Duration::from_secs(5));
    let mut bad_log = LogEvery::new(Duration::from_secs(5));
    let mut preview_log = LogEvery::new(Duration::from_secs(5));

    while !shutdown.is_cancelled() {
        let live = source.is_live();
        if !live && !sleep_until(pacer.deadline(), &shutdown) {
            break;
        }
        // The source hears what its next frame is needed for, so it can
        // skip work (the test pattern's drawing, a camera's decoding of
        // frames between keyframes). An on-demand source answers at once,
        // so that decision stands for its frame; a live source's frame may
        // take a while to come, so the question is asked again when it does.
        let before = Needs::now(&publisher, &previews, &renditions);
        source.set_demand(before.demand());
        let early = (!live).then_some(before);
        let captured = match source.next_frame(interval.max(Duration::from_millis(100))) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(SourceError::BadFrame {
                what,
                fault,
                repeat,
            }) => {
                metrics.bad_frames.inc();
                // A repeat the source reported before is only counted.
                if !repeat && let Some(folded) = bad_log.check(Instant::now()) {
                    tracing::warn!(from = %what, reason = %fault, repeats = folded, "skipping unreadable frame");
                }
                if !live {
                    pacer.advance(Instant::now());
                }
                continue;
            }
            Err(e @ SourceError::Unavailable(_)) => {
                metrics.source_errors.inc();
                if let Some(folded) = source_log.check(Instant::now()) {
                    tracing::warn!(stream = %publisher.stream(), error = %e, retry_in_ms = backoff.as_millis() as u64, repeats = folded, "source unavailable");
                }
                if !sleep_until(Instant::now() + backoff, &shutdown) {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                pacer = Pacer::new(Instant::now(), settings.fps);
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        metrics.captured.inc();

        // Live sources run at their own pace; `--fps` thins them before any
        // encoding work is spent on a frame that would be dropped.
        if live && cap.as_mut().is_some_and(|c| !c.admit(Instant::now())) {
            metrics.skipped_rate.inc();
            continue;
        }

        let ts = captured.capture_ts_ns;
        let (pw, ph) = captured.picture.size();
        let full_size = settings
            .max_size
            .and_then(|m| fit(pw, ph, m))
            .unwrap_or((pw, ph));
        renditions.set_full_size(full_size.0, full_size.1);
        let needs = match early {
            // Sizes known only now (the first picture): ask again.
            Some(n) if n.renditions_known || renditions.targets().is_empty() => n,
            _ => Needs::now(&publisher, &previews, &renditions),
        };
        metrics
            .frame_subscribers
            .set(needs.frame_subscribers as i64);
        let mut full = None;
        if needs.frame_subscribers == 0 {
            // Nobody wants the full rate: no scaling, no encoding.
            metrics.mark_alive();
        } else {
            full = encode_and_publish(
                &mut encoder,
                &mut publisher,
                captured.picture.clone(),
                ts,
                &metrics,
                &mut publish_log,
            );
        }
        let small = make_renditions(
            &mut renditions,
            &needs.renditions,
            &mut publisher,
            &captured.picture,
            ts,
            &metrics,
            &mut publish_log,
        );
        publisher.next_frame();
        let now = Instant::now();
        if needs.preview {
            if let Ok(list) = frame_wire::Renditions::new(renditions.sizes())
                && let Err(e) = publisher.publish_info(full_size.0, full_size.1, &list, ts)
                && preview_log.check(now).is_some()
            {
                tracing::warn!(stream = %publisher.stream(), error = %e, "announcing the renditions failed");
            }
            // The full-rate JPEG itself when it is already preview-sized,
            // or a rendition of the preview's width made for this frame.
            let made = match full
                .filter(|f| f.width <= settings.preview.width)
                .or(small.filter(|r| r.width == settings.preview.width))
            {
                Some(f) => {
                    previews.made(now);
                    Ok(f)
                }
                None => previews.make(&captured.picture, now),
            };
            match made {
                Ok(p) => match publisher.publish_preview(p.jpeg, p.width, p.height, ts) {
                    Ok(_) => metrics.previews.inc(),
                    Err(e) => {
                        if preview_log.check(now).is_some() {
                            tracing::warn!(stream = %publisher.stream(), error = %e, "publishing a preview failed");
                        }
                    }
                },
                Err(e) => {
                    metrics.bad_frames.inc();
                    if preview_log.check(now).is_some() {
                        tracing::warn!(stream = %publisher.stream(), error = %e, "making a preview failed");
                    }
                }
            }
        }

        if !live {
            let skipped = pacer.advance(Instant::now());
            if skipped > 0 {
                metrics.skipped_late.inc_by(skipped);
                tracing::debug!(skipped, "frames skipped: capture fell behind");
            }
        }
    }
    tracing::debug!(stream = %publisher.stream(), "capture loop ended");
}

/// What a frame is needed for.
struct Needs {
    /// Subscribers that want the camera's full rate now.
    frame_subscribers: usize,
    /// The renditions someone subscribes to (indexes into the targets).
    renditions: Vec<usize>,
    /// Whether the renditions' sizes were known when this was asked.
    renditions_known: bool,
    /// A preview is due.
    preview: bool,
}

impl Needs {
    fn now(publisher: &StreamPublisher, previews: &Previews, renditions: &Renditions) -> Needs {
        let targets = renditions.targets();
        Needs {
            frame_subscribers: publisher.frame_subscribers(),
            renditions: (0..targets.len())
                .filter(|&i| {
                    let n = publisher.subscribers_to(&targets[i].topic);
                    targets[i].subscribers.set(n as i64);
                    n > 0
                })
                .collect(),
            renditions_known: !targets.is_empty(),
            preview: previews.due(Instant::now()),
        }
    }

    fn demand(&self) -> Demand {
        let frames = self.frame_subscribers > 0 || !self.renditions.is_empty();
        Demand {
            full_rate: frames,
            picture: frames || self.preview,
        }
    }
}

/// Makes and publishes the renditions `wanted` of `picture`; failures are
/// counted and logged at most every few seconds. Returns the smallest one
/// made, which may serve as the preview.
fn make_renditions(
    renditions: &mut Renditions,
    wanted: &[usize],
    publisher: &mut StreamPublisher,
    picture: &crate::source::Picture<'_>,
    ts: u64,
    metrics: &CameraMetrics,
    publish_log: &mut LogEvery,
) -> Option<Encoded> {
    let mut smallest: Option<Encoded> = None;
    let made = renditions.make(picture, wanted, |_, r| {
        match publisher.publish_rendition(r.jpeg.clone(), r.width, r.height, ts) {
            Ok(_) => metrics.mark_alive(),
            Err(e) => {
                metrics.bad_frames.inc();
                if publish_log.check(Instant::now()).is_some() {
                    tracing::warn!(error = %e, width = r.width, "publishing a rendition failed");
                }
            }
        }
        if smallest.as_ref().is_none_or(|s| r.width < s.width) {
            smallest = Some(r);
        }
    });
    if let Err(e) = made {
        metrics.bad_frames.inc();
        if publish_log.check(Instant::now()).is_some() {
            tracing::warn!(error = %e, "making a rendition failed");
        }
    }
    smallest
}

/// Encodes (or passes through) one full-rate frame and publishes it;
/// failures are counted and logged at most every few seconds. Returns what
/// was published.
fn encode_and_publish(
    encoder: &mut FrameEncoder,
    publisher: &mut StreamPublisher,
    picture: crate::source::Picture<'_>,
    ts: u64,
    metrics: &CameraMetrics,
    publish_log: &mut LogEvery,
) -> Option<Encoded> {
    let t = Instant::now();
    let out = match encoder.encode(picture) {
        Ok(out) => out,
        Err(e) => {
            metrics.bad_frames.inc();
            if publish_log.check(Instant::now()).is_some() {
                tracing::warn!(error = %e, "encoding a frame failed");
            }
            return None;
        }
    };
    metrics.encoded.inc();
    if out.encoded {
        metrics.encode_seconds.observe(t.elapsed().as_secs_f64());
    }
    let len = out.jpeg.len();
    match publisher.publish(out.jpeg.clone(), out.width, out.height, ts) {
        Ok(_) => {
            metrics.mark_published(len);
            return Some(out);
        }
        Err(PublishError::Wire(frame_wire::WireError::JpegTooLarge { size, max })) => {
            metrics.skipped_oversize.inc();
            if publish_log.check(Instant::now()).is_some() {
                tracing::warn!(size, max, "frame larger than --max-frame-bytes skipped");
            }
        }
        Err(e) => {
            metrics.bad_frames.inc();
            if publish_log.check(Instant::now()).is_some() {
                tracing::warn!(error = %e, "publishing a frame failed");
            }
        }
    }
    None
}

/// Sleeps until `deadline` in short steps; false if shutdown came first.
fn sleep_until(deadline: Instant, shutdown: &CancellationToken) -> bool {
    loop {
        if shutdown.is_cancelled() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}
