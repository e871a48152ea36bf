//! Test inputs made on the spot: a directory holding one solid-colour JPEG,
//! noisy JPEGs as large as a camera's, and video files made by the ffmpeg
//! tool (installed by scripts/setup.sh); and what ffprobe and ffmpeg say
//! of a file a service made.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh directory under the temp dir, unique to this process and `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A `width x height` JPEG of one colour.
pub fn solid_jpeg(width: u32, height: u32, rgb: [u8; 3]) -> bytes::Bytes {
    let mut canvas = stream_common::canvas::Canvas::new(width, height);
    canvas.fill(rgb);
    stream_common::jpeg::JpegEncoder::new(90)
        .and_then(|mut e| e.encode(&canvas))
        .expect("encode a JPEG")
}

/// A `width x height` JPEG of pseudo-random noise at `quality`: about as
/// large as a camera's picture of that size (1920x1080 at 60: about 1 MB),
/// the same bytes every time.
pub fn noisy_jpeg(width: u32, height: u32, quality: u8) -> bytes::Bytes {
    let mut c = stream_common::canvas::Canvas::new(width, height);
    let mut x: u32 = 0x9E37_79B9;
    let px: Vec<u8> = (0..width * height * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    c.set_pixels(&px);
    stream_common::jpeg::JpegEncoder::new(quality)
        .expect("encoder")
        .encode(&c)
        .expect("jpeg")
}

/// Writes `seconds` of ffmpeg's colourful test picture (`testsrc2`) at
/// `size` and `fps` to `path`, encoded with `codec` (e.g. `["-c:v", "libx264"]`).
pub fn test_video(path: &Path, size: &str, fps: u32, seconds: u32, codec: &[&str]) -> PathBuf {
    let source = format!("testsrc2=size={size}:rate={fps}");
    let mut args = vec!["-i", &source, "-t"];
    let seconds = seconds.to_string();
    args.push(&seconds);
    args.extend_from_slice(codec);
    lavfi(&args, path);
    path.to_path_buf()
}

/// A producer's flags for a 1280x720 camera at 15 fps of
/// [`camera_frames`] (made under `name`) with renditions 640 and 320.
pub fn camera_flags(name: &str) -> Vec<String> {
    let dir = camera_frames(name, "1280x720", 30);
    [
        "--source",
        &dir.to_string_lossy(),
        "--size",
        "1280x720",
        "--fps",
        "15",
        "--renditions",
        "640,320",
    ]
    .map(String::from)
    .to_vec()
}

/// Runs ffmpeg on a lavfi source with `args`, writing `out`; panics with
/// its error when it fails.
fn lavfi(args: &[&str], out: &Path) {
    let run = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(args)
        .arg(out)
        .output()
        .expect("the ffmpeg tool (scripts/setup.sh installs it)");
    assert!(
        run.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// A directory of `frames` JPEGs of ffmpeg's moving test picture
/// (`testsrc2`) at `size`, softened and grainy as a camera's pictures are
/// (optics, sensor noise): at 1280x720 about 60 KB each, where the
/// producer's own test pattern (flat colours) compresses to a third of
/// that; scaled down, the grain averages out as it does for a camera. For
/// a producer's `--source DIR`; made once per name and process.
pub fn camera_frames(name: &str, size: &str, frames: u32) -> PathBuf {
    let dir = temp_dir(name);
    let source = format!("testsrc2=size={size}:rate=15,gblur=sigma=1.5,noise=alls=6:allf=t");
    let frames = frames.to_string();
    lavfi(
        &["-i", &source, "-frames:v", &frames, "-q:v", "4"],
        &dir.join("%03d.jpg"),
    );
    dir
}

/// The mean absolute difference of two JPEGs' pixels (RGB, 0..255) over the
/// area both cover from the top-left corner: about 0 for the same picture,
/// tens for different ones; which picture a snapshot is.
pub fn mean_abs_difference(a: &[u8], b: &[u8]) -> f64 {
    let (pa, wa, ha) = stream_common::jpeg::decode_rgb(a).expect("decode the first JPEG");
    let (pb, wb, hb) = stream_common::jpeg::decode_rgb(b).expect("decode the second JPEG");
    let (w, h) = (wa.min(wb) as usize, ha.min(hb) as usize);
    let (wa, wb) = (wa as usize, wb as usize);
    let mut sum = 0u64;
    for y in 0..h {
        let ra = &pa[y * wa * 3..][..w * 3];
        let rb = &pb[y * wb * 3..][..w * 3];
        sum += ra
            .iter()
            .zip(rb)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum::<u64>();
    }
    sum as f64 / (w * h * 3).max(1) as f64
}

/// ffprobe's duration (seconds) of `path` and the frames it counts; 0 for
/// what it cannot read.
pub fn probe(path: &Path) -> (f64, u64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .args(["format=duration:stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe (scripts/setup.sh installs ffmpeg)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let frames = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    let duration = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0.0);
    (duration, frames)
}

/// ffmpeg decodes every frame of `path` without one error; else what it said.
pub fn decodes_cleanly(path: &Path) -> Result<(), String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() && err.trim().is_empty() {
        Ok(())
    } else {
        Err(err)
    }
}
