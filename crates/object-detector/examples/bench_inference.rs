//! Times the detector's stages on one JPEG, many times over, for
//! `scripts/bench_detect.py`: decoding and preparing (DCT-scaled decode,
//! resize, normalise), the model alone, and thresholding with NMS. Prints
//! one JSON line of percentiles in milliseconds.
//!
//!     cargo run --release -p object-detector --example bench_inference -- \
//!         [--model PATH] [--threads N] [--runs N] PICTURE.jpg
//!
//! It includes the detector's own modules by path (the crate is a binary),
//! so what it times is exactly what the service runs.

// What the service uses and this does not (metric labels, the model's name).
#[allow(dead_code)]
#[path = "../src/model.rs"]
mod model;
#[path = "../src/postprocess.rs"]
mod postprocess;
#[allow(dead_code)]
#[path = "../src/preprocess.rs"]
mod preprocess;

use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut model_path = default_model();
    let (mut threads, mut runs, mut picture) = (1usize, 200usize, None);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--model" => model_path = PathBuf::from(value()?),
            "--threads" => threads = value()?.parse()?,
            "--runs" => runs = value()?.parse()?,
            _ => picture = Some(PathBuf::from(a)),
        }
    }
    let picture = picture.ok_or_else(|| {
        anyhow::anyhow!(
            "usage: bench_inference [--model PATH] [--threads N] [--runs N] PICTURE.jpg"
        )
    })?;
    let jpeg = std::fs::read(&picture)?;
    let runtime = model_path.with_file_name("libonnxruntime.so");
    let loading = Instant::now();
    let mut model = model::Model::load(&model_path, &runtime, threads)?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let mut pre = preprocess::Preprocessor::new()?;
    let (mut prep, mut infer, mut post) = (Vec::new(), Vec::new(), Vec::new());
    let mut people = 0;
    for i in 0..runs + 5 {
        let t0 = Instant::now();
        let input = pre.prepare(&jpeg)?;
        let t1 = Instant::now();
        let raw = model.run(input)?;
        let t2 = Instant::now();
        people = postprocess::people(&raw, 0.5).len();
        let t3 = Instant::now();
        if i >= 5 {
            // The first runs warm caches and ONNX Runtime's allocator.
            prep.push((t1 - t0).as_secs_f64() * 1e3);
            infer.push((t2 - t1).as_secs_f64() * 1e3);
            post.push((t3 - t2).as_secs_f64() * 1e3);
        }
    }
    let (_, w, h) = pre.decoded();
    println!(
        "{{\"threads\":{threads},\"runs\":{runs},\"load_ms\":{load_ms:.1},\"decoded\":\"{w}x{h}\",\
         \"people\":{people},\"prepare_ms_p50\":{:.3},\"prepare_ms_p99\":{:.3},\
         \"inference_ms_p50\":{:.3},\"inference_ms_p99\":{:.3},\
         \"postprocess_ms_p50\":{:.3},\"postprocess_ms_p99\":{:.3}}}",
        pct(&mut prep, 50.0),
        pct(&mut prep, 99.0),
        pct(&mut infer, 50.0),
        pct(&mut infer, 99.0),
        pct(&mut post, 50.0),
        pct(&mut post, 99.0),
    );
    Ok(())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len().saturating_sub(1)) as f64).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

fn default_model() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("mjpeg-fanout/models/ssdlite-mobilenet-v2-person.onnx")
}
