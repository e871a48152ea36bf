//! A real `frame-recorder` on a free loopback port, recording what
//! `producer` publishes into `dir` (or following several endpoints: a
//! producer's frames, a detector's detections, an event stage's events).

use std::net::SocketAddr;
use std::path::Path;

use crate::free_port;
use crate::process::Proc;

pub struct Recorder {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Recorder {
    /// `extra` flags are appended (a later flag overrides an earlier one).
    pub fn start(producer: &str, dir: &Path, extra: &[&str]) -> Recorder {
        Recorder::start_on(&[producer], dir, extra)
    }

    /// Follows every endpoint in `endpoints` (`--producer` each).
    pub fn start_on(endpoints: &[&str], dir: &Path, extra: &[&str]) -> Recorder {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (addr_s, dir_s) = (addr.to_string(), dir.to_string_lossy().into_owned());
        let mut args = Vec::new();
        for e in endpoints {
            args.extend(["--producer", e]);
        }
        args.extend(["--dir", dir_s.as_str(), "--listen", addr_s.as_str()]);
        args.extend_from_slice(extra);
        Recorder {
            proc: Proc::start("frame-recorder", &args, &[]),
            addr,
        }
    }
}
