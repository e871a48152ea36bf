//! The inference thread: takes the newest frame of whichever stream is due
//! (`latest.rs`), decodes and prepares it (`preprocess.rs`), runs the model
//! (`model.rs`), keeps the people (`postprocess.rs`) not standing in a mask
//! of the cameras file (`stream_common::rules`) and hands one detections
//! message per analysed frame, ready to send, to the publisher. With
//! `--annotate` it also draws the boxes (`annotate.rs`) and hands over the
//! `<name>-detect` frame, and about once a second the same picture as that
//! stream's preview, which is how on-demand gateways learn of it. One plain
//! thread, because inference is CPU work
//! that would stall the async runtime's receive tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use frame_wire::{Detections, Frame, FrameHeader, Kind, Limits};
use stream_common::ratelimit::LogEvery;
use stream_common::rules::{Rect, Rules};
use tokio::sync::mpsc;

use crate::annotate::Annotator;
use crate::latest::Latest;
use crate::metrics::DetectorMetrics;
use crate::model::{MODEL_NAME, Model};
use crate::preprocess::Preprocessor;
use crate::publish::Outgoing;

/// How often an annotated stream also goes out as a preview.
const PREVIEW_INTERVAL: Duration = Duration::from_secs(1);

/// Suffix of the annotated streams' names.
pub const ANNOTATED_SUFFIX: &str = "-detect";

pub struct Settings {
    pub threshold: f32,
    /// The cameras file's rules: boxes in a camera's masks are dropped.
    pub rules: Rules,
    pub annotate: bool,
    pub bus: frame_bus::BusKeys,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyseError {
    #[error("preparing pictures: {0}")]
    Preprocess(#[from] crate::preprocess::PreprocessError),
    #[error("preparing the annotated stream: {0}")]
    Annotate(#[from] stream_common::jpeg::JpegError),
}

/// Runs until `latest` is closed or the publisher is gone.
pub fn run(
    mut model: Model,
    latest: Arc<Latest>,
    settings: Settings,
    metrics: DetectorMetrics,
    out: mpsc::Sender<Outgoing>,
) -> Result<(), AnalyseError> {
    let mut pre = Preprocessor::new()?;
    let mut annotator = if settings.annotate {
        Some(Annotator::new()?)
    } else {
        None
    };
    let mut bad_log = LogEvery::new(Duration::from_secs(5));
    // When each annotated stream last had a preview: gateways that subscribe
    // on demand learn of a stream from its previews (about one a second).
    let mut previewed: HashMap<String, Instant> = HashMap::new();
    metrics.running.store(true, Ordering::Relaxed);
    let _running = Running(&metrics);
    while let Some(frame) = latest.next() {
        let stream = frame.header.stream.clone();
        let input = match pre.prepare(&frame.jpeg) {
            Ok(input) => input,
            Err(e) => {
                metrics.bad_frame(&stream, e.kind());
                if let Some(folded) = bad_log.check(Instant::now()) {
                    tracing::warn!(stream, seq = frame.header.seq, error = %e, repeats = folded, "skipping a frame that cannot be decoded");
                }
                continue;
            }
        };
        let started = Instant::now();
        let raw = match model.run(input) {
            Ok(raw) => raw,
            Err(e) => {
                metrics.bad_frame(&stream, "inference");
                if let Some(folded) = bad_log.check(Instant::now()) {
                    tracing::warn!(stream, error = %e, repeats = folded, "inference failed");
                }
                continue;
            }
        };
        metrics
            .inference_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.analysed(&stream);
        let mut boxes = crate::postprocess::people(&raw, settings.threshold);
        let rules = settings.rules.of(&stream);
        if rules.has_masks() {
            // Masks take areas out of detection entirely: never published,
            // never drawn, never an event.
            boxes.retain(|b| {
                let masked = rules.masked(&Rect::from(b));
                if masked {
                    metrics.masked(&stream, &b.label);
                }
                !masked
            });
        }
        for b in &boxes {
            metrics.detected(&stream, &b.label);
        }
        let key = settings.bus.signing_key();
        if let Some(annotator) = annotator.as_mut() {
            let (rgb, w, h) = pre.decoded();
            let jpeg = annotator.annotate(rgb, w, h, &boxes)?;
            let due = previewed
                .get(&stream)
                .is_none_or(|t| t.elapsed() >= PREVIEW_INTERVAL);
            let kinds: &[Kind] = if due {
                previewed.insert(stream.clone(), Instant::now());
                &[Kind::Preview, Kind::Frame]
            } else {
                &[Kind::Frame]
            };
            for &kind in kinds {
                if let Some(parts) = annotated(kind, &frame, jpeg.clone(), w, h, key.as_ref())
                    && !send(&out, parts)
                {
                    return Ok(());
                }
            }
        }
        let detections = Detections {
            model: MODEL_NAME.to_string(),
            boxes,
        };
        match frame_wire::encode_detections(&frame.header, &detections, key.as_ref()) {
            Ok(parts) => {
                if !send(&out, parts) {
                    break;
                }
            }
            Err(e) => tracing::warn!(stream, error = %e, "cannot encode detections"),
        }
    }
    Ok(())
}

/// Hands `parts` to the publisher; `false` once it is gone (shutting down).
fn send(out: &mpsc::Sender<Outgoing>, parts: Outgoing) -> bool {
    match out.try_send(parts) {
        Ok(()) => true,
        // The publisher only falls behind if the runtime stalls: drop this
        // one rather than delay the next analysis.
        Err(mpsc::error::TrySendError::Full(_)) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// The `<name>-detect` frame or preview message (the annotated picture is
/// already small: the model's input size), or `None` when that name would be
/// too long.
fn annotated(
    kind: Kind,
    frame: &Frame,
    jpeg: Bytes,
    width: usize,
    height: usize,
    key: Option<&frame_wire::auth::Key>,
) -> Option<Outgoing> {
    let header = FrameHeader {
        stream: format!("{}{ANNOTATED_SUFFIX}", frame.header.stream),
        width: width as u32,
        height: height as u32,
        ..frame.header.clone()
    };
    frame_wire::encode_message(kind, &header, jpeg, &Limits::default(), key).ok()
}

/// Clears `running` when the thread ends, however it ends.
struct Running<'a>(&'a DetectorMetrics);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Relaxed);
    }
}
