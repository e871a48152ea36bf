//! A real `object-detector` on free loopback ports, and what tests of it
//! need: the model `scripts/model.sh` prepared, and test pictures from
//! Debian's darknet package for the producer's file source.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::process::Proc;

/// Where scripts/model.sh leaves the model (the detector's default
/// `--model`); panics naming the script when it is not there.
pub fn model_path() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    let path = cache.join("mjpeg-fanout/models/ssdlite-mobilenet-v2-person.onnx");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/model.sh (scripts/test.sh runs scripts/setup.sh, which does)",
        path.display()
    );
    path
}

/// A new directory holding one picture of Debian's darknet package
/// (/usr/share/darknet/data: person.jpg, dog.jpg, horses.jpg, …), for a
/// producer's `--source`; removed on drop.
pub fn darknet_picture_dir(name: &str) -> PictureDir {
    let src = PathBuf::from("/usr/share/darknet/data").join(name);
    assert!(
        src.is_file(),
        "{} is missing: install Debian's darknet package (scripts/setup.sh does)",
        src.display()
    );
    let dir = std::env::temp_dir().join(format!(
        "darknet-{}-{}-{name}",
        std::process::id(),
        stream_common::unix_now_ns()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(&src, dir.join(name)).expect("copy picture");
    PictureDir(dir)
}

/// A new directory the producer's file source plays as a looping scene:
/// for each `(picture, frames)` in order, that many copies of the darknet
/// picture (at `--fps F`, `frames / F` seconds of it); removed on drop.
pub fn darknet_scene_dir(scene: &[(&str, usize)]) -> PictureDir {
    let dir = std::env::temp_dir().join(format!(
        "darknet-scene-{}-{}",
        std::process::id(),
        stream_common::unix_now_ns()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (part, (name, frames)) in scene.iter().enumerate() {
        let src = PathBuf::from("/usr/share/darknet/data").join(name);
        assert!(
            src.is_file(),
            "{} is missing: install Debian's darknet package (scripts/setup.sh does)",
            src.display()
        );
        // The source plays a directory in name order.
        for i in 0..*frames {
            std::fs::copy(&src, dir.join(format!("{part:02}-{i:04}-{name}")))
                .expect("copy picture");
        }
    }
    PictureDir(dir)
}

/// A temporary directory of test pictures, removed on drop.
pub struct PictureDir(PathBuf);

impl PictureDir {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Replaces what the directory holds with `scene` (as
    /// `darknet_scene_dir` makes it, hard links to one copy of each
    /// picture): the new files appear at once (each written under a name
    /// the source skips, then renamed), then the old ones go. The file
    /// source re-lists the directory after each pass, so the scene starts
    /// at the end of the pass playing now, from its first picture.
    pub fn play(&self, scene: &[(&str, usize)]) {
        let old: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .expect("list the scene dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        let round = stream_common::unix_now_ns();
        for (part, (name, frames)) in scene.iter().enumerate() {
            let src = PathBuf::from("/usr/share/darknet/data").join(name);
            let staged = self.0.join(format!("{round}-{part:02}.part"));
            std::fs::copy(&src, &staged).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
            for i in 0..*frames {
                // The source plays a directory in name order; `round` (a
                // time, 19 digits) sorts each new scene after the last.
                let link = self.0.join(format!("s{round}-{part:02}-{i:04}-{name}"));
                std::fs::hard_link(&staged, &link).expect("link a picture");
            }
            std::fs::remove_file(&staged).expect("remove the staged copy");
        }
        for p in old {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The path as `--source` takes it.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for PictureDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Detector {
    pub proc: Proc,
    /// `tcp://127.0.0.1:PORT` of its PUB socket, where its detections go.
    pub endpoint: String,
    pub metrics: SocketAddr,
}

impl Detector {
    /// Starts the detector with the prepared model, subscribed to
    /// `producers`, with `extra` flags after its own.
    pub fn start(producers: &[&str], extra: &[&str]) -> Detector {
        let model = model_path();
        let model_s = model.to_string_lossy().into_owned();
        let mut args = vec!["--model", model_s.as_str()];
        for p in producers {
            args.extend(["--producer", p]);
        }
        args.extend_from_slice(extra);
        let (proc, endpoint, metrics) = crate::process::start_on_bus("object-detector", &args);
        Detector {
            proc,
            endpoint,
            metrics,
        }
    }

    /// The sum of a metric's samples whose labels contain all of `labels`;
    /// 0 while /metrics cannot be read.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        crate::metrics::metric(self.metrics, name, labels).await
    }
}
